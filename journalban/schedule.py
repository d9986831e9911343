"""The APScheduler jobs that drive the reconciler.

Three triggers of a whole run: every ``interval`` (the safety net that heals
drift), at once after a ban is lifted or any other change, and at the next ban's
expiry so a ban is lifted on time rather than up to an interval late. New bans
need no whole run: ``add`` puts them in by themselves (``Reconciler.add``) and
arms their expiry.
"""

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from journalban.events import BanDecision
from journalban.firewall.base import Entry
from journalban.reconcile import Reconciler, ReconcileResult

log = logging.getLogger(__name__)
RETRY_FIRST = 1.0  # seconds before the first retry of a failed reconcile
EXPIRY_LATE = timedelta(milliseconds=50)  # a run for an expiry comes this long after it
# ... and no sooner than this after the last whole run began. Each run compares every ban in
# force: with 100,000 bans expiring over 20 s, one run per expiry made 111 runs back to back
# (20.7 s of a core, the GIL taken from the event loop); bans due within a second of each
# other are lifted together instead, at most a second late.
EXPIRY_GAP = timedelta(seconds=1)


class ReconcileSchedule:
    def __init__(self, reconciler: Reconciler, interval: int) -> None:
        self.reconciler = reconciler
        self.interval = interval
        self._backoff = RETRY_FIRST
        # One run at a time: a trigger that comes while a run is on marks the ledger
        # dirty and returns, and the running one goes round once more. Queued instances
        # would each run in full after it (a busy fleet wakes us tens of times a second)
        # and, past max_instances, APScheduler would drop the wake that a new ban sent.
        self._state = threading.Lock()
        self._running = False
        self._dirty = False  # a whole run is due
        self._new: set[Entry] = set()  # bans to put in by themselves
        self._expiry_wake: datetime | None = None  # when the armed expiry run comes
        self._whole_run: datetime | None = None  # when the last whole run began
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "misfire_grace_time": None, "max_instances": 4})

    def run_at_start(self) -> ReconcileResult:
        """The whole run before the daemon is ready, with the next expiry it finds armed:
        a ban in force across a restart that ends before the first interval is lifted on
        time, not up to an interval late. Its errors are the caller's (the daemon does not
        start on a ledger or firewall it cannot reconcile)."""
        return self._whole_run_now()

    def start(self) -> None:
        self.scheduler.add_job(self._run, "interval", seconds=self.interval, id="reconcile")
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.shutdown(wait=True)

    def wake(self, at: datetime | None = None, job_id: str = "reconcile-now") -> None:
        """Reconcile at ``at`` (now if None); a pending wake with the same id is replaced."""
        self.scheduler.add_job(self._run, "date", run_date=at or datetime.now(UTC), id=job_id,
                               replace_existing=True)

    def add(self, bans: Sequence[BanDecision], at: datetime | None = None) -> None:
        """New bans, recorded in the ledger: into the firewall at ``at`` (now if None) by
        themselves, and a whole run armed for the first to expire. A subnet ban that takes
        over host bans lifts them too, which only a whole run does."""
        if any(ban.replaces for ban in bans):
            self.wake(at)
            return
        now = datetime.now(UTC)
        live = [ban for ban in bans if ban.expiry > now]  # one decided on old lines is history
        if not live:
            return
        with self._state:
            self._new.update((ban.jail, ban.address) for ban in live)
        self._arm_expiry(min(ban.expiry for ban in live))
        self.scheduler.add_job(self._run, "date", run_date=at or datetime.now(UTC), id="reconcile-new",
                               replace_existing=True, kwargs={"whole": False})

    def _run(self, whole: bool = True) -> None:
        """Every trigger's entry: run now, or have the run in progress go round again. A
        whole run covers the new bans too (the ledger holds them); they alone go by ``add``."""
        with self._state:
            self._dirty = self._dirty or whole
            if self._running:
                return
            self._running = True
        while True:
            with self._state:
                new, self._new = self._new, set()
                if self._dirty:
                    self._dirty, new = False, set()
                elif not new:
                    self._running = False
                    return
            try:
                if new:
                    self._add(new)
                else:
                    self._run_once()
            except BaseException:
                with self._state:
                    self._running = False
                raise

    def _add(self, new: set[Entry]) -> None:
        try:
            done = self.reconciler.add(new)
        except Exception:  # the ledger or a backend in a state add cannot handle: a whole run can
            log.exception("adding new bans failed")
            done = False
        if not done:
            with self._state:
                self._dirty = True

    def _run_once(self) -> None:
        try:
            self._whole_run_now()
        except Exception:  # the daemon must outlive a failed run (the ledger unreachable, say)
            log.exception("reconcile failed")
            self._retry()

    def _whole_run_now(self) -> ReconcileResult:
        """One whole run; then a retry if it failed, and a run armed for the next expiry."""
        self._whole_run = datetime.now(UTC)
        result = self.reconciler.run()
        if result.failed:
            self._retry()
        else:
            self._backoff = RETRY_FIRST
        if result.next_expiry is not None:
            self._arm_expiry(result.next_expiry)
        return result

    def _arm_expiry(self, expiry: datetime) -> None:
        """A whole run just after ``expiry``, unless one still to come is sooner (the
        interval's, or an earlier expiry's, which re-arms the next from the ledger)."""
        due = expiry + EXPIRY_LATE
        if self._whole_run is not None:
            due = max(due, self._whole_run + EXPIRY_GAP)
        now = datetime.now(UTC)
        with self._state:
            if due >= now + timedelta(seconds=self.interval) or (
                    self._expiry_wake is not None and now < self._expiry_wake <= due):
                return
            self._expiry_wake = due
        self.wake(due, job_id="reconcile-expiry")

    def _retry(self) -> None:
        """Try again soon, backing off up to the interval, rather than wait a whole interval."""
        self.wake(datetime.now(UTC) + timedelta(seconds=self._backoff), job_id="reconcile-retry")
        self._backoff = min(self._backoff * 2, self.interval)
