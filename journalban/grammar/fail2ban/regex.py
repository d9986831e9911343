"""fail2ban regexes (with its ``<HOST>``, ``<F-USER>`` tags) to journalban ``/regex/`` text.

The address tags become one ``(?P<address>...)`` group matching IPv4 or IPv6 only:
journalban never resolves host names, so ``<HOST>`` and ``<DNS>`` match addresses.
``<F-NAME>...</F-NAME>`` becomes a capture named ``name`` (``<F-ID>`` is ``fid``,
``<F-PORT>`` ``port``). fail2ban's multi-line markers (``MLFID``,
``NOFAIL``, ``MLFFORGET``, ``MLFGAINED``) become plain groups and are reported in
``Translated.markers`` so the importer can decide what to keep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

IP4 = r"(?:\d{1,3}\.){3}\d{1,3}"
# fail2ban's IPv6 shape; every repetition ends in ':', so a final bare ':' needs no look-behind
IP6 = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)"
ADDRESS = rf"(?P<address>(?:::f{{4,6}}:)?{IP4}|{IP6})"
CIDR = r"(?P<cidr>\d+)"

_TAG = re.compile(r"<(/?)([\w\-]+)(/?)>")
_CUSTOM = re.compile(r"F-([A-Z0-9_\-]+)")
_MARKERS = frozenset({"mlfid", "nofail", "mlfforget", "mlfgained", "content"})
_RENAMED = {"id": "fid"}
_LEGACY_ADDRESS_GROUPS = re.compile(r"\(\?P<(?:host|ip4|ip6)>")
# ((?i)x) or (?:(?i)x) -> (?i:x): Python wants global flags at the very start only
_GLOBAL_IN_GROUP = re.compile(r"(?<!\\)\((?:\?:)?(\(\?[a-z]+)\)")
_LEADING_FLAGS = re.compile(r"^\(\?([a-z]+)\)")
_NEWLINE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\n")  # \n, not \\n


@dataclass
class Translated:
    """One fail2ban regex in journalban's regex dialect, and what was found on the way."""

    text: str
    markers: set[str] = field(default_factory=set)  # multi-line markers and content
    dns: bool = False  # used <DNS>
    host: bool = False  # used <HOST>
    multiline: bool = False  # <SKIPLINES> or a newline in the regex
    addresses: int = 0


def _flags(regex: str) -> str:
    regex = _GLOBAL_IN_GROUP.sub(r"\1:", regex)
    found = _LEADING_FLAGS.match(regex)
    if found:
        regex = f"(?{found.group(1)}:{regex[found.end() :]})"
    return regex


def translate(regex: str) -> Translated:
    """Expand fail2ban's tags in ``regex``; the result is a plain Python regex."""
    out = Translated("")
    open_tags: set[str] = set()

    def substitute(found: re.Match[str]) -> str:
        closing, name, self_closing = found.groups()
        if name in ("HOST", "ADDR", "IP4", "IP6", "DNS", "SUBNET") or (
            name in ("F-IP4", "F-IP6", "F-ADDR", "F-DNS", "F-SUBNET") and self_closing
        ):
            base = name.removeprefix("F-")
            out.addresses += 1
            out.dns |= base == "DNS"
            out.host |= base == "HOST"
            pattern = {"IP4": rf"(?:::f{{4,6}}:)?(?P<address>{IP4})", "IP6": rf"(?P<address>{IP6})"}
            if base == "SUBNET":
                return rf"\[?{ADDRESS}(?:/{CIDR})?\]?"
            return pattern.get(base, rf"\[?{ADDRESS}\]?")
        if name in ("CIDR", "F-CIDR"):
            return CIDR
        if name == "F-ID" and self_closing:
            return r"(?P<fid>\S+)"
        if name == "F-PORT" and self_closing:
            return r"(?P<port>\w+)"
        if name == "SKIPLINES":
            out.multiline = True
            return found.group()
        custom = _CUSTOM.fullmatch(name)
        if custom is None:
            return found.group()
        tag = custom.group(1).lower()
        tag = _RENAMED.get(tag, tag)
        if closing:
            if tag in open_tags:
                open_tags.discard(tag)
                return ")"
            return found.group()
        open_tags.add(tag)
        if tag in _MARKERS:
            out.markers.add(tag)
            if tag in ("content", "nofail", "mlfgained"):
                return f"(?P<{tag}>"
            return "(?:"
        return f"(?P<{tag}>"

    text = _TAG.sub(substitute, _flags(regex))
    text = _number_repeats(text, "address")
    text = _number_repeats(text, "cidr")
    legacy = _LEGACY_ADDRESS_GROUPS.findall(text)
    if legacy:
        out.addresses += len(legacy)
        text = _LEGACY_ADDRESS_GROUPS.sub("(?P<address>", text, count=1)
    if "\n" in text or _NEWLINE_ESCAPE.search(text):
        out.multiline = True
    out.text = text
    return out


def _number_repeats(text: str, name: str) -> str:
    """``(?P<address>`` used twice (``IPv6:<IP6>|<IP4>``) -> ``address`` and ``address__2``."""
    count = 0

    def number(found: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return found.group() if count == 1 else f"(?P<{name}__{count}>"

    return re.sub(rf"\(\?P<{name}>", number, text)


def top_level_alternation(regex: str) -> bool:
    """Whether ``regex`` has a ``|`` outside every group and character class."""
    depth = 0
    index = 0
    while index < len(regex):
        char = regex[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            end = index + 1
            if end < len(regex) and regex[end] == "^":
                end += 1
            if end < len(regex) and regex[end] == "]":
                end += 1
            while end < len(regex) and regex[end] != "]":
                end += 2 if regex[end] == "\\" else 1
            index = end + 1
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
        index += 1
    return False


def ends_anchored(regex: str) -> bool:
    """Whether ``regex`` ends in an unescaped ``$``."""
    if not regex.endswith("$"):
        return False
    backslashes = len(regex[:-1]) - len(regex[:-1].rstrip("\\"))
    return backslashes % 2 == 0


def as_search(regex: str) -> str:
    """A regex that, matched against the whole message, behaves like ``re.search(regex)``."""
    alternation = top_level_alternation(regex)
    prefix = "" if regex.startswith("^") and not alternation else ".*?"
    suffix = "" if ends_anchored(regex) and not alternation else ".*"
    return f"{prefix}(?:{regex}){suffix}" if prefix or suffix else regex


def rename_group(regex: str, name: str, new: str | None) -> str:
    """Rename a named group (``new`` None: make it non-capturing) and its back-references."""
    if new is None:
        return regex.replace(f"(?P<{name}>", "(?:")
    return regex.replace(f"(?P<{name}>", f"(?P<{new}>").replace(f"(?P={name})", f"(?P={new})")


def group_names(regex: str) -> set[str]:
    return set(re.findall(r"\(\?P<([A-Za-z_]\w*)>", regex))


def _group_end(regex: str, start: int) -> tuple[int, int]:
    """End of the group opened at ``start``, and the nesting depth at ``start``."""
    depth = 0
    depth_at_start = 0
    index = 0
    while index < len(regex):
        if index == start:
            depth_at_start = depth
        char = regex[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            index = _class_end(regex, index)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if index > start and depth == depth_at_start:
                return index, depth_at_start
        index += 1
    raise ValueError("unbalanced group")


def _class_end(regex: str, index: int) -> int:
    end = index + 1
    if end < len(regex) and regex[end] == "^":
        end += 1
    if end < len(regex) and regex[end] == "]":
        end += 1
    while end < len(regex) and regex[end] != "]":
        end += 2 if regex[end] == "\\" else 1
    return end + 1


def combine(prefix: str, failregex: str) -> str:
    """A prefregex whose ``(?P<content>X)`` is replaced by the failregex matched inside it.

    As in fail2ban, the prefix is settled first (an atomic group: the failregex
    cannot make it match differently), then the failregex runs where the content starts.
    """
    start = prefix.index("(?P<content>")
    end, depth = _group_end(prefix, start)
    inner = prefix[start + len("(?P<content>") : end]
    before, rest = prefix[:start], prefix[end + 1 :]
    body = failregex
    alternation = top_level_alternation(body)
    if body.startswith("^") and not alternation:
        body = body[1:]
    else:
        body = f".*?(?:{body})"
    if not ends_anchored(body) or alternation:
        body = f"(?:{body}).*?"
    plain = inner in (".+", ".*", ".+?", ".*?") and rest == "$"
    if depth == 0:
        check = "" if plain else f"(?=(?:{rename_all(inner)}){rename_all(rest)})"
        return f"(?>{before}{check})(?:{body}){rest}"
    guard = "" if plain else f"(?={inner})"
    return before + f"(?:{guard}{body})" + rest


def rename_all(regex: str) -> str:
    """Every named group made non-capturing (for a copy of a part inside a look-ahead)."""
    return re.sub(r"\(\?P<[A-Za-z_]\w*>", "(?:", regex)


def escape_slashes(regex: str) -> str:
    """The regex written between ``/ /``: every bare ``/`` becomes ``\\/``."""
    out: list[str] = []
    index = 0
    while index < len(regex):
        char = regex[index]
        if char == "\\" and index + 1 < len(regex):
            out.append(regex[index : index + 2])
            index += 2
            continue
        out.append("\\/" if char == "/" else char)
        index += 1
    return "".join(out)
