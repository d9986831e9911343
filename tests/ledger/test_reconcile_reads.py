"""What the reconciler reads and ends at every run, on SQLite and PostgreSQL: only what it
needs (``enforced_bans``) and every due ban in one statement (``expire_bans``)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from journalban.events import BanDecision, Failure
from journalban.ledger.models import Ban
from journalban.ledger.store import Ledger

T0 = datetime(2026, 4, 23, 10, 0, tzinfo=UTC)


def ban(ledger: Ledger, address: str, seconds: int, jail: str = "wplogin") -> None:
    failure = Failure(jail, address, T0, "g/r", "text", "test")
    decision = BanDecision(jail, address, T0, T0 + timedelta(seconds=seconds), "why", (failure,))
    ledger.record([failure], [decision], {}, T0)


def test_enforced_bans_are_what_the_firewall_must_hold_and_the_next_expiry(ledger: Ledger) -> None:
    assert ledger.enforced_bans().entries == frozenset() and ledger.enforced_bans().next_expiry is None
    ban(ledger, "203.0.113.9", 600)
    ban(ledger, "2001:db8::7", 60)
    ban(ledger, "198.51.100.0/24", 30, jail="sshd")
    enforced = ledger.enforced_bans()
    assert enforced.entries == {("wplogin", "203.0.113.9"), ("wplogin", "2001:db8::7"), ("sshd", "198.51.100.0/24")}
    assert enforced.next_expiry == T0 + timedelta(seconds=30)
    assert enforced.entries == {(b.jail, b.address) for b in ledger.active_bans()}


def test_expire_bans_ends_only_those_due_in_one_go(ledger: Ledger) -> None:
    for n in range(30):
        ban(ledger, f"198.51.100.{n}", 60 if n % 3 else 600)
    ended = ledger.expire_bans(T0 + timedelta(seconds=60))
    assert [b.address for b in ended] == [f"198.51.100.{n}" for n in range(30) if n % 3]  # in id order
    assert all(b.expires_at == T0 + timedelta(seconds=60) and b.reason == "why" for b in ended)
    assert ledger.expire_bans(T0 + timedelta(seconds=60)) == []
    assert {a for _, a in ledger.enforced_bans().entries} == {f"198.51.100.{n}" for n in range(0, 30, 3)}
    with ledger.transaction() as session:  # how each ended is recorded
        assert session.scalar(select(func.count()).where(Ban.end_reason == "expired", Ban.ended_at.is_not(None))) == 20
