"""Making the firewall hold exactly what the ledger says.

``diff`` is pure. ``Reconciler.run`` lifts expired bans in the ledger, reads the
active ones, reads each backend, and applies only the difference, once per
backend. Runs are serialised: a wake during a run waits and then runs again, so a
ban decided mid-run is never left for the next interval.
"""

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from journalban.firewall.base import Actual, Diff, Entry, FirewallBackend, FirewallError, JailLayout
from journalban.ledger.store import Ledger

log = logging.getLogger(__name__)


def diff(desired: frozenset[Entry], actual: Actual) -> Diff:
    return Diff(add=desired - actual.entries, remove=actual.entries - desired,
                repair_layout=not actual.layout_ok)


@dataclass(frozen=True, slots=True)
class Enforcement:
    """One backend and the jails it enforces."""

    backend: FirewallBackend
    jails: tuple[JailLayout, ...]


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    expired: int
    applied: tuple[Diff, ...]
    next_expiry: datetime | None  # when the next run must happen to lift a ban on time

    @property
    def healed(self) -> bool:
        return bool(self.applied)


class Reconciler:
    def __init__(self, ledger: Ledger, enforcements: Sequence[Enforcement],
                 clock: Callable[[], datetime]) -> None:
        self.ledger = ledger
        self.enforcements = tuple(enforcements)
        self.clock = clock
        self.last: ReconcileResult | None = None
        self._lock = threading.Lock()

    def run(self) -> ReconcileResult:
        with self._lock:
            now = self.clock()
            expired = self.ledger.expire_bans(now)
            for ban in expired:
                log.info("ban expired: %s in %s (%s)", ban.address, ban.jail, ban.reason)
            active = self.ledger.active_bans()
            applied = []
            for enforcement in self.enforcements:
                names = {j.name for j in enforcement.jails}
                desired = frozenset((b.jail, b.address) for b in active if b.jail in names)
                try:
                    change = diff(desired, enforcement.backend.read(enforcement.jails))
                    if change:
                        log.info("firewall %s: %s", enforcement.backend.name, change)
                        enforcement.backend.apply(enforcement.jails, change)
                        applied.append(change)
                except FirewallError as exc:  # the next run tries again; other backends go on
                    log.error("firewall %s: %s", enforcement.backend.name, exc)
            next_expiry = min((b.expires_at for b in active), default=None)
            self.last = ReconcileResult(len(expired), tuple(applied), next_expiry)
            return self.last


def group_by_backend(jails: Mapping[str, tuple[str, JailLayout]],
                     backends: Mapping[str, FirewallBackend]) -> list[Enforcement]:
    """``jails`` maps a jail name to (backend name, layout)."""
    grouped: dict[str, list[JailLayout]] = {}
    for backend_name, layout in jails.values():
        grouped.setdefault(backend_name, []).append(layout)
    return [Enforcement(backends[name], tuple(layouts)) for name, layouts in grouped.items()]
