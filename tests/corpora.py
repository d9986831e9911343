"""The benchmark corpus generator's logs (``/work/shared/bench/corpus.py``), made once
per test run and shared by the tests that read them."""

import subprocess
import sys
from functools import lru_cache
from pathlib import Path

CORPUS = Path("/work/shared/bench/corpus.py")
KINDS = ("sshd", "nginx", "wplimit")


@lru_cache
def corpus(kind: str, lines: int) -> bytes:
    """``corpus.py KIND LINES``: the same bytes every time (the generator is seeded)."""
    return subprocess.run([sys.executable, str(CORPUS), kind, str(lines)], capture_output=True, check=True).stdout


def mixed(lines: int = 1500) -> bytes:
    """Each kind's corpus of ``lines`` lines, one after the other."""
    return b"".join(corpus(kind, lines) for kind in KINDS)
