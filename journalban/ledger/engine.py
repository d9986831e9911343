"""Opening the ledger database: the one place that knows dialect particulars."""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select, text
from sqlalchemy.engine import make_url

WAL_CHECKPOINT_PAGES = 16384  # SQLite pages (4 KiB) of WAL between checkpoints


def create_ledger_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode, a busy timeout and foreign keys.

    PostgreSQL goes through psycopg 3 (``postgresql+psycopg://user@/db?host=/run/postgresql``);
    its credentials come from libpq (peer, ``PGPASSFILE``, ``PGSERVICEFILE``), never the config.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # A flood writes a batch a few milliseconds: checkpoint every 64 MiB of WAL, not every
        # 4 MiB (CPU of a 1M-line file: -7 to -10%), and cut the WAL back to that size after.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_PAGES * 4096}")
        cursor.close()

    return engine


def upgrades_itself(engine: Engine) -> bool:
    """Whether the daemon may change this ledger's schema at start.

    A SQLite ledger belongs to one host, which upgrades it. A server's ledger is
    shared: its schema changes only by ``journalban db upgrade``, run on purpose with
    a role allowed DDL, never by whichever host restarts first.
    """
    return engine.dialect.name == "sqlite"


def reset_sequences(connection: Connection, tables: Iterable[Table]) -> None:
    """After rows were inserted with their ids, make the next id follow the largest.

    SQLite needs nothing (its next rowid is the largest plus one); PostgreSQL's
    serial sequences do not move when ids are given explicitly.
    """
    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        column = table.autoincrement_column
        if column is None:
            continue
        largest = connection.scalar(select(func.max(column)))
        connection.execute(text("SELECT setval(pg_get_serial_sequence(:table, :column), :value, :called)"),
                           {"table": table.name, "column": column.name, "value": largest or 1,
                            "called": largest is not None})
