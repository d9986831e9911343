"""Moving a ledger to another database (a host's SQLite into the fleet's PostgreSQL).

Every row of every ledger table is copied with its id, so the links between
failures and bans hold, in one transaction on the target: a copy that fails
leaves the target as empty as it found it. Sequences are moved past the copied ids.
The tables are read from the databases themselves, not the models, so a column a
migration added is copied too.
"""

import warnings
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import Connection, MetaData, Table, func, insert, select
from sqlalchemy.exc import SAWarning

from journalban.ledger.engine import reset_sequences
from journalban.ledger.store import Ledger

CHUNK = 1000  # rows per INSERT batch


class CopyError(Exception):
    """The copy cannot start: the target already holds rows."""


def ledger_tables(connection: Connection) -> Sequence[Table]:
    """The ledger's tables as the database has them, each after those it refers to
    (bans before failures); Alembic's own bookkeeping and the views left out."""
    metadata = MetaData()
    with warnings.catch_warnings():  # SQLite's index on an expression (migration 0007): no rows to copy in it
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", SAWarning)
        metadata.reflect(connection)
    return [t for t in metadata.sorted_tables if t.name != "alembic_version"]


def copy_ledger(source_url: str, target_url: str, node: str | None = None) -> dict[str, int]:
    """Copy every row from ``source_url`` to ``target_url``; returns the rows copied per table.

    Both schemas are first brought to the newest revision (``node`` owns the source's
    rows from before revision 0004, as in ``Ledger.upgrade``), so the target needs a
    role allowed DDL. A target holding any row is refused.
    """
    source, target = Ledger(source_url, node=node), Ledger(target_url, node=node)
    try:
        source.upgrade()
        target.upgrade()
        counts: dict[str, int] = {}
        with source.engine.connect() as reading, target.engine.begin() as writing:
            tables = ledger_tables(writing)
            occupied = [t.name for t in tables if writing.scalar(select(func.count()).select_from(t))]
            if occupied:
                raise CopyError(f"the ledger at {target.safe_url} is not empty (rows in {', '.join(occupied)}): "
                                "a copy goes into an empty ledger only")
            read = {t.name: t for t in ledger_tables(reading)}
            for table in tables:
                counts[table.name] = _copy_table(read[table.name], table, reading, writing)
            reset_sequences(writing, tables)
        return counts
    finally:
        source.close()
        target.close()


def _copy_table(source: Table, target: Table, reading: Connection, writing: Connection) -> int:
    query = select(source).order_by(*source.primary_key.columns)
    rows = reading.execution_options(yield_per=CHUNK).execute(query)
    copied = 0
    for chunk in _chunks((dict(row._mapping) for row in rows), CHUNK):
        writing.execute(insert(target), chunk)
        copied += len(chunk)
    return copied


def _chunks(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while chunk := list(islice(items, size)):
        yield chunk
