"""RFC 6587 framing for syslog over TCP and TLS, decoded incrementally with bounded memory.

Each frame picks its own method: one that starts with a digit is octet-counted
(``LEN SP MSG``), any other is non-transparent (ends at LF). Empty lines and
CR/NUL between frames are skipped.

Limits, chosen so a peer cannot make the decoder hold more than ``max_message``
bytes whatever it sends:

* A frame longer than ``max_message`` is **dropped**, not truncated, and reported
  as ``Malformed("too-long")``: a cut message could end inside an address and
  match a grammar as a different one. An oversized octet-counted body is skipped
  as it arrives; an overlong line is discarded up to its LF.
* A bad length prefix (more than 10 digits, zero, or a digit run not ended by a
  space) is reported as ``Malformed("framing")`` and the stream
  **resynchronises at the next LF**; nothing is buffered while it waits.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from enum import Enum, auto

from journalban.sources.syslog.message import DEFAULT_MAX_MESSAGE, Malformed

__all__ = ["DEFAULT_MAX_MESSAGE", "StreamDecoder"]

_MAX_DIGITS = 10
_LF, _SP = 0x0A, 0x20
_BETWEEN = b"\n\r\x00"
_DIGITS = b"0123456789"
_OCTET_COUNT = re.compile(rb"([0-9]{1,%d}) " % _MAX_DIGITS)

Frame = bytes | Malformed


class _State(Enum):
    START = auto()  # between frames
    LENGTH = auto()  # reading an octet count
    BODY = auto()  # reading an octet-counted body
    SKIP = auto()  # discarding an oversized octet-counted body
    LINE = auto()  # reading an LF-terminated frame
    DISCARD = auto()  # discarding up to the next LF


class StreamDecoder:
    """Split one connection's byte stream into frames; ``feed`` never raises on any input."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        if max_message < 1:
            raise ValueError("max_message must be positive")
        self.max_message = max_message
        self._state = _State.START
        self._buf = bytearray()
        self._remaining = 0  # bytes still expected in BODY or SKIP
        self.passed_over = 0  # frames without a mark that ``feed`` left out
        self._handlers: dict[_State, Callable[[bytes, int, list[Frame]], int]] = {
            _State.START: self._start,
            _State.LENGTH: self._length,
            _State.BODY: self._body,
            _State.SKIP: self._skip,
            _State.LINE: self._line,
            _State.DISCARD: self._discard,
        }

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (never more than ``max_message``)."""
        return len(self._buf)

    def feed(self, data: bytes, marks: Sequence[int] | None = None) -> list[Frame]:
        """Frames completed by ``data``, in order.

        With ``marks`` (ascending offsets in ``data``, see ``match.prefilter_marks``), a
        frame that lies whole in ``data`` and has no mark in it is passed over: not cut
        out, only counted in ``passed_over``. Frames pieced together across reads are
        always returned."""
        out: list[Frame] = []
        pos, size = 0, len(data)
        while pos < size:  # every handler consumes at least one byte or changes state
            if self._state is _State.START:
                pos = self._whole_frames(data, pos, out, marks)
                if pos >= size:
                    break
            pos = self._handlers[self._state](data, pos, out)
        return out

    def take_passed_over(self) -> int:
        """Frames ``feed`` passed over since the last call."""
        count, self.passed_over = self.passed_over, 0
        return count

    def _whole_frames(self, data: bytes, pos: int, out: list[Frame], marks: Sequence[int] | None) -> int:
        """The fast path: frames that lie whole inside ``data``, cut out with one slice each
        (if marked, when ``marks`` are given).

        Stops at the first thing that is not a well-formed frame ending inside ``data``
        (a partial frame, a bad or oversized length, an overlong line); the state
        machine takes over from there, so both paths give the same frames."""
        size, limit = len(data), self.max_message
        checking, ends = marks is not None, marks if marks is not None else ()
        mark, marked = bisect_right(ends, pos), len(ends)  # ends[mark]: the first mark past pos
        passed, octet_count = 0, _OCTET_COUNT.match
        while pos < size:
            found = octet_count(data, pos)  # the usual frame: tried first
            if found is not None:
                start = found.end()
                length = int(found[1])
                if length == 0 or length > limit or start + length > size:
                    break
                end = next_pos = start + length
            else:
                byte = data[pos]
                if byte in _BETWEEN:
                    pos += 1
                    continue
                if byte in _DIGITS:  # not a well-formed count
                    break
                newline = data.find(b"\n", pos, pos + limit + 1)
                if newline < 0:
                    break
                start, end, next_pos = pos, newline, newline + 1
            if checking:  # a frame [start, end) is marked when a mark past start is <= end
                while mark < marked and ends[mark] <= start:
                    mark += 1
                if mark == marked or ends[mark] > end:
                    passed += 1
                    pos = next_pos
                    continue
            out.append(data[start:end])
            pos = next_pos
        self.passed_over += passed
        return pos

    def finish(self, *, eof: bool) -> list[Frame]:
        """Flush at close: at the peer's clean EOF an unterminated line is a frame; else it is cut."""
        out: list[Frame] = []
        if self._state is _State.LINE and eof:
            out.append(bytes(self._buf))
        elif self._state in (_State.LINE, _State.LENGTH, _State.BODY) and self._buf:
            out.append(Malformed.of("truncated", self._buf))
        elif self._state is _State.BODY:
            out.append(Malformed("truncated"))
        self._buf.clear()
        self._state = _State.START
        return out

    def _start(self, data: bytes, pos: int, out: list[Frame]) -> int:
        byte = data[pos]
        if byte in _BETWEEN:
            return pos + 1
        self._state = _State.LENGTH if byte in _DIGITS else _State.LINE
        return pos

    def _length(self, data: bytes, pos: int, out: list[Frame]) -> int:
        while pos < len(data):
            byte = data[pos]
            if byte in _DIGITS and len(self._buf) < _MAX_DIGITS:
                self._buf.append(byte)
                pos += 1
                continue
            length = int(self._buf) if byte == _SP else 0
            if length == 0:
                out.append(Malformed.of("framing", self._buf + data[pos : pos + 16]))
                self._buf.clear()
                self._state = _State.DISCARD
                return pos
            self._buf.clear()
            self._remaining = length
            if length > self.max_message:
                out.append(Malformed("too-long", f"octet count {length}"))
                self._state = _State.SKIP
            else:
                self._state = _State.BODY
            return pos + 1
        return pos

    def _body(self, data: bytes, pos: int, out: list[Frame]) -> int:
        take = min(self._remaining, len(data) - pos)
        self._buf += data[pos : pos + take]
        self._remaining -= take
        if self._remaining == 0:
            out.append(bytes(self._buf))
            self._buf.clear()
            self._state = _State.START
        return pos + take

    def _skip(self, data: bytes, pos: int, out: list[Frame]) -> int:
        take = min(self._remaining, len(data) - pos)
        self._remaining -= take
        if self._remaining == 0:
            self._state = _State.START
        return pos + take

    def _line(self, data: bytes, pos: int, out: list[Frame]) -> int:
        newline = data.find(b"\n", pos, pos + self.max_message - len(self._buf) + 1)
        end = newline if newline >= 0 else len(data)
        if len(self._buf) + (end - pos) > self.max_message:
            out.append(Malformed.of("too-long", self._buf or data[pos:end]))
            self._buf.clear()
            self._state = _State.DISCARD
            return pos
        self._buf += data[pos:end]
        if newline < 0:
            return end
        out.append(bytes(self._buf))
        self._buf.clear()
        self._state = _State.START
        return newline + 1

    def _discard(self, data: bytes, pos: int, out: list[Frame]) -> int:
        newline = data.find(b"\n", pos)
        if newline < 0:
            return len(data)
        self._state = _State.START
        return newline + 1
