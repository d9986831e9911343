"""The local spool: what a host records while its shared ledger (PostgreSQL) is away.

``SpoolingLedger`` is the ledger a daemon uses on PostgreSQL. While the server
answers it is the plain ``Ledger``. When a write finds the server gone, that batch
and every later one go to ``Spool``, a SQLite file on the host, in order, each as
one record with a UUID, until a background thread has delivered them all: the
pipeline never waits for the server and never stops the daemon for it.

Delivery writes a chunk of records in one ledger transaction together with their
ids in ``spool_deliveries``; only after the commit does the spool forget them. A
delivery cut off anywhere is either rolled back whole or committed whole, and ids
already in ``spool_deliveries`` are skipped: each record arrives exactly once, in
the order it was spooled.

Meanwhile the reconciler enforces the last bans the ledger gave (less those whose
time is up) plus the bans this host decided while away; source positions advance
in the spool, so a restart while the server is down resumes where it stopped. The
last known bans and positions are kept in the spool file too (``state``), so such a
restart enforces and reads on as before.
"""

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from journalban.events import BanDecision, Failure
from journalban.ledger.models import MATCHED_TEXT_LIMIT, Ban, Heal, SpoolDelivery
from journalban.ledger.models import Failure as FailureRow
from journalban.ledger.store import (
    ACTIVE_COLUMNS,
    RECORD_ATTEMPTS,
    ActiveBan,
    EnforcedBans,
    Ledger,
    LedgerNotReady,
    SchemaNotCurrent,
)
from journalban.sources.files import Position
from journalban.sources.journal import JournalCursor

log = logging.getLogger(__name__)

DELIVER_CHUNK = 500  # spooled records per delivery transaction
RETRY_FIRST, RETRY_MAX = 0.5, 5.0  # seconds: the delivery's backoff while the ledger stays away
SNAPSHOT_EVERY = 60.0  # seconds between full reads of the bans in force (with their expiries)
BATCH, HEAL = "batch", "heal"  # kinds of spooled records


def ledger_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the server is unreachable (not that the data was refused)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


# --- the spool file


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    seq: int  # the spool's order
    id: str  # UUID: delivered once, whatever happens to the delivery
    kind: str  # BATCH | HEAL
    body: dict[str, Any]


class Spool:
    """An append-only queue of records in a SQLite file, plus a little saved state.

    Thread-safe: the event loop appends, the delivery thread reads and removes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, body TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._size = int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])
        self.path.chmod(0o600)  # failures carry log text

    @property
    def size(self) -> int:
        """Records waiting for delivery."""
        return self._size

    def append(self, kind: str, body: Mapping[str, Any]) -> str:
        """Keep one record; returns its id."""
        record_id = str(uuid.uuid4())
        with self._lock:
            self._db.execute("INSERT INTO records (id, kind, body) VALUES (?, ?, ?)",
                             (record_id, kind, json.dumps(body, separators=(",", ":"))))
            self._size += 1
        return record_id

    def head(self, limit: int) -> list[SpooledRecord]:
        """The oldest ``limit`` records, in order."""
        with self._lock:
            rows = self._db.execute("SELECT seq, id, kind, body FROM records ORDER BY seq LIMIT ?", (limit,))
            return [SpooledRecord(seq, rid, kind, json.loads(body)) for seq, rid, kind, body in rows]

    def all(self) -> list[SpooledRecord]:
        return self.head(-1)

    def forget(self, upto: int) -> None:
        """Drop every record up to ``seq`` ``upto``: they are delivered."""
        with self._lock:
            self._db.execute("DELETE FROM records WHERE seq <= ?", (upto,))
            self._size = int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def save(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def load(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def forget_state(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM state")

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --- what a record holds: JSON both ways


def _failure_row(f: Failure) -> list[Any]:
    return [f.jail, f.address, f.time.isoformat(), f.rule, f.text[:MATCHED_TEXT_LIMIT], f.source]


def _failure(row: Sequence[Any]) -> Failure:
    jail, address, time, rule, text, source = row
    return Failure(jail, address, datetime.fromisoformat(time), rule, text, source)


def encode_batch(failures: Sequence[Failure], bans: Sequence[BanDecision],
                 positions: Mapping[str, Position | JournalCursor], now: datetime) -> dict[str, Any]:
    """A batch as the ledger would take it. A ban's failures of this batch are named by
    their index, so they are still the same objects after decoding (the ledger links
    them to the ban by identity); earlier ones are kept whole."""
    index = {id(f): n for n, f in enumerate(failures)}
    return {
        "now": now.isoformat(),
        "failures": [_failure_row(f) for f in failures],
        "bans": [{"jail": b.jail, "address": b.address, "start": b.start.isoformat(),
                  "expiry": b.expiry.isoformat(), "reason": b.reason, "replaces": list(b.replaces),
                  "failures": [index.get(id(f), _failure_row(f)) for f in b.failures],
                  "count": b.count, "window_start": b.window_start.isoformat() if b.window_start else None}
                 for b in bans],
        "positions": {source: {"cursor": p.cursor} if isinstance(p, JournalCursor)
                      else {"inode": p.inode, "offset": p.offset} for source, p in positions.items()},
    }


def _position(value: Mapping[str, Any]) -> Position | JournalCursor:
    return JournalCursor(value["cursor"]) if "cursor" in value else Position(value["inode"], value["offset"])


def decode_batch(body: Mapping[str, Any]) -> tuple[list[Failure], list[BanDecision],
                                                   dict[str, Position | JournalCursor], datetime]:
    failures = [_failure(row) for row in body["failures"]]
    bans = [BanDecision(b["jail"], b["address"], datetime.fromisoformat(b["start"]),
                        datetime.fromisoformat(b["expiry"]), b["reason"],
                        tuple(failures[f] if isinstance(f, int) else _failure(f) for f in b["failures"]),
                        tuple(b["replaces"]), count=b["count"],
                        window_start=datetime.fromisoformat(b["window_start"]) if b["window_start"] else None)
            for b in body["bans"]]
    positions = {source: _position(value) for source, value in body["positions"].items()}
    return failures, bans, positions, datetime.fromisoformat(body["now"])


def _ban_row(ban: ActiveBan) -> list[Any]:
    return [ban.id, ban.jail, ban.address, ban.started_at.isoformat(), ban.expires_at.isoformat(), ban.reason]


def _active_ban(row: Sequence[Any]) -> ActiveBan:
    number, jail, address, started, expires, reason = row
    return ActiveBan(number, jail, address, datetime.fromisoformat(started), datetime.fromisoformat(expires), reason)


def _position_json(p: Position | JournalCursor) -> dict[str, Any]:
    return {"cursor": p.cursor} if isinstance(p, JournalCursor) else {"inode": p.inode, "offset": p.offset}


# --- the ledger that spools


class SpoolingLedger(Ledger):
    """A shared ledger that keeps recording, in a local spool, while its server is away."""

    def __init__(self, url: str, spool: str | Path, node: str | None = None, fleet_jails: Collection[str] = (),
                 host_jails: Collection[str] = (), background: bool = True) -> None:
        super().__init__(url, node=node, fleet_jails=fleet_jails, host_jails=host_jails)
        self.spool = Spool(spool)
        self.background = background  # deliver in a thread of its own (False: only by calling deliver())
        self.on_delivered: Callable[[], None] = lambda: None  # e.g. wake the reconciler
        self._lock = threading.Lock()  # orders "spool or write through" against the delivery
        self._away = self.spool.size > 0  # records left from before: deliver them before anything new
        self._known: list[ActiveBan] = [_active_ban(r) for r in self.spool.load("bans") or []]
        # The last entries the reconciler read (bans of other hosts may be newer than _known),
        # and those known to have expired while away.
        self._entries: frozenset[tuple[str, str]] = frozenset(map(tuple, self.spool.load("entries") or []))
        self._expired: set[tuple[str, str]] = set()
        self._snapshot_due = 0.0  # monotonic time of the next full read of the bans in force
        self._positions: dict[str, dict[str, Any]] = dict(self.spool.load("positions") or {})
        self._spooled_bans: list[ActiveBan] = []
        self._spooled_positions: dict[str, dict[str, Any]] = {}
        for record in self.spool.all():
            self._remember(record.body if record.kind == BATCH else None)
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._check_owner()

    # -- state

    @property
    def reachable(self) -> bool:
        return not self._away

    def health(self) -> dict[str, Any]:
        """For ``journalban status``: whether the ledger answers and what waits in the spool."""
        return {"state": "unreachable" if self._away else "reachable", "spooled": self.spool.size,
                "spool": str(self.spool.path)}

    def _check_owner(self) -> None:
        """A spool holds one host's records for one ledger: never deliver them elsewhere."""
        owner = {"url": self.safe_url, "node": self.node}
        saved = self.spool.load("owner")
        if saved and saved != owner and self.spool.size:
            raise LedgerNotReady(
                f"the spool {self.spool.path} holds {self.spool.size} record(s) of node {saved['node']} for "
                f"{saved['url']}, not of node {self.node} for {self.safe_url}: point [ledger] spool elsewhere, "
                "or restore the former [ledger] url and [node] name until it is delivered")
        if saved and saved != owner:  # another ledger's bans and positions: worth nothing here
            self._known, self._entries, self._positions = [], frozenset(), {}
            self.spool.forget_state()
        self.spool.save("owner", owner)

    def _remember(self, body: Mapping[str, Any] | None) -> None:
        """What a spooled batch means for enforcing and resuming before it is delivered."""
        if body is None:
            return
        for ban in body["bans"]:
            self._spooled_bans.append(ActiveBan(0, ban["jail"], ban["address"],
                                                datetime.fromisoformat(ban["start"]),
                                                datetime.fromisoformat(ban["expiry"]), ban["reason"]))
        self._spooled_positions.update(body["positions"])

    def _lose(self, exc: BaseException) -> None:
        if not self._away:
            log.error("ledger %s unreachable (%s): recording in the spool %s until it is back",
                      self.safe_url, str(getattr(exc, "orig", exc)).strip(), self.spool.path)
            self._away = True
            self._save_state()
        self._start_delivery()
        self._due.set()

    def kick(self) -> None:
        """Try delivering now (the server was heard again), not at the end of the backoff."""
        if self._away:
            self._due.set()

    def _save_state(self) -> None:
        """What a restart while the server is away needs: the bans to enforce, the positions."""
        self.spool.save("bans", [_ban_row(b) for b in self._known])
        self.spool.save("entries", sorted(self._entries))
        self.spool.save("positions", self._positions)

    # -- the ledger's interface

    def prepare(self) -> None:
        """As ``Ledger.prepare``; but an unreachable server with a spool that knows this
        host's bans and positions is no reason to stay down: start from the spool."""
        try:
            super().prepare()
        except SchemaNotCurrent:
            raise
        except LedgerNotReady as exc:
            if self.spool.load("positions") is None:
                raise
            log.error("%s; starting from the spool %s (%d ban(s) known, %d record(s) waiting)",
                      exc, self.spool.path, len(self._known), self.spool.size)
            self._away = True
        if self._away:
            self._start_delivery()
            self._due.set()

    def record(self, failures: Sequence[Failure], bans: Sequence[BanDecision],
               positions: Mapping[str, Position | JournalCursor], now: datetime) -> None:
        uncertain = False
        with self._lock:
            if not self._away:
                try:
                    super().record(failures, bans, positions, now)
                    self._positions.update((s, _position_json(p)) for s, p in positions.items())
                    self._known.extend(ActiveBan(0, b.jail, b.address, b.start, b.expiry, b.reason)
                                       for b in bans if b.expiry > now)
                    return
                except Exception as exc:
                    if not ledger_lost(exc):
                        raise
                    self._lose(exc)
                    uncertain = True  # the commit may have gone through, its answer lost
            body = encode_batch(failures, bans, positions, now)
            if uncertain:
                body["uncertain"] = True
            self.spool.append(BATCH, body)
            self._remember(body)

    def record_heal(self, backend: str, restored: int, removed: int, layout_repaired: bool, detail: str,
                    now: datetime) -> None:
        with self._lock:
            if not self._away:
                try:
                    super().record_heal(backend, restored, removed, layout_repaired, detail, now)
                    return
                except Exception as exc:
                    if not ledger_lost(exc):
                        raise
                    self._lose(exc)
            self.spool.append(HEAL, {"backend": backend, "restored": restored, "removed": removed,
                                     "layout": layout_repaired, "detail": detail[:4000], "now": now.isoformat()})

    def active_bans(self) -> list[ActiveBan]:
        """The ledger's bans; while it is away, the last it gave plus those decided since,
        less those whose time is up."""
        if not self._away:
            try:
                self._known = super().active_bans()
                self._snapshot_due = time.monotonic() + SNAPSHOT_EVERY
                return self._known
            except Exception as exc:
                if not ledger_lost(exc):
                    raise
                self._lose(exc)
        with self._lock:
            return [*self._known, *self._spooled_bans]

    def enforced_bans(self, jails: Collection[str] | None = None) -> EnforcedBans:
        """What the reconciler enforces (of ``jails``, if given). While the server answers, its
        bans (and now and then a full read, with expiries, kept for a time it may not answer);
        while it is away, the last bans it gave and those decided since, less those whose time
        is up."""
        if not self._away:
            try:
                enforced = super().enforced_bans(jails)
                self._entries = enforced.entries
                if time.monotonic() >= self._snapshot_due:
                    self._snapshot(jails)
                return enforced
            except Exception as exc:
                if not ledger_lost(exc):
                    raise
                self._lose(exc)
        with self._lock:
            bans = [b for b in (*self._known, *self._spooled_bans) if jails is None or b.jail in jails]
            entries = (self._entries | {(b.jail, b.address) for b in bans}) - self._expired
            return EnforcedBans(frozenset(entries), min((b.expires_at for b in bans), default=None))

    def _snapshot(self, jails: Collection[str] | None) -> None:
        """The bans in force of ``jails`` with their expiries, kept for a time the server may
        not answer. Of these jails only: a busy fleet's other jails hold thousands, and this
        runs inside a reconcile."""
        query = self._enforced_here(select(*ACTIVE_COLUMNS))  # type: ignore[arg-type]  # as in store.py
        if jails is not None:
            query = query.where(Ban.jail.in_(sorted(jails)))
        with self.transaction() as session:
            self._known = [ActiveBan(*row) for row in session.execute(query.order_by(Ban.id))]
        self._snapshot_due = time.monotonic() + SNAPSHOT_EVERY

    def expire_bans(self, now: datetime) -> list[ActiveBan]:
        """While away, nothing is ended in the ledger: ``active_bans`` leaves the bans whose
        time is up out, and the ledger ends them once it is back."""
        if not self._away:
            try:
                return super().expire_bans(now)
            except Exception as exc:
                if not ledger_lost(exc):
                    raise
                self._lose(exc)
        with self._lock:
            for bans in (self._known, self._spooled_bans):
                self._expired.update((b.jail, b.address) for b in bans if b.expires_at <= now)
            self._known = [b for b in self._known if b.expires_at > now]
            self._spooled_bans = [b for b in self._spooled_bans if b.expires_at > now]
            self._expired -= {(b.jail, b.address) for b in (*self._known, *self._spooled_bans)}  # banned again
        return []

    def positions(self) -> dict[str, Position]:
        found = self._read(super().positions, {s: _position(p) for s, p in self._positions.items()
                                               if "inode" in p})
        self._positions.update((s, _position_json(p)) for s, p in found.items())
        spooled = {s: _position(p) for s, p in self._spooled_positions.items() if "inode" in p}
        return {**found, **spooled}  # what the spool holds is newer than what the ledger has

    def cursor(self, source: str) -> JournalCursor | None:
        spooled = self._spooled_positions.get(source) or {}
        if "cursor" in spooled:
            return JournalCursor(spooled["cursor"])
        saved = self._positions.get(source) or {}
        found = self._read(lambda: super(SpoolingLedger, self).cursor(source),
                           JournalCursor(saved["cursor"]) if "cursor" in saved else None)
        if found is not None:
            self._positions[source] = _position_json(found)
        return found

    def open_failures(self, since: datetime) -> list[Failure]:
        return self._read(lambda: super(SpoolingLedger, self).open_failures(since), [])

    def ban_counts(self) -> dict[tuple[str, str], int]:
        return self._read(super().ban_counts, {})

    def purge_failures(self, before: datetime) -> int:
        """Retention, and the delivered ids older than it (none of the spool's can be among them)."""
        purged = self._read(lambda: super(SpoolingLedger, self).purge_failures(before), 0)
        if not self._away and not self.spool.size:
            try:
                with self.transaction() as session:
                    session.execute(delete(SpoolDelivery).where(SpoolDelivery.node == self.node,
                                                                SpoolDelivery.delivered_at < before))
            except Exception as exc:
                if not ledger_lost(exc):
                    raise
        return purged

    def _read(self, read: Callable[[], Any], otherwise: Any) -> Any:
        if self._away:
            return otherwise
        try:
            return read()
        except Exception as exc:
            if not ledger_lost(exc):
                raise
            self._lose(exc)
            return otherwise

    def close(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._save_state()
        if self.spool.size:
            log.warning("stopping with %d record(s) in the spool %s: delivered at the next start",
                        self.spool.size, self.spool.path)
        self.spool.close()
        super().close()

    # -- delivery

    def _start_delivery(self) -> None:
        if self._thread is None and self.background:
            self._thread = threading.Thread(target=self._deliver_while_away, name="journalban-spool", daemon=True)
            self._thread.start()

    def _deliver_while_away(self) -> None:
        delay = RETRY_FIRST
        while not self._stopping.is_set():
            self._due.wait(delay if self._away else None)
            self._due.clear()
            if self._stopping.is_set() or not self._away:
                continue
            try:
                delivered = self.deliver()
            except Exception as exc:  # the thread must outlive anything; nothing is forgotten on error
                if ledger_lost(exc):
                    log.warning("ledger still unreachable, %d record(s) in the spool; trying again in %.1fs: %s",
                                self.spool.size, delay, str(getattr(exc, "orig", exc)).strip())
                else:
                    log.exception("the ledger refused the spool's oldest records (%d waiting); trying again "
                                  "in %.1fs", self.spool.size, delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_FIRST
            log.warning("ledger %s reachable again: %d spooled record(s) delivered", self.safe_url, delivered)
            self.on_delivered()

    def deliver(self) -> int:
        """Deliver the spool, oldest first, chunk by chunk; when it is empty, write through
        again. Returns how many records were new to the ledger."""
        delivered = 0
        while True:
            records = self.spool.head(DELIVER_CHUNK)
            if not records:
                with self._lock:
                    if self.spool.size:  # appended meanwhile
                        continue
                    self._away = False
                    self._positions.update(self._spooled_positions)
                    self._known.extend(self._spooled_bans)
                    self._spooled_bans, self._spooled_positions, self._expired = [], {}, set()
                return delivered
            delivered += self.deliver_chunk(records)

    def deliver_chunk(self, records: Sequence[SpooledRecord]) -> int:
        """One transaction: the records not delivered before, and their ids; then the spool
        forgets them all. Returns how many were new to the ledger."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                with self.transaction() as session:
                    fresh = self._write(session, records)
                break
            except IntegrityError:  # a spooled ban raced another host's: again, joining it
                if attempt == RECORD_ATTEMPTS:
                    raise
        self.spool.forget(records[-1].seq)
        return fresh

    def _write(self, session: Session, records: Sequence[SpooledRecord]) -> int:
        ids = [r.id for r in records]
        done = set(session.scalars(select(SpoolDelivery.id).where(SpoolDelivery.id.in_(ids))))
        fresh = [r for r in records if r.id not in done]
        for record in list(fresh):
            body = record.body
            if record.kind == BATCH:
                failures, bans, positions, now = decode_batch(body)
                if body.get("uncertain") and self._committed(session, failures, now):
                    fresh.remove(record)
                    continue
                self._record(session, failures, bans, positions, now)
            else:
                session.add(Heal(healed_at=datetime.fromisoformat(body["now"]), backend=body["backend"],
                                 restored=body["restored"], removed=body["removed"],
                                 layout_repaired=body["layout"], detail=body["detail"]))
        if fresh:
            now = datetime.now(UTC)
            session.execute(insert(SpoolDelivery), [{"id": r.id, "node": self.node, "delivered_at": now}
                                                    for r in fresh])
        return len(fresh)

    def _committed(self, session: Session, failures: Sequence[Failure], now: datetime) -> bool:
        """Whether a batch whose write-through lost its answer was committed after all: its
        failures carry this host's node and the batch's exact ``recorded_at``. (Its bans
        and positions are idempotent: a ban in force is joined, a position overwritten.)"""
        if not failures:
            return False
        first = failures[0]
        return session.scalar(select(FailureRow.id).where(
            FailureRow.node == self.node, FailureRow.recorded_at == now, FailureRow.jail == first.jail,
            FailureRow.address == first.address, FailureRow.occurred_at == first.time).limit(1)) is not None


def spooled_ids(ledger: Ledger, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` the ledger has delivered (for tests and operators)."""
    with ledger.transaction() as session:
        return set(session.scalars(select(SpoolDelivery.id).where(SpoolDelivery.id.in_(list(ids)))))


def open_ledger(url: str, spool: str | Path, node: str | None = None, fleet_jails: Collection[str] = (),
                host_jails: Collection[str] = ()) -> Ledger:
    """The daemon's ledger: on a server (PostgreSQL), one that spools while it is away;
    on SQLite, the host's own file, which is never away."""
    plain = Ledger(url, node=node, fleet_jails=fleet_jails, host_jails=host_jails)
    if not plain.shared:
        return plain
    plain.close()
    return SpoolingLedger(url, spool, node=node, fleet_jails=fleet_jails, host_jails=host_jails)


def ledger_health(ledger: Ledger) -> dict[str, Any]:
    """``journalban status``'s ``ledger``: ``state`` (reachable | unreachable), records
    ``spooled`` and the ``spool`` file (None on SQLite, which has none)."""
    if isinstance(ledger, SpoolingLedger):
        return ledger.health()
    return {"state": "reachable", "spooled": 0, "spool": None}
