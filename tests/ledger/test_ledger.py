import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from journalban import paths
from journalban.events import BanDecision, Failure
from journalban.ledger import store
from journalban.ledger.engine import WAL_CHECKPOINT_PAGES
from journalban.ledger.models import Ban, Heal
from journalban.ledger.models import Failure as FailureRow
from journalban.ledger.store import Ledger
from journalban.sources.files import Position
from journalban.sources.journal import JournalCursor

T0 = datetime(2026, 4, 23, 10, 0, tzinfo=UTC)


def failure(address: str = "203.0.113.9", text: str = "IP locked out: 203.0.113.9") -> Failure:
    return Failure(jail="wplogin", address=address, time=T0, rule="wp-limit-login/lockout", text=text,
                   source="file:/var/log/x.log")


def ban(address: str = "203.0.113.9", seconds: int = 600, behind: Failure | None = None) -> BanDecision:
    return BanDecision(jail="wplogin", address=address, start=T0, expiry=T0 + timedelta(seconds=seconds),
                       reason=f"1 failure in 600s: IP locked out: {address}", failures=(behind or failure(address),))


def failure_and_ban(address: str = "203.0.113.9", seconds: int = 600) -> tuple[list[Failure], list[BanDecision]]:
    """A failure and the ban it opens, as the detector hands them over (the same object)."""
    behind = failure(address)
    return [behind], [ban(address, seconds, behind)]


def test_migration_creates_the_documented_tables(ledger: Ledger) -> None:
    tables = set(inspect(ledger.engine).get_table_names())
    assert {"bans", "failures", "source_positions", "heals", "alembic_version"} <= tables
    assert ledger.revision() == ScriptDirectory(str(paths.MIGRATIONS)).get_current_head()
    ledger.upgrade()  # a second upgrade is a no-op


def test_the_one_active_ban_index_is_partial_and_unique(ledger: Ledger) -> None:
    (index,) = [i for i in inspect(ledger.engine).get_indexes("bans") if i["name"] == "ux_bans_active"]
    assert index["unique"] and index["column_names"] == ["jail", "address"]
    where = index.get("dialect_options", {}).get(f"{ledger.engine.dialect.name}_where")
    assert "ended_at IS NULL" in str(where)
    row = {"jail": "j", "address": "192.0.2.1", "started_at": T0, "expires_at": T0, "reason": "r", "node": "n"}
    with ledger.engine.begin() as connection:
        connection.execute(insert(Ban), [{**row, "ended_at": T0}, {**row, "ended_at": T0}, {**row, "ended_at": None}])
    with pytest.raises(IntegrityError), ledger.engine.begin() as connection:
        connection.execute(insert(Ban), [{**row, "ended_at": None}])


def test_sqlite_runs_in_wal_mode_and_stores_readable_utc(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/sub/ledger.db")
    ledger.upgrade()
    ledger.record(*failure_and_ban(), {}, T0)
    ledger.close()
    db = sqlite3.connect(tmp_path / "sub/ledger.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with ledger.engine.connect() as connection:  # the daemon's own connections checkpoint less often
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA wal_autocheckpoint").scalar() == WAL_CHECKPOINT_PAGES
        assert pragma("PRAGMA journal_size_limit").scalar() == WAL_CHECKPOINT_PAGES * 4096
    assert db.execute("SELECT started_at, expires_at FROM bans").fetchone() == (
        "2026-04-23 10:00:00.000000", "2026-04-23 10:10:00.000000")
    db.close()


def test_record_links_failures_to_their_ban_and_keeps_position(ledger: Ledger) -> None:
    ledger.record(*failure_and_ban(), {"file:/var/log/x.log": Position(42, 1000)}, T0)
    with ledger.transaction() as session:
        (f, b) = session.execute(select(FailureRow, Ban).join(Ban, FailureRow.ban_id == Ban.id)).one()
        assert (b.address, b.reason, b.started_at, b.expires_at, f.rule, f.text, f.occurred_at) == (
            "203.0.113.9", "1 failure in 600s: IP locked out: 203.0.113.9", T0, T0 + timedelta(minutes=10),
            "wp-limit-login/lockout", "IP locked out: 203.0.113.9", T0)
    with ledger.engine.connect() as connection:  # plain SQL sees naive UTC
        assert connection.scalar(text("SELECT started_at FROM bans")) in (T0.replace(tzinfo=None),
                                                                           "2026-04-23 10:00:00.000000")
    assert ledger.positions() == {"file:/var/log/x.log": Position(42, 1000)}
    ledger.record([], [], {"file:/var/log/x.log": Position(42, 2000)}, T0)
    assert ledger.positions() == {"file:/var/log/x.log": Position(42, 2000)}


def test_journal_cursor_is_kept(ledger: Ledger) -> None:
    assert ledger.cursor("journal") is None
    ledger.record([], [], {"journal": JournalCursor("s=1;i=2")}, T0)
    ledger.record([], [], {"journal": JournalCursor("s=1;i=3")}, T0)
    assert ledger.cursor("journal") == JournalCursor("s=1;i=3")
    assert ledger.positions() == {}


def test_matched_text_is_cut_at_1_kib(ledger: Ledger) -> None:
    ledger.record([failure(text="x" * 100_000)], [], {}, T0)
    (stored,) = ledger.open_failures(T0 - timedelta(seconds=1))
    assert len(stored.text) == 1024


def test_active_bans_expire(ledger: Ledger) -> None:
    ledger.record(*failure_and_ban(seconds=10), {}, T0)
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.9"]
    assert ledger.expire_bans(T0 + timedelta(seconds=9)) == []
    assert [b.address for b in ledger.expire_bans(T0 + timedelta(seconds=10))] == ["203.0.113.9"]
    assert ledger.active_bans() == []
    with ledger.transaction() as session:
        row = session.scalars(select(Ban)).one()
        assert (row.end_reason, row.ended_at) == ("expired", T0 + timedelta(seconds=10))


def test_a_ban_already_in_force_is_not_opened_twice(ledger: Ledger) -> None:
    """A second decision for the same jail and address joins the ban in force: its failures are
    linked to it, and nothing is raised (another host, or an operator, opened it first)."""
    ledger.record(*failure_and_ban(), {}, T0)
    ledger.record(*failure_and_ban(), {"file:/x": Position(1, 10)}, T0 + timedelta(seconds=1))
    with ledger.transaction() as session:
        (only,) = session.scalars(select(Ban)).all()
        assert session.scalars(select(FailureRow.ban_id)).all() == [only.id, only.id]
    assert ledger.positions() == {"file:/x": Position(1, 10)}
    ledger.expire_bans(T0 + timedelta(hours=1))
    ledger.record(*failure_and_ban(), {}, T0 + timedelta(hours=1))  # a new ban after the old one ended
    assert len(ledger.ban_counts()) == 1 and ledger.ban_counts()[("wplogin", "203.0.113.9")] == 2


def test_a_ban_past_its_time_but_not_yet_lifted_ends_before_the_next(ledger: Ledger) -> None:
    ledger.record(*failure_and_ban(seconds=10), {}, T0)
    later = T0 + timedelta(seconds=20)
    behind = failure()
    decision = BanDecision("wplogin", "203.0.113.9", later, later + timedelta(minutes=10), "again", (behind,))
    ledger.record([behind], [decision], {}, later)
    assert [b.reason for b in ledger.active_bans()] == ["again"]
    with ledger.transaction() as session:
        assert session.scalars(select(Ban.end_reason).order_by(Ban.id)).all() == ["expired", None]


def test_open_failures_exclude_those_behind_a_ban(ledger: Ledger) -> None:
    ledger.record([failure("198.51.100.7")], [], {}, T0)
    ledger.record(*failure_and_ban(), {}, T0)
    assert [f.address for f in ledger.open_failures(T0 - timedelta(minutes=10))] == ["198.51.100.7"]


def test_a_failed_transaction_keeps_nothing(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger.record(*failure_and_ban(), {"file:/x": Position(1, 10)}, T0)

    def broken(*_args: object) -> None:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(ledger, "_link", broken)
    with pytest.raises(RuntimeError):
        ledger.record([failure("198.51.100.7")], [ban("198.51.100.7")], {"file:/x": Position(1, 99)}, T0)
    assert ledger.positions() == {"file:/x": Position(1, 10)}
    assert ledger.open_failures(T0 - timedelta(minutes=1)) == []
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.9"]


def test_failures_of_earlier_batches_are_linked_to_the_ban_they_open(ledger: Ledger) -> None:
    first, second = failure(), failure()
    ledger.record([first], [], {}, T0)
    decision = BanDecision("wplogin", "203.0.113.9", T0, T0 + timedelta(minutes=10), "2 failures", (first, second))
    ledger.record([second], [decision], {}, T0)
    assert ledger.open_failures(T0 - timedelta(minutes=1)) == []


def test_a_batch_of_many_failures_gets_its_ids(ledger: Ledger) -> None:
    behind = [failure(f"198.51.100.{n}") for n in range(200)]
    decisions = [ban(f.address, behind=f) for f in behind[::2]]
    ledger.record(behind, decisions, {}, T0)
    with ledger.transaction() as session:
        linked = session.execute(select(FailureRow.address, Ban.address).join(Ban, FailureRow.ban_id == Ban.id))
        pairs = list(linked)
    assert len(pairs) == 100 and all(f == b for f, b in pairs)
    assert len(ledger.open_failures(T0 - timedelta(minutes=1))) == 100


def test_failures_go_in_in_bulk_chunks_with_their_derived_columns_and_bans(ledger: Ledger,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "BULK", 7)  # several chunks, a ban's failure in each
    behind = [failure(f"198.51.100.{n}") for n in range(30)]
    ledger.record(behind, [ban(f.address, behind=f) for f in behind[::3]], {}, T0)
    with ledger.transaction() as session:
        rows = session.execute(select(FailureRow.address, FailureRow.node, FailureRow.day, FailureRow.network,
                                      Ban.address).outerjoin(Ban, FailureRow.ban_id == Ban.id)
                               .order_by(FailureRow.id)).all()
    assert [r[0] for r in rows] == [f.address for f in behind]
    assert all(r[1] == ledger.node and r[2] == "2026-04-23" and r[3] == "198.51.100.0/24" for r in rows)
    assert [r[4] for r in rows] == [f.address if n % 3 == 0 else None for n, f in enumerate(behind)]


def test_ban_counts_and_aggregated_bans(ledger: Ledger) -> None:
    ledger.record(*failure_and_ban("203.0.113.9"), {}, T0)
    ledger.record(*failure_and_ban("203.0.113.10"), {}, T0)
    behind = failure("203.0.113.11")
    subnet = BanDecision("wplogin", "203.0.113.0/24", T0, T0 + timedelta(hours=1), "3 addresses",
                         (behind,), replaces=("203.0.113.9", "203.0.113.10"))
    ledger.record([behind], [subnet], {}, T0)
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.0/24"]
    assert ledger.ban_counts() == {("wplogin", "203.0.113.9"): 1, ("wplogin", "203.0.113.10"): 1,
                                   ("wplogin", "203.0.113.0/24"): 1}


def test_history_bans_replayed_from_old_logs_are_ended(ledger: Ledger) -> None:
    ledger.record(*failure_and_ban(seconds=10), {}, T0 + timedelta(days=1))
    ledger.record(*failure_and_ban(seconds=10), {}, T0 + timedelta(days=1))  # history: never in force
    assert ledger.active_bans() == []
    assert ledger.ban_counts() == {("wplogin", "203.0.113.9"): 2}


def test_heals_are_recorded(ledger: Ledger) -> None:
    ledger.record_heal("iptables", 2, 1, True, "+2 -1 repair-layout", T0)
    with ledger.transaction() as session:
        row = session.scalars(select(Heal)).one()
        assert (row.backend, row.restored, row.removed, row.layout_repaired, row.healed_at) == (
            "iptables", 2, 1, True, T0)


def test_retention_purges_old_failures_and_keeps_bans(ledger: Ledger) -> None:
    old = Failure("wplogin", "198.51.100.7", T0 - timedelta(days=40), "g/r", "old", "test")
    ledger.record([old], [], {}, T0)
    ledger.record(*failure_and_ban(), {}, T0)
    assert ledger.purge_failures(T0 - timedelta(days=30)) == 1
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.9"]
    assert ledger.purge_failures(T0 - timedelta(days=30)) == 0


def test_ban_expiries_are_the_active_bans_with_aware_expiries(ledger: Ledger) -> None:
    """What a starting detector reads, fast, must say what active_bans says."""
    for address, seconds in (("203.0.113.9", 600), ("198.51.100.7", 60), ("2001:db8::1", 3600)):
        failures, bans = failure_and_ban(address, seconds)
        ledger.record(failures, bans, {}, T0)
    ledger.expire_bans(T0 + timedelta(seconds=61))  # 198.51.100.7's is over
    expected = sorted((b.jail, b.address, b.expires_at) for b in ledger.active_bans())
    found = sorted(ledger.ban_expiries())
    assert found == expected
    assert [a for _, a, _ in found] == ["2001:db8::1", "203.0.113.9"]
    assert all(expiry.tzinfo is UTC for _, _, expiry in found)
