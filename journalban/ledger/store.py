"""Reading and writing the ledger; every write goes through one transaction helper."""

import contextlib
import itertools
import logging
import socket
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Engine, Select, delete, event, exists, func, inspect, or_, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, attributes

from journalban import paths
from journalban.events import BanDecision
from journalban.events import Failure as FailureEvent
from journalban.ledger import sqlite_write
from journalban.ledger.batch_bans import in_bulk, joined, link_earlier, open_bans
from journalban.ledger.engine import (
    WalCheckpointer,
    create_ledger_engine,
    parameter_mark,
    upgrades_itself,
    wal_checkpointer,
)
from journalban.ledger.models import MATCHED_TEXT_LIMIT, NODE_LIMIT, SOURCE_LIMIT, Ban, Failure, Heal, SourcePosition
from journalban.ledger.views import ban_seconds, day_of, network_of
from journalban.sources.files import Position
from journalban.sources.journal import JournalCursor

log = logging.getLogger(__name__)

RECORD_ATTEMPTS = 3  # a batch that lost a race for a ban is recorded again, joining the winner's ban
BULK = 5000  # rows per bulk statement: under every dialect's parameter limit
NETWORK_MEMORY = 100_000  # addresses whose network is remembered across batches, then forgotten at once
# The page cache of a burst's connection (``Ledger.writer``), KiB, let go when the burst
# ends. A followed file of 1M sshd lines: with SQLite's default of 2 MiB, the writer's
# transactions took 0.11 s, growing to 0.37-0.5 s, per 17k failures (evicting and reading
# back index pages), and its backlog at the end held the daemon to 440k-480k lines/s; with
# 16/32/64 MiB, 478k-505k / 531k-561k / 529k-560k. 32 MiB is the peak's price in a flood.
BURST_CACHE_KIB = 32 << 10
_NETWORKS: dict[str, str] = {}  # address → network_of: a botnet's addresses come back batch after batch
NOTIFY_CHANNEL = "journalban"  # PostgreSQL: "ban|end|failures NODE JAIL ADDRESS", sent on commit


SCHEMA_HEAD = "0008"  # the newest of migrations/versions: tests/ledger/test_migrations.py holds them equal


def newest_revision() -> str | None:
    """The Alembic head of ``migrations/``, read from its scripts."""
    return _migration_scripts().get_current_head()


def known_revisions() -> set[str]:
    return {r.revision for r in _migration_scripts().walk_revisions()}


def _migration_scripts() -> Any:
    """Alembic's view of ``migrations/``. Alembic is imported here and in ``Ledger.upgrade``
    only: with Mako and Pygments it is 11 MB of imports (6-7 MB of a daemon's RSS, measured
    with 100,000 bans) that a ledger at ``SCHEMA_HEAD`` never needs."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(paths.MIGRATIONS))


class LedgerNotReady(SystemExit):
    """The ledger cannot serve the daemon: unreachable, or at the wrong schema.

    A SystemExit, so a daemon starting on such a ledger stops with the message and
    status 1, not a traceback; callers that can go on catch it by name.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SchemaNotCurrent(LedgerNotReady):
    """A shared ledger whose schema is not the one this journalban needs: only
    ``journalban db upgrade`` changes it."""


class _LedgerSession(Session):
    """A session that stamps its ledger's node on every failure and ban it adds,
    including those written by helpers outside this module (a manual ban)."""


@event.listens_for(_LedgerSession, "before_flush")
def _stamp_node(session: Session, _context: Any, _instances: Any) -> None:
    """Every new row gets this host's node and the plain columns the SQL views group by."""
    for row in session.new:
        if isinstance(row, Failure | Ban) and row.node is None:
            row.node = session.info["node"]
        if isinstance(row, Failure):
            row.day, row.network = day_of(row.occurred_at), network_of(row.address)
        elif isinstance(row, Ban):
            row.day, row.network = day_of(row.started_at), network_of(row.address)
            row.seconds = ban_seconds(row.started_at, row.expires_at)


@event.listens_for(_LedgerSession, "after_flush")
def _note_changes(session: Session, _context: Any) -> None:
    """Remember what the fleet must hear of: bans opened or ended, failures of fleet-scoped jails."""
    if session.get_bind().dialect.name != "postgresql":
        return
    notes: set[str] = session.info.setdefault("notify", set())
    node, fleet = session.info["node"], session.info.get("fleet_jails", frozenset())
    for row in session.new:
        if isinstance(row, Ban):
            notes.add(f"{'ban' if row.ended_at is None else 'end'} {row.node or node} {row.jail} {row.address}")
        elif isinstance(row, Failure) and row.jail in fleet:
            notes.add(f"failures {node} {row.jail} -")
    for row in session.dirty:
        if isinstance(row, Ban) and row.ended_at is not None and attributes.get_history(row, "ended_at").added:
            notes.add(f"end {node} {row.jail} {row.address}")


@event.listens_for(_LedgerSession, "before_commit")
def _notify(session: Session) -> None:
    """NOTIFY in the transaction that made the change: listeners hear of it only if it commits."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.flush()  # before_commit runs before the final flush: collect its notes first
    for note in sorted(session.info.pop("notify", ())):
        session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": note})


@dataclass(frozen=True, slots=True)
class ActiveBan:
    id: int
    jail: str
    address: str
    started_at: datetime
    expires_at: datetime
    reason: str


ACTIVE_COLUMNS = (Ban.id, Ban.jail, Ban.address, Ban.started_at, Ban.expires_at, Ban.reason)


@dataclass(frozen=True, slots=True)
class EnforcedBans:
    """What the firewall must hold: each ban in force as (jail, address), and when the first ends."""

    entries: frozenset[tuple[str, str]]
    next_expiry: datetime | None


_FAILURE_COLUMNS = ("occurred_at", "recorded_at", "jail", "address", "rule", "text", "source", "node", "ban_id",
                    "day", "network")


def _stored_time(dialect: str) -> Callable[[datetime], object]:
    """How a time goes into the database through the bare DBAPI, as ``UTCDateTime`` stores it:
    naive UTC; on SQLite as SQLAlchemy's text, always with microseconds (so text comparison
    orders it with the rows SQLAlchemy wrote)."""
    def naive_utc(moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError("the ledger stores aware datetimes only")
        return (moment if moment.tzinfo is UTC else moment.astimezone(UTC)).replace(tzinfo=None)

    if dialect != "sqlite":
        return naive_utc

    def sqlite_text(moment: datetime) -> str:  # isoformat: one C call (journald's entries each have their own time)
        if moment.tzinfo is UTC:  # the usual: its text without the "+00:00", no naive copy made
            return moment.isoformat(" ", "microseconds")[:26]
        return naive_utc(moment).isoformat(" ", "microseconds")

    return sqlite_text


def _network_memory() -> dict[str, str]:
    """``_NETWORKS``, forgotten at once when it reaches ``NETWORK_MEMORY``."""
    if len(_NETWORKS) >= NETWORK_MEMORY:
        _NETWORKS.clear()
    return _NETWORKS


class _Batch(dict[int, FailureEvent]):
    """A batch's failures by identity, in order, with a lazily built index by (jail, address)
    of those whose jail and address are in ``banned`` (all of them if None)."""

    by_address: dict[tuple[str, str], list[tuple[int, FailureEvent]]] | None = None
    banned: set[tuple[str, str]] | None = None


def _same_address(batch: Mapping[int, FailureEvent]) -> dict[tuple[str, str], list[tuple[int, FailureEvent]]]:
    """The batch's failures grouped by jail and address, in batch order (built once per batch;
    of a ``_Batch``, only those of its ``banned`` addresses: a batch of 4,000 failures opens
    a few hundred bans)."""
    index = getattr(batch, "by_address", None)
    if index is None:
        index = {}
        banned = getattr(batch, "banned", None)
        for key, failure in batch.items():
            address = (failure.jail, failure.address)
            if banned is None or address in banned:
                index.setdefault(address, []).append((key, failure))
        if isinstance(batch, _Batch):
            batch.by_address = index
    return index


class Ledger:
    """The single source of truth: failures, bans and how far each source was read."""

    node = ""  # set by __init__; a subclass that skips it (a read-only view) stamps nothing
    checkpointer: WalCheckpointer | None = None  # set by __init__ on SQLite
    _burst: Engine | None = None  # a burst's own connection (``writer``), while it lasts
    fleet_jails: frozenset[str] = frozenset()  # scope = "fleet": counted and enforced fleet-wide
    host_jails: frozenset[str] = frozenset()  # scope = "host": enforced where decided (shared ledger only)

    def __init__(self, url: str, node: str | None = None, fleet_jails: Collection[str] = (),
                 host_jails: Collection[str] = ()) -> None:
        self.url = url
        self.node = (node or socket.gethostname())[:NODE_LIMIT]  # [node] name: this host in a fleet
        self.engine = create_ledger_engine(url)
        self.checkpointer = wal_checkpointer(self.engine)  # SQLite: its WAL copied back off the writer's thread
        self.fleet_jails, self.host_jails = frozenset(fleet_jails), frozenset(host_jails)

    @property
    def shared(self) -> bool:
        """Whether several hosts may share this ledger (PostgreSQL), so jail scopes matter."""
        return not upgrades_itself(self.engine)

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages."""
        return unquote(make_url(self.url).render_as_string(hide_password=True))

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.end_burst()
        self.engine.dispose()

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig()
        config.set_main_option("script_location", str(paths.MIGRATIONS))
        config.attributes["node"] = self.node  # rows from before revision 0004 become this host's
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def schema_exists(self) -> bool:
        return inspect(self.engine).has_table("bans")

    def revision(self) -> str | None:
        """The schema's Alembic revision; None before the first upgrade. Read as Alembic
        keeps it (one row of ``alembic_version``; the history has one head), by plain SQL."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        if len(rows) > 1:
            raise LedgerNotReady(f"the ledger at {self.safe_url} has {len(rows)} schema revisions "
                                 f"({', '.join(sorted(rows))}); journalban's history has one head")
        return rows[0] if rows else None

    def prepare(self) -> None:
        """Make the ledger ready for the daemon at start.

        A ledger that upgrades itself (SQLite, one host's own) is upgraded. A shared one
        (PostgreSQL) is only checked: at any other revision than the newest this raises
        ``SchemaNotCurrent`` naming ``journalban db upgrade``; unreachable, ``LedgerNotReady``.
        """
        if upgrades_itself(self.engine):
            if self.revision() != SCHEMA_HEAD:  # a new ledger, or a journalban just upgraded
                self.upgrade()
            return
        try:
            current, newest = self.revision(), SCHEMA_HEAD
        except OperationalError as exc:
            raise LedgerNotReady(f"cannot open the ledger at {self.safe_url}: {exc.orig}") from exc
        if current == newest:
            return
        if current is None:
            raise SchemaNotCurrent(f"the ledger at {self.safe_url} has no journalban schema yet: create it with "
                                   "`journalban db upgrade`, run with a role allowed to create tables")
        if current in known_revisions():
            raise SchemaNotCurrent(f"the ledger at {self.safe_url} is at schema revision {current}, this journalban "
                                   f"needs {newest}: run `journalban db upgrade` (with a role allowed to change "
                                   "the schema) before starting it")
        raise SchemaNotCurrent(f"the ledger at {self.safe_url} is at schema revision {current}, which this "
                               f"journalban does not know (it needs {newest}): a newer journalban upgraded it; "
                               "upgrade journalban on this host")

    @contextlib.contextmanager
    def transaction(self, engine: Engine | None = None) -> Iterator[Session]:
        """One unit of work: committed whole at the end, rolled back whole on error."""
        with _LedgerSession(engine or self.engine, expire_on_commit=False,
                            info={"node": self.node, "fleet_jails": self.fleet_jails}) as session, \
                session.begin():
            yield session

    def record(self, failures: Sequence[FailureEvent], bans: Sequence[BanDecision],
               positions: Mapping[str, Position | JournalCursor], now: datetime) -> None:
        """Failures, the bans they opened and the source positions that produced them,
        in one transaction: a crash keeps all of it or none.

        A ban already in force for the same jail and address (another host of the fleet
        opened it, or an operator did) is not opened twice: the batch's failures join it.
        When two hosts open the same ban at the same moment, the one-active-ban index
        lets one commit; the other's transaction fails whole and is recorded again,
        now finding the winner's ban.
        """
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                with self.transaction(self._burst) as session:  # a burst's last, through its connection
                    self._record(session, failures, bans, positions, now)
                if self.checkpointer is not None:
                    self.checkpointer.after_commit()
                return
            except IntegrityError as exc:
                if attempt == RECORD_ATTEMPTS or not bans:
                    raise
                log.info("a ban of this batch was opened elsewhere at the same moment; recording again: %s",
                         exc.orig)

    def _record(self, session: Session, failures: Sequence[FailureEvent], bans: Sequence[BanDecision],
                positions: Mapping[str, Position | JournalCursor], now: datetime) -> None:
        batch = self._batch(failures, bans)
        ban_of: dict[int, int] = {}  # id() of a failure of this batch -> the ban it rests on
        # Bans first, then the batch's failures in bulk, each with its ban: the windows of
        # earlier batches are linked by UPDATE before this batch's rows exist.
        stored = _stored_time(session.get_bind().dialect.name)
        if in_bulk(bans):  # the usual batch: its bans in a few statements
            ban_ids = open_bans(session, bans, now, self.node, stored)
        else:  # subnet bans taking over host bans, one address twice: one by one, in order
            ban_ids = []
            for decision in bans:
                if decision.replaces:
                    session.execute(update(Ban).where(
                        Ban.jail == decision.jail, Ban.address.in_(decision.replaces), Ban.ended_at.is_(None)
                    ).values(ended_at=now, end_reason="aggregated"))
                ban_ids.append(self._open(session, decision, now).id)
        earlier = [(decision, ban_id) for decision, ban_id in zip(bans, ban_ids, strict=True)
                   if not self._link(ban_id, decision, batch, ban_of)]
        # This batch's failures are not inserted yet: the UPDATE reaches earlier ones only.
        link_earlier(session, earlier, self.node, self.fleet_jails, stored)
        self._insert_failures(session, batch, ban_of, now)
        if positions:
            self._save_positions(session, positions, now)

    @staticmethod
    def _batch(failures: Sequence[FailureEvent], bans: Sequence[BanDecision]) -> "_Batch":
        # by identity: a decision names the very objects it rests on
        batch = _Batch(zip(map(id, failures), failures, strict=True))
        batch.banned = {(d.jail, d.failures[-1].address) for d in bans if d.failures}  # what _link looks up
        return batch

    def writer(self, failures: Sequence[FailureEvent], bans: Sequence[BanDecision],
               positions: Mapping[str, Position | JournalCursor], now: datetime) -> Callable[[], None] | None:
        """``record``, its Python work done here and now: what is left, to call in another
        thread, runs only SQLite's statements (``sqlite_write``), with the GIL let go. None
        where they cannot take the record (not SQLite, not the usual batch: ``in_bulk``):
        ``record`` it, then. In one thread ``record`` is the cheaper: SQLite reading JSON
        costs more CPU than binding rows (1M sshd lines, 0.3-0.5 s), paid back only beside
        the reading."""
        dialect = self.engine.dialect.name
        if dialect != "sqlite" or not sqlite_write.AVAILABLE or not in_bulk(bans):
            return None
        prepared = sqlite_write.prepare(bans, now, self.node, self.fleet_jails,
                                        _stored_time(dialect),  # type: ignore[arg-type]
                                        _network_memory(), self._link, self._batch(failures, bans))

        def write() -> None:
            with self.transaction(self._burst_engine()) as session:
                prepared.write(session.connection())
                if positions:
                    self._save_positions(session, positions, now)
            if self.checkpointer is not None:
                self.checkpointer.after_commit()

        return write

    def _burst_engine(self) -> Engine:
        """The connection a burst's transactions go through, its page cache ``BURST_CACHE_KIB``:
        a burst's random index updates (addresses, links to earlier failures) kept SQLite's
        default 2 MiB busy evicting and reading back pages. Its own engine, so that
        ``end_burst`` lets go of it whole."""
        if self._burst is None:
            self._burst = create_ledger_engine(self.url, cache_kib=BURST_CACHE_KIB)
        return self._burst

    def end_burst(self) -> None:
        """A burst's transactions are over: its connection, and with it its page cache, let go."""
        if self._burst is not None:
            self._burst.dispose()
            self._burst = None

    def _save_positions(self, session: Session, positions: Mapping[str, Position | JournalCursor],
                        now: datetime) -> None:
        """Each source's position, inserted or updated in one statement: ``Session.merge``
        read each row first and went through the ORM's flush (three positions: 1.37 ms, now
        0.16 ms; more than half of recording a batch of one failure and its ban)."""
        connection = session.connection()
        mark = parameter_mark(connection)
        updated = _stored_time(connection.dialect.name)(now)
        rows = [(self.node, source, None, None, position.cursor, updated) if isinstance(position, JournalCursor)
                else (self.node, source, position.inode, position.offset, None, updated)
                for source, position in positions.items()]
        connection.exec_driver_sql(
            f"INSERT INTO {SourcePosition.__tablename__} (node, source, inode, \"offset\", cursor, updated_at) "
            f"VALUES ({', '.join([mark] * 6)}) ON CONFLICT (node, source) DO UPDATE SET inode = excluded.inode, "
            "\"offset\" = excluded.\"offset\", cursor = excluded.cursor, updated_at = excluded.updated_at", rows)

    def _insert_failures(self, session: Session, batch: Mapping[int, FailureEvent], ban_of: Mapping[int, int],
                         now: datetime) -> None:
        """The batch's failures in a few multi-row INSERTs, not one statement per row.

        The ORM hooks see no such rows, so this fills what they would: ``node``, ``day``,
        ``network`` (``_stamp_node``) and the fleet's ``failures`` note (``_note_changes``).
        """
        # The DBAPI's executemany with plain tuples: SQLAlchemy's per-row parameter and type
        # processing cost more than SQLite's own work. Times are converted here as
        # ``UTCDateTime`` would, once per distinct time and address, not per row.
        if not batch:
            return
        connection = session.connection()
        stored = _stored_time(connection.dialect.name)
        times: dict[datetime, tuple[object, str]] = {}
        networks = _network_memory()
        recorded, node = stored(now), self.node

        def rows(items: Iterable[tuple[int, FailureEvent]]) -> list[tuple[object, ...]]:
            out = []
            for key, f in items:
                at = times.get(f.time)
                if at is None:
                    text = stored(f.time)  # on SQLite the day is the text's first ten characters
                    at = times[f.time] = (text, text[:10] if isinstance(text, str) else day_of(f.time))
                network = networks.get(f.address)
                if network is None:
                    network = networks[f.address] = network_of(f.address)
                out.append((at[0], recorded, f.jail, f.address, f.rule, f.text[:MATCHED_TEXT_LIMIT],
                            f.source[:SOURCE_LIMIT], node, ban_of.get(key), at[1], network))
            return out

        # Built BULK rows at a time: a burst's held batches are one transaction of tens of
        # thousands of failures, whose rows all at once were megabytes more at the peak.
        items = iter(batch.items())
        chunks = iter(lambda: rows(itertools.islice(items, BULK)), [])
        mark = parameter_mark(connection)
        sql = (f"INSERT INTO {Failure.__tablename__} ({', '.join(_FAILURE_COLUMNS)}) "
               f"VALUES ({', '.join([mark] * len(_FAILURE_COLUMNS))})")
        if connection.dialect.name == "postgresql":  # COPY: one stream, not one INSERT per row (1.5x)
            with connection.connection.driver_connection.cursor() as cursor, cursor.copy(  # type: ignore[union-attr]
                    f"COPY {Failure.__tablename__} ({', '.join(_FAILURE_COLUMNS)}) FROM STDIN") as copy:
                for chunk in chunks:
                    for row in chunk:
                        copy.write_row(row)
        else:
            for chunk in chunks:
                connection.exec_driver_sql(sql, chunk)
        if session.get_bind().dialect.name == "postgresql":
            fleet = session.info.get("fleet_jails", frozenset())
            notes: set[str] = session.info.setdefault("notify", set())
            notes.update(f"failures {session.info['node']} {jail} -"
                         for jail in {f.jail for f in batch.values()} if jail in fleet)

    def _open(self, session: Session, decision: BanDecision, now: datetime) -> Ban:
        """The ban row for ``decision``: a new one, or the one already in force."""
        ban = Ban(jail=decision.jail, address=decision.address, started_at=decision.start,
                  expires_at=decision.expiry, reason=decision.reason, node=self.node)
        if decision.expiry <= now:  # history, e.g. an old log replayed into the ledger
            ban.ended_at, ban.end_reason = decision.expiry, "expired"
        else:
            active = session.scalars(select(Ban).where(Ban.jail == decision.jail, Ban.address == decision.address,
                                                       Ban.ended_at.is_(None))).first()
            if active is not None and active.expires_at > now:
                joined(decision.jail, decision.address, active.id, active.node)
                return active
            if active is not None:  # past its time, not yet lifted by a reconcile
                active.ended_at, active.end_reason = now, "expired"
                session.flush()  # the one-active-ban index must see it ended before the new row
        session.add(ban)
        session.flush()
        return ban

    @staticmethod
    def _link(ban_id: int, decision: BanDecision, batch: Mapping[int, FailureEvent],
              ban_of: dict[int, int]) -> bool:
        """Point the failures behind a ban at it: those of this batch as they are inserted
        (``ban_of``), and says whether that was all of them: if not, those recorded by earlier
        batches (or before a restart) are linked by their window (``link_earlier``).

        The detector's decision names only the failure that tipped it (windows keep times,
        not failures); the window's other failures in this batch are the same jail and
        address's, unlinked, no older than the window, before that one in the batch.
        """
        first = decision.first_failure_at
        linked = 0
        for failure in decision.failures:
            if id(failure) in batch:
                ban_of[id(failure)] = ban_id
                linked += 1
        if linked and linked < decision.failure_count:
            tipping = decision.failures[-1]
            for key, failure in _same_address(batch).get((decision.jail, tipping.address), ()):
                if failure is tipping:
                    break
                if key not in ban_of and failure.time >= first:
                    ban_of[key] = ban_id
                    linked += 1
        return linked >= decision.failure_count

    def ban_expiries(self) -> list[tuple[str, str, datetime]]:
        """(jail, address, expires_at) of the bans this host enforces: what a starting detector
        needs of them. The DBAPI's own rows, each distinct time converted once: at start with
        100,000 bans, ORM rows with two typed datetimes each took seconds."""
        with self.transaction() as session:
            result = session.connection().execute(
                self._enforced_here(select(Ban.jail, Ban.address, Ban.expires_at)))
            rows = result.cursor.fetchall()
        times: dict[object, datetime] = {}
        out = []
        for jail, address, raw in rows:
            expiry = times.get(raw)
            if expiry is None:
                moment = datetime.fromisoformat(raw) if isinstance(raw, str) else raw
                expiry = times[raw] = moment.replace(tzinfo=UTC)
            out.append((jail, address, expiry))
        return out

    def ban_counts(self) -> dict[tuple[str, str], int]:
        """How often each address was banned in each jail: what growing ban times count."""
        with self.transaction() as session:
            rows = session.execute(select(Ban.jail, Ban.address, func.count()).group_by(Ban.jail, Ban.address))
            return {(jail, address): count for jail, address, count in rows}

    def record_heal(self, backend: str, restored: int, removed: int, layout_repaired: bool, detail: str,
                    now: datetime) -> None:
        with self.transaction() as session:
            session.add(Heal(healed_at=now, backend=backend, restored=restored, removed=removed,
                             layout_repaired=layout_repaired, detail=detail[:4000]))

    def cursor(self, source: str) -> JournalCursor | None:
        """The journal cursor this host last committed for ``source``."""
        with self.transaction() as session:
            row = session.get(SourcePosition, (self.node, source))
            return JournalCursor(row.cursor) if row is not None and row.cursor else None

    def positions(self) -> dict[str, Position]:
        """This host's file positions."""
        with self.transaction() as session:
            rows = session.scalars(select(SourcePosition).where(SourcePosition.node == self.node))
            return {r.source: Position(r.inode, r.offset or 0) for r in rows if r.inode is not None}

    def _enforced_here(self, query: Select[Any]) -> Select[Any]:
        """``query`` over the bans in force that this host enforces: all of them, except on a
        shared ledger a host-scoped jail's, which only the hosts whose own failures are behind
        them enforce (the host that opened the ban, or whose failures joined it)."""
        query = query.where(Ban.ended_at.is_(None))
        if self.host_jails and self.shared:
            own_failure = exists().where(Failure.jail == Ban.jail, Failure.address == Ban.address,
                                         Failure.ban_id == Ban.id, Failure.node == self.node)
            query = query.where(or_(Ban.jail.not_in(self.host_jails), Ban.node == self.node, own_failure))
        return query

    def active_bans(self) -> list[ActiveBan]:
        """The bans in force that this host enforces, in full (see ``_enforced_here``)."""
        with self.transaction() as session:  # plain rows, not ORM objects
            return [ActiveBan(*row) for row in session.execute(
                self._enforced_here(select(*ACTIVE_COLUMNS)).order_by(Ban.id))]

    def enforced_bans(self, jails: Collection[str] | None = None) -> EnforcedBans:
        """What the reconciler needs of the bans this host enforces, and no more: read at every
        reconcile, so 100,000 bans must cost milliseconds, not a row object and two datetimes each.
        With ``jails``, only theirs: on a shared ledger the other hosts' jails' bans, which a
        busy fleet opens by the hundred a second, are not read at every reconcile."""
        # Per jail one string of its addresses (which hold no space), split in C: a third
        # faster than a row per ban, and the jail's name is one object, not one per ban.
        # The next expiry comes in the same statement, outside a transaction (one statement
        # sees one snapshot): one round trip to the server, not BEGIN, two reads and COMMIT.
        query = self._enforced_here(select(Ban.jail, func.aggregate_strings(Ban.address, " "),
                                           func.min(Ban.expires_at)))
        if jails is not None:
            query = query.where(Ban.jail.in_(sorted(jails)))
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            rows = connection.execute(query.group_by(Ban.jail)).all()
        entries = frozenset(itertools.chain.from_iterable(
            zip(itertools.repeat(jail), addresses.split(" ")) for jail, addresses, _ in rows))
        return EnforcedBans(entries, min((expiry for _, _, expiry in rows), default=None))

    def expire_bans(self, now: datetime) -> list[ActiveBan]:
        """End every active ban whose time is up; returns the bans ended, in id order (by this
        host: rows another host is ending at the same moment are skipped, not ended twice)."""
        due = (select(Ban.id).where(Ban.ended_at.is_(None), Ban.expires_at <= now)
               .with_for_update(skip_locked=True))
        with self.transaction() as session:
            # The due ids first (through the expiry index, locked), then UPDATE by id: as one
            # statement, PostgreSQL walked every active ban once per due one (a fleet's 4,000
            # active bans took seconds, even with none due).
            ids = list(session.scalars(due))
            rows: list[Any] = []
            for start in range(0, len(ids), BULK):
                rows += session.execute(
                    update(Ban).where(Ban.id.in_(ids[start:start + BULK]), Ban.ended_at.is_(None))
                    .values(ended_at=now, end_reason="expired").returning(*ACTIVE_COLUMNS)
                    .execution_options(synchronize_session=False)).all()
            ended = sorted((ActiveBan(*row) for row in rows), key=lambda ban: ban.id)
            notes: set[str] = session.info.setdefault("notify", set())
            notes.update(f"end {self.node} {ban.jail} {ban.address}" for ban in ended)
            return ended

    def purge_failures(self, before: datetime) -> int:
        """Delete failures older than ``before`` that no active ban rests on (retention);
        bans are kept. Returns how many."""
        active = select(Ban.id).where(Ban.ended_at.is_(None))
        with self.transaction() as session:
            result = session.execute(delete(Failure).where(
                Failure.occurred_at < before, or_(Failure.ban_id.is_(None), Failure.ban_id.not_in(active))))
            return int(getattr(result, "rowcount", 0) or 0)

    def last_failure_id(self) -> int:
        """The highest failure id so far (0 for none): where a fleet watcher starts."""
        with self.transaction() as session:
            return session.scalar(select(func.max(Failure.id))) or 0

    def fleet_failures(self, after: int, since: datetime | None = None) -> list[tuple[int, FailureEvent]]:
        """Failures of fleet-scoped jails that other hosts recorded and no ban has consumed, with
        an id above ``after``, in id order. With ``since``: only those since then (what a
        starting host must count). A consumed failure counts nowhere else: read after its ban
        was lifted, it would open that ban again."""
        if not self.fleet_jails:
            return []
        query = select(Failure).where(Failure.id > after, Failure.node != self.node,
                                      Failure.jail.in_(sorted(self.fleet_jails)), Failure.ban_id.is_(None))
        if since is not None:
            query = query.where(Failure.occurred_at >= since)
        with self.transaction() as session:
            return [(r.id, FailureEvent(jail=r.jail, address=r.address, time=r.occurred_at, rule=r.rule,
                                        text=r.text, source=r.source))
                    for r in session.scalars(query.order_by(Failure.id))]

    def open_failures(self, since: datetime) -> list[FailureEvent]:
        """This host's failures since ``since`` that no ban has consumed: the detector's windows
        after a restart (the detector counts what its own host reads)."""
        with self.transaction() as session:
            rows = session.scalars(select(Failure).where(
                Failure.node == self.node, Failure.ban_id.is_(None), Failure.occurred_at >= since).order_by(Failure.id))
            return [FailureEvent(jail=r.jail, address=r.address, time=r.occurred_at, rule=r.rule,
                                 text=r.text, source=r.source) for r in rows]
