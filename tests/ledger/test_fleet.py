"""One ledger shared by many hosts: nodes, the schema gate, racing bans, moving a ledger over."""

import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, ProgrammingError

from journalban import paths
from journalban.cli import main
from journalban.events import BanDecision
from journalban.ledger.copy import ledger_tables
from journalban.ledger.models import Ban
from journalban.ledger.models import Failure as FailureRow
from journalban.ledger.store import Ledger, SchemaNotCurrent
from journalban.sources.files import Position
from journalban.sources.journal import JournalCursor
from tests.ledger.conftest import ledger_url
from tests.ledger.test_ledger import T0, ban, failure, failure_and_ban
from tests.postgres import USER, PostgresServer

BEFORE_NODES = ScriptDirectory(str(paths.MIGRATIONS)).get_revision("0004").down_revision
WAIT = 10.0  # seconds any wait below gives up after


def upgrade_to(url: str, revision: str) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(paths.MIGRATIONS))
    ledger = Ledger(url)
    with ledger.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    ledger.close()


# --- nodes, on both dialects


def test_every_row_carries_its_node_and_positions_are_per_node(ledger: Ledger) -> None:
    other = Ledger(ledger.url, node="node-b")
    try:
        ledger.record(*failure_and_ban(), {"file:/var/log/x.log": Position(1, 100), "journal": JournalCursor("a")},
                      T0)
        other.record([failure("198.51.100.7")], [], {"file:/var/log/x.log": Position(2, 200),
                                                     "journal": JournalCursor("b")}, T0)
        assert ledger.positions() == {"file:/var/log/x.log": Position(1, 100)}
        assert other.positions() == {"file:/var/log/x.log": Position(2, 200)}
        assert (ledger.cursor("journal"), other.cursor("journal")) == (JournalCursor("a"), JournalCursor("b"))
        assert [f.address for f in other.open_failures(T0 - timedelta(minutes=1))] == ["198.51.100.7"]
        assert ledger.open_failures(T0 - timedelta(minutes=1)) == []
        with ledger.transaction() as session:
            assert sorted(session.execute(select(FailureRow.node, FailureRow.address))) == [
                ("node-a", "203.0.113.9"), ("node-b", "198.51.100.7")]
            assert session.scalars(select(Ban.node)).all() == ["node-a"]
            session.add(Ban(jail="manual", address="192.0.2.1", started_at=T0, expires_at=T0, reason="by hand"))
        with other.transaction() as session:  # bans are fleet-wide: every host sees, and enforces, all
            assert session.scalar(select(Ban.node).where(Ban.jail == "manual")) == "node-a"
        assert {b.jail for b in other.active_bans()} == {"wplogin", "manual"}
    finally:
        other.close()


def test_the_node_defaults_to_the_host_name(tmp_path: Path) -> None:
    assert Ledger(f"sqlite:///{tmp_path}/l.db").node == socket.gethostname()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_rows_from_before_nodes_belong_to_the_upgrading_host(request: pytest.FixtureRequest, dialect: str,
                                                             tmp_path: Path) -> None:
    url = ledger_url(request, dialect, tmp_path)
    upgrade_to(url, str(BEFORE_NODES))
    ledger = Ledger(url, node="old-host")
    with ledger.engine.begin() as connection:
        connection.execute(text("INSERT INTO source_positions (source, inode, \"offset\", updated_at) "
                                "VALUES ('file:/x', 7, 70, '2026-04-23 10:00:00')"))
        connection.execute(text("INSERT INTO failures (occurred_at, recorded_at, jail, address, rule, text, source) "
                                "VALUES ('2026-04-23 10:00:00', '2026-04-23 10:00:00', 'j', '192.0.2.1', 'r', 't', "
                                "'file:/x')"))
    ledger.upgrade()
    try:
        assert ledger.positions() == {"file:/x": Position(7, 70)}
        assert [f.address for f in ledger.open_failures(T0 - timedelta(days=1))] == ["192.0.2.1"]
        ledger.record([], [], {"file:/x": Position(7, 80)}, T0)
        assert ledger.positions() == {"file:/x": Position(7, 80)}
    finally:
        ledger.close()


# --- the schema gate


def test_sqlite_prepares_itself(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db")
    ledger.prepare()
    assert ledger.revision() == ScriptDirectory(str(paths.MIGRATIONS)).get_current_head()
    ledger.close()


def test_postgresql_schema_changes_only_through_db_upgrade(postgres_url: str) -> None:
    ledger = Ledger(postgres_url)
    try:
        with pytest.raises(SchemaNotCurrent, match=r"no journalban schema yet.*`journalban db upgrade`"):
            ledger.prepare()
        assert not ledger.schema_exists()
        upgrade_to(postgres_url, str(BEFORE_NODES))
        with pytest.raises(SchemaNotCurrent, match=rf"revision {BEFORE_NODES}, .* run `journalban db upgrade`"):
            ledger.prepare()
        assert ledger.revision() == BEFORE_NODES  # looked, changed nothing
        ledger.upgrade()
        ledger.prepare()
        with ledger.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(SchemaNotCurrent, match="9999, which this journalban does not know"):
            ledger.prepare()
    finally:
        ledger.close()


def test_the_daemon_on_an_old_schema_exits_1_with_the_message(postgres_url: str, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[ledger]\nurl = "{postgres_url}"\n')
    result = subprocess.run([sys.executable, "-m", "journalban", "run", "-c", str(config)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "run `journalban db upgrade`" in result.stderr or "create it with `journalban db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr


# --- two hosts racing to the same ban (PostgreSQL: the race is real there)


def wait_for_lock_wait(engine: Engine) -> None:
    """Until some session of the database waits on a lock (the second INSERT on the index)."""
    deadline = time.monotonic() + WAIT
    query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND datname = current_database()")
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if connection.scalar(query):
                return
        time.sleep(0.02)
    raise AssertionError("no session ever waited on the lock")


def test_the_index_lets_exactly_one_of_two_racing_bans_in(postgres_url: str) -> None:
    first, second = Ledger(postgres_url, node="a"), Ledger(postgres_url, node="b")
    first.upgrade()
    row = {"jail": "wplogin", "address": "203.0.113.9", "started_at": T0, "expires_at": T0 + timedelta(hours=1),
           "reason": "r", "ended_at": None}
    outcome: list[str] = []

    def insert_second() -> None:
        try:
            with second.engine.begin() as connection:
                connection.execute(insert(Ban), [{**row, "node": "b"}])
            outcome.append("committed")
        except IntegrityError:
            outcome.append("IntegrityError")

    try:
        with first.engine.begin() as connection:
            connection.execute(insert(Ban), [{**row, "node": "a"}])
            racer = threading.Thread(target=insert_second)
            racer.start()
            wait_for_lock_wait(first.engine)
        racer.join(WAIT)
        assert outcome == ["IntegrityError"]
        with first.transaction() as session:
            assert session.scalars(select(Ban.node)).all() == ["a"]
    finally:
        first.close()
        second.close()


def test_the_host_losing_a_ban_race_records_its_failures_on_the_winners_ban(postgres_url: str) -> None:
    """Both hosts find no ban and insert one; the index makes the second wait, then fail;
    its batch is recorded again and its failures join the first host's ban. Nothing is raised."""
    winner, loser = Ledger(postgres_url, node="a"), Ledger(postgres_url, node="b")
    winner.upgrade()
    errors: list[BaseException] = []

    def record_loser() -> None:
        try:
            loser.record(*failure_and_ban(), {"file:/x": Position(1, 10)}, T0)
        except BaseException as exc:
            errors.append(exc)

    try:
        with winner.transaction() as session:
            winner._record(session, *failure_and_ban(), {}, T0)
            racer = threading.Thread(target=record_loser)
            racer.start()
            wait_for_lock_wait(winner.engine)
        racer.join(WAIT)
        assert not racer.is_alive() and errors == []
        with winner.transaction() as session:
            (only,) = session.scalars(select(Ban)).all()
            assert only.node == "a"
            assert sorted(session.execute(select(FailureRow.node, FailureRow.ban_id))) == [("a", only.id),
                                                                                          ("b", only.id)]
        assert loser.positions() == {"file:/x": Position(1, 10)}
    finally:
        winner.close()
        loser.close()


def test_many_hosts_banning_one_address_at_once_open_one_ban(postgres_url: str) -> None:
    hosts = [Ledger(postgres_url, node=f"host{n}") for n in range(8)]
    hosts[0].upgrade()
    start = threading.Barrier(len(hosts), timeout=WAIT)
    errors: list[BaseException] = []

    def record(ledger: Ledger) -> None:
        try:
            behind = failure()
            start.wait()
            ledger.record([behind], [ban(behind=behind)], {}, T0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(h,)) for h in hosts]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 3)
        assert errors == [] and not any(t.is_alive() for t in threads)
        with hosts[0].transaction() as session:
            (only,) = session.scalars(select(Ban.id)).all()
            assert session.scalars(select(FailureRow.ban_id)).all() == [only] * len(hosts)
    finally:
        for host in hosts:
            host.close()


# --- moving a host's SQLite ledger into PostgreSQL


def fill(ledger: Ledger) -> None:
    """A few hundred failures and bans of every kind, positions of two nodes, heals."""
    for n in range(300):
        address = f"198.51.{n // 200}.{n % 200}"
        first, second = failure(address), failure(address)
        now = T0 + timedelta(minutes=n)
        if n % 2:
            ledger.record([first, second], [], {}, now)
            continue
        seconds = 60 if n % 4 else 86400
        decision = BanDecision("wplogin", address, now, now + timedelta(seconds=seconds), f"ban {n}", (first, second))
        ledger.record([first, second], [decision], {"file:/var/log/x.log": Position(1, n)}, now)
        if n % 8 == 0:
            ledger.expire_bans(now + timedelta(days=2))
    ledger.record_heal("iptables", 2, 1, True, "+2 -1", T0)
    other = Ledger(ledger.url, node="other")
    other.record([], [], {"journal": JournalCursor("s=x;i=1")}, T0)
    other.close()


def rows_of(ledger: Ledger) -> dict[str, list[tuple[object, ...]]]:
    with ledger.engine.connect() as connection:
        return {t.name: [tuple(r) for r in connection.execute(select(t).order_by(*t.primary_key.columns))]
                for t in ledger_tables(connection)}


def test_db_copy_moves_every_row_into_postgresql(postgres_url: str, tmp_path: Path) -> None:
    source = Ledger(f"sqlite:///{tmp_path}/ledger.db", node="web1")
    source.upgrade()
    fill(source)
    config = tmp_path / "c.toml"
    config.write_text(f'[ledger]\nurl = "{source.url}"\n\n[node]\nname = "web1"\n')

    result = CliRunner().invoke(main, ["db", "copy", "--to", postgres_url, "-c", str(config)])

    assert result.exit_code == 0, result.output
    assert "600 failures" in result.output and "150 bans" in result.output
    target = Ledger(postgres_url, node="web1")
    try:
        expected, copied = rows_of(source), rows_of(target)
        assert set(copied) == {"bans", "failures", "heals", "source_positions", "spool_deliveries"} <= set(expected)
        assert copied == expected
        assert sum(1 for r in copied["failures"] if r[-1] is not None) > 0
        target.prepare()
        assert target.positions() == source.positions() and target.cursor("journal") is None
        before = max(r[0] for r in copied["bans"])
        target.record(*failure_and_ban("192.0.2.200"), {}, T0)  # the sequences moved past the copied ids
        with target.transaction() as session:
            assert session.scalar(select(func.max(Ban.id))) == before + 1
        again = CliRunner().invoke(main, ["db", "copy", "--to", postgres_url, "-c", str(config)])
        assert again.exit_code == 1 and "not empty" in again.output
    finally:
        source.close()
        target.close()


def test_a_host_with_only_the_documented_grants_runs(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """The GRANTs of docs/ledger-postgresql.md are enough for a host, and keep DDL from it."""
    url = postgres_server.create_database()
    database = make_url(url).database
    owner = Ledger(url)
    owner.upgrade()
    owner.close()
    host_role = f"{database}_host"
    postgres_server.psql(f"CREATE ROLE {host_role} NOLOGIN; CREATE ROLE {database}_web1 LOGIN IN ROLE {host_role}")
    postgres_server.psql(
        f"GRANT CONNECT ON DATABASE {database} TO {host_role}; GRANT USAGE ON SCHEMA public TO {host_role}; "
        f"GRANT SELECT, INSERT, UPDATE ON failures, bans, heals, source_positions TO {host_role}; "
        f"GRANT SELECT ON alembic_version TO {host_role}; "
        f"GRANT USAGE ON SEQUENCE failures_id_seq, bans_id_seq, heals_id_seq TO {host_role}", database)
    host = Ledger(url.replace(f"://{USER}@", f"://{database}_web1@"), node="web1")
    try:
        host.prepare()
        host.record(*failure_and_ban(seconds=10), {"file:/x": Position(1, 1)}, T0)
        host.record([], [], {"file:/x": Position(1, 2)}, T0)
        host.record_heal("iptables", 1, 0, False, "", T0)
        assert [b.address for b in host.expire_bans(T0 + timedelta(minutes=1))] == ["203.0.113.9"]
        assert host.positions() == {"file:/x": Position(1, 2)}
        with pytest.raises(ProgrammingError, match="must be owner"), host.engine.begin() as connection:
            connection.execute(text("ALTER TABLE bans ADD COLUMN intruder integer"))
    finally:
        host.close()
