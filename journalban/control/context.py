"""The daemon seen through ``ControlContext``: the handlers' only way into it."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from journalban.control.handlers import Snapshot
from journalban.control.hooks import Hooks
from journalban.detector import JailPolicy
from journalban.ledger.store import Ledger

if TYPE_CHECKING:
    from journalban.daemon import Daemon


class DaemonContext:
    """Reads the daemon's parts on every call, so a reload that replaces them is seen at once."""

    def __init__(self, daemon: "Daemon", hooks: Hooks, reload: Callable[[], Awaitable[Sequence[str]]]) -> None:
        self.daemon = daemon
        self.hooks = hooks
        self._reload = reload

    @property
    def ledger(self) -> Ledger:
        """The ledger, once what the pipeline holds in a burst is recorded: a handler
        sees every ban decided so far, and an operator's unban comes after them."""
        pipeline = self.daemon.pipeline
        if pipeline.holds:  # not the positions alone: a polled status is no transaction
            pipeline.release(self.daemon.clock())
        return self.daemon.ledger

    @property
    def policies(self) -> Mapping[str, JailPolicy]:
        return self.daemon.detector.policies

    def now(self) -> datetime:
        return self.daemon.clock()

    def reconcile_now(self) -> None:
        self.daemon.schedule.wake()

    def banned(self, jail: str, address: str, expiry: datetime, reason: str) -> None:
        self.daemon.detector.prime((), [(jail, address, expiry)])
        self.hooks.banned(jail, address, reason)

    def lifted(self, jail: str, address: str, reason: str) -> None:
        self.daemon.detector.lifted(jail, address)
        self.hooks.unbanned(jail, address, reason)

    def snapshot(self) -> Snapshot:
        reconciler = self.daemon.reconciler
        last = reconciler.last
        at = last.at if last is not None else None
        return Snapshot(self.daemon.intake.counters, dict(self.daemon.pipeline.counters), last, at)

    def reload(self) -> Awaitable[Sequence[str]]:
        return self._reload()
