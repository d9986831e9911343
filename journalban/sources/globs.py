"""Log paths written as globs (``/var/log/nginx/*access.log``), as fail2ban's ``logpath`` allows.

A glob stands for the files that match it now and those that appear later; each is
followed on its own, with its own position, like a path named in full. Whether a
path matches a glob is decided here without touching the disk, so the jails that
read a file found later are known without globbing again.
"""

import fnmatch
import glob
import os
import re

_MAGIC = re.compile(r"[*?[]")  # what ``glob`` treats as a pattern


def is_glob(path: str) -> bool:
    """Whether ``path`` holds a wildcard (``*``, ``?``, ``[...]``) rather than one file's name."""
    return _MAGIC.search(path) is not None


def expand(pattern: str) -> list[str]:
    """The regular files matching ``pattern`` now, sorted (``*`` does not cross ``/`` and
    does not match a leading dot, as in the shell; ``**`` is no recursive wildcard)."""
    return sorted(path for path in glob.glob(pattern) if os.path.isfile(path))


def glob_matches(pattern: str, path: str) -> bool:
    """Whether ``expand(pattern)`` could give ``path``: each ``/``-separated part matches
    its wildcard, and a hidden name only a part that starts with a dot itself."""
    wanted, parts = pattern.split(os.sep), path.split(os.sep)
    if len(wanted) != len(parts):
        return False
    for want, part in zip(wanted, parts, strict=True):
        if not is_glob(want):
            if want != part:
                return False
        elif (part.startswith(".") and not want.startswith(".")) or not fnmatch.fnmatchcase(part, want):
            return False
    return True
