"""A line of a log file as an Event, by the file's format.

``raw``: the whole line is the message, stamped with the moment it was read.
``syslog``: the traditional ``Mmm dd hh:mm:ss host app[pid]: `` prefix (or its
RFC3339 form) gives time, host, app and pid, and the rest is the message.
"""

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import BinaryIO

from journalban.events import NO_FIELDS, Event, new_event
from journalban.replay_fail2ban import fail2ban_line_event
from journalban.sources.syslog import parse_file_line
from journalban.sources.syslog.rfc3164 import parse_traditional_stamp

FORMATS = ("raw", "syslog", "fail2ban")
# The usual auth.log header, ``Nov  5 10:11:12 host app[pid]: ``, in one match: the
# same parts ``parse_file_line`` finds one after the other (each part can end in one
# place only, so they cannot come out differently); any other shape goes to it.
_COMMON_HEADER = re.compile(
    r"[A-Z][a-z]{2} {1,2}[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2} "  # the stamp
    r"(\S{1,255}) ([^\s\[\]:]{1,48})(?:\[([^\s\]]{1,128})\])?: "  # host, app[pid]
)
BLOCK = 4 << 20  # bytes read at a time by ``read_whole_lines``
_UNREAD = datetime.min  # a stamp text not yet converted (None: converted, unreadable)


def line_event(source: str, line: str, file_format: str, read_time: datetime,
               trust_stamp: bool = True, datepattern: str | None = None) -> Event | None:
    """None for a syslog-format line without a recognisable prefix; the header's
    stamp is the event time only where ``trust_stamp``, else ``read_time``.
    ``fail2ban``: the date (found by ``datepattern``) cut out, see replay_fail2ban."""
    if file_format == "fail2ban":
        return fail2ban_line_event(source, line, datepattern, read_time, trust_stamp)
    if file_format == "raw":
        return Event(time=read_time, source=source, message=line)
    events, _unparsed = _syslog_events([line.rstrip("\r\n")], source, read_time, trust_stamp)  # as parse_file_line
    return events[0] if events else None


def _stamp_time(stamps: dict[str, datetime | None], text: str, read_time: datetime) -> datetime | None:
    moment = stamps.get(text, _UNREAD)
    if moment is _UNREAD:
        stamped = parse_traditional_stamp(text, 0, read_time, None)
        moment = stamps[text] = None if stamped is None else stamped[0]
    return moment


def _common_event(header: re.Match[str], line: str, time: datetime, source: str) -> Event:
    """The Event of a line whose header ``_COMMON_HEADER`` matched."""
    host, app, pid = header.groups()
    return new_event(time, source, line[header.end():], host, app,
                     int(pid) if pid is not None and pid.isdigit() and pid.isascii() else None, NO_FIELDS)


def _other_syslog_event(source: str, line: str, read_time: datetime, trust_stamp: bool) -> Event | None:
    """A syslog-format line of another shape (``parse_file_line``)."""
    parsed = parse_file_line(line, read_time)
    if parsed is None:
        return None
    event = parsed.to_event(source)
    return event if trust_stamp else dataclasses.replace(event, time=read_time)


def flagged_events(block: bytes, flagged: Callable[[bytes], list[int]], source: str, file_format: str,
                   read_time: datetime, trust_stamp: bool = True,
                   datepattern: str | None = None) -> tuple[list[Event], int]:
    """Events of the lines of a whole-line block that ``flagged`` names (by their end
    offsets, as ``FlaggedLines`` takes them), and how many of those had no recognisable
    prefix. The other lines are never decoded: they cannot be failures."""
    events: list[Event] = []
    unparsed = 0
    rfind, size, whole = block.rfind, len(block), block.endswith(b"\n")
    pos = 0  # where the first line not yet passed starts
    lines: list[str] = []
    for end in flagged(block):
        if end < pos or (end == size and whole):
            continue
        start = rfind(b"\n", 0, end) + 1
        lines.append(block[start:end].decode("utf-8", "replace").rstrip("\r"))  # as FlaggedLines: the replay's lines
        pos = end + 1
    if file_format == "syslog":
        return _syslog_events(lines, source, read_time, trust_stamp)
    for line in lines:
        event = line_event(source, line, file_format, read_time, trust_stamp, datepattern)
        if event is None:
            unparsed += 1
        else:
            events.append(event)
    return events, unparsed


def _syslog_events(lines: list[str], source: str, read_time: datetime, trust_stamp: bool) -> tuple[list[Event], int]:
    """The events of syslog-format lines (without their ``\\r\\n``), and how many had no
    recognisable prefix: the usual header in one match, each stamp text converted once
    for the block (its lines share a few seconds' stamps)."""
    events: list[Event] = []
    unparsed = 0
    stamps: dict[str, datetime | None] = {}
    header_of, get_stamp = _COMMON_HEADER.match, stamps.get
    for line in lines:
        header = header_of(line)
        if header is not None:
            moment = get_stamp(text := line[:header.start(1)], _UNREAD)
            if moment is _UNREAD:
                moment = _stamp_time(stamps, text, read_time)
            if moment is not None:
                events.append(_common_event(header, line, moment if trust_stamp else read_time, source))
                continue
        event = _other_syslog_event(source, line, read_time, trust_stamp)
        if event is None:
            unparsed += 1
        else:
            events.append(event)
    return events, unparsed


def read_whole_lines(stream: BinaryIO, size: int = BLOCK) -> Iterator[bytes]:
    """The stream in blocks of whole lines, each ending with a newline but perhaps the
    last (a file without one at its end). A line longer than ``size`` comes whole, in
    one bigger block, gathered without copying it over and over."""
    pending: list[bytes] = []  # the start of a line that no block read so far has ended
    while True:
        data = stream.read(size)
        if not data:
            if pending:
                yield b"".join(pending)
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            pending.append(data)
            continue
        if pending:
            pending.append(data[:cut])
            yield b"".join(pending)
            pending = []
        else:
            yield data[:cut] if cut < len(data) else data
        if cut < len(data):
            pending.append(data[cut:])


class FlaggedLines:
    """The numbered lines of whole-line blocks that ``flagged`` names (by the offsets of
    their ends: their newline, or the block's end), in order, and the first
    ``unflagged`` others (what ``replay --show-missed`` prints). ``lines`` counts every
    line once iterated; the others are never decoded."""

    def __init__(self, blocks: Iterable[bytes], flagged: Callable[[bytes], list[int]], unflagged: int = 0) -> None:
        self.lines = 0
        self._blocks = blocks
        self._flagged = flagged
        self._unflagged = unflagged

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for block in self._blocks:
            rfind, count = block.rfind, block.count
            number = self.lines  # the number of the last line passed
            size = len(block)
            whole = block.endswith(b"\n")
            pos = 0  # where the first line not yet passed starts
            for end in self._flagged(block):
                if end < pos or (end == size and whole):
                    continue  # not a line's end; no scanner says so, but it would be harmless
                start = rfind(b"\n", 0, end) + 1
                if self._unflagged > 0:
                    yield from self._others(block, pos, start, number)
                number += count(b"\n", pos, start) + 1
                yield number, block[start:end].decode("utf-8", "replace").rstrip("\r")
                pos = end + 1
            if self._unflagged > 0:
                yield from self._others(block, pos, size, number)
            self.lines += count(b"\n") + (0 if whole else 1)

    def _others(self, block: bytes, pos: int, stop: int, number: int) -> Iterator[tuple[int, str]]:
        """Lines starting in ``block[pos:stop]``, numbered after ``number``, while wanted."""
        while pos < stop and self._unflagged > 0:
            end = block.find(b"\n", pos)
            end = len(block) if end < 0 else end
            number += 1
            self._unflagged -= 1
            yield number, block[pos:end].decode("utf-8", "replace").rstrip("\r")
            pos = end + 1
