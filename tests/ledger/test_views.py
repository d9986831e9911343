"""The ledger as an SQL interface: every query in docs/ledger.md runs, on SQLite and
PostgreSQL, against a ledger filled by a real replay, and two agree with the replay."""

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, inspect, text

from journalban import paths
from journalban.events import FOREVER
from journalban.grammar import load_grammar
from journalban.ledger.models import Ban
from journalban.ledger.store import Ledger
from journalban.ledger.views import ban_seconds, day_of, fill_derived, network_of
from journalban.replay import JAIL, ReplayOptions, ReplaySummary, replay_lines

DOC = Path(__file__).resolve().parents[2] / "docs/ledger.md"
CORPUS = Path("/work/shared/bench/corpus.py")
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.DOTALL)
# 200 bots POSTing over the last 6 hours: several bans each, the latest still active.
CORPUS_ARGS = ("nginx", "20000", "--sources", "200", "--start", "now", "--span", str(6 * 3600))


@dataclass(frozen=True)
class Filled:
    engine: Engine
    summary: ReplaySummary


def corpus_lines(*args: str) -> list[str]:
    if not CORPUS.exists():
        pytest.skip(f"{CORPUS} not found")
    result = subprocess.run([sys.executable, str(CORPUS), *args], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def fill(url: str) -> ReplaySummary:
    """Replay the corpus into the ledger at ``url``, as ``journalban replay --ledger`` does."""
    ledger = Ledger(url)
    ledger.upgrade()
    grammar = load_grammar(paths.SHIPPED_GRAMMARS / "nginx-wp-login.grammar")
    try:
        summary = replay_lines(corpus_lines(*CORPUS_ARGS), grammar, "raw", "file:access.log",
                               ReplayOptions(maxretry=5, findtime=3600, bantime=3600, ledger=ledger))
        if not _store_fills_derived():  # until store.py writes day/network/seconds as it inserts
            with ledger.engine.begin() as connection:
                fill_derived(connection)
    finally:
        ledger.close()
    return summary


def _store_fills_derived() -> bool:
    return "network" in inspect(Ban).columns


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('views')}/ledger.db"
    else:
        url = request.getfixturevalue("postgres_server").create_database("views")
    summary = fill(url)
    engine = create_engine(url)
    yield Filled(engine, summary)
    engine.dispose()


def run(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TIME ZONE 'UTC'")
        return [tuple(row) for row in connection.exec_driver_sql(sql.strip().rstrip(";"))]


def test_the_document_has_the_promised_queries() -> None:
    assert len(QUERIES) >= 6
    for view in ("active_bans", "ban_history", "offenders"):
        assert any(view in q for q in QUERIES), view


@pytest.mark.parametrize("sql", QUERIES, ids=[f"query{i}" for i in range(len(QUERIES))])
def test_every_documented_query_runs_and_returns_rows(filled: Filled, sql: str) -> None:
    rows = run(filled.engine, sql)
    now = datetime.now(UTC)
    if "CURRENT_DATE" in sql and now - now.replace(hour=0, minute=0, second=0, microsecond=0) < timedelta(minutes=15):
        print(f"not asking for rows: it is {now:%H:%M} UTC, today has hardly begun")
        return
    assert rows, sql


def test_bans_per_jail_per_day_agree_with_the_replay(filled: Filled) -> None:
    sql = next(q for q in QUERIES if "GROUP BY day, jail" in q)
    expected = Counter((day_of(b.start), JAIL) for b in filled.summary.bans)
    assert {(day, jail): count for day, jail, count in run(filled.engine, sql)} == expected


def test_addresses_banned_more_than_three_times_agree_with_the_replay(filled: Filled) -> None:
    sql = next(q for q in QUERIES if "bans > 3" in q)
    expected = {a: n for a, n in Counter(b.address for b in filled.summary.bans).items() if n > 3}
    rows = run(filled.engine, sql)
    assert expected
    assert {row[0]: row[2] for row in rows} == expected
    assert all(row[1] == network_of(str(row[0])) for row in rows)


def test_views_agree_with_the_tables(filled: Filled) -> None:
    [(active, history, bans, open_bans)] = run(filled.engine, """
        SELECT (SELECT COUNT(*) FROM active_bans), (SELECT COUNT(*) FROM ban_history),
               (SELECT COUNT(*) FROM bans), (SELECT COUNT(*) FROM bans WHERE ended_at IS NULL)""")
    assert (active, history) == (open_bans, bans) and active > 0
    [(failures, offender_failures, linked, history_failures)] = run(filled.engine, """
        SELECT (SELECT COUNT(*) FROM failures), (SELECT SUM(failures) FROM offenders),
               (SELECT COUNT(*) FROM failures WHERE ban_id IS NOT NULL), (SELECT SUM(failures) FROM ban_history)""")
    assert failures == offender_failures and linked == history_failures
    assert run(filled.engine, "SELECT DISTINCT duration_seconds FROM ban_history") == [(3600,)]
    outcomes = dict(run(filled.engine, "SELECT outcome, COUNT(*) FROM ban_history GROUP BY outcome"))
    assert outcomes == {"active": active, "expired": bans - active}


def test_store_writes_the_derived_columns(tmp_path: Path) -> None:
    if not _store_fills_derived():
        pytest.skip("models.py/store.py do not write day, network and seconds yet (see journalban.ledger.views)")
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.upgrade()
    grammar = load_grammar(paths.SHIPPED_GRAMMARS / "nginx-wp-login.grammar")
    replay_lines(corpus_lines(*CORPUS_ARGS)[:3000], grammar, "raw", "file:access.log",
                 ReplayOptions(maxretry=5, findtime=3600, bantime=3600, ledger=ledger))
    with ledger.engine.connect() as connection:
        assert connection.scalar(text("SELECT COUNT(*) FROM failures WHERE day IS NULL OR network IS NULL")) == 0
        assert connection.scalar(text("SELECT COUNT(*) FROM bans WHERE seconds IS NULL")) == 0
    ledger.close()


def alembic(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(paths.MIGRATIONS))
    config.attributes["connection"] = None
    config.set_main_option("sqlalchemy.url", url)
    return config


def test_migration_backfills_rows_from_before_it_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    command.upgrade(alembic(url), "0002")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO bans (id, jail, address, started_at, expires_at, reason) VALUES "
            "(1, 'sshd', '203.0.113.9', '2026-04-23 23:59:59.500000', '2026-04-24 00:09:59.500000', 'r'), "
            "(2, 'sshd', '2001:db8:1:2:3::9', '2026-04-24 01:00:00.000000', '9999-12-31 00:00:00.000000', 'r')"))
        connection.execute(text(
            "INSERT INTO failures (occurred_at, recorded_at, jail, address, rule, text, source, ban_id) VALUES "
            "('2026-04-23 23:59:59.000000', '2026-04-24 00:00:00.000000', 'sshd', '203.0.113.9', 'sshd/x', 't', "
            "'journal', 1)"))
    command.upgrade(alembic(url), "0003")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT id, day, network, seconds FROM bans ORDER BY id")).all() == [
            (1, "2026-04-23", "203.0.113.0/24", 600), (2, "2026-04-24", "2001:db8:1:2::/64", None)]
        assert connection.execute(text("SELECT day, network FROM failures")).all() == [
            ("2026-04-23", "203.0.113.0/24")]
        assert connection.execute(text("SELECT address, permanent FROM active_bans ORDER BY id")).all() == [
            ("203.0.113.9", 0), ("2001:db8:1:2:3::9", 1)]
        assert connection.execute(text("SELECT address, failures, bans, jails FROM offenders ORDER BY address")
                                  ).all() == [("2001:db8:1:2:3::9", 0, 1, 1), ("203.0.113.9", 1, 1, 1)]
    command.downgrade(alembic(url), "0002")
    with engine.connect() as connection:
        assert "network" not in {c["name"] for c in inspect(connection).get_columns("bans")}
        assert not inspect(connection).get_view_names()
    engine.dispose()


@pytest.mark.parametrize(("address", "network"), [
    ("203.0.113.9", "203.0.113.0/24"),
    ("2001:db8:cd5a:c093::dfae", "2001:db8:cd5a:c093::/64"),
    ("2001:db8::1", "2001:db8::/64"),
    ("198.51.100.0/22", "198.51.100.0/22"),  # a ban of a wider network keeps its own
    ("203.0.113.128/25", "203.0.113.0/24"),
    ("not an address", "not an address"),
])
def test_network_of(address: str, network: str) -> None:
    assert network_of(address) == network


def test_network_of_other_prefixes() -> None:
    assert network_of("2001:db8:cd5a:c093::dfae", v6_prefix=48) == "2001:db8:cd5a::/48"
    assert network_of("203.0.113.9", v4_prefix=16) == "203.0.0.0/16"


def test_day_of_and_ban_seconds() -> None:
    from datetime import timezone
    late = datetime(2026, 4, 23, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert day_of(late) == "2026-04-24"
    assert day_of(datetime(2026, 4, 23, 23, 30)) == "2026-04-23"
    start = datetime(2026, 4, 23, tzinfo=UTC)
    assert ban_seconds(start, start + timedelta(minutes=10)) == 600
    assert ban_seconds(start, FOREVER) is None
