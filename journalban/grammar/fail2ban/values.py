"""fail2ban's value syntaxes in jail files: durations, booleans, ``name[opt=...]`` lists.

Each follows fail2ban's own reader (``MyTime.str2seconds``, ``helpers.extractOptions``,
``splitWithOptions``) so an imported jail gets the numbers fail2ban would use, without
fail2ban's ``eval`` of duration text.
"""

from __future__ import annotations

import re

# fail2ban's unit words (case-insensitive, after a digit or a space), in its order
_UNITS: tuple[tuple[re.Pattern[str], float], ...] = tuple(
    (re.compile(rf"(?i)(?<=[\d\s])(?:{words})\b"), seconds)
    for words, seconds in (
        (r"days?|da|dd?", 24 * 60 * 60),
        (r"weeks?|wee?|ww?", 7 * 24 * 60 * 60),
        (r"months?|mon?", (365 * 3 + 366) * 24 * 60 * 60 / 4 / 12),
        (r"years?|yea?|yy?", (365 * 3 + 366) * 24 * 60 * 60 / 4),
        (r"seconds?|sec?|ss?", 1),
        (r"minutes?|min?|mm?", 60),
        (r"hours?|hou?|hh?", 60 * 60),
    )
)
_GLUED = re.compile(r"(?i)(?<=[a-z])(\d)")  # '1d12h' -> '1d 12h'
_TERM = re.compile(r"\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*(?:\*\s*(\d+(?:\.\d+)?))?\s*")

_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})

OPTION = re.compile(r"^([^\[]+)(?:\[(.*)\])?\s*$", re.DOTALL)
_OPTION_ITEM = re.compile(
    r'\s*([\w\-_\.]+)=(?:"([^"]*)"|\'([^\']*)\'|([^,\]]*))(?:,|\]\s*\[|$|(?P<wrngA>.+))|,?\s*$|(?P<wrngB>.+)',
    re.DOTALL,
)
_SPLIT = re.compile(
    r'(?:[^\[\s]+(?:\s*\[\s*(?:[\w\-_\.]+=(?:"[^"]*"|\'[^\']*\'|[^,\]]*)\s*(?:,|\]\s*\[)?\s*)*\])?\s*|\S+)'
    r"(?=\n\s*|\s+|$)",
    re.DOTALL,
)


def seconds(value: str) -> int:
    """fail2ban's duration (``600``, ``10m``, ``1h 30m``, ``1d12h``, ``-1``) in whole seconds.

    fail2ban evaluates the text as arithmetic after replacing units; sums and
    differences of terms are what real configs use, and all that is accepted here.
    """
    text = _GLUED.sub(r" \1", value.strip())
    for pattern, size in _UNITS:
        text = pattern.sub(f"*{size}", text)
    text = re.sub(r"(\d)\s+(?=\d)", r"\1+", text)
    total = 0.0
    position = 0
    while position < len(text):
        found = _TERM.match(text, position)
        if found is None or found.end() == position:
            raise ValueError(f"{value!r} is not a fail2ban duration")
        sign, number, factor = found.groups()
        if position > 0 and not sign:
            raise ValueError(f"{value!r} is not a fail2ban duration")
        term = float(number) * (float(factor) if factor else 1)
        total += -term if sign == "-" else term
        position = found.end()
    if position == 0:
        raise ValueError(f"{value!r} is not a fail2ban duration")
    return int(total)


def boolean(value: str) -> bool:
    """fail2ban's booleans: ``true/yes/on/1`` and ``false/no/off/0``."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false, yes/no, on/off, 1/0)")


def extract_options(text: str) -> tuple[str, dict[str, str]]:
    """``name[a=1, b="x"]`` to ``("name", {"a": "1", "b": "x"})``, as fail2ban reads filters and actions."""
    found = OPTION.match(text)
    if not found:
        raise ValueError(f"{text!r}: expected NAME or NAME[option=value, ...]")
    name, given = found.groups()
    options: dict[str, str] = {}
    for item in _OPTION_ITEM.finditer(given or ""):
        if item.group("wrngA") or item.group("wrngB"):
            bad = item.group("wrngA") or item.group("wrngB")
            raise ValueError(f"{text!r}: unexpected text {bad[:25]!r}")
        if item.group(1):
            options[item.group(1).strip()] = next(v for v in item.group(2, 3, 4) if v is not None).strip()
    return name.strip(), options


def split_actions(text: str) -> list[str]:
    """An ``action`` value to its actions, keeping line breaks inside ``[...]``."""
    return [part.strip() for part in _SPLIT.findall(text) if part.strip()]


def words(text: str) -> list[str]:
    """fail2ban's list values (``ignoreip``, ``port``): split at spaces and commas."""
    return [word for word in re.split(r"[\s,]+", text) if word]
