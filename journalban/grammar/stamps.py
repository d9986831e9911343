"""Time stamps inside messages: the regex that finds each format and its parser.

Parsing is done by hand rather than with ``strptime`` so month names do not
depend on the host locale, and a stamp without a year or zone is resolved
against a reference time passed in, never against the wall clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo

MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}

# Regexes used inside rules; fixed-shape, so they cannot backtrack far.
PATTERNS: dict[str, str] = {
    "syslog": r"[A-Z][a-z]{2} {1,2}[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2}",
    "clf": r"[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}",
    "iso8601": (
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"
        r"(?:[.,][0-9]{1,9})?(?:Z|[+-][0-9]{2}:?[0-9]{2}| [+-][0-9]{4}(?![0-9]))?"
    ),
    "nginx": r"[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}",
    "apache": (
        r"[A-Z][a-z]{2} [A-Z][a-z]{2} [0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})? [0-9]{4}"
    ),
}

_SYSLOG = re.compile(r"([A-Z][a-z]{2}) +([0-9]{1,2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_CLF = re.compile(
    r"([0-9]{2})/([A-Z][a-z]{2})/([0-9]{4}):([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)


def _local(naive: datetime, zone: tzinfo | None) -> datetime:
    """A wall-clock time in ``zone`` (host local time when None) as UTC."""
    aware = naive.replace(tzinfo=zone) if zone is not None else naive.astimezone()
    return aware.astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_syslog(text: str, reference: datetime, zone: tzinfo | None = None) -> datetime | None:
    """``Apr  3 01:11:12``: the latest year that puts it at most a day after ``reference``."""
    found = _SYSLOG.fullmatch(text)
    if found is None or found[1] not in MONTHS:
        return None
    month = MONTHS[found[1]]
    day, hour, minute, second = (int(part) for part in found.groups()[1:])
    latest = _utc(reference) + timedelta(days=1)
    for year in range(latest.year + 1, latest.year - 8, -1):  # -8: Feb 29 needs a leap year
        try:
            moment = _local(datetime(year, month, day, hour, minute, second), zone)
        except ValueError:  # Feb 29 in a common year, or an impossible date/time
            continue
        if moment <= latest:
            return moment
    return None


def parse_clf(text: str, reference: datetime, zone: tzinfo | None = None) -> datetime | None:
    """``01/Apr/2013:16:59:57 +0000``: carries its own year and offset."""
    found = _CLF.fullmatch(text)
    if found is None or found[2] not in MONTHS:
        return None
    day, _, year, hour, minute, second, sign, off_h, off_m = found.groups()
    offset = timedelta(hours=int(off_h), minutes=int(off_m)) * (-1 if sign == "-" else 1)
    try:
        moment = datetime(
            int(year),
            MONTHS[found[2]],
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None
    return moment.astimezone(UTC)


_NGINX = re.compile(r"([0-9]{4})/([0-9]{2})/([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_APACHE = re.compile(
    r"[A-Z][a-z]{2} ([A-Z][a-z]{2}) ([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))? ([0-9]{4})"
)


def _wall_clock(year: int, month: int, day: int, clock: tuple[int, int, int, int],
                zone: tzinfo | None) -> datetime | None:
    """A host-local (or ``zone``) wall-clock time as UTC; None for an impossible one."""
    try:
        return _local(datetime(year, month, day, *clock), zone)
    except ValueError:  # 2024/02/30, 25:00:00
        return None


def parse_nginx(text: str, reference: datetime, zone: tzinfo | None = None) -> datetime | None:
    """``2024/01/02 03:04:05`` (nginx error log): host local time."""
    found = _NGINX.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in found.groups())
    return _wall_clock(year, month, day, (hour, minute, second, 0), zone)


def parse_apache(text: str, reference: datetime, zone: tzinfo | None = None) -> datetime | None:
    """``Sat Jul 20 21:37:32.266605 2013`` (Apache 2.4 error log; 2.2 has no fraction):
    host local time. The weekday is not checked: the date says it all."""
    found = _APACHE.fullmatch(text)
    if found is None or found[1] not in MONTHS:
        return None
    month, day, hour, minute, second, fraction, year = found.groups()
    micro = int((fraction or "0").ljust(6, "0"))
    return _wall_clock(int(year), MONTHS[month], int(day), (int(hour), int(minute), int(second), micro), zone)


def parse_iso8601(text: str, reference: datetime, zone: tzinfo | None = None) -> datetime | None:
    """``2024-01-02T03:04:05.6+01:00``, exim's ``2013-06-02 09:05:48 +0200``; without an
    offset it is host local time."""
    if text[-6:-5] == " ":  # " +0200": the offset as exim's log_timezone writes it
        text = text[:-6] + text[-5:]
    try:
        moment = datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return _local(moment, zone)
    return moment.astimezone(UTC)


PARSERS: dict[str, Callable[[str, datetime, tzinfo | None], datetime | None]] = {
    "syslog": parse_syslog,
    "clf": parse_clf,
    "iso8601": parse_iso8601,
    "nginx": parse_nginx,
    "apache": parse_apache,
}


def parse_stamp(
    kind: str, text: str, reference: datetime, zone: tzinfo | None = None
) -> datetime | None:
    """UTC time of a stamp of format ``kind``; None if the text is not such a stamp."""
    parser = PARSERS.get(kind)
    return parser(text, reference, zone) if parser is not None else None
