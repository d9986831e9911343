"""The APScheduler jobs that drive the reconciler.

Three triggers: every ``interval`` (the safety net that heals drift), at once
after a new ban, and at the next ban's expiry so a ban is lifted on time rather
than up to an interval late.
"""

import logging
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
        # Runs are serialised by the reconciler's own lock; several instances may wait on it.
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
