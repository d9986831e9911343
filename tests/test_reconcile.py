from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from journalban.events import BanDecision, Failure
from journalban.firewall.base import Actual, Diff, JailLayout
from journalban.firewall.memory import MemoryFirewall
from journalban.ledger.store import Ledger
from journalban.reconcile import Enforcement, Reconciler, diff

T0 = datetime(2026, 4, 23, 10, 0, tzinfo=UTC)
JAILS = (JailLayout("wplogin"),)


def test_diff_is_only_the_difference() -> None:
    desired = frozenset({("wplogin", "203.0.113.9"), ("wplogin", "2001:db8::1")})
    actual = Actual(frozenset({("wplogin", "203.0.113.9"), ("wplogin", "198.51.100.1")}), layout_ok=True)
    assert diff(desired, actual) == Diff(add=frozenset({("wplogin", "2001:db8::1")}),
                                         remove=frozenset({("wplogin", "198.51.100.1")}))
    assert not diff(desired, Actual(desired, layout_ok=True))
    assert diff(desired, Actual(desired, layout_ok=False)) == Diff(repair_layout=True)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.upgrade()
    firewall, clock = MemoryFirewall(), Clock()
    yield ledger, firewall, clock, Reconciler(ledger, [Enforcement(firewall, JAILS)], clock)
    ledger.close()


def ban(ledger: Ledger, address: str, seconds: int) -> None:
    failure = Failure("wplogin", address, T0, "g/r", "text", "test")
    decision = BanDecision("wplogin", address, T0, T0 + timedelta(seconds=seconds), "why", (failure,))
    ledger.record([failure], [decision], {}, T0)


def test_a_rule_removed_by_hand_comes_back_and_an_expired_ban_goes(setup) -> None:  # type: ignore[no-untyped-def]
    ledger, firewall, clock, reconciler = setup
    ban(ledger, "203.0.113.9", 600)
    ban(ledger, "2001:db8::7", 60)
    result = reconciler.run()
    assert firewall.entries == {("wplogin", "203.0.113.9"), ("wplogin", "2001:db8::7")}
    assert result.next_expiry == T0 + timedelta(seconds=60)

    firewall.entries.discard(("wplogin", "203.0.113.9"))  # drift: someone deleted the rule
    firewall.entries.add(("wplogin", "198.51.100.1"))  # and added one journalban never decided
    assert reconciler.run().applied == (Diff(add=frozenset({("wplogin", "203.0.113.9")}),
                                             remove=frozenset({("wplogin", "198.51.100.1")})),)
    assert firewall.entries == {("wplogin", "203.0.113.9"), ("wplogin", "2001:db8::7")}

    clock.now = T0 + timedelta(seconds=61)
    result = reconciler.run()
    assert result.expired == 1
    assert firewall.entries == {("wplogin", "203.0.113.9")}
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.9"]


def test_nothing_applied_when_in_order(setup) -> None:  # type: ignore[no-untyped-def]
    ledger, firewall, _clock, reconciler = setup
    ban(ledger, "203.0.113.9", 600)
    reconciler.run()
    assert not reconciler.run().healed
    assert len(firewall.applied) == 1
