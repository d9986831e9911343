"""Reading and writing the ledger; every write goes through one transaction helper."""

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import func, inspect, select, update
from sqlalchemy.orm import Session

from journalban import paths
from journalban.events import BanDecision
from journalban.events import Failure as FailureEvent
from journalban.ledger.engine import create_ledger_engine
from journalban.ledger.models import MATCHED_TEXT_LIMIT, Ban, Failure, Heal, SourcePosition
from journalban.sources.files import Position
from journalban.sources.journal import JournalCursor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActiveBan:
    id: int
    jail: str
    address: str
    started_at: datetime
    expires_at: datetime
    reason: str


class Ledger:
    """The single source of truth: failures, bans and how far each source was read."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_ledger_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = AlembicConfig()
        config.set_main_option("script_location", str(paths.MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def schema_exists(self) -> bool:
        return inspect(self.engine).has_table("bans")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed whole at the end, rolled back whole on error."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def record(self, failures: Sequence[FailureEvent], bans: Sequence[BanDecision],
               positions: Mapping[str, Position | JournalCursor], now: datetime) -> None:
        """Failures, the bans they opened and the source positions that produced them,
        in one transaction: a crash keeps all of it or none."""
        with self.transaction() as session:
            rows = {id(f): Failure(occurred_at=f.time, recorded_at=now, jail=f.jail, address=f.address,
                                   rule=f.rule, text=f.text[:MATCHED_TEXT_LIMIT], source=f.source[:512])
                    for f in failures}
            session.add_all(rows.values())
            session.flush()
            first_new = min((r.id for r in rows.values()), default=None)
            for decision in bans:
                ban = Ban(jail=decision.jail, address=decision.address, started_at=decision.start,
                          expires_at=decision.expiry, reason=decision.reason)
                if decision.expiry <= now:  # history, e.g. an old log replayed into the ledger
                    ban.ended_at, ban.end_reason = decision.expiry, "expired"
                if decision.replaces:
                    session.execute(update(Ban).where(
                        Ban.jail == decision.jail, Ban.address.in_(decision.replaces), Ban.ended_at.is_(None)
                    ).values(ended_at=now, end_reason="aggregated"))
                session.add(ban)
                session.flush()
                self._link(session, ban, decision, rows, first_new)
            for source, position in positions.items():
                if isinstance(position, JournalCursor):
                    row = SourcePosition(source=source, cursor=position.cursor, updated_at=now)
                else:
                    row = SourcePosition(source=source, inode=position.inode, offset=position.offset, updated_at=now)
                session.merge(row)

    @staticmethod
    def _link(session: Session, ban: Ban, decision: BanDecision, rows: Mapping[int, Failure],
              first_new: int | None) -> None:
        """Point the failures behind a ban at it: those of this batch directly, those
        recorded by earlier batches (or before a restart) by their window."""
        earlier = False
        for failure in decision.failures:
            row = rows.get(id(failure))
            if row is None:
                earlier = True
            else:
                row.ban_id = ban.id
        if earlier:
            query = update(Failure).where(
                Failure.jail == decision.jail, Failure.address == decision.address, Failure.ban_id.is_(None),
                Failure.occurred_at >= min(f.time for f in decision.failures))
            if first_new is not None:
                query = query.where(Failure.id < first_new)
            session.execute(query.values(ban_id=ban.id))

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
        """The journal cursor last committed for ``source``."""
        with self.transaction() as session:
            row = session.get(SourcePosition, source)
            return JournalCursor(row.cursor) if row is not None and row.cursor else None

    def positions(self) -> dict[str, Position]:
        with self.transaction() as session:
            rows = session.scalars(select(SourcePosition))
            return {r.source: Position(r.inode, r.offset or 0) for r in rows if r.inode is not None}

    def active_bans(self) -> list[ActiveBan]:
        with self.transaction() as session:
            rows = session.scalars(select(Ban).where(Ban.ended_at.is_(None)).order_by(Ban.id))
            return [ActiveBan(r.id, r.jail, r.address, r.started_at, r.expires_at, r.reason)
                    for r in rows]

    def expire_bans(self, now: datetime) -> list[ActiveBan]:
        """End every active ban whose time is up; returns the bans ended."""
        with self.transaction() as session:
            rows = list(session.scalars(
                select(Ban).where(Ban.ended_at.is_(None), Ban.expires_at <= now)))
            for row in rows:
                row.ended_at, row.end_reason = now, "expired"
            return [ActiveBan(r.id, r.jail, r.address, r.started_at, r.expires_at, r.reason)
                    for r in rows]

    def open_failures(self, since: datetime) -> list[FailureEvent]:
        """Failures since ``since`` that no ban has consumed: the detector's windows after a restart."""
        with self.transaction() as session:
            rows = session.scalars(select(Failure).where(
                Failure.ban_id.is_(None), Failure.occurred_at >= since).order_by(Failure.id))
            return [FailureEvent(jail=r.jail, address=r.address, time=r.occurred_at, rule=r.rule,
                                 text=r.text, source=r.source) for r in rows]


