"""Read the journal in a process of its own, beside the daemon rather than inside it.

In a flood the daemon's main thread is the limit, and walking the journal is half its
work: libsystemd's ``_next``/``_get`` and the grammars' prefilter cost about 1.2 s per
million entries before a single event is matched. ``JournalProcess`` runs
``JournalSource`` in a child interpreter (``python -m journalban.sources.journal_process``)
that walks, prefilters and sends only the entries that may match (``Record``), each batch
with the cursor of the last entry read; the parent makes them events. Its interface is
``JournalSource``'s, so ``JournalFollower`` drives either.

Nothing is lost or counted twice: a cursor reaches the ledger only with the failures of
the entries up to it, in the parent's transaction, as before; the child reads ahead by
at most a pipe's worth (``PIPE_BYTES``), then blocks. If the child dies, ``read()``
raises ``JournalError`` once what it sent is delivered: the follower stops, and the
daemon starts a new reader after the cursor last recorded (``Intake._journal_failed``).
The child ends when its standard input closes (the parent closed it or died) or a
write finds the parent gone.

Frames on the child's standard output: a 4-byte little-endian length, then a ``marshal``
of a tuple (the parent's own child, so nothing foreign is unmarshalled):
``("opened",)``, ``("error", text)``, ``("log", level, text)`` and
``("batch", records, cursor, counters, more_pending)``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import marshal
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from journalban.events import Event
from journalban.match import PrefilterSpec, prefilter_of_spec
from journalban.sources.journal import (
    JournalCursor,
    JournalError,
    JournalSource,
    Record,
    _EventMaker,
    check_matches,
    check_since,
    kept_fields,
    new_counters,
)

__all__ = ["JournalProcess"]

log = logging.getLogger(__name__)

PIPE_BYTES = 1 << 20  # the child's read-ahead, and the most one read() takes in
OPEN_TIMEOUT = 30.0  # seconds for the child to start and open the journal
STOP_TIMEOUT = 2.0  # seconds for the child to end once told, before it is killed
_LENGTH = struct.Struct("<I")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Counted by the child; "converted" and "own" are counted where events are made.
CHILD_COUNTERS = ("read", "ruled_out", "skipped_no_message", "unreadable", "invalidated")


class JournalProcess:
    """``JournalSource``'s interface over a child process that reads the journal.

    ``prefilter`` is ``match.prefilter_spec``'s (None: every entry is sent). The
    descriptor to poll is the pipe from the child, which also times its own reads
    (``poll``, ``poll_interval``), so ``poll_interval`` here is None. ``behind``
    says the child's last batch stopped short of the journal's end: a flood is on.
    """

    def __init__(
        self,
        matches: Sequence[Sequence[tuple[str, str]]],
        *,
        directory: str | None = None,
        files: Sequence[str] = (),
        cursor: JournalCursor | None = None,
        since: str = "now",
        max_batch: int = 10000,
        prefilter: PrefilterSpec | None = None,
        poll: bool | None = None,
        poll_interval: float | None = None,
    ) -> None:
        if directory is not None and files:
            raise ValueError("give a journal directory or journal files, not both")
        groups = check_matches(matches)
        self._settings: dict[str, Any] = {
            "matches": [list(map(list, group)) for group in groups],
            "directory": os.path.abspath(directory) if directory is not None else None,  # the child's cwd is not ours
            "files": [os.path.abspath(path) for path in files],
            "cursor": cursor.cursor if cursor is not None else None, "since": check_since(since),
            "max_batch": max_batch, "prefilter": prefilter, "poll": poll, "poll_interval": poll_interval}
        self._where = directory or ",".join(files) or "system journal"
        self._make_event = _EventMaker(kept_fields(groups))
        self._child: subprocess.Popen[bytes] | None = None
        self._buffer = bytearray()
        self._behind = False
        self._gone = False  # the child closed its output
        self._early: list[tuple[Any, ...]] = []  # frames that came with "opened"
        self.counters = new_counters()

    def __str__(self) -> str:
        return f"journal({self._where})"

    @property
    def more_pending(self) -> bool:
        """Always False: what the child sends next makes the descriptor readable."""
        return False

    @property
    def behind(self) -> bool:
        """The child's last batch was cut short: the journal holds more than was delivered."""
        return self._behind

    @property
    def poll_interval(self) -> float | None:
        """None: the child reads on its own timer."""
        return None

    def open(self) -> None:
        """Start the child and wait until it has opened the journal; ``JournalError`` if it cannot."""
        if self._child is not None:
            raise JournalError(f"{self}: already open")
        try:
            # Run from the directory holding this journalban, so the child imports the same code.
            child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     close_fds=True, cwd=PACKAGE_ROOT)
        except OSError as exc:
            raise JournalError(f"{self}: cannot start the journal reader: {exc}") from exc
        assert child.stdin is not None and child.stdout is not None
        self._child = child
        try:
            try:
                child.stdin.write(json.dumps(self._settings).encode() + b"\n")
                child.stdin.flush()
            except BrokenPipeError:
                pass  # it ended at once: _await_opened says how
            try:
                fcntl.fcntl(child.stdout, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:  # above /proc/sys/fs/pipe-max-size for an unprivileged user: the default pipe
                pass
            os.set_blocking(child.stdout.fileno(), False)
            self._await_opened(time.monotonic() + OPEN_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def _await_opened(self, deadline: float) -> None:
        waiting = select.poll()  # not select(): the daemon's descriptors may pass FD_SETSIZE
        waiting.register(self.fileno(), select.POLLIN)
        while True:
            gone = self._fill()
            frames = self._frames()
            for at, frame in enumerate(frames):
                if frame[0] == "opened":
                    self._early = frames[at + 1:]  # sent right after: read() takes them first
                    return
                self._handle(frame, [])
            if gone:
                raise JournalError(f"{self}: the journal reader exited ({self._exit_status()})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JournalError(f"{self}: the journal reader did not start within {OPEN_TIMEOUT:.0f}s")
            waiting.poll(remaining * 1000)

    def fileno(self) -> int:
        """The pipe from the child: readable when it has sent something."""
        return self._open_child().stdout.fileno()  # type: ignore[union-attr]

    def read(self) -> tuple[list[Event], JournalCursor | None]:
        """What the child has sent: the events of its batches and the last batch's cursor.

        ``JournalError`` once the child has gone, after what it sent before is delivered.
        """
        if self._gone:
            raise JournalError(f"{self}: the journal reader exited ({self._exit_status()})")
        self._gone = self._fill()
        records: list[Record] = []
        cursor: str | None = None
        frames, self._early = self._early + self._frames(), []
        for frame in frames:
            cursor = self._handle(frame, records) or cursor
        return self._make_event.events(records, self.counters), JournalCursor(cursor) if cursor is not None else None

    def _fill(self) -> bool:
        """Take in what the pipe holds, up to ``PIPE_BYTES``; True once the child has closed it."""
        fd, taken = self.fileno(), 0
        while taken < PIPE_BYTES:
            try:
                chunk = os.read(fd, PIPE_BYTES)
            except BlockingIOError:
                return False
            if not chunk:
                return True
            self._buffer += chunk
            taken += len(chunk)
        return False

    def _frames(self) -> list[tuple[Any, ...]]:
        """The whole frames in the buffer, taken out of it."""
        frames, buffer, at = [], self._buffer, 0
        while len(buffer) - at >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer, at)
            if len(buffer) - at - _LENGTH.size < size:
                break
            at += _LENGTH.size
            frames.append(marshal.loads(buffer[at:at + size]))
            at += size
        del buffer[:at]
        return frames

    def _handle(self, frame: tuple[Any, ...], records: list[Record]) -> str | None:
        """Act on one frame; a batch's records go into ``records`` and its cursor is returned."""
        kind = frame[0]
        if kind == "batch":
            _, batch, cursor, counters, self._behind = frame
            records += batch
            for name in CHILD_COUNTERS:
                self.counters[name] = counters[name]
            return str(cursor) if cursor is not None else None
        if kind == "log":
            log.log(int(frame[1]), "%s", frame[2])
            return None
        if kind == "error":
            raise JournalError(str(frame[1]))
        raise JournalError(f"{self}: the journal reader sent an unknown frame {kind!r}")

    def _exit_status(self) -> str:
        child = self._open_child()
        try:
            code = child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "still running, but its output closed"
        return f"signal {-code}" if code < 0 else f"status {code}"

    def _open_child(self) -> subprocess.Popen[bytes]:
        if self._child is None:
            raise JournalError(f"{self}: not open")
        return self._child

    def close(self) -> None:
        """Tell the child to end (its standard input closes) and wait for it; kill it if it will not."""
        child, self._child = self._child, None
        if child is None:
            return
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- the child ---------------------------------------------------------------


class _Sender:
    """Frames to the parent, written whole (the pipe blocks when the parent is behind)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self, *frame: Any) -> None:
        data = marshal.dumps(frame)
        view = memoryview(_LENGTH.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view):]


class _SendLog(logging.Handler):
    """The child's log records, sent for the parent to log."""

    def __init__(self, send: _Sender) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send("log", record.levelno, record.getMessage())
        except OSError:
            pass


def serve(settings: dict[str, Any], send: _Sender, control: int) -> int:
    """Open the journal as ``settings`` say, then send batches until ``control`` closes."""
    spec = settings["prefilter"]
    source = JournalSource(
        [tuple(map(tuple, group)) for group in settings["matches"]], directory=settings["directory"],
        files=settings["files"], cursor=JournalCursor(settings["cursor"]) if settings["cursor"] else None,
        since=settings["since"], max_batch=settings["max_batch"], poll=settings["poll"],
        poll_interval=settings["poll_interval"],
        may_match=prefilter_of_spec((list(map(tuple, spec[0])), spec[1])) if spec else None)
    try:
        source.open()
    except JournalError as exc:
        send("error", str(exc))
        return 1
    send("opened")
    poller = select.poll()
    poller.register(source.fileno(), select.POLLIN)
    poller.register(control, select.POLLIN)
    interval = source.poll_interval
    timeout = None if interval is None else interval * 1000
    counters = source.counters
    try:
        while True:
            try:
                records, cursor = source.read_records()
            except OSError as exc:
                send("error", f"{source}: reading failed: {exc}")
                return 1
            if cursor is not None:
                send("batch", records, cursor.cursor, {name: counters[name] for name in CHILD_COUNTERS},
                     source.more_pending)
            if source.more_pending:
                continue
            if any(fd == control for fd, _ in poller.poll(timeout)):
                return 0  # the parent closed our input, or is gone
    finally:
        source.close()


def main() -> int:
    """The child: settings as one JSON line on standard input, frames on standard output.

    It ignores SIGTERM and SIGINT, which reach the whole service or terminal group at
    once: it ends when the parent closes its input, after the parent's last read.
    """
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_IGN)
    send = _Sender(sys.stdout.fileno())
    logging.basicConfig(level=logging.INFO, handlers=[_SendLog(send)])
    settings = json.loads(sys.stdin.buffer.readline())
    try:
        return serve(settings, send, sys.stdin.fileno())
    except BrokenPipeError:
        return 0  # the parent is gone


if __name__ == "__main__":
    sys.exit(main())
