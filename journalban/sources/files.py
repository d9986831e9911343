"""Follow a log file like ``tail -F``: survive rotation, truncation and absence.

The follower only moves bytes: it returns blocks of complete lines with the position
just after them and never decodes, matches, parses or timestamps, so a reader can
look at the whole block at once and decode only the lines that matter. The daemon stores that
position in the ledger together with the failures the lines produced and hands
it back at restart, so a crash neither loses nor double-counts a line.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fnmatch
import logging
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from journalban.sources.globs import is_glob

__all__ = ["Chunk", "FileFollower", "FileWatch", "Position"]

log = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: never hang on a FIFO


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading resumes: ``offset`` is the first byte not yet delivered."""

    inode: int
    offset: int

    def __str__(self) -> str:
        return f"{self.inode}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """Complete lines read in one slice of one file, and the position after them.

    ``block`` holds the lines as read, each ending with a newline (an overlong line
    cut to its head, an unterminated last line given one), so the position is that
    of the last line whichever of them a reader looks at.
    """

    path: str
    block: bytes
    position: Position

    @property
    def line_count(self) -> int:
        return self.block.count(b"\n")

    @property
    def lines(self) -> tuple[str, ...]:
        """Every line decoded (invalid UTF-8 replaced), without its newline."""
        return tuple(_decode(line) for line in self.block[:-1].split(b"\n")) if self.block else ()

    def __str__(self) -> str:
        return f"{self.path}@{self.position} {self.line_count} lines"


@dataclass(frozen=True, slots=True)
class _Identity:
    dev: int
    ino: int


def _identity(st: os.stat_result) -> _Identity:
    return _Identity(st.st_dev, st.st_ino)


def _decode(raw: bytes | bytearray) -> str:
    return bytes(raw).decode("utf-8", errors="replace")


def _no_line_longer(block: bytes, limit: int) -> bool:
    """Whether every line of ``block`` (whole lines) has at most ``limit`` bytes: a window
    of ``limit + 1`` bytes from a line's start must hold a newline. Jumps a window at a
    time, so a block of short lines costs a few ``rfind`` calls, not one step per line."""
    start, size = 0, len(block)
    while size - start > limit:
        newline = block.rfind(b"\n", start, start + limit + 1)
        if newline < 0:
            return False
        start = newline + 1
    return True


class FileFollower:
    """Follow one path, switching files when it is rotated, deleted or truncated.

    Where the first file is read from:

    * ``start`` given: resume at ``start.offset`` if the file still has that inode and
      is at least that long; otherwise it was rotated or truncated while we were
      down, so read it from the beginning.
    * ``start=None``: a file that exists when the follower is built is read from
      its end, whether or not this is the daemon's first start (``first_start``):
      a file the daemon never saw before (a jail added later) holds history, not
      attacks in progress, and replaying it could ban addresses for old failures.
      A file that does not exist yet is read from the beginning once it appears.
      If the end falls inside a line, the rest of that line is skipped too.

    Every file that replaces the first one (rotation, recreation) is read from its
    beginning. The descriptor stays open between polls, so lines written to a
    renamed or deleted file are still read; the follower switches to the new file
    only once that has data (the writer has moved) and the old one is read to its
    end. A copytruncate is seen when the file becomes shorter than what was read;
    if it grows past that point between two polls, that cannot be told apart from
    an append (the same limit as every follower that does not hash content).

    Lines longer than ``max_line`` bytes are delivered cut to their first
    ``max_line`` bytes (the head holds the prefix grammars look at) and counted in
    ``dropped_lines``; the rest is skipped without being kept, so memory stays
    bounded by ``max_line + read_size`` whatever the file holds. An unterminated
    last line of a file being abandoned after rotation is delivered as it is,
    since no newline will ever complete it.
    """

    def __init__(
        self,
        path: str | Path,
        start: Position | None,
        *,
        first_start: bool,
        max_line: int = 16384,
        read_size: int = 1 << 20,
    ) -> None:
        if max_line < 1 or read_size < 1:
            raise ValueError("max_line and read_size must be positive")
        self._path = str(path)
        self._start = start
        self._first_start = first_start  # same behaviour either way; see the class docstring
        self._max_line = max_line
        self._read_size = read_size
        self._fd: int | None = None
        self._ident: _Identity | None = None
        self._offset = 0  # first byte not yet delivered
        self._read_offset = 0  # first byte not yet read into _buf
        self._buf = bytearray()  # unterminated line, at most max_line bytes
        self._overlong = False  # _buf holds a cut head; skip on to the newline
        self._skipping = False  # inside a line that began before our start; drop it
        self._opened_once = False
        self._problem: str | None = None  # last problem logged, so each is logged once
        self._dropped = 0
        self._closed = False
        self._behind = False
        self._open_current(constructing=True)

    @property
    def path(self) -> str:
        return self._path

    @property
    def position(self) -> Position | None:
        """Position after the last delivered line, or ``start`` before any file was opened."""
        if self._ident is None:
            return self._start
        return Position(self._ident.ino, self._offset)

    @property
    def dropped_lines(self) -> int:
        """How many lines longer than ``max_line`` were cut."""
        return self._dropped

    def poll(self) -> list[Chunk]:
        """Read at most one slice per file and return the complete lines found."""
        if self._closed:
            return []
        if self._fd is None:
            self._open_current()
            if self._fd is None:
                return []
        chunks: list[Chunk] = []
        # Stat the path before reading, so whatever reached the old file before the
        # rotation we notice is read before we switch.
        current = self._stat_path()
        at_eof = self._read_slice(chunks)
        if current is not None and current[0] != self._ident and current[1] > 0 and at_eof:
            log.info("%s: rotated, following the new file", self._path)
            self._flush_partial(chunks)
            self._drop_fd()
            self._open_current()
            if self._fd is not None:
                at_eof = self._read_slice(chunks)
        self._behind = not at_eof
        return chunks

    @property
    def behind(self) -> bool:
        """Whether the last poll stopped before the file's end (a full slice): poll again soon."""
        return self._behind

    def close(self) -> None:
        self._closed = True
        self._drop_fd()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- opening -------------------------------------------------------------

    def _report(self, problem: str, level: int = logging.WARNING) -> None:
        if problem != self._problem:
            self._problem = problem
            log.log(level, "%s: %s", self._path, problem)

    def _stat_path(self) -> tuple[_Identity, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None  # missing or unreadable: keep reading what we hold
        return _identity(st), st.st_size

    def _open_current(self, *, constructing: bool = False) -> None:
        """Open the file now at the path and choose where to read it from."""
        try:
            fd = os.open(self._path, _OPEN_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            self._report("does not exist (yet); waiting for it", logging.INFO)
            return
        except OSError as exc:
            self._report(f"cannot open: {exc.strerror or exc}")
            return
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            self._report(f"cannot stat: {exc.strerror or exc}")
            return
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._report("is not a regular file")
            return
        self._fd = fd
        self._ident = _identity(st)
        self._problem = None
        self._buf.clear()
        self._overlong = False
        offset = 0
        if not self._opened_once:
            offset = self._initial_offset(st, constructing)
        self._opened_once = True
        self._offset = self._read_offset = offset
        # A start offset that does not follow a newline is inside a line whose
        # head we did not deliver: skip to its end rather than deliver a tail.
        self._skipping = offset > 0 and os.pread(fd, 1, offset - 1) != b"\n"
        log.info("%s: following inode %d from offset %d", self._path, st.st_ino, offset)

    def _initial_offset(self, st: os.stat_result, constructing: bool) -> int:
        if self._start is None:
            return st.st_size if constructing else 0
        if self._start.inode != st.st_ino:
            log.info("%s: replaced while we were down, reading from the start", self._path)
            return 0
        if st.st_size < self._start.offset:
            log.info("%s: truncated while we were down, reading from the start", self._path)
            return 0
        return self._start.offset

    def _drop_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- reading -------------------------------------------------------------

    def _read_slice(self, chunks: list[Chunk]) -> bool:
        """Read one slice into ``chunks``; return whether the file's end was reached."""
        assert self._fd is not None and self._ident is not None
        try:
            size = os.fstat(self._fd).st_size
            if size < self._read_offset:
                log.warning("%s: truncated, reading from the start", self._path)
                self._offset = self._read_offset = 0
                self._buf.clear()
                self._overlong = self._skipping = False
            data = os.pread(self._fd, self._read_size, self._read_offset)
        except OSError as exc:
            self._report(f"cannot read: {exc.strerror or exc}")
            return True
        block = self._split(data)
        if block:
            chunks.append(Chunk(self._path, block, Position(self._ident.ino, self._offset)))
        return len(data) < self._read_size

    def _split(self, data: bytes) -> bytes:
        """The complete lines of ``data`` (after what ``_buf`` holds) as one block, keeping
        the unterminated tail in ``_buf``. A slice of ordinary lines is sliced, not split."""
        last = data.rfind(b"\n")
        if last >= 0 and not self._skipping and not self._overlong:
            block = bytes(self._buf) + data[: last + 1] if self._buf else data[: last + 1]
            if _no_line_longer(block, self._max_line):
                self._buf.clear()
                self._offset = self._read_offset + last + 1
                self._keep_tail(data, last + 1)
                return block
        return b"".join(line + b"\n" for line in self._split_lines(data))

    def _split_lines(self, data: bytes) -> list[bytes]:
        """``_split`` line by line: where a line is cut, skipped, or the slice holds no newline."""
        lines: list[bytes] = []
        base = self._read_offset
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
            elif self._overlong:
                lines.append(self._cut(self._buf))
            else:
                room = self._max_line + 1 - len(self._buf)
                self._buf += data[start : min(newline, start + room)]
                if len(self._buf) > self._max_line:
                    lines.append(self._cut(self._buf))
                else:
                    lines.append(bytes(self._buf))
            self._buf.clear()
            self._overlong = False
            start = newline + 1
            self._offset = base + start
        self._keep_tail(data, start)
        return lines

    def _keep_tail(self, data: bytes, start: int) -> None:
        """Hold ``data[start:]``, an unterminated line, in ``_buf`` (at most its head)."""
        if not self._skipping and not self._overlong:
            room = self._max_line + 1 - len(self._buf)
            self._buf += data[start : start + room]
            if len(self._buf) > self._max_line:
                del self._buf[self._max_line :]
                self._overlong = True
        self._read_offset += len(data)

    def _cut(self, raw: bytearray) -> bytes:
        self._dropped += 1
        if self._dropped == 1:
            log.warning("%s: line longer than %d bytes cut", self._path, self._max_line)
        return bytes(raw[: self._max_line])

    def _flush_partial(self, chunks: list[Chunk]) -> None:
        """Deliver the unterminated last line of a file we are leaving for good."""
        assert self._ident is not None
        if self._buf and not self._skipping:
            line = self._cut(self._buf) if self._overlong else bytes(self._buf)
            self._offset = self._read_offset
            chunks.append(Chunk(self._path, line + b"\n", Position(self._ident.ino, self._offset)))
        self._buf.clear()
        self._overlong = self._skipping = False


# --- waking on change ----------------------------------------------------------

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x002, 0x004, 0x008
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x040, 0x080, 0x100, 0x200
_IN_Q_OVERFLOW, _IN_NONBLOCK, _IN_CLOEXEC = 0x4000, os.O_NONBLOCK, os.O_CLOEXEC
_DIRECTORY_EVENTS = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE
                     | _IN_DELETE)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class FileWatch:
    """inotify on the directories of followed files: its descriptor becomes readable when one
    of them may have changed, so a written line is read at once instead of at the next poll.

    Directories, not files, are watched: that sees a file created, renamed or deleted as well
    as written, and works for paths that do not exist yet. What it cannot see (a directory
    missing at start, a rotated file moved to another directory, network filesystems) the
    follower's slower safety poll still reads. Without inotify (``available`` false) only
    the poll remains.
    """

    def __init__(self, paths: list[str], patterns: Sequence[str] = ()) -> None:
        """``patterns``: globs whose files are followed too, those that appear later
        included (a glob in a directory's part, ``/var/log/*/x.log``, is left to the poll)."""
        self._names: dict[int, set[str]] = {}  # watch descriptor → followed names in that directory
        self._patterns: dict[int, set[str]] = {}  # watch descriptor → name globs in that directory
        self._fd = -1
        libc = _libc()
        if libc is None:
            return
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            log.warning("inotify unavailable (%s): files are polled only", os.strerror(ctypes.get_errno()))
            return
        self._fd = fd
        by_directory: dict[str, set[str]] = {}
        for path in paths:  # a symlink's own directory, and its target's
            for seen in {os.path.abspath(path), os.path.realpath(path)}:
                directory, name = os.path.split(seen)
                by_directory.setdefault(directory, set()).add(name)
        by_pattern: dict[str, set[str]] = {}
        for pattern in patterns:
            directory, name = os.path.split(os.path.abspath(pattern))
            if not is_glob(directory):
                by_pattern.setdefault(directory, set()).add(name)
        for directory in sorted(by_directory.keys() | by_pattern.keys()):
            wd = libc.inotify_add_watch(fd, os.fsencode(directory), _DIRECTORY_EVENTS)
            if wd < 0:
                log.warning("%s: cannot watch with inotify (%s); its files are polled only", directory,
                            os.strerror(ctypes.get_errno()))
                continue
            self._names.setdefault(wd, set()).update(by_directory.get(directory, ()))
            self._patterns.setdefault(wd, set()).update(by_pattern.get(directory, ()))

    @property
    def available(self) -> bool:
        return self._fd >= 0 and bool(self._names or self._patterns)

    def fileno(self) -> int:
        return self._fd

    def changed(self) -> bool:
        """Read every pending event; whether any may concern a followed file."""
        relevant = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except (BlockingIOError, InterruptedError):
                return relevant
            except OSError as exc:
                log.warning("inotify read failed (%s): polling", exc.strerror or exc)
                return True
            if not data:
                return relevant
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if mask & _IN_Q_OVERFLOW or self._concerns(wd, os.fsdecode(name)):
                    relevant = True

    def _concerns(self, wd: int, name: str) -> bool:
        return name in self._names.get(wd, ()) or any(
            fnmatch.fnmatchcase(name, pattern) and (pattern.startswith(".") or not name.startswith("."))
            for pattern in self._patterns.get(wd, ()))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _libc() -> ctypes.CDLL | None:
    """libc with the inotify calls, where the platform has them."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc
