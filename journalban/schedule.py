"""The APScheduler jobs that drive the reconciler.

Three triggers: every ``interval`` (the safety net that heals drift), at once
after a new ban, and at the next ban's expiry so a ban is lifted on time rather
than up to an interval late.
"""

import logging
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from journalban.reconcile import Reconciler

log = logging.getLogger(__name__)
RETRY_FIRST = 1.0  # seconds before the first retry of a failed reconcile


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
        self._dirty = False
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "misfire_grace_time": None, "max_instances": 4})

    def start(self) -> None:
        self.scheduler.add_job(self._run, "interval", seconds=self.interval, id="reconcile")
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.shutdown(wait=True)

    def wake(self, at: datetime | None = None, job_id: str = "reconcile-now") -> None:
        """Reconcile at ``at`` (now if None); a pending wake with the same id is replaced."""
        self.scheduler.add_job(self._run, "date", run_date=at or datetime.now(UTC), id=job_id,
                               replace_existing=True)

    def _run(self) -> None:
        """Every trigger's entry: run now, or have the run in progress go round again."""
        with self._state:
            self._dirty = True
            if self._running:
                return
            self._running = True
        while True:
            with self._state:
                if not self._dirty:
                    self._running = False
                    return
                self._dirty = False
            try:
                self._run_once()
            except BaseException:
                with self._state:
                    self._running = False
                raise

    def _run_once(self) -> None:
        try:
            result = self.reconciler.run()
        except Exception:  # the daemon must outlive a failed run (the ledger unreachable, say)
            log.exception("reconcile failed")
            self._retry()
            return
        if result.failed:
            self._retry()
        else:
            self._backoff = RETRY_FIRST
        if result.next_expiry is not None:
            due = result.next_expiry + timedelta(milliseconds=50)
            if due < datetime.now(UTC) + timedelta(seconds=self.interval):
                self.wake(due, job_id="reconcile-expiry")

    def _retry(self) -> None:
        """Try again soon, backing off up to the interval, rather than wait a whole interval."""
        self.wake(datetime.now(UTC) + timedelta(seconds=self._backoff), job_id="reconcile-retry")
        self._backoff = min(self._backoff * 2, self.interval)
