"""Opening the ledger database: the one place that knows dialect particulars."""

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select, text
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

WAL_CHECKPOINT_PAGES = 16384  # SQLite pages (4 KiB) of WAL between checkpoints
BACKGROUND_CHECKPOINT_BYTES = 16 << 20  # a WAL file this big is checkpointed by WalCheckpointer
BACKGROUND_CHECKPOINT_EVERY = 0.5  # seconds between its checkpoints at most


def create_ledger_engine(url: str, cache_kib: int | None = None) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode, a busy timeout and foreign keys, and
    with ``cache_kib`` a page cache of that size per connection (SQLite's default: 2 MiB).

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
        if cache_kib is not None:
            cursor.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        # A flood writes a batch a few milliseconds: checkpoint every 64 MiB of WAL, not every
        # 4 MiB (CPU of a 1M-line file: -7 to -10%), and cut the WAL back to that size after.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_PAGES * 4096}")
        cursor.close()

    return engine


class WalCheckpointer:
    """Copies a busy SQLite ledger's WAL back into the database from a thread of its own.

    Left to SQLite, the commit that takes the WAL past ``wal_autocheckpoint`` copies it
    back itself: under a flood, the thread that reads the files paid for every
    checkpoint (a tenth of its ledger time). ``after_commit`` asks this thread to do it
    instead, at most every ``BACKGROUND_CHECKPOINT_EVERY``, once the WAL file has grown
    to ``BACKGROUND_CHECKPOINT_BYTES``: a PASSIVE checkpoint is one call into SQLite,
    which lets go of the GIL throughout, so it runs on the other core beside the
    writer. The autocheckpoint stays, should this thread fall behind.
    """

    def __init__(self, engine: Engine, wal: Path) -> None:
        self.engine = engine
        self.wal = wal
        self._wanted = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def after_commit(self) -> None:
        if self._wanted.is_set() or self._closing.is_set():
            return
        try:
            if os.stat(self.wal).st_size < BACKGROUND_CHECKPOINT_BYTES:
                return
        except OSError:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ledger-checkpoint", daemon=True)
            self._thread.start()
        self._wanted.set()

    def close(self) -> None:
        self._closing.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._closing.is_set():
                return
            try:
                with self.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as exc:  # a busy or vanished database: the autocheckpoint still runs
                log.debug("background WAL checkpoint failed: %s", exc)
            if self._closing.wait(BACKGROUND_CHECKPOINT_EVERY):
                return
            self._wanted.clear()
            if self._closing.is_set():  # closed just before the clear: its wake is gone
                return


def wal_checkpointer(engine: Engine) -> WalCheckpointer | None:
    """The background checkpointer of a SQLite ledger in a file; None for any other."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return WalCheckpointer(engine, Path(f"{url.database}-wal"))


def parameter_mark(connection: Connection) -> str:
    """The DBAPI's placeholder for statements sent as plain SQL: ``?`` (sqlite3), ``%s`` (psycopg)."""
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


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
