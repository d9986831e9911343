"""Every migration goes down as well as up, on SQLite and PostgreSQL, with rows in the tables."""

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect, text

from journalban import paths
from journalban.ledger.store import Ledger, newest_revision
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
