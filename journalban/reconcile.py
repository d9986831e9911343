"""Making the firewall hold exactly what the ledger says.

``diff`` is pure. ``Reconciler.run`` reads the bans in force of its jails, lifts
those whose time is up (only when one is due by that read, or once a minute for
bans of jails no host reads any more: a ledger write at every wake cost a busy
fleet most of its reconcile), reads each backend, and applies only the
difference, once per backend. Runs are serialised: a wake during a run waits and then runs again, so a
ban decided mid-run is never left for the next interval. ``Reconciler.add`` puts new bans
in by themselves, without that whole comparison, whose cost grows with the bans in force
(100,000 of them: 320 ms a run), so a ban takes effect in the same few milliseconds
whether the host holds ten bans or a botnet's worth; the runs on schedule still compare
everything. What was undone that
journalban did not do itself (drift) is recorded in the ledger's ``heals``; entries
missing from a listing are listed again before they count as drift, since a kernel
still settling a large apply can list a set short.
"""

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter

from journalban.firewall.base import SHOW_ENTRIES, Actual, Diff, Entry, FirewallBackend, FirewallError, JailLayout
from journalban.ledger.store import ActiveBan, Ledger
from journalban.logs import event_fields

log = logging.getLogger(__name__)
RELISTS = 3  # further reads before entries missing from the firewall count as drift
RELIST_PAUSE = 0.1  # seconds between them
EXPIRE_SWEEP = 60.0  # seconds: at least this often every due ban is lifted, whatever jail it is in


def log_expired(expired: Sequence[ActiveBan]) -> None:
    """One line per lifted ban, or for a botnet's worth one line of counts per jail."""
    if len(expired) <= SHOW_ENTRIES:
        for ban in expired:
            log.info("ban expired: %s in %s (%s)", ban.address, ban.jail, ban.reason,
                     extra=event_fields("unban", ban.jail, ban.address))
        return
    jails = Counter(ban.jail for ban in expired)
    log.info("%d bans expired: %s", len(expired), ", ".join(f"{n} in {jail}" for jail, n in sorted(jails.items())))


def diff(desired: frozenset[Entry], actual: Actual) -> Diff:
    return compare(None, desired, actual)[1]


@dataclass(frozen=True, slots=True)
class Drift:
    """What changed in the firewall behind journalban's back since its last apply."""

    restored: frozenset[Entry]  # bans journalban had applied that vanished
    removed: frozenset[Entry]  # entries journalban never put there
    layout: bool  # its chain, set, table or jump was damaged

    def __bool__(self) -> bool:
        return bool(self.restored or self.removed or self.layout)

    def __str__(self) -> str:
        """Each entry, or past ``SHOW_ENTRIES`` (a reboot's worth) the first few and a count."""
        words = [*_shown("+", self.restored), *_shown("-", self.removed), *(["layout"] if self.layout else [])]
        return " ".join(words)


def first_entries(entries: frozenset[Entry]) -> list[Entry]:
    """At most ``SHOW_ENTRIES`` of ``entries`` to show, sorted; of more, any few (sorting a
    reboot's 100,000 to show 20 took longer than applying them)."""
    return sorted(entries if len(entries) <= SHOW_ENTRIES else itertools.islice(entries, SHOW_ENTRIES))


def _shown(sign: str, entries: frozenset[Entry]) -> list[str]:
    words = [f"{sign}{j}:{a}" for j, a in first_entries(entries)]
    return words if len(entries) <= SHOW_ENTRIES else [*words, f"({sign}{len(entries)} in all)"]


def compare(previous: frozenset[Entry] | None, desired: frozenset[Entry], actual: Actual) -> tuple[Drift, Diff]:
    """The drift since the last apply and the diff to apply now, at once. ``previous`` is what
    the last apply left (None before the first run since start, when whatever is missing was
    lost to a restart or reboot). One pass each way over the entries finds what is missing
    and what is extra, each small while the firewall holds what it should, and only those
    are weighed against ``previous``: built from the large sets apart, drift and diff took
    250 ms of a run with 100,000 bans in force."""
    missing: frozenset[Entry]
    extra: frozenset[Entry]
    if len(desired) == len(actual.entries) and desired == actual.entries:  # the usual run: one pass
        missing = extra = frozenset()
    else:
        missing, extra = desired - actual.entries, frozenset(actual.entries - desired)
    change = Diff(add=missing, remove=extra, repair_layout=not actual.layout_ok)
    if previous is None:
        return Drift(missing, extra, layout=False), change
    # (desired & previous) - actual, and actual - previous - desired
    return Drift(missing & previous, extra - previous, layout=not actual.layout_ok), change


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
        self._added: dict[int, set[Entry]] = {}  # per enforcement: what ``add`` put in since
        self._jails = frozenset(j.name for e in self.enforcements for j in e.jails)
        self._swept: float | None = None  # monotonic time of the last expire_bans; None: not yet
        self._lock = threading.Lock()

    def run(self) -> ReconcileResult:
        with self._lock:
            now = self.clock()
            enforced = self.ledger.enforced_bans(self._jails)
            expired = self._expire(now, enforced.next_expiry)
            if expired or (enforced.next_expiry is not None and enforced.next_expiry <= now):
                enforced = self.ledger.enforced_bans(self._jails)  # without those just lifted
            in_ledger = set(map(itemgetter(0), enforced.entries))
            applied, healed, failed = [], [], False
            for number, enforcement in enumerate(self.enforcements):
                names = {j.name for j in enforcement.jails}
                desired = (enforced.entries if in_ledger <= names
                           else frozenset(e for e in enforced.entries if e[0] in names))
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
            self.last = ReconcileResult(now, len(expired), tuple(applied), tuple(healed), failed,
                                        enforced.next_expiry)
            return self.last

    def add(self, entries: Collection[Entry]) -> bool:
        """Put bans just recorded in the ledger into the firewall without reading the ledger or
        comparing everything: each backend is read (free while its ruleset generation holds)
        and given what it lacks of them. False when a whole run is needed instead: none has
        run yet since start, a backend's layout is damaged or it failed (logged)."""
        with self._lock:
            for number, enforcement in enumerate(self.enforcements):
                previous = self._applied.get(number)
                if previous is None:
                    return False
                added = self._added.setdefault(number, set())
                names = {j.name for j in enforcement.jails}
                fresh = {e for e in entries if e[0] in names and e not in previous and e not in added}
                if not fresh:
                    continue
                backend = enforcement.backend
                try:
                    actual = backend.read(enforcement.jails)
                    if not actual.layout_ok:
                        return False
                    change = Diff(add=frozenset(fresh) - actual.entries)
                    if change:
                        log.info("firewall %s: %s", backend.name, change)
                        backend.apply(enforcement.jails, change)
                except FirewallError as exc:
                    log.error("firewall %s: %s", backend.name, exc)
                    return False
                added |= fresh
            return True

    def _expire(self, now: datetime, next_expiry: datetime | None) -> list[ActiveBan]:
        """Lift the bans whose time is up, if the read says one of this host's is due (or at
        start, or once every ``EXPIRE_SWEEP`` seconds for bans of jails this host does not run)."""
        swept = time.monotonic()
        due = next_expiry is not None and next_expiry <= now
        if not due and self._swept is not None and swept - self._swept < EXPIRE_SWEEP:
            return []
        self._swept = swept
        expired = self.ledger.expire_bans(now)
        log_expired(expired)
        if expired and self.on_expired is not None:
            self.on_expired(expired)
        return expired

    def _enforce(self, number: int, enforcement: Enforcement, desired: frozenset[Entry],
                 now: datetime) -> tuple[Diff, Drift]:
        backend = enforcement.backend
        previous = self._applied.get(number)
        added = self._added.pop(number, None)
        if previous is not None and added:
            previous = previous | added
        actual = backend.read(enforcement.jails)
        found, change = compare(previous, desired, actual)
        for _ in range(RELISTS):
            if not found.restored or previous is None:
                break
            # A listing taken while the kernel still settles a large change (nftables resizing
            # a hash set) can come back short: missing entries count as drift only if they stay missing.
            time.sleep(RELIST_PAUSE)
            actual = backend.read(enforcement.jails)
            found, change = compare(previous, desired, actual)
        if change:
            log.info("firewall %s: %s", backend.name, change)
            backend.apply(enforcement.jails, change)
        self._applied[number] = desired
        if found:
            detail = str(found)
            log.warning("firewall %s had drifted from the ledger; healed: %s", backend.name, detail,
                        extra=event_fields("heal"))
            for what, entries in (("restored", found.restored), ("removed", found.removed)):
                for jail, address in first_entries(entries):  # one line each, for journalctl's fields
                    log.info("healed: %s %s in %s", what, address, jail, extra=event_fields("heal", jail, address))
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
