"""The ledger's schema: the single source of truth, and a documented SQL interface.

Times are stored as UTC without a zone (``YYYY-MM-DD HH:MM:SS.ffffff`` on SQLite)
so that plain SQL can compare them; Python sees aware UTC datetimes.
Any change here needs an Alembic revision in ``migrations/versions``.
"""

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, PrimaryKeyConstraint, String, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

MATCHED_TEXT_LIMIT = 1024  # a flood of long lines must not fill the disk
NODE_LIMIT = 64  # a host name: [node] name
SOURCE_LIMIT = 512  # where a line came from: "file:/var/log/x.log", "journal"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database, on every dialect alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Ban(Base):
    """A ban: who, where, why, until when, and how it ended (NULL while active)."""

    __tablename__ = "bans"

    id: Mapped[int] = mapped_column(primary_key=True)
    jail: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    end_reason: Mapped[str | None] = mapped_column(String(16), default=None)
    # expired | unbanned | aggregated | replaced
    node: Mapped[str] = mapped_column(String(NODE_LIMIT))  # the host that decided it
    # Plain columns for SQL that needs no date or address functions (see docs/ledger.md).
    day: Mapped[str | None] = mapped_column(String(10), default=None)  # YYYY-MM-DD of started_at
    network: Mapped[str | None] = mapped_column(String(64), default=None)  # the /24 or /64
    seconds: Mapped[int | None] = mapped_column(BigInteger, default=None)  # bantime decided; NULL: forever

    __table_args__ = (
        Index("ix_bans_jail_address", "jail", "address"),
        # At most one active ban per jail and address, fleet-wide: a constraint, not luck.
        Index("ux_bans_active", "jail", "address", unique=True,
              sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL")),
        # Which bans are due and when the next one is: asked at every reconcile.
        Index("ix_bans_active_expiry", "expires_at",
              sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL")),
    )


class Failure(Base):
    """One failure a grammar recognised, with the text and rule behind it."""

    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())  # event time, windows count in it
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())  # when journalban read it
    jail: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(128))  # grammar/rule
    text: Mapped[str] = mapped_column(String(MATCHED_TEXT_LIMIT))
    source: Mapped[str] = mapped_column(String(SOURCE_LIMIT))
    ban_id: Mapped[int | None] = mapped_column(ForeignKey("bans.id"), default=None)
    node: Mapped[str] = mapped_column(String(NODE_LIMIT))  # the host that read it
    day: Mapped[str | None] = mapped_column(String(10), default=None)  # YYYY-MM-DD of occurred_at
    network: Mapped[str | None] = mapped_column(String(64), default=None)  # the /24 or /64

    __table_args__ = (Index("ix_failures_jail_address_occurred", "jail", "address", "occurred_at"),)


class SourcePosition(Base):
    """How far a source has been read, committed with the failures it produced:
    a file's inode and offset, or a journal's cursor. Each host keeps its own."""

    __tablename__ = "source_positions"

    node: Mapped[str] = mapped_column(String(NODE_LIMIT))
    source: Mapped[str] = mapped_column(String(SOURCE_LIMIT))  # "file:/var/log/x.log", "journal"
    inode: Mapped[int | None] = mapped_column(BigInteger)
    offset: Mapped[int | None] = mapped_column(BigInteger)
    cursor: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (PrimaryKeyConstraint("node", "source", name="pk_source_positions"),)


class Heal(Base):
    """A reconcile that found the firewall had drifted from the ledger, and what it undid."""

    __tablename__ = "heals"

    id: Mapped[int] = mapped_column(primary_key=True)
    healed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    backend: Mapped[str] = mapped_column(String(32))
    restored: Mapped[int] = mapped_column()  # bans put back that had vanished
    removed: Mapped[int] = mapped_column()  # entries journalban never decided, taken out
    layout_repaired: Mapped[bool] = mapped_column()  # chain, set, table or jump rebuilt
    detail: Mapped[str] = mapped_column(Text)


class SpoolDelivery(Base):
    """A record a host spooled while the ledger was away, delivered: its id, so a
    delivery cut off halfway and tried again is not doubled (``ledger/spool.py``)."""

    __tablename__ = "spool_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the spooled record's UUID
    node: Mapped[str] = mapped_column(String(NODE_LIMIT))
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_spool_deliveries_node_delivered", "node", "delivered_at"),)
