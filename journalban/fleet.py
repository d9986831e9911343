"""A fleet on one ledger: what other hosts record reaches this host's detector and reconciler.

Every host records its own failures and bans in the shared (PostgreSQL) ledger, which
sends a ``NOTIFY`` in the transaction that records fleet failures, opens a ban or ends
one (``journalban.ledger.store``). Here, per host:

- ``FleetListener`` (a thread) keeps one connection in ``LISTEN``, reconnecting with
  backoff; it wakes the reconciler on another host's ban or unban and hands every
  notice to the event loop.
- ``FleetWatcher`` pulls the failures of fleet-scoped jails that other hosts recorded
  since the last pull and feeds them to the detector through the pipeline: a host's
  windows count the whole fleet. The query runs in a worker thread, so the event loop
  (where the pipeline runs) never waits for the server; the failures are counted back on
  the loop, so the detector stays single-threaded. One pull at a time: notices heard
  during a pull make exactly one more. It pulls on notices and every ``PULL_EVERY``
  seconds anyway, the safety net for notices missed while the connection was down.
- ``FleetCursor`` (pure) remembers which of those failures were counted already.

Not started on SQLite: a ledger of one host has no fleet.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from journalban.events import Failure
from journalban.ledger.store import NOTIFY_CHANNEL, Ledger
from journalban.pipeline import Pipeline

log = logging.getLogger(__name__)

PULL_EVERY = 2.0  # seconds between pulls when no notice comes
LISTEN_WAIT = 0.5  # seconds the listener waits for a notice before looking at its stop flag
KEEPALIVE = 10.0  # seconds between checks that a silent listening connection is still alive
RECONNECT_FIRST, RECONNECT_MAX = 1.0, 30.0  # backoff of the listening connection
SETTLE = 5.0  # seconds a lower failure id may still appear after a higher one (a transaction in flight)
NOTICE_KINDS = ("ban", "end", "failures")


@dataclass(frozen=True, slots=True)
class Notice:
    """One ledger notification: ``ban``/``end`` of JAIL ADDRESS, or new ``failures`` of JAIL,
    by NODE."""

    kind: str
    node: str
    jail: str
    address: str

    def __str__(self) -> str:
        return f"{self.kind} {self.node} {self.jail} {self.address}"


def parse_notice(payload: str) -> Notice | None:
    """A notice from a NOTIFY payload; None for anything else on the channel."""
    parts = payload.split(" ")
    if len(parts) != 4 or parts[0] not in NOTICE_KINDS:
        return None
    return Notice(*parts)


class FleetCursor:
    """Which fleet failures were counted already, by id: pure, no I/O.

    Ids come from one sequence but are committed out of order, so a lower id can appear
    after a higher one was read. The pull asks for ids above ``floor``; ids seen above it
    are remembered, and the floor moves to the highest one seen ``SETTLE`` seconds ago.
    """

    def __init__(self, floor: int = 0, settle: float = SETTLE) -> None:
        self.floor = floor
        self.settle = settle
        self._seen: dict[int, float] = {}  # id → when it was first read (monotonic seconds)

    def fresh(self, rows: Sequence[tuple[int, Failure]], now: float) -> list[Failure]:
        """The failures of ``rows`` not counted before, in their order; the rest are skipped."""
        out = []
        for number, failure in rows:
            if number > self.floor and number not in self._seen:
                self._seen[number] = now
                out.append(failure)
        settled = [number for number, seen in self._seen.items() if seen <= now - self.settle]
        if settled:
            self.floor = max(self.floor, *settled)
            self._seen = {n: seen for n, seen in self._seen.items() if n > self.floor}
        return out

    @property
    def pending(self) -> int:
        """Ids remembered above the floor: bounded by what the fleet records in ``SETTLE`` seconds."""
        return len(self._seen)


class FleetListener:
    """A thread holding one ``LISTEN`` connection; reconnects with backoff and says so."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]],
                 on_notices: Callable[[list[Notice]], None], on_connected: Callable[[], None]) -> None:
        self.connect = connect
        self.on_notices = on_notices  # called from the listener's thread
        self.on_connected = on_connected  # ditto: after each (re)connect, when notices may have been missed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journalban-fleet", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=LISTEN_WAIT + 5)

    def _run(self) -> None:
        backoff, lost = RECONNECT_FIRST, False
        while not self._stop.is_set():
            try:
                with self.connect() as connection:
                    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    if lost:
                        log.warning("fleet: listening for ledger notifications again")
                    backoff, lost = RECONNECT_FIRST, False
                    self.connected.set()
                    self.on_connected()
                    self._listen(connection)
            except Exception as exc:  # psycopg.Error above all; the thread must outlive any of it
                self.connected.clear()
                if self._stop.is_set():
                    break
                lost = True
                log.warning("fleet: ledger notification connection lost or refused (%s); trying again in %.0fs "
                            "(bans still arrive by the periodic reconcile)", str(exc).strip(), backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX)
        self.connected.clear()

    def _listen(self, connection: psycopg.Connection[Any]) -> None:
        checked = time.monotonic()
        while not self._stop.is_set():
            notices = [n for n in (parse_notice(x.payload)
                                   for x in connection.notifies(timeout=LISTEN_WAIT, stop_after=1)) if n]
            if notices:
                self.on_notices(notices)
            if time.monotonic() - checked >= KEEPALIVE:  # a dead peer sends no EOF: ask
                connection.execute("SELECT 1")
                checked = time.monotonic()


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one pull read: other hosts' failures by id, at ``now``; at the first pull also
    the highest failure id then (``floor``), where the cursor starts."""

    now: datetime
    rows: list[tuple[int, Failure]]
    floor: int | None = None


def listening_connection(ledger: Ledger) -> psycopg.Connection[Any]:
    """A connection of its own to the ledger's server, with the engine's parameters."""
    args, params = ledger.engine.dialect.create_connect_args(ledger.engine.url)
    params.pop("context", None)  # SQLAlchemy's adapters; the listener sends no parameters
    return psycopg.connect(*args, **params, autocommit=True)


class FleetWatcher:
    """Counts the fleet's failures in this host's detector and wakes its reconciler."""

    def __init__(self, ledger: Ledger, pipeline: Pipeline, wake: Callable[[], None],
                 clock: Callable[[], datetime], findtime: int) -> None:
        self.ledger = ledger
        self.pipeline = pipeline
        self.wake = wake  # the reconciler's wake: thread-safe
        self.clock = clock
        self.findtime = findtime  # the longest fleet-scoped findtime: how far back a start looks
        self.cursor: FleetCursor | None = None  # None until the first pull
        self.listener = FleetListener(lambda: listening_connection(ledger), self._heard, self._reconnected)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = asyncio.Event()
        self._lifted: list[Notice] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """On the running event loop: the first pull at once (the other hosts' open windows
        count before this host reads a line), then the listener and the pulls."""
        self._loop = asyncio.get_running_loop()
        self._count(self._fetch())
        self.listener.start()
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self._due.set()
        if self._task is not None:
            await self._task
        await asyncio.to_thread(self.listener.stop)

    def pull(self) -> list[Failure]:
        """Count what other hosts recorded since the last pull; returns those failures.
        Waits for the server on the calling thread: the daemon's loop pulls through ``_run``."""
        return self._count(self._fetch())

    def _fetch(self) -> Fetched | None:
        """The pull's query alone, safe in a worker thread: one pull at a time, so ``cursor``
        does not change meanwhile. None: nothing to count now."""
        now = self.clock()
        if not self.ledger.fleet_jails or not getattr(self.ledger, "reachable", True):
            return None  # away: the spool delivers this host's records; the others' wait in the ledger
        try:
            if self.cursor is None:  # at start: the other hosts' open windows, and where the ids stand
                floor = self.ledger.last_failure_id()
                rows = self.ledger.fleet_failures(0, since=now - timedelta(seconds=self.findtime))
                return Fetched(now, rows, floor)
            return Fetched(now, self.ledger.fleet_failures(self.cursor.floor))
        except SQLAlchemyError as exc:  # the next pull tries again; the failures stay in the ledger
            log.warning("fleet: cannot count other hosts' failures now (again in %.0fs): %s", PULL_EVERY, exc)
            return None

    def _count(self, fetched: Fetched | None) -> list[Failure]:
        """On the event loop: the fetched failures not counted before go to the detector."""
        if fetched is None:
            return []
        if fetched.floor is not None:  # the first pull: every open window counts
            self.cursor = FleetCursor(fetched.floor)
            self.cursor.fresh([r for r in fetched.rows if r[0] > fetched.floor], time.monotonic())
            failures = [failure for _, failure in fetched.rows]
        else:
            assert self.cursor is not None
            failures = self.cursor.fresh(fetched.rows, time.monotonic())
        if failures:
            self.pipeline.observe_fleet(failures, fetched.now)
        return failures

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._due.wait(), PULL_EVERY)
            except TimeoutError:
                pass
            if self._stopping:
                break
            self._due.clear()
            lifted, self._lifted = self._lifted, []
            for notice in lifted:  # ended elsewhere (unbanned by hand, expired): count afresh here
                if notice.jail in self.pipeline.detector.policies:
                    self.pipeline.detector.lifted(notice.jail, notice.address)
            # Notices heard while this pull waits set _due again: one more pull covers them all.
            self._count(await asyncio.to_thread(self._fetch))

    def _heard(self, notices: list[Notice]) -> None:
        """From the listener's thread: another host's ban or unban reconciles at once; any
        notice pulls the fleet's failures on the event loop. Notices of jails this host does
        not run in fleet scope concern it not: under a busy fleet they would keep its
        reconciler running for nothing."""
        others = [n for n in notices if n.node != self.ledger.node and n.jail in self.ledger.fleet_jails]
        if not others:
            return
        for notice in others:
            log.debug("fleet: heard %s", notice)
        if any(n.kind in ("ban", "end") for n in others):
            self.wake()
        self._hand_over([n for n in others if n.kind == "end"])

    def _reconnected(self) -> None:
        getattr(self.ledger, "kick", lambda: None)()  # a spool waiting for the server delivers now
        self.wake()
        self._hand_over([])

    def _hand_over(self, lifted: list[Notice]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._due_now, lifted)
        except RuntimeError:  # the loop closed meanwhile: the daemon is stopping
            pass

    def _due_now(self, lifted: list[Notice]) -> None:
        self._lifted.extend(lifted)
        self._due.set()
