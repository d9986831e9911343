"""The ``fail2ban`` file format: each line read as fail2ban reads it for an imported filter.

fail2ban finds the line's date (its default formats anywhere in the line, or the
filter's ``datepattern``), cuts it out and matches what is left; so does this, with
the importer's own ``find_date``, for ``journalban replay --format fail2ban`` and for
the daemon's file source alike (``applies file format=fail2ban``). The date's text
also gives the line's time (fail2ban counts failures at it), read here by the same
strptime-style formats; a date it cannot read leaves the moment the line was read.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from journalban.events import Event
from journalban.grammar import Grammar
from journalban.grammar.fail2ban import find_date
from journalban.grammar.fail2ban.dates import DEFAULT_FORMATS, DIRECTIVES

_DIRECTIVE = re.compile(r"%(Ex[YymdHMSkl]|[A-Za-z%])")
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_TAI64_BASE = 2**62  # TAI64 label of the epoch, as fail2ban reads it (TAI's 10 s ignored)


def datepattern_of(grammar: Grammar) -> str | None:
    """The fail2ban ``datepattern`` a grammar declares (one format a line); None: fail2ban's defaults."""
    return grammar.selector.datepattern


def fail2ban_event(source: str, line: str, datepattern: str | None, read_time: datetime,
                   dated: bool = True) -> Event:
    """The line with its date cut out as the message, at the date's time if readable
    (and ``dated``: else, and without a date, at ``read_time``)."""
    span = find_date(line, datepattern)
    if span is None:
        return Event(time=read_time, source=source, message=line)
    moment = date_time(line[span[0]:span[1]], datepattern, read_time) if dated else None
    return Event(time=moment or read_time, source=source, message=line[:span[0]] + line[span[1]:])


def fail2ban_line_event(source: str, line: str, datepattern: str | None, read_time: datetime,
                        trust_stamp: bool) -> Event:
    """A followed file's line in the ``fail2ban`` format, for the daemon: the date counts
    only where the grammar trusts it (``time stamp``), and never later than ``read_time``."""
    event = fail2ban_event(source, line.rstrip("\r\n"), datepattern, read_time, dated=trust_stamp)
    return event if event.time <= read_time else dataclasses.replace(event, time=read_time)


def date_time(text: str, datepattern: str | None, reference: datetime) -> datetime | None:
    """UTC time of a date fail2ban found; a date without a year takes the latest year
    that puts it at most a day after ``reference``; without a zone, the local zone."""
    for method in ("fullmatch", "search"):  # a datepattern's group may hold brackets around it
        for regex in _readers(datepattern):
            found = getattr(regex, method)(text.strip())
            if found is not None:
                moment = _assemble({k: v for k, v in found.groupdict().items() if v is not None}, reference)
                if moment is not None:
                    return moment
    return None


@lru_cache(maxsize=16)
def _readers(datepattern: str | None) -> tuple[re.Pattern[str], ...]:
    """Each format (the datepattern's lines, then fail2ban's defaults) with a named group
    per directive, so a matched date's parts can be read back."""
    written = [line.strip() for line in (datepattern or "").replace("%%", "%").split("\n") if line.strip()]
    readers = []
    for pattern in (*written, *DEFAULT_FORMATS):
        body = pattern.removeprefix("{^LN-BEG}").lstrip("^")
        if not body or "{DATE}" in body.upper():
            continue
        try:
            readers.append(re.compile(_named(body), re.IGNORECASE))
        except re.error:
            continue  # a directive twice, or a datepattern written for the search only
    return tuple(readers)


def _named(pattern: str) -> str:
    special = {"EPOCH": r"(?P<epoch>\d{10,11}(?:\.\d{3,6})?)", "LEPOCH": r"(?P<lepoch>\d{13,16})",
               "TAI64N": r"@(?P<tai64n>[0-9a-f]{24})"}.get(pattern.upper())
    if special is not None:
        return special
    body = re.sub(r"(?<!\\)\((?!\?)", "(?:", pattern)  # the search's own group 1 no longer matters

    def group(found: re.Match[str]) -> str:
        directive = found.group(1)
        regex = DIRECTIVES.get(directive, found.group())
        return regex if directive == "%" else f"(?P<{directive}>{regex})"

    return _DIRECTIVE.sub(group, body)


def _assemble(parts: dict[str, str], reference: datetime) -> datetime | None:
    if "epoch" in parts:
        return datetime.fromtimestamp(float(parts["epoch"]), UTC)
    if "lepoch" in parts:
        return datetime.fromtimestamp(int(parts["lepoch"][:13]) / 1000, UTC)
    if "tai64n" in parts:
        label = int(parts["tai64n"][:16], 16)
        nanoseconds = int(parts["tai64n"][16:], 16)
        return datetime.fromtimestamp(label - _TAI64_BASE, UTC) + timedelta(microseconds=nanoseconds // 1000)
    try:
        name = (parts.get("b") or parts.get("B") or "")[:3].lower()
        month = int(parts.get("m") or parts.get("Exm") or 0) or _MONTHS[name]
        day = int((parts.get("d") or parts.get("Exd") or "").strip())
        hour = int((parts.get("H") or parts.get("ExH") or parts.get("k") or parts.get("Exk")
                    or parts.get("I") or parts.get("l") or parts.get("Exl") or "0").strip())
        if parts.get("p", "").lower() == "pm" and hour < 12:
            hour += 12
        elif parts.get("p", "").lower() == "am" and hour == 12:
            hour = 0
        minute = int(parts.get("M") or parts.get("ExM") or 0)
        second = min(int(parts.get("S") or parts.get("ExS") or 0), 59)
        micro = int((parts.get("f") or "0")[:6].ljust(6, "0"))
        zone = _zone(parts.get("z"))
        year_text = parts.get("Y") or parts.get("ExY") or parts.get("y") or parts.get("Exy")
        years = [int(year_text) + (2000 if len(year_text) == 2 else 0)] if year_text else None
    except (KeyError, ValueError):
        return None
    latest = reference.astimezone(UTC) + timedelta(days=1)
    for year in years or range(latest.year + 1, latest.year - 8, -1):
        try:
            naive = datetime(year, month, day, hour, minute, second, micro)
        except ValueError:
            continue
        moment = (naive.replace(tzinfo=zone) if zone is not None else naive.astimezone()).astimezone(UTC)
        if years or moment <= latest:
            return moment
    return None


def _zone(text: str | None) -> timezone | None:
    if text is None:
        return None
    if text.upper() in ("Z", "UTC", "GMT"):
        return UTC
    found = re.fullmatch(r"([+-])([01]\d):?(\d{2})?", text)
    if found is None:
        return None
    offset = timedelta(hours=int(found[2]), minutes=int(found[3] or 0))
    return timezone(-offset if found[1] == "-" else offset)
