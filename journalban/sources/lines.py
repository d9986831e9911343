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
from journalban.sources.syslog import parse_file_line
from journalban.sources.syslog.rfc3164 import parse_traditional_stamp

FORMATS = ("raw", "syslog")
# The usual auth.log header, ``Nov  5 10:11:12 host app[pid]: ``, in one match: the
# same parts ``parse_file_line`` finds one after the other (each part can end in one
# place only, so they cannot come out differently); any other shape goes to it.
_COMMON_HEADER = re.compile(
    r"[A-Z][a-z]{2} {1,2}[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2} "  # the stamp
    r"(\S{1,255}) ([^\s\[\]:]{1,48})(?:\[([^\s\]]{1,128})\])?: "  # host, app[pid]
)
BLOCK = 4 << 20  # bytes read at a time by ``read_whole_lines``


def line_event(source: str, line: str, file_format: str, read_time: datetime,
               trust_stamp: bool = True) -> Event | None:
    """None for a syslog-format line without a recognisable prefix; the header's
    stamp is the event time only where ``trust_stamp``, else ``read_time``."""
    if file_format == "raw":
        return Event(time=read_time, source=source, message=line)
    line = line.rstrip("\r\n")  # as parse_file_line does
    header = _COMMON_HEADER.match(line)
    if header is not None:
        stamped = parse_traditional_stamp(line, 0, read_time, None)
        if stamped is not None:
            pid = header[3]
            return Event(time=stamped[0] if trust_stamp else read_time, source=source,
                         message=line[header.end():], host=header[1], app=header[2],
                         pid=int(pid) if pid is not None and pid.isdigit() and pid.isascii() else None)
    parsed = parse_file_line(line, read_time)
    if parsed is None:
        return None
    event = parsed.to_event(source)
    return event if trust_stamp else dataclasses.replace(event, time=read_time)


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
