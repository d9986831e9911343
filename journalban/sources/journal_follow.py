"""When to read the journal: on its descriptor, on a timer where that is unreliable, and
again at once while a batch was cut short.

``JournalSource`` knows how to read; this knows when, inside an asyncio loop. A
journal on a network file system (``Reader.reliable_fd()`` false) may change
without the descriptor ever becoming readable, so there the source asks for a
timer too (``poll_interval``) and reading never depends on the descriptor alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from journalban.events import Event
from journalban.sources.journal import JournalCursor, JournalSource
from journalban.sources.journal_process import JournalProcess

__all__ = ["JournalFollower"]

Deliver = Callable[[list[Event], JournalCursor | None], None]
# While the journal holds more than a read takes (a backlog, a flood), reads are short so
# that files and syslog get the loop between them, but their events are delivered together,
# up to this many or this long after the first: one ledger transaction, not one per read.
MERGE_EVENTS = 2048
MERGE_SECONDS = 0.05
# Only reads dense with events are held: one with fewer (a failure among everyday entries,
# whose ban should not wait) is delivered at once, with whatever was held before it.
MERGE_DENSE = 16


class JournalFollower:
    """Read ``source`` whenever it may hold news and hand each batch to ``deliver``.

    ``deliver`` must commit the batch with its cursor before returning. If it (or
    the read) raises, the follower stops for good and calls ``on_error``: the reader
    has already moved past entries whose failures were not recorded, and only a
    restart, which resumes after the last committed cursor, can get them back.
    So can entries read but still held (a backlog's reads are delivered together) when
    the follower stops: their cursor was never committed.
    """

    def __init__(self, source: JournalSource | JournalProcess, deliver: Deliver,
                 on_error: Callable[[BaseException], None]) -> None:
        self.source = source
        self.deliver = deliver
        self.on_error = on_error
        self.counters = {"reads": 0, "polls": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._again: asyncio.Handle | None = None
        self._held: list[Event] = []  # read, not yet delivered: the journal had more
        self._held_cursor: JournalCursor | None = None
        self._held_since = 0.0

    @property
    def polling(self) -> bool:
        return self.source.poll_interval is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the descriptor (and arm the timer when needed), then read what is there now."""
        self._loop = loop
        self._fd = self.source.fileno()
        loop.add_reader(self._fd, self.read)
        self._arm()
        self.read()

    def stop(self) -> None:
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        for handle in (self._timer, self._again):
            if handle is not None:
                handle.cancel()
        self._fd = self._timer = self._again = None
        self._loop = None

    def read(self) -> None:
        """One batch from the source into ``deliver``; schedules the next at once if it was cut."""
        if self._loop is None:
            return
        if self._again is not None:  # a read is due anyway: this one is it
            self._again.cancel()
            self._again = None
        self.counters["reads"] += 1
        try:
            events, cursor = self.source.read()
            if cursor is not None:
                if self._held_cursor is None:
                    self._held_since = time.monotonic()
                self._held += events
                self._held_cursor = cursor
            if self._held_cursor is not None and (
                    not self.source.more_pending or len(events) < MERGE_DENSE or len(self._held) >= MERGE_EVENTS
                    or time.monotonic() - self._held_since >= MERGE_SECONDS):
                events, cursor, self._held, self._held_cursor = self._held, self._held_cursor, [], None
                self.deliver(events, cursor)
        except Exception as exc:
            self.stop()
            self.on_error(exc)
            return
        if self.source.more_pending and self._again is None:  # let other work run between large batches
            self._again = self._loop.call_soon(self.read)

    def _arm(self) -> None:
        interval = self.source.poll_interval
        if self._loop is not None and interval is not None:
            self._timer = self._loop.call_later(interval, self._poll)

    def _poll(self) -> None:
        self.counters["polls"] += 1
        self.read()
        self._arm()
