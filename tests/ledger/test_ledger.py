import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError

from journalban import paths
from journalban.events import BanDecision, Failure
from journalban.ledger.store import Ledger
from journalban.sources.files import Position

T0 = datetime(2026, 4, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path):  # type: ignore[no-untyped-def]
    ledger = Ledger(f"sqlite:///{tmp_path}/sub/ledger.db")
    ledger.upgrade()
    yield ledger
    ledger.close()


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


def test_migration_creates_the_documented_tables_in_wal_mode(ledger: Ledger, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "sub/ledger.db")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"bans", "failures", "source_positions", "heals", "alembic_version"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    head = ScriptDirectory(str(paths.MIGRATIONS)).get_current_head()
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head
    db.close()
    ledger.upgrade()  # a second upgrade is a no-op


def test_record_links_failures_to_their_ban_and_keeps_position(ledger: Ledger, tmp_path: Path) -> None:
    ledger.record(*failure_and_ban(), {"file:/var/log/x.log": Position(42, 1000)}, T0)
    db = sqlite3.connect(tmp_path / "sub/ledger.db")
    row = db.execute("SELECT b.address, b.reason, b.started_at, b.expires_at, f.rule, f.text "
                     "FROM failures f JOIN bans b ON f.ban_id = b.id").fetchone()
    assert row == ("203.0.113.9", "1 failure in 600s: IP locked out: 203.0.113.9",
                   "2026-04-23 10:00:00.000000", "2026-04-23 10:10:00.000000",
                   "wp-limit-login/lockout", "IP locked out: 203.0.113.9")
    db.close()
    assert ledger.positions() == {"file:/var/log/x.log": Position(42, 1000)}
    ledger.record([], [], {"file:/var/log/x.log": Position(42, 2000)}, T0)
    assert ledger.positions() == {"file:/var/log/x.log": Position(42, 2000)}


def test_matched_text_is_cut_at_1_kib(ledger: Ledger) -> None:
    ledger.record([failure(text="x" * 100_000)], [], {}, T0)
    (stored,) = ledger.open_failures(T0 - timedelta(seconds=1))
    assert len(stored.text) == 1024


def test_active_bans_expire(ledger: Ledger, tmp_path: Path) -> None:
    ledger.record(*failure_and_ban(seconds=10), {}, T0)
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.9"]
    assert ledger.expire_bans(T0 + timedelta(seconds=9)) == []
    assert [b.address for b in ledger.expire_bans(T0 + timedelta(seconds=10))] == ["203.0.113.9"]
    assert ledger.active_bans() == []
    db = sqlite3.connect(tmp_path / "sub/ledger.db")
    assert db.execute("SELECT end_reason, ended_at FROM bans").fetchone() == ("expired", "2026-04-23 10:00:10.000000")
    db.close()


def test_one_active_ban_per_jail_and_address_is_a_constraint(ledger: Ledger) -> None:
    ledger.record(*failure_and_ban(), {}, T0)
    with pytest.raises(IntegrityError):
        ledger.record([], [ban()], {}, T0)
    ledger.expire_bans(T0 + timedelta(hours=1))
    ledger.record(*failure_and_ban(), {}, T0 + timedelta(hours=1))  # a new ban after the old one ended


def test_open_failures_exclude_those_behind_a_ban(ledger: Ledger) -> None:
    ledger.record([failure("198.51.100.7")], [], {}, T0)
    ledger.record(*failure_and_ban(), {}, T0)
    assert [f.address for f in ledger.open_failures(T0 - timedelta(minutes=10))] == ["198.51.100.7"]


def test_a_failed_transaction_keeps_nothing(ledger: Ledger) -> None:
    ledger.record(*failure_and_ban(), {"file:/x": Position(1, 10)}, T0)
    with pytest.raises(IntegrityError):  # the duplicate ban fails the whole batch
        ledger.record([failure("198.51.100.7")], [ban()], {"file:/x": Position(1, 99)}, T0)
    assert ledger.positions() == {"file:/x": Position(1, 10)}
    assert ledger.open_failures(T0 - timedelta(minutes=1)) == []


def test_failures_of_earlier_batches_are_linked_to_the_ban_they_open(ledger: Ledger) -> None:
    first, second = failure(), failure()
    ledger.record([first], [], {}, T0)
    decision = BanDecision("wplogin", "203.0.113.9", T0, T0 + timedelta(minutes=10), "2 failures", (first, second))
    ledger.record([second], [decision], {}, T0)
    assert ledger.open_failures(T0 - timedelta(minutes=1)) == []


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


def test_heals_are_recorded(ledger: Ledger, tmp_path: Path) -> None:
    ledger.record_heal("iptables", 2, 1, True, "+2 -1 repair-layout", T0)
    db = sqlite3.connect(tmp_path / "sub/ledger.db")
    assert db.execute("SELECT backend, restored, removed, layout_repaired FROM heals").fetchall() == [
        ("iptables", 2, 1, 1)]
    db.close()
