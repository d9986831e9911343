"""A flood's batches held for a moment and recorded together.

The syslog listener hands over what each read of a connection held: under a flood,
a few hundred events a read, each batch one ledger transaction whose commit cost
about as much as its rows. Batches of a flood (``DENSE`` events or more, or any
batch while others are held) wait up to ``HOLD_SECONDS`` or until ``MOST_EVENTS``
are held, then go to the pipeline together, one call per source, in the order
they came. A sparse batch with nothing held, a failure among quiet traffic, goes
at once, so detection latency does not pay for the flood's throughput. The bounds
are those of the journal's merged reads (``journalban.sources.journal_follow``).
"""

import asyncio
import logging
from collections.abc import Callable

from journalban.events import Event
from journalban.sources.journal_follow import MERGE_DENSE, MERGE_EVENTS, MERGE_SECONDS

log = logging.getLogger(__name__)

DENSE = MERGE_DENSE  # events in one batch: a flood's
MOST_EVENTS = MERGE_EVENTS  # held at most, then recorded at once
HOLD_SECONDS = MERGE_SECONDS  # held at most, so a flood's failures wait no longer than this to be recorded


class HeldBatches:
    """Batches by source, handed to ``process(source, events)`` as described above. A
    batch that goes at once raises ``process``'s error to the caller (the listener
    counts it); held events that ``process`` refuses are logged and counted in
    ``refused``, and the other sources' still go."""

    def __init__(self, process: Callable[[str, list[Event]], None]) -> None:
        self._process = process
        self._held: dict[str, list[Event]] = {}
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self.refused = 0

    def add(self, source: str, events: list[Event]) -> None:
        if not self._count and len(events) < DENSE:
            self._process(source, events)
            return
        self._held.setdefault(source, []).extend(events)
        self._count += len(events)
        if self._count >= MOST_EVENTS:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(HOLD_SECONDS, self.flush)

    def flush(self) -> None:
        """Hand over everything held: when its time is up, enough is held, or at stop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held, self._count = self._held, {}, 0
        for source, events in held.items():
            try:
                self._process(source, events)
            except Exception:
                self.refused += len(events)
                log.exception("%s: the pipeline refused %d held events", source, len(events))
