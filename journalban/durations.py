"""Durations as operators write them: ``600``, ``"600"``, ``"10m"``, ``"1h30m"``, ``"1d"``."""

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")


def parse_duration(value: object) -> int:
    """Seconds in ``value``; ``ValueError`` with a readable message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 600, '10m', '1h', '1d', got {value!r}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value.strip())
    elif isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(value.strip()))
    else:
        raise ValueError(f"expected a duration like 600, '10m', '1h', '1d', got {value!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact spelling: 600 → '10m', 90 → '90s'."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
