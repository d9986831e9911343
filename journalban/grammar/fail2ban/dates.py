"""Cutting the date out of a log line the way fail2ban does before its regexes run.

fail2ban looks for a date anywhere in the line (or where ``datepattern`` says),
removes that text, and matches its failregexes against what is left: the text
before the date joined to the text after it. A filter imported from fail2ban
expects the same, so lines read from files go through ``strip_date`` first.

Without a ``datepattern`` the built-in formats below are tried, each first at the
start of the line (after at most two non-word characters) and then anywhere.
``{^LN-BEG}`` alone means the built-in formats, at the start of the line only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "mon|tue|wed|thu|fri|sat|sun"
_FULL_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_FULL_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"

# strptime-style directives to regexes (fail2ban's "Ex" forms are the stricter variants)
DIRECTIVES: dict[str, str] = {
    "ExY": r"(?:19|20)\d\d",
    "Exy": r"\d\d",
    "Exm": r"(?:0[1-9]|1[0-2])",
    "Exd": r"(?:[12]\d|0[1-9]|3[01])",
    "ExH": r"(?:[01]\d|2[0-3])",
    "ExM": r"[0-5]\d",
    "ExS": r"(?:[0-5]\d|6[01])",
    "Exk": r" ?(?:[01]?\d|2[0-3])",
    "Exl": r" ?(?:1[0-2]|\d)",
    "Y": r"\d{4}",
    "y": r"\d\d",
    "m": r"(?:0?[1-9]|1[0-2])",
    "d": r"(?:[12]\d|[0 ]?[1-9]|3[01])",
    "H": r"(?:[01]?\d|2[0-3])",
    "I": r"(?:1[0-2]|0?[1-9])",
    "k": r" ?[0-2]?\d",
    "l": r" ?1?\d",
    "M": r"[0-5]?\d",
    "S": r"(?:[0-5]?\d|6[01])",
    "f": r"\d+",
    "j": r"\d{1,3}",
    "p": r"(?i:am|pm)",
    "a": rf"(?i:{_DAYS})",
    "A": rf"(?i:{_FULL_DAYS})",
    "b": rf"(?i:{_MONTHS})",
    "B": rf"(?i:{_FULL_MONTHS})",
    "z": r"(?:Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)",
    "Z": r"(?:Z|[A-Z]{3,5})",
    "s": r"\d{10,11}",
    "%": "%",
}
_DIRECTIVE = re.compile(r"%(Ex[YymdHMSkl]|[A-Za-z%])")

# fail2ban's default formats, in its order (strptime-style, fail2ban's extensions)
DEFAULT_FORMATS = (
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    r"%m/%d/%ExY:%H:%M:%S",
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    "EPOCH",
    r"{^LN-BEG}%H:%M:%S",
    r"^<%m/%d/%Exy@%H:%M:%S>",
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    r"%b %d, %ExY %I:%M:%S %p",
    r"^%b-%d-%Exy %k:%M:%S",
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    "TAI64N",
)
_SPECIAL = {
    "EPOCH": r"(?<!\.)\d{10,11}(?:\.\d{3,6})?",
    "LEPOCH": r"(?<!\.)\d{13,16}",
    "TAI64N": r"@[0-9a-f]{24}",
}
_LINE_BEGIN = "{^LN-BEG}"
_WORD_BEGIN = r"(?=^|\b|\W)"
_WORD_END = r"(?=\b|\W|$)"
_UNNAMED_GROUP = re.compile(r"(?<!\\)\((?!\?)")
# Every default format holds a time (digit:digit), eight digits in a row (the compact
# and epoch forms) or a TAI64N label: a line without any cannot hold a default date.
_DEFAULT_NEEDS = re.compile(r"\d:\d|\d{8}|@[0-9a-f]{24}").search
_NO_WORD_END = re.compile(r"(?<!\\)(?:\$\)?|\\b|\\s)$")  # fail2ban's RE_NO_WRD_BOUND_END, ``**`` aside


def _translate(pattern: str) -> str:
    special = _SPECIAL.get(pattern.upper())
    if special is not None:
        return special
    return _DIRECTIVE.sub(lambda found: DIRECTIVES.get(found.group(1), found.group()), pattern)


def _bounded(pattern: str, at_line_start: bool) -> str:
    """The regex of one format; its group 1 is the date text to cut out. As in fail2ban,
    ``**`` at its start or end (which is removed) keeps the word boundary off that side,
    and so does an end in ``$``, ``\\b`` or ``\\s``."""
    body = _translate(pattern)
    unbounded_start, body = body.startswith("**"), body.removeprefix("**")
    word_end = _WORD_END
    if body.endswith("**") and not body.endswith("\\**"):
        body, word_end = body[:-2], ""
    elif _NO_WORD_END.search(body):
        word_end = ""
    anchored = body.startswith("^")
    if anchored:
        body = body[1:]
    if not _UNNAMED_GROUP.search(body):
        body = f"({body})"
    if anchored:
        return "^" + body + word_end
    if unbounded_start:
        return body + word_end
    if at_line_start:
        return r"^(?:\W{0,2})?" + body + word_end
    return _WORD_BEGIN + body + word_end


def _default(at_line_start_only: bool) -> list[re.Pattern[str]]:
    begin: list[re.Pattern[str]] = []
    anywhere: list[re.Pattern[str]] = []
    for written in DEFAULT_FORMATS:
        line_start = written.startswith(_LINE_BEGIN)
        pattern = written.removeprefix(_LINE_BEGIN)
        begin.append(re.compile(_bounded(pattern, True)))
        if not line_start and not at_line_start_only:
            anywhere.append(re.compile(_bounded(pattern, False)))
    return begin + anywhere


def _default_alternatives() -> str:
    """All default formats as one alternation, for ``{DATE}`` inside a datepattern."""
    parts = []
    for index, pattern in enumerate(DEFAULT_FORMATS):
        body = _translate(pattern.removeprefix(_LINE_BEGIN).lstrip("^"))
        parts.append(body.replace("_sep", f"_sep{index}"))
    return "(?:" + "|".join(parts) + ")"


@lru_cache(maxsize=64)
def date_regexes(datepattern: str | None) -> tuple[re.Pattern[str], ...]:
    """The regexes tried in order for a ``datepattern`` (None: fail2ban's defaults)."""
    if datepattern is None or not datepattern.strip():
        return tuple(_default(False))
    out: list[re.Pattern[str]] = []
    for written in datepattern.replace("%%", "%").split("\n"):
        line = written.strip()
        if not line:
            continue
        line_start = line.startswith(_LINE_BEGIN)
        rest = line.removeprefix(_LINE_BEGIN)
        if not rest:
            out.extend(_default(True))
            continue
        if "{DATE}" in rest.upper():
            rest = re.sub(r"(?i)\{DATE\}", lambda _: _default_alternatives(), rest)
            body = _translate(rest)
            if not _UNNAMED_GROUP.search(body):
                body = f"({body})"
            out.append(re.compile(body if body.startswith("^") else _WORD_BEGIN + body))
            continue
        out.append(re.compile(_bounded(rest, line_start)))
    return tuple(out)


@lru_cache(maxsize=1)
def _default_patterns() -> tuple[frozenset[str], frozenset[str]]:
    """The regexes (as text) of the default formats: those at the line start, and all."""
    begin = {_bounded(p.removeprefix(_LINE_BEGIN), True) for p in DEFAULT_FORMATS}
    anywhere = {_bounded(p, False) for p in DEFAULT_FORMATS if not p.startswith(_LINE_BEGIN)}
    return frozenset(begin), frozenset(begin | anywhere)


@lru_cache(maxsize=64)
def _finders(datepattern: str | None) -> tuple[tuple[Callable[[str], re.Match[str] | None], int, bool], ...]:
    """``date_regexes`` ready to run: how to try each (a default format anchored at the line
    start by ``match``, which does not try every position as ``search`` would), its group
    to cut, and whether it is a default format searched anywhere in the line, which
    ``_DEFAULT_NEEDS`` can rule out at once."""
    begin, default = _default_patterns()
    return tuple((regex.match if regex.pattern in begin else regex.search, 1 if regex.groups else 0,
                  regex.pattern in default and regex.pattern not in begin) for regex in date_regexes(datepattern))


def find_date(line: str, datepattern: str | None = None) -> tuple[int, int] | None:
    """Start and end of the date text in ``line``, as fail2ban would find it; None if none."""
    possible: bool | None = None  # whether a default format can match; asked once, if at all
    for find, group, default_anywhere in _finders(datepattern):
        if default_anywhere:
            if possible is None:
                possible = _DEFAULT_NEEDS(line) is not None
            if not possible:
                continue
        found = find(line)
        if found is not None:
            return found.start(group), found.end(group)
    return None


def strip_date(line: str, datepattern: str | None = None) -> str:
    """The line with its date cut out, the text before it joined to the text after it."""
    span = find_date(line, datepattern)
    if span is None:
        return line
    return line[: span[0]] + line[span[1] :]
