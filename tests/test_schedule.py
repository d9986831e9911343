"""Wakes that arrive while a reconcile runs: one more run covers them all, none is lost."""

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from journalban.events import BanDecision, Failure
from journalban.firewall.base import JailLayout
from journalban.firewall.memory import MemoryFirewall
from journalban.ledger.store import Ledger
from journalban.reconcile import Enforcement, Reconciler
from journalban.schedule import EXPIRY_GAP, ReconcileSchedule
from tests.test_reconcile import CountingLedger

T0 = datetime.now(UTC)


class SlowFirewall(MemoryFirewall):
    """The dry-run firewall, holding each read until the test lets it go: a run in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.reading = threading.Event()
        self.go_on = threading.Event()

    def read(self, jails):  # type: ignore[no-untyped-def]
        self.reads += 1
        self.reading.set()
        assert self.go_on.wait(10)
        return super().read(jails)


def ban(ledger: Ledger, address: str) -> None:
    failure = Failure("wplogin", address, T0, "g/r", "text", "test")
    ledger.record([failure], [BanDecision("wplogin", address, T0, T0 + timedelta(hours=1), "why", (failure,))],
                  {}, T0)


def test_wakes_during_a_run_give_one_more_run_that_sees_every_ban(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.upgrade()
    firewall = SlowFirewall()
    reconciler = Reconciler(ledger, [Enforcement(firewall, (JailLayout("wplogin"),))], lambda: datetime.now(UTC))
    schedule = ReconcileSchedule(reconciler, 3600)
    try:
        ban(ledger, "203.0.113.1")
        first = threading.Thread(target=schedule._run)
        first.start()
        assert firewall.reading.wait(10)  # the first run has read the ledger and is in the firewall
        waking = []
        for n in range(2, 12):  # ten bans, each followed by its wake, while that run is held
            ban(ledger, f"203.0.113.{n}")
            waking.append(threading.Thread(target=schedule._run))
            waking[-1].start()
        for thread in waking:
            thread.join(10)
            assert not thread.is_alive()  # a wake during a run returns at once: nothing queues
        firewall.go_on.set()
        first.join(10)
        assert firewall.reads == 2  # the held run, then one more for all ten wakes
        assert firewall.entries == {("wplogin", f"203.0.113.{n}") for n in range(1, 12)}

        ban(ledger, "203.0.113.99")  # and once idle, a wake runs again
        schedule._run()
        assert firewall.reads == 3 and ("wplogin", "203.0.113.99") in firewall.entries
    finally:
        firewall.go_on.set()
        ledger.close()


def decision(address: str, seconds: float, replaces: tuple[str, ...] = ()) -> BanDecision:
    now = datetime.now(UTC)
    failure = Failure("wplogin", address, now, "g/r", "text", "test")
    return BanDecision("wplogin", address, now, now + timedelta(seconds=seconds), "why", (failure,), replaces)


def test_new_bans_go_in_without_a_whole_run_and_arm_their_expiry(tmp_path: Path) -> None:
    ledger = CountingLedger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.upgrade()
    firewall = MemoryFirewall()
    schedule = ReconcileSchedule(Reconciler(ledger, [Enforcement(firewall, (JailLayout("wplogin"),))],
                                            lambda: datetime.now(UTC)), 30)
    schedule.scheduler.start(paused=True)
    try:
        schedule._run()  # the whole run at start
        reads = ledger.reads
        first = decision("203.0.113.1", 10)
        ledger.record(list(first.failures), [first], {}, first.start)
        schedule.add([first])
        schedule._run(whole=False)  # what the "reconcile-new" job runs
        assert firewall.entries == {("wplogin", "203.0.113.1")}
        assert ledger.reads == reads
        expiry = schedule.scheduler.get_job("reconcile-expiry")
        assert expiry is not None and expiry.next_run_time == first.expiry + timedelta(milliseconds=50)

        schedule.add([decision("203.0.113.2", 20)])  # expires later: the armed run comes first
        assert schedule.scheduler.get_job("reconcile-expiry").next_run_time == expiry.next_run_time
        sooner = decision("203.0.113.3", 5)
        schedule.add([sooner])
        assert schedule.scheduler.get_job("reconcile-expiry").next_run_time == sooner.expiry + timedelta(
            milliseconds=50)
        schedule.add([decision("203.0.113.4", 3600)])  # past the interval: the interval's run will see it
        assert schedule.scheduler.get_job("reconcile-expiry").next_run_time == sooner.expiry + timedelta(
            milliseconds=50)

        schedule._run()  # a whole run due takes the new bans with it: one ledger read, no add
        assert ledger.reads == reads + 1 and not schedule._new

        schedule.add([decision("203.0.113.5", -1)])  # decided on old lines: history, never enforced
        assert not schedule._new
        assert schedule.scheduler.get_job("reconcile-now") is None
        schedule.add([decision("203.0.113.0/24", 600, replaces=("203.0.113.1",))])  # lifts host bans: whole
        assert not schedule._new and schedule.scheduler.get_job("reconcile-now") is not None
    finally:
        schedule.scheduler.shutdown(wait=False)
        ledger.close()


def test_expiries_close_to_the_last_whole_run_wait_for_the_gap(tmp_path: Path) -> None:
    """Each whole run compares every ban in force: bans expiring one after another (a botnet's
    worth) are lifted together, a run at most every EXPIRY_GAP, not one run per expiry."""
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.upgrade()
    schedule = ReconcileSchedule(Reconciler(ledger, [Enforcement(MemoryFirewall(), (JailLayout("wplogin"),))],
                                            lambda: datetime.now(UTC)), 30)
    schedule.scheduler.start(paused=True)
    try:
        schedule._run()
        began = schedule._whole_run
        assert began is not None
        schedule.add([decision("203.0.113.1", 0.2)])
        assert schedule.scheduler.get_job("reconcile-expiry").next_run_time == began + EXPIRY_GAP
    finally:
        schedule.scheduler.shutdown(wait=False)
        ledger.close()


def test_the_run_at_start_arms_the_expiry_of_a_ban_in_force_across_a_restart(tmp_path: Path) -> None:
    """A ban recorded before a restart, ending before the first interval: the whole run
    at start finds it and arms a run for its expiry, so it is lifted on time."""
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.upgrade()
    soon = decision("203.0.113.7", 3)
    ledger.record(list(soon.failures), [soon], {}, soon.start)
    firewall = MemoryFirewall()
    schedule = ReconcileSchedule(Reconciler(ledger, [Enforcement(firewall, (JailLayout("wplogin"),))],
                                            lambda: datetime.now(UTC)), 3600)
    try:
        result = schedule.run_at_start()
        assert firewall.entries == {("wplogin", "203.0.113.7")}
        assert result.next_expiry == soon.expiry
        expiry = schedule.scheduler.get_job("reconcile-expiry")  # pending: the scheduler starts after
        assert expiry is not None and expiry.trigger.run_date == soon.expiry + timedelta(milliseconds=50)
        schedule.start()
        deadline = soon.expiry + timedelta(seconds=10)
        while firewall.entries and datetime.now(UTC) < deadline:
            threading.Event().wait(0.05)
        assert not firewall.entries  # lifted by the armed run, an hour before the interval's
        assert not ledger.active_bans()
    finally:
        schedule.scheduler.shutdown(wait=False)
        ledger.close()
