"""Making the firewall hold exactly what the ledger says.

``diff`` is pure. ``Reconciler.run`` lifts expired bans in the ledger, reads the
active ones, reads each backend, and applies only the difference, once per
backend. Runs are serialised: a wake during a run waits and then runs again, so a
ban decided mid-run is never left for the next interval. What was undone that
journalban did not do itself (drift) is recorded in the ledger's ``heals``.
"""

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from journalban.firewall.base import Actual, Diff, Entry, FirewallBackend, FirewallError, JailLayout
from journalban.ledger.store import ActiveBan, Ledger

log = logging.getLogger(__name__)


def diff(desired: frozenset[Entry], actual: Actual) -> Diff:
    return Diff(add=desired - actual.entries, remove=actual.entries - desired,
                repair_layout=not actual.layout_ok)


@dataclass(frozen=True, slots=True)
class Drift:
    """What changed in the firewall behind journalban's back since its last apply."""

    restored: frozenset[Entry]  # bans journalban had applied that vanished
    removed: frozenset[Entry]  # entries journalban never put there
    layout: bool  # its chain, set, table or jump was damaged

    def __bool__(self) -> bool:
        return bool(self.restored or self.removed or self.layout)


def drift(previous: frozenset[Entry] | None, desired: frozenset[Entry], actual: Actual) -> Drift:
    """``previous`` is what the last apply left (None before the first run since start,
    when whatever is missing was lost to a restart or reboot)."""
    if previous is None:
        return Drift(desired - actual.entries, actual.entries - desired, layout=False)
    return Drift((desired & previous) - actual.entries, actual.entries - previous - desired,
                 layout=not actual.layout_ok)


@dataclass(frozen=True, slots=True)
class Enforcement:
    """One backend and the jails it enforces."""

    backend: FirewallBackend
    jails: tuple[JailLayout, ...]


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    at: datetime  # the run's clock time
    expired: int
    applied: tuple[Diff, ...]
    healed: tuple[Drift, ...]
    failed: bool  # a backend could not be read or changed: retry soon
    next_expiry: datetime | None  # when the next run must happen to lift a ban on time


class Reconciler:
    def __init__(self, ledger: Ledger, enforcements: Sequence[Enforcement],
                 clock: Callable[[], datetime],
                 on_expired: Callable[[list[ActiveBan]], None] | None = None) -> None:
        self.ledger = ledger
        self.on_expired = on_expired
        self.enforcements = tuple(enforcements)
        self.clock = clock
        self.last: ReconcileResult | None = None
        self._applied: dict[int, frozenset[Entry]] = {}  # per enforcement: what the last apply left
        self._lock = threading.Lock()

    def run(self) -> ReconcileResult:
        with self._lock:
            now = self.clock()
            expired = self.ledger.expire_bans(now)
            for ban in expired:
                log.info("ban expired: %s in %s (%s)", ban.address, ban.jail, ban.reason)
            if expired and self.on_expired is not None:
                self.on_expired(expired)
            active = self.ledger.active_bans()
            applied, healed, failed = [], [], False
            for number, enforcement in enumerate(self.enforcements):
                names = {j.name for j in enforcement.jails}
                desired = frozenset((b.jail, b.address) for b in active if b.jail in names)
                try:
                    change, found = self._enforce(number, enforcement, desired, now)
                except FirewallError as exc:  # retried with backoff; the ledger keeps every ban
                    log.error("firewall %s: %s", enforcement.backend.name, exc)
                    failed = True
                    continue
                if change:
                    applied.append(change)
                if found:
                    healed.append(found)
            next_expiry = min((b.expires_at for b in active), default=None)
            self.last = ReconcileResult(now, len(expired), tuple(applied), tuple(healed), failed, next_expiry)
            return self.last

    def _enforce(self, number: int, enforcement: Enforcement, desired: frozenset[Entry],
                 now: datetime) -> tuple[Diff, Drift]:
        backend = enforcement.backend
        actual = backend.read(enforcement.jails)
        change = diff(desired, actual)
        found = drift(self._applied.get(number), desired, actual)
        if change:
            log.info("firewall %s: %s", backend.name, change)
            backend.apply(enforcement.jails, change)
        self._applied[number] = desired
        if found:
            detail = " ".join([*(f"+{j}:{a}" for j, a in sorted(found.restored)),
                               *(f"-{j}:{a}" for j, a in sorted(found.removed)),
                               *(["layout"] if found.layout else [])])
            log.warning("firewall %s had drifted from the ledger; healed: %s", backend.name, detail)
            self.ledger.record_heal(backend.name, len(found.restored), len(found.removed), found.layout,
                                    detail, now)
        return change, found

    def remove(self, jail_names: set[str]) -> None:
        """Take these jails' objects out of the firewall (``on_stop = "remove"``)."""
        with self._lock:
            for enforcement in self.enforcements:
                jails = tuple(j for j in enforcement.jails if j.name in jail_names)
                if not jails:
                    continue
                try:
                    enforcement.backend.remove(jails)
                except FirewallError as exc:
                    log.error("firewall %s: %s", enforcement.backend.name, exc)
