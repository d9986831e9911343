"""The traditional BSD syslog shape: RFC 3164 frames and the lines of /var/log/auth.log.

``Mmm dd hh:mm:ss host tag[pid]: msg``, or the RFC 3339 stamp Debian's rsyslog
can write instead. A stamp without a year takes the latest year that puts it at
most a day after the reference time, in the host's local zone unless told.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache

from journalban.sources.syslog.message import SyslogMessage

__all__ = ["parse_3164", "parse_file_line", "parse_rfc3339", "parse_traditional_stamp"]

MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
_TRADITIONAL = re.compile(r"([A-Z][a-z]{2}) {1,2}([0-9]{1,2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?: |$)")
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})(?: |$)"
)
_TAG = re.compile(r"([^\s\[\]:]{1,48})(?:\[([^\s\]]{1,128})\])?:(?: |$)")
_HOST = re.compile(r"(\S{1,255})(?: |$)")


def _local(naive: datetime, zone: tzinfo | None) -> datetime:
    aware = naive.replace(tzinfo=zone) if zone is not None else naive.astimezone()
    return aware.astimezone(UTC)


def parse_traditional_stamp(
    text: str, pos: int, reference: datetime, zone: tzinfo | None
) -> tuple[datetime, int] | None:
    """``Nov  5 10:11:12`` at ``pos``: its UTC time and the position after it and one space."""
    found = _TRADITIONAL.match(text, pos)
    if found is None or found[1] not in MONTHS:
        return None
    second = int(found[5])
    if second > 59:
        return None  # no year makes a datetime of it
    latest = _latest(reference)
    minute = found.group(1, 2, 3, 4)
    for years in (_RECENT_YEARS, _ALL_YEARS):
        for start in _minute_starts(minute, latest.year, zone, years):  # latest year first
            moment = start + _SECONDS[second]
            if moment <= latest:
                return moment, found.end()
    return None


class StampSeconds:
    """``parse_traditional_stamp``'s time as POSIX seconds, for the stamp's text alone
    (``Nov  5 10:11:12``, as text or ASCII bytes), with the local-time work done once
    an hour of log: a fast path sees a stamp on every line, and a week of log holds ten
    thousand minutes. An hour whose UTC offset changes within it (a DST switch) is
    worked out a stamp at a time, as ``parse_traditional_stamp`` does."""

    def __init__(self, reference: datetime, zone: tzinfo | None = None) -> None:
        self._reference = reference
        self._latest = _latest(reference)
        self._latest_seconds = self._latest.timestamp()
        self._zone = zone
        self._hours: dict[str | bytes, tuple[float, ...] | None] = {}  # None: not one offset all hour
        self._minutes: dict[str | bytes, tuple[float, ...]] = {}  # (): worked out a stamp at a time
        self.whole_minutes: dict[str | bytes, float] = {}  # see ``whole_minute``

    def __call__(self, stamp: str | bytes) -> float | None:
        starts = self._minutes.get(stamp[:-3])
        if starts is None:
            starts = self._minute(stamp[:-3])
        second = SECOND_OF.get(stamp[-3:])
        if second is None or not starts:
            return self._exactly(stamp)
        for start in starts:
            if start + second <= self._latest_seconds:
                return start + second
        return self._exactly(stamp)  # older than the recent years: rare, so not cached

    def whole_minute(self, minute: str | bytes) -> float | None:
        """The start of ``minute`` (``Nov  5 10:11``) where each of its seconds reads as that
        start plus the second (the common case, remembered in ``whole_minutes`` for callers
        that look up a block of stamps at once); None where some second reads otherwise or
        not at all (the latest moment a stamp may name falls within it, a DST hour)."""
        starts = self._minutes.get(minute)
        if starts is None:
            starts = self._minute(minute)
        latest = self._latest_seconds
        for start in starts:  # latest year first, as ``__call__`` asks them
            if start > latest:
                continue  # none of its seconds reads in this year
            if start + 59 > latest:
                return None  # its first seconds read in this year, its last ones earlier
            if len(self.whole_minutes) >= _HOUR_MEMORY:
                self.whole_minutes.clear()
            self.whole_minutes[minute] = start
            return start
        return None

    def whole_hour(self, hour: str | bytes) -> None:
        """``whole_minute`` for the sixty minutes of ``hour`` (``Nov  5 10``) at once, where each
        of them reads as its start plus the second: the hour lies wholly before the latest
        moment a stamp may name, in one UTC offset (a block of log names most minutes of
        each hour it holds). Else nothing: ``whole_minute`` decides each minute asked of it."""
        latest = self._latest_seconds
        for start in self._hour(hour) or ():  # latest year first, as ``whole_minute`` asks them
            if start > latest:
                continue  # none of its minutes reads in this year
            if start + _HOUR_SECONDS - 1 > latest:
                return  # the latest moment falls within it: minute by minute
            if len(self.whole_minutes) >= _HOUR_MEMORY:
                self.whole_minutes.clear()
            minutes: list[str | bytes] = ([hour + minute for minute in _MINUTES_BYTES] if isinstance(hour, bytes)
                                          else [hour + minute for minute in _MINUTES_TEXT])
            self.whole_minutes.update(zip(minutes, [start + into for into in _MINUTE_STARTS], strict=True))
            return

    def _minute(self, minute: str | bytes) -> tuple[float, ...]:
        """``Nov  5 10:11``'s start in each recent year that has it, latest first."""
        hour = self._hour(minute[:-3])
        into = _MINUTE_OF.get(minute[-3:])
        if len(self._minutes) >= _HOUR_MEMORY:
            self._minutes.clear()
        starts = self._minutes[minute] = () if hour is None or into is None else tuple(
            start + into for start in hour)
        return starts

    def _hour(self, hour_text: str | bytes) -> tuple[float, ...] | None:
        """The hour's start in each recent year that has it, latest first; None where it is
        no hour or its UTC offset changes within it. Remembered."""
        known = self._hours.get(hour_text, ())
        if known != ():
            return known
        found = _TRADITIONAL.fullmatch(_text(hour_text) + ":00:00")
        if found is None or found[1] not in MONTHS:
            return None
        month, day, hour = found.group(1, 2, 3)
        starts = _minute_starts((month, day, hour, "00"), self._latest.year, self._zone, _RECENT_YEARS)
        ends = _minute_starts((month, day, hour, "59"), self._latest.year, self._zone, _RECENT_YEARS)
        uniform = len(starts) == len(ends) and all(
            end - start == _HOUR_SPAN for start, end in zip(starts, ends, strict=True))
        if len(self._hours) >= _HOUR_MEMORY:
            self._hours.clear()
        hours = self._hours[hour_text] = tuple(start.timestamp() for start in starts) if uniform else None
        return hours

    def _exactly(self, stamp: str | bytes) -> float | None:
        parsed = parse_traditional_stamp(_text(stamp), 0, self._reference, self._zone)
        return None if parsed is None else parsed[0].timestamp()


# ":ss" and ":mm" as written (text or bytes) → seconds into the minute and into the hour
SECOND_OF: dict[str | bytes, int] = {f":{n:02d}": n for n in range(60)} | {f":{n:02d}".encode(): n for n in range(60)}
_MINUTE_OF: dict[str | bytes, int] = {written: n * 60 for written, n in SECOND_OF.items()}
_MINUTES_TEXT = tuple(f":{n:02d}" for n in range(60))
_MINUTES_BYTES = tuple(written.encode() for written in _MINUTES_TEXT)
_MINUTE_STARTS = tuple(n * 60 for n in range(60))
_HOUR_SECONDS = 3600


def _text(stamp: str | bytes) -> str:
    return stamp if isinstance(stamp, str) else stamp.decode("ascii", "replace")


_SECONDS = tuple(timedelta(seconds=second) for second in range(60))
_HOUR_MEMORY = 100_000
_HOUR_SPAN = timedelta(minutes=59)


@lru_cache(maxsize=4)
def _latest(reference: datetime) -> datetime:
    """A stamp's latest possible time: a day after the reference (a replay keeps one)."""
    return reference.astimezone(UTC) + timedelta(days=1)


_RECENT_YEARS, _ALL_YEARS = 3, 9  # the latest year + 1 (a zone ahead of UTC) back to the year before; then 6 more


@lru_cache(maxsize=8192)
def _minute_starts(minute: tuple[str, str, str, str], latest_year: int, zone: tzinfo | None,
                   years: int) -> tuple[datetime, ...]:
    """UTC start of a local minute (month, day, hour, minute as written) in each of the
    first ``years`` candidate years that has it, latest first (the recent three almost
    always hold it; -8: Feb 29 needs a leap year). Cached: a log has many lines a
    minute, and the local-time conversion is the costly part of a stamp."""
    month, day, hour, at = MONTHS[minute[0]], int(minute[1]), int(minute[2]), int(minute[3])
    starts = []
    for year in range(latest_year + 1, latest_year + 1 - years, -1):
        try:
            starts.append(_local(datetime(year, month, day, hour, at), zone))
        except (ValueError, OverflowError):
            continue
    return tuple(starts)


def parse_rfc3339(text: str, pos: int) -> tuple[datetime, int] | None:
    """``2026-11-25T10:11:12.123456+00:00`` at ``pos`` (fraction beyond microseconds cut)."""
    found = _RFC3339.match(text, pos)
    if found is None:
        return None
    fraction = (found[2] or "0")[:6].ljust(6, "0")
    stamp = f"{found[1]}.{fraction}{'+00:00' if found[3] == 'Z' else found[3]}"
    try:
        return datetime.fromisoformat(stamp).astimezone(UTC), found.end()
    except (ValueError, OverflowError):
        return None


def _stamp(text: str, reference: datetime, zone: tzinfo | None) -> tuple[datetime, int] | None:
    return parse_traditional_stamp(text, 0, reference, zone) or parse_rfc3339(text, 0)


def _pid(raw: str | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() and raw.isascii() else None


def _tagged(text: str, pos: int) -> tuple[str | None, int | None, str]:
    """``tag[pid]: msg`` or ``tag: msg`` at ``pos``; without a tag, all of it is the message."""
    found = _TAG.match(text, pos)
    if found is None:
        return None, None, text[pos:]
    return found[1], _pid(found[2]), text[found.end() :]


def parse_3164(
    text: str, received: datetime, facility: int, severity: int, zone: tzinfo | None = None
) -> SyslogMessage:
    """What follows ``<PRI>`` in an RFC 3164 frame; never fails (a relay keeps unknown text)."""
    stamped = _stamp(text, received, zone)
    if stamped is None:  # RFC 3164 4.3.3: no stamp, so the whole rest is the message
        app, pid, message = _tagged(text, 0)
        return SyslogMessage(received, message, None, app, pid, None, facility, severity)
    moment, pos = stamped
    if _TAG.match(text, pos) is not None:  # "Nov 25 10:11:12 sshd[1]: msg", no host
        host = None
    else:
        found = _HOST.match(text, pos)
        host, pos = (found[1], found.end()) if found is not None else (None, pos)
    app, pid, message = _tagged(text, pos)
    return SyslogMessage(moment, message, host, app, pid, None, facility, severity)


def parse_file_line(line: str, reference: datetime, *, zone: tzinfo | None = None) -> SyslogMessage | None:
    """One line of a traditional syslog file (``auth.log``); None if it has no stamp and host."""
    line = line.rstrip("\r\n")
    stamped = _stamp(line, reference, zone)
    if stamped is None:
        return None
    moment, pos = stamped
    found = _HOST.match(line, pos)
    if found is None:
        return None
    app, pid, message = _tagged(line, found.end())
    return SyslogMessage(moment, message, found[1], app, pid)
