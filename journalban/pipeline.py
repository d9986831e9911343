"""One batch from a source, through matching and detection, into the ledger.

Sources hand over lines with the position they reached; everything a batch
produces (failures, bans, the new position) is written in one transaction, so a
crash loses none of it and counts none of it twice. While a source has more to
hand over at once (a file read behind its end, a journal backlog: a burst), its
batches are held and several recorded in one transaction: each commit rewrites
the index pages its batch touched, and fewer, larger transactions cost SQLite
less per failure. On SQLite such a burst's transaction runs in a thread of its own
while the reading goes on (``Ledger.writer``: its statements let go of the GIL);
its bans reach the firewall once it committed, as always.
"""

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from journalban.detector import Detector, Verdict
from journalban.events import BanDecision, Event, Failure
from journalban.ledger.store import Ledger
from journalban.logs import event_fields
from journalban.match import JailMatcher
from journalban.sources.files import Position
from journalban.sources.journal import JournalCursor
from journalban.sources.ledger_bans import LEDGER, ban_events

log = logging.getLogger(__name__)
RECORD_ATTEMPTS = 10
# A batch that produced nothing but a new position (journald's and a busy host's everyday
# lines) has its position committed with the next batch that records something, or once
# it has waited this long: a commit per small batch held the loop while failures queued.
# Lines read again after a crash in between produced nothing, so they produce nothing again.
POSITION_DELAY = 1.0
# A burst's batches held and recorded together: until they reach this many failures, or
# for this long (their bans reach the firewall after their commit, so they wait too). A
# followed file of 1M sshd lines: 24 transactions became 3 (at 32,768), and the daemon went
# from about 280k to 335k-360k lines/s; a held failure is about 225 bytes. Recorded beside
# the reading (``release``), smaller transactions overlap it better: 16,384 is 6 for that
# file, about 400k-435k lines/s, and half the failures held at once.
HOLD_FAILURES = 16384
HOLD_SECONDS = 1.0
# Only a dense batch is held: a few events among a busy journal's everyday entries (which
# keep ``more_pending`` true) go at once, with what was held before them. Held, a failure
# read at 20,000 journal entries/s waited out HOLD_SECONDS (p99 latency 1.02 s, not 10 ms).
HOLD_DENSE = 256
_COUNTED = {verdict: verdict.value for verdict in Verdict}  # an enum's .value is a descriptor call per event


class Pipeline:
    def __init__(self, matchers: Mapping[str, Sequence[JailMatcher]], detector: Detector,
                 ledger: Ledger, on_ban: Callable[[list[BanDecision]], None]) -> None:
        self.matchers = matchers  # source name → the jails that read it
        self.detector = detector
        self.ledger = ledger
        self.on_ban = on_ban
        self.counters: Counter[str] = Counter()
        self._positions: dict[str, Position | JournalCursor] = {}  # read past, not yet committed
        self._positions_due = 0.0  # monotonic time by which they are committed
        self._held_failures: list[Failure] = []
        self._held_bans: list[BanDecision] = []
        self._held_due = 0.0  # monotonic time by which what is held is recorded
        self._recorder: ThreadPoolExecutor | None = None  # a burst's transactions, beside the reading
        self._recording: tuple[Future[None], list[Failure], list[BanDecision],
                               dict[str, Position | JournalCursor]] | None = None
        self.on_recorded: Callable[[], None] | None = None  # told (from the recorder's thread) when one ends
        self._burst_writes = False  # whether the ledger holds a burst's connection (``Ledger.end_burst``)

    def process(self, source: str, events: Sequence[Event], position: Position | JournalCursor | None,
                now: datetime, more: bool = False) -> list[BanDecision]:
        """Everything ``events`` (all from ``source``) produce, recorded with ``position``:
        at once, or, while the source has ``more`` to hand over at once and the batch is
        dense, held with the batches before (``HOLD_DENSE``, ``HOLD_FAILURES``, ``HOLD_SECONDS``)."""
        failures: list[Failure] = []
        bans: list[BanDecision] = []
        matchers = self.matchers.get(source, ())
        self.counters["events"] += len(events)
        self._observe(events, matchers, now, failures, bans)
        self._feed_ledger_readers(bans, now, failures)
        if position is not None:
            if not self._positions:
                self._positions_due = time.monotonic() + POSITION_DELAY
            self._positions[source] = position
        if failures or bans:
            if not self._holding:
                self._held_due = time.monotonic() + HOLD_SECONDS
            self._held_failures += failures
            self._held_bans += bans
            dense = more and len(events) >= HOLD_DENSE
            if not dense or len(self._held_failures) >= HOLD_FAILURES or time.monotonic() >= self._held_due:
                self.release(now, background=dense)
        else:
            self.commit_positions(now, due_only=True)
        return bans

    @property
    def holds(self) -> bool:
        """Whether failures or bans wait to be recorded or are being recorded (see
        ``commit_positions``)."""
        return self._holding or self._recording is not None

    @property
    def _holding(self) -> bool:
        return bool(self._held_failures or self._held_bans)

    @property
    def recording(self) -> bool:
        """Whether a burst's transaction is being recorded in the background."""
        return self._recording is not None

    def release(self, now: datetime, background: bool = False) -> None:
        """Record what is held with the positions read, then hand its bans on. If the
        ledger refuses, all of it stays held for the next try (or the stop) and the
        error is raised: nothing read is lost, and no position passes its failures.

        ``background``: in the recorder's thread while the caller reads on (a burst);
        its bans are handed on, or its error raised, by the next call that settles it
        (``settle``). One transaction is in flight at most, and every other path waits
        for it first, so transactions commit in the order their batches were read."""
        self.settle()
        if self._holding or self._positions:
            self._release(now, background)
        if not background and self._burst_writes:  # the burst's last transaction: its connection let go
            self._burst_writes = False
            self.ledger.end_burst()

    def _release(self, now: datetime, background: bool) -> None:
        """What is held and the positions, taken and recorded (or handed to the recorder's
        thread); its bans handed on; all of it held again if the ledger refuses."""
        failures, bans, positions = self._held_failures, self._held_bans, self._take_positions()
        self._held_failures, self._held_bans = [], []
        try:
            write = self.ledger.writer(failures, bans, positions, now) if background else None  # its Python work
            if write is None:
                self._record(failures, bans, positions, now)
            else:
                self._recording = (self._submit(write), failures, bans, positions)
        except BaseException:
            self._put_back(failures, bans, positions)
            raise
        if write is None and bans:
            self.on_ban(bans)

    def _submit(self, write: Callable[[], None]) -> "Future[None]":
        """``write`` to the recorder's thread, ``on_recorded`` told when it ends."""
        if self._recorder is None:
            self._recorder = ThreadPoolExecutor(1, thread_name_prefix="journalban-record")
        self._burst_writes = True
        future = self._recorder.submit(self._attempts, write)
        if self.on_recorded is not None:
            future.add_done_callback(lambda _done: self.on_recorded and self.on_recorded())
        return future

    def settle(self, wait: bool = True) -> None:
        """The transaction recorded in the background, once it ended (waited for, unless
        not ``wait``): its bans handed on, or its error raised with all of it held again."""
        if self._recording is None:
            return
        future, failures, bans, positions = self._recording
        if not wait and not future.done():
            return
        self._recording = None
        try:
            future.result()
        except BaseException:
            self._put_back(failures, bans, positions)
            raise
        if bans:
            self.on_ban(bans)

    def close(self) -> None:
        """End the recorder's thread once its transaction under way ended (``settle`` before,
        to hand on its bans or hear of its error: at stop, ``commit_positions`` does)."""
        if self._recorder is not None:
            self._recorder.shutdown()
            self._recorder = None

    def _put_back(self, failures: list[Failure], bans: list[BanDecision],
                  positions: dict[str, Position | JournalCursor]) -> None:
        self._held_failures[:0], self._held_bans[:0] = failures, bans
        self._positions = {**positions, **self._positions}

    def commit_positions(self, now: datetime, due_only: bool = False) -> None:
        """Record what is held and the positions of batches that produced nothing else
        (all of it, or only what has waited ``HOLD_SECONDS`` or ``POSITION_DELAY``):
        called while idle, when a burst ends, and at the end."""
        self.settle(wait=not due_only)
        held = self._holding
        if not held and not self._positions:
            return
        if due_only and time.monotonic() < (self._held_due if held else self._positions_due):
            return
        self.release(now)

    def _take_positions(self) -> dict[str, Position | JournalCursor]:
        positions, self._positions = self._positions, {}
        return positions

    def _observe(self, events: Sequence[Event], matchers: Sequence[JailMatcher], now: datetime,
                 failures: list[Failure], bans: list[BanDecision]) -> None:
        """The events through each jail that reads their source, a jail's whole batch at a
        time (its windows and bans are its own, so only order within a jail matters);
        adds what they produce."""
        counters = self.counters
        for matcher in matchers:
            found, rejected = matcher.match_batch(events)
            for event, reason in rejected:
                counters["rejected"] += 1
                log.warning("%s: %s skipped (%s/%s): %r", matcher.jail, reason.reason,
                            matcher.grammar.name, reason.rule, event.message[:200])
            if not found:
                continue
            verdicts = self.detector.observe_batch(matcher.jail, found, now)
            for verdict, count in verdicts.counts.items():
                if count:
                    counters[_COUNTED[verdict]] += count
            for failure in verdicts.too_old:
                log.info("%s: too old to count (%s): %s", failure.jail, failure.time.isoformat(), failure.address)
            failures += verdicts.kept
            for decision in verdicts.bans:
                log.info("%s", decision, extra=event_fields("ban", decision.jail, decision.address))
            bans += verdicts.bans

    def _feed_ledger_readers(self, bans: list[BanDecision], now: datetime, failures: list[Failure]) -> None:
        """The batch's bans, as events, to the jails that read the ledger's bans (recidive):
        matched here so they are recorded in the same transaction as the bans."""
        readers = self.matchers.get(LEDGER, ())
        if bans and readers:
            self._observe(ban_events(list(bans), {m.jail for m in readers}), readers, now, failures, bans)

    def observe_fleet(self, failures: Sequence[Failure], now: datetime) -> list[BanDecision]:
        """Failures other hosts of the fleet read and recorded: counted in this host's windows,
        so a fleet-scoped jail sees every host; only the bans they open are recorded here."""
        bans: list[BanDecision] = []
        by_jail: dict[str, list[Failure]] = {}  # a jail's order is all that counts (see ``_observe``)
        for failure in failures:
            if failure.jail in self.detector.policies:
                by_jail.setdefault(failure.jail, []).append(failure)
        for jail, found in by_jail.items():
            self.counters["fleet"] += len(found)
            decided = self.detector.observe_batch(jail, found, now).bans
            self.counters[Verdict.BANNED.value] += len(decided)
            for decision in decided:
                log.info("%s (counting the fleet's failures)", decision,
                         extra=event_fields("ban", decision.jail, decision.address))
            bans += decided
        recidive: list[Failure] = []
        self._feed_ledger_readers(bans, now, recidive)
        if bans:  # recorded after what is held, in the order decided
            self._held_failures += recidive
            self._held_bans += bans
            self.release(now)
        return bans

    def _record(self, failures: list[Failure], bans: list[BanDecision],
                positions: Mapping[str, Position | JournalCursor], now: datetime) -> None:
        """Retry a failing ledger for a while, then give up loudly.

        Giving up ends the daemon before the position moves on: at its restart the
        lines are read again from the last committed position, so nothing is lost.
        """
        self._attempts(lambda: self.ledger.record(failures, bans, positions, now))

    @staticmethod
    def _attempts(write: Callable[[], None]) -> None:
        delay = 0.1
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                write()
                return
            except SQLAlchemyError as exc:
                if attempt == RECORD_ATTEMPTS:
                    raise
                log.error("ledger write failed (attempt %d of %d), retrying in %.1fs: %s",
                          attempt, RECORD_ATTEMPTS, delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
