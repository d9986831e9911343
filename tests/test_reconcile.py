import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalban import reconcile
from journalban.events import BanDecision, Failure
from journalban.firewall.base import Actual, Diff, Entry, FirewallError, JailLayout
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


ENTRIES = st.frozensets(st.sampled_from([("wplogin", f"203.0.113.{i}") for i in range(12)]))


@given(st.none() | ENTRIES, ENTRIES, ENTRIES, st.booleans())
def test_compare_finds_the_drift_and_the_diff_their_definitions_give(
        previous: frozenset[Entry] | None, desired: frozenset[Entry], held: frozenset[Entry], layout_ok: bool) -> None:
    """Drift: what journalban had applied and still wants but is gone, and what is there that it
    never applied nor wants (all of what is missing or extra before a first run); diff: the
    difference both ways. ``compare`` reaches them by another road, on a set or a frozenset."""
    for entries in (held, set(held)):
        found, change = reconcile.compare(previous, desired, Actual(entries, layout_ok))
        if previous is None:
            assert (found.restored, found.removed, found.layout) == (desired - held, held - desired, False)
        else:
            assert (found.restored, found.removed, found.layout) == (
                (desired & previous) - held, held - previous - desired, not layout_ok)
        assert change == Diff(add=desired - held, remove=held - desired, repair_layout=not layout_ok)
        assert isinstance(found.removed, frozenset) and isinstance(change.remove, frozenset)


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
    assert not reconciler.run().applied
    assert len(firewall.applied) == 1


def test_only_its_jails_are_read_and_the_ledger_written_only_when_a_ban_is_due(  # type: ignore[no-untyped-def]
        setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reconcile reads the bans of the jails it enforces, and ends bans only when one of
    them is due (a busy fleet wakes it many times a second); a jail no host runs any more
    has its bans ended by the sweep."""
    ledger, firewall, clock, reconciler = setup
    ban(ledger, "203.0.113.9", 600)
    gone = Failure("retired", "198.51.100.1", T0, "g/r", "text", "test")  # a jail no longer configured
    ledger.record([gone], [BanDecision("retired", gone.address, T0, T0 + timedelta(seconds=30), "why", (gone,))],
                  {}, T0)
    result = reconciler.run()
    assert firewall.entries == {("wplogin", "203.0.113.9")}
    assert result.next_expiry == T0 + timedelta(seconds=600)  # the retired jail's ban sets no timer here
    clock.now = T0 + timedelta(seconds=31)
    assert reconciler.run().expired == 0  # nothing of its own due: no write
    assert {b.jail for b in ledger.active_bans()} == {"wplogin", "retired"}
    monkeypatch.setattr(reconcile, "EXPIRE_SWEEP", 0.0)
    assert reconciler.run().expired == 1  # the sweep
    assert {b.jail for b in ledger.active_bans()} == {"wplogin"}
    monkeypatch.setattr(reconcile, "EXPIRE_SWEEP", 3600.0)
    clock.now = T0 + timedelta(seconds=601)
    assert reconciler.run().expired == 1 and firewall.entries == set()  # its own: lifted when due


def heals(tmp_path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(tmp_path / "ledger.db")
    try:
        return db.execute("SELECT backend, restored, removed, layout_repaired FROM heals ORDER BY id").fetchall()
    finally:
        db.close()


def test_drift_is_recorded_in_the_ledger_but_ordinary_changes_are_not(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger, firewall, clock, reconciler = setup
    reconciler.run()  # the first run since start
    ban(ledger, "203.0.113.9", 600)
    reconciler.run()  # a new ban: no drift
    ban(ledger, "198.51.100.1", 60)
    reconciler.run()
    clock.now = T0 + timedelta(seconds=61)
    reconciler.run()  # an expiry: no drift
    assert heals(tmp_path) == []
    firewall.entries.clear()
    firewall.entries.add(("wplogin", "192.0.2.66"))
    firewall.jails.clear()  # chain gone too
    result = reconciler.run()
    assert result.healed and firewall.entries == {("wplogin", "203.0.113.9")}
    assert heals(tmp_path) == [("dry-run", 1, 1, 1)]


def test_bans_lost_to_a_reboot_are_recorded_as_healed_at_start(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger, firewall, clock, _ = setup
    ban(ledger, "203.0.113.9", 600)
    Reconciler(ledger, [Enforcement(firewall, JAILS)], clock).run()
    assert heals(tmp_path) == [("dry-run", 1, 0, 0)]


class BrokenFirewall(MemoryFirewall):
    """The in-memory firewall with a tool that fails, as a missing kernel module would."""

    def apply(self, jails, diff):  # type: ignore[no-untyped-def]
        raise FirewallError("iptables-restore exited 1: can't initialize iptables table 'filter'")


def test_a_failed_apply_is_reported_and_the_ban_kept(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger, firewall, clock, _ = setup
    ban(ledger, "203.0.113.9", 600)
    result = Reconciler(ledger, [Enforcement(BrokenFirewall(), JAILS), Enforcement(firewall, JAILS)], clock).run()
    assert result.failed
    assert firewall.entries == {("wplogin", "203.0.113.9")}  # the other backend went on
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.9"]


class SettlingFirewall(MemoryFirewall):
    """The in-memory firewall whose first listing after an apply is short, as a netlink dump
    of an nftables hash set still being resized after a large apply can be."""

    def __init__(self) -> None:
        super().__init__()
        self.short_reads = 0
        self.reads = 0

    def apply(self, jails, diff):  # type: ignore[no-untyped-def]
        super().apply(jails, diff)
        self.short_reads = 1

    def read(self, jails):  # type: ignore[no-untyped-def]
        self.reads += 1
        actual = super().read(jails)
        if self.short_reads:
            self.short_reads -= 1
            return Actual(frozenset(sorted(actual.entries)[: len(actual.entries) // 2]), actual.layout_ok)
        return actual


def test_a_short_listing_after_an_apply_is_read_again_not_recorded_as_drift(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger, _firewall, clock, _ = setup
    for n in range(40):
        ban(ledger, f"198.51.100.{n}", 600)
    firewall = SettlingFirewall()
    reconciler = Reconciler(ledger, [Enforcement(firewall, JAILS)], clock)
    reconciler.run()  # the start: all 40 applied (and recorded as restored after a "reboot")
    before = heals(tmp_path)
    result = reconciler.run()  # its first listing shows 20 of 40
    assert firewall.reads == 3  # the short listing, then one more that showed all 40
    assert not result.healed and not result.applied and heals(tmp_path) == before
    assert len(firewall.entries) == 40


def test_entries_that_stay_missing_are_drift_after_the_second_looks(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger, firewall, _clock, reconciler = setup
    ban(ledger, "203.0.113.9", 600)
    reconciler.run()
    firewall.entries.clear()
    result = reconciler.run()
    assert [len(d.restored) for d in result.healed] == [1]
    assert heals(tmp_path)[-1] == ("dry-run", 1, 0, 0)


class CountingLedger(Ledger):
    """The real ledger, counting the reads of every ban in force."""

    reads = 0

    def enforced_bans(self, jails=None):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().enforced_bans(jails)


def test_new_bans_go_in_by_themselves_and_the_next_run_finds_no_drift(tmp_path: Path) -> None:
    ledger = CountingLedger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.upgrade()
    firewall, clock = MemoryFirewall(), Clock()
    reconciler = Reconciler(ledger, [Enforcement(firewall, JAILS)], clock)
    try:
        ban(ledger, "203.0.113.9", 600)
        assert not reconciler.add({("wplogin", "203.0.113.9")})  # no whole run yet since start
        assert not firewall.entries
        reconciler.run()
        reads = ledger.reads

        ban(ledger, "198.51.100.4", 600)
        assert reconciler.add({("wplogin", "198.51.100.4"), ("other", "192.0.2.1")})  # another backend's jail: not here
        assert firewall.entries == {("wplogin", "203.0.113.9"), ("wplogin", "198.51.100.4")}
        assert firewall.applied[-1] == Diff(add=frozenset({("wplogin", "198.51.100.4")}))
        applied = len(firewall.applied)
        assert reconciler.add({("wplogin", "198.51.100.4"), ("wplogin", "203.0.113.9")})  # already there
        assert len(firewall.applied) == applied
        assert ledger.reads == reads  # the ledger was not read

        result = reconciler.run()
        assert not result.healed and not result.applied  # what add put in is known, not drift
    finally:
        ledger.close()


def test_add_leaves_a_damaged_layout_or_a_failed_backend_to_a_whole_run(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger, firewall, clock, reconciler = setup
    reconciler.run()
    ban(ledger, "203.0.113.9", 600)
    firewall.jails.clear()  # the jail's chain is gone
    assert not reconciler.add({("wplogin", "203.0.113.9")})
    assert not firewall.entries
    reconciler.run()
    assert firewall.entries == {("wplogin", "203.0.113.9")}

    failing = FailingFirewall()
    later = Reconciler(ledger, [Enforcement(failing, JAILS)], clock)
    later.run()
    failing.failing = True
    ban(ledger, "198.51.100.4", 600)
    assert not later.add({("wplogin", "198.51.100.4")})
    assert ("wplogin", "198.51.100.4") not in failing.entries


class FailingFirewall(MemoryFirewall):
    """The in-memory firewall whose tool starts failing when the test says."""

    failing = False

    def apply(self, jails, diff):  # type: ignore[no-untyped-def]
        if self.failing:
            raise FirewallError("iptables-restore exited 4: resource temporarily unavailable")
        super().apply(jails, diff)
