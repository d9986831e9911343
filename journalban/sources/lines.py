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

from journalban.events import Event
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
    return _syslog_event(source, line, read_time, trust_stamp, None)


def _syslog_event(source: str, line: str, read_time: datetime, trust_stamp: bool,
                  stamps: dict[str, datetime | None] | None) -> Event | None:
    """``line_event`` of a syslog-format line; ``stamps`` remembers the time of each stamp
    text for this ``read_time`` (a block's lines share a few seconds' stamps)."""
    line = line.rstrip("\r\n")  # as parse_file_line does
    header = _COMMON_HEADER.match(line)
    if header is not None:
        if stamps is None:
            stamped = parse_traditional_stamp(line, 0, read_time, None)
            moment = None if stamped is None else stamped[0]
        else:
            text = line[:header.start(1)]
            moment = stamps.get(text, _UNREAD)
            if moment is _UNREAD:
                stamped = parse_traditional_stamp(text, 0, read_time, None)
                moment = stamps[text] = None if stamped is None else stamped[0]
        if moment is not None:
            pid = header[3]
            return Event(time=moment if trust_stamp else read_time, source=source,
                         message=line[header.end():], host=header[1], app=header[2],
                         pid=int(pid) if pid is not None and pid.isdigit() and pid.isascii() else None)
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
    stamps: dict[str, datetime | None] = {}
    pos = 0  # where the first line not yet passed starts
    for end in flagged(block):
        if end < pos or (end == size and whole):
            continue
        start = rfind(b"\n", 0, end) + 1
        line = block[start:end].decode("utf-8", "replace").rstrip("\r")  # as FlaggedLines: the replay's lines
        if file_format == "syslog":
            event = _syslog_event(source, line, read_time, trust_stamp, stamps)
        else:
            event = line_event(source, line, file_format, read_time, trust_stamp, datepattern)
        if event is None:
            unparsed += 1
        else:
            events.append(event)
        pos = end + 1
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
