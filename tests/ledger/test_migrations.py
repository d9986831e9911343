"""Every migration goes down as well as up, on SQLite and PostgreSQL, with rows in the tables."""

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect, text

from journalban import paths
from journalban.ledger.store import SCHEMA_HEAD, Ledger, newest_revision
from journalban.sources.files import Position
from tests.ledger.test_ledger import T0, failure_and_ban

VIEWS = {"active_bans", "ban_history", "offenders"}


def migrate(ledger: Ledger, direction: str, revision: str) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(paths.MIGRATIONS))
    config.attributes["node"] = ledger.node
    with ledger.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)


def test_down_to_before_nodes_keeps_rows_and_views_then_up_again(ledger: Ledger) -> None:
    ledger.record(*failure_and_ban(), {"file:/x": Position(1, 10)}, T0)
    migrate(ledger, "downgrade", "0003")  # SQLite rebuilds bans and failures: 0003's views name them
    assert ledger.revision() == "0003"
    assert VIEWS <= set(inspect(ledger.engine).get_view_names())
    with ledger.engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM active_bans")) == 1
        assert connection.scalar(text("SELECT failures FROM ban_history")) == 1
        assert "node" not in {c["name"] for c in inspect(connection).get_columns("bans")}
    migrate(ledger, "upgrade", "head")
    assert ledger.revision() == newest_revision()
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.9"]
    assert ledger.positions() == {"file:/x": Position(1, 10)}  # the upgrading host's, as before


def test_down_to_base_and_up_again(ledger: Ledger) -> None:
    ledger.record(*failure_and_ban(), {}, T0)
    migrate(ledger, "downgrade", "base")
    assert ledger.revision() is None
    assert set(inspect(ledger.engine).get_table_names()) <= {"alembic_version"}
    assert not inspect(ledger.engine).get_view_names()
    migrate(ledger, "upgrade", "head")
    assert ledger.revision() == newest_revision()
    assert {"bans", "failures", "source_positions", "heals", "spool_deliveries"} <= set(
        inspect(ledger.engine).get_table_names())
    assert VIEWS <= set(inspect(ledger.engine).get_view_names())
    ledger.record(*failure_and_ban(), {}, T0)  # the rebuilt schema takes a batch
    assert len(ledger.active_bans()) == 1


def test_schema_head_is_the_newest_migration() -> None:
    assert SCHEMA_HEAD == newest_revision()


# A process of its own: this one has Alembic imported by the tests above.
_START = """
import sys
from journalban.ledger.store import Ledger
ledger = Ledger(sys.argv[1])
ledger.prepare()
print(ledger.revision(), "alembic" in sys.modules)
"""


def test_a_sqlite_ledger_at_the_head_starts_without_alembic_and_an_older_one_is_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = Ledger(url)
    ledger.upgrade()
    ledger.record(*failure_and_ban(), {}, T0)
    migrate(ledger, "downgrade", "0007")

    def start() -> list[str]:
        return subprocess.run([sys.executable, "-c", _START, url], capture_output=True, text=True, check=True,
                              timeout=60).stdout.split()

    assert start() == [SCHEMA_HEAD, "True"]  # at 0007: upgraded, Alembic needed
    assert start() == [SCHEMA_HEAD, "False"]  # at the head: nothing to do, nothing imported
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.9"]
    ledger.close()
