from collections.abc import Iterator
from pathlib import Path

import pytest

from journalban.ledger.store import Ledger
from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)

DIALECTS = ("sqlite", "postgresql")


def ledger_url(request: pytest.FixtureRequest, dialect: str, tmp_path: Path) -> str:
    """A fresh, empty ledger database of ``dialect``; PostgreSQL starts only when asked for."""
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path}/sub/ledger.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=DIALECTS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """The ledger on SQLite and on PostgreSQL, upgraded, as host "node-a"."""
    ledger = Ledger(ledger_url(request, request.param, tmp_path), node="node-a")
    ledger.upgrade()
    yield ledger
    ledger.close()
