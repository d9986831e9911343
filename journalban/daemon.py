"""The daemon: wires sources → match → detect → ledger → reconcile → firewall, and runs them.

Start-up order matters: the ledger schema first, then the firewall is reconciled
(bans survive a restart or a reboot before any new line is read), then sources
open, and only then is "ready" announced.
"""

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from journalban.config import Config, JailConfig
from journalban.control.context import DaemonContext
from journalban.control.hooks import Hooks, JailHooks
from journalban.control.server import ControlServer
from journalban.detector import Detector, IPNetwork, JailPolicy
from journalban.events import BanDecision
from journalban.firewall.base import FirewallBackend, JailLayout
from journalban.firewall.iptables import IptablesFirewall
from journalban.firewall.memory import MemoryFirewall
from journalban.grammar import Grammar
from journalban.intake import Intake, matchers
from journalban.ledger.spool import SpoolingLedger, open_ledger
from journalban.ledger.store import ActiveBan
from journalban.loading import LoadError, load
from journalban.notify import SystemdNotifier
from journalban.own_addresses import own_addresses
from journalban.pipeline import HOLD_SECONDS, Pipeline
from journalban.reconcile import Enforcement, Reconciler
from journalban.schedule import ReconcileSchedule
from journalban.sources.files import FileWatch
from journalban.sources.globs import is_glob

if TYPE_CHECKING:
    from journalban.fleet import FleetWatcher  # psycopg: imported only on a shared ledger

log = logging.getLogger(__name__)

def _backend(kind: str) -> FirewallBackend:
    """A backend instance by config name; the less common ones are imported only when used."""
    if kind == "iptables":
        return IptablesFirewall()
    if kind == "ipset":
        from journalban.firewall.ipset import IpsetFirewall

        return IpsetFirewall()
    if kind == "nftables":
        from journalban.firewall.nftables import NftablesFirewall

        return NftablesFirewall()
    return MemoryFirewall()
SWEEP_EVERY = timedelta(seconds=60)
_LIBC = ctypes.util.find_library("c")


def release_free_memory() -> None:
    """Hand memory freed after a burst back to the system (glibc keeps it otherwise: the 1 MiB
    read slices raise its mmap threshold, so their successors come from the heap)."""
    try:
        ctypes.CDLL(_LIBC).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
STATUS_EVERY = timedelta(seconds=10)
BURST_RECONCILE = 0.05  # seconds between the applies of a burst's new bans
# The longest a thread that wants the GIL waits for the busy event loop to let go (Python's
# default is 5 ms). A ban's reconcile runs in the scheduler's threads and takes the GIL back
# after each query, netlink call and process it waits for; with the default, those waits
# were most of a ban's p99 under load (iptables, 300 bans under a 21,000 entries/s journal:
# wake to reconcile p99 11.9 -> 6.1 ms, reconcile to apply 16.7 -> 9.4 ms; whole p99 41 -> 29 ms).
SWITCH_INTERVAL = 0.001
# Objects the collector lets pile up before it looks at the young ones (Python's default is
# 700). A flood makes and drops a few objects per line, nearly all freed by their counts
# before a collection can see them; with the default the collector ran 795 times while the
# daemon read the 1M-line sshd file, six of them through all that start-up had built. With
# this, and start-up's objects frozen at ready (out of every collection), during that flood:
# 45 collections, none full, 0.59-0.66 -> 0.09-0.12 s, longest pause 85-95 -> 4.5 ms
# (gc.callbacks, two runs each; the main thread's CPU 6.7-7.4 -> 5.8-6.7 s).
GC_YOUNG = 10_000


def settle_long_lived() -> None:
    """Take what the process holds now out of every later collection (``gc.freeze``), once
    the garbage is collected, frozen garbage of before included: start-up's grammars, ORM
    and bans in force live as long as the daemon, and left to the collector every full
    collection of a flood walked all of them again (see ``GC_YOUNG``)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def policy(jail: JailConfig, own: tuple[IPNetwork, ...]) -> JailPolicy:
    return JailPolicy(
        jail.name, jail.maxretry, jail.findtime, jail.bantime,
        ignoreip=jail.ignoreip + (own if jail.ignoreself else ()),
        bantime_increment=jail.bantime_increment, bantime_factor=jail.bantime_factor,
        bantime_maxtime=jail.bantime_maxtime, subnet_threshold=jail.subnet_threshold,
        subnet_prefix4=jail.subnet_prefix4, subnet_prefix6=jail.subnet_prefix6)


def layout(jail: JailConfig) -> JailLayout:
    return JailLayout(jail.name, jail.blocktype, jail.ports, jail.chain, jail.log)  # type: ignore[arg-type]


def restart_needed(running: Config, new: Config) -> list[str]:
    """What a reload cannot change in place, as problems naming the setting."""
    def shape(config: Config) -> object:
        return (config.ledger_url, config.ledger_spool, config.node_name, config.control_socket, config.journal,
                config.syslog, {j.name: (j.files, j.journal, j.syslog, layout(j), j.firewall, j.scope)
                                for j in config.enabled_jails})

    if shape(running) == shape(new):
        return []
    return [f"{new.path}: the ledger, control socket, sources, jails, their firewalls or scopes changed: "
            "restart journalban to apply that (policies, grammars and hooks reload in place)"]


def enforcements(jails: list[JailConfig]) -> list[Enforcement]:
    """One backend instance per firewall kind, with the jails it enforces."""
    kinds = sorted({j.firewall for j in jails})
    return [Enforcement(_backend(kind), tuple(layout(j) for j in jails if j.firewall == kind))
            for kind in kinds]


class DaemonFailed(Exception):
    """The daemon stopped because it could not go on (a batch the ledger refused): the CLI
    turns it into exit status 1. Not a SystemExit: that must not cross ``asyncio.run``."""


class Daemon:
    def __init__(self, config: Config, grammars: dict[str, Grammar],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.clock = clock
        self.jails = config.enabled_jails
        self.ledger = open_ledger(config.ledger_url, config.ledger_spool, node=config.node_name,
                                  fleet_jails=[j.name for j in self.jails if j.scope == "fleet"],
                                  host_jails=[j.name for j in self.jails if j.scope == "host"])
        own = own_addresses() if any(j.ignoreself for j in self.jails) else ()
        self.detector = Detector({j.name: policy(j, own) for j in self.jails})
        self.hooks = Hooks({j.name: JailHooks(j.on_ban, j.on_unban) for j in self.jails})
        self.reconciler = Reconciler(self.ledger, enforcements(self.jails), clock, self._expired)
        self.schedule = ReconcileSchedule(self.reconciler, config.reconcile_interval)
        if isinstance(self.ledger, SpoolingLedger):  # PostgreSQL back: reconcile with what it holds now
            self.ledger.on_delivered = self.schedule.wake
        self.pipeline = Pipeline(matchers(config, self.jails, grammars), self.detector, self.ledger, self._banned)
        self.intake = Intake(config, self.jails, grammars, self.ledger, self.pipeline, clock, self._fatal)
        self._failure: BaseException | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # a followed file changed, or stop: read now
        self.notifier = SystemdNotifier()
        self.control = ControlServer(config.control_socket, DaemonContext(self, self.hooks, self.reload))
        self._tasks: set[asyncio.Task[object]] = set()
        self.fleet: FleetWatcher | None = None  # on a shared ledger only
        self._bursting = False  # a followed file was left behind a full slice: more to read at once
        self._next_enforce = 0.0  # time.monotonic() before which a burst's bans wait

    def status_line(self) -> str:
        """One line for systemd's STATUS=: what has been read and decided so far."""
        c = self.pipeline.counters
        return (f"{c['events']} events, {c['counted'] + c['banned'] + c['already-banned']} failures, "
                f"{c['banned']} bans, {self.detector.tracked} addresses in window")

    def _banned(self, bans: list[BanDecision]) -> None:
        self.schedule.add(bans, self._enforce_at())
        for ban in bans:
            self.hooks.banned(ban.jail, ban.address, ban.reason)

    def _enforce_at(self) -> datetime | None:
        """When new bans go into the firewall: now (None), but while a file is read a full
        slice at a time, at most every ``BURST_RECONCILE``, the bans of the batches between
        together: each apply is a firewall transaction (for iptables a process), and one
        after every batch of a burst took a tenth of the reading's time (the GIL, a core)."""
        now = time.monotonic()
        if not self._bursting or now >= self._next_enforce:
            self._next_enforce = now + BURST_RECONCILE
            return None
        return datetime.now(UTC) + timedelta(seconds=self._next_enforce - now)

    def _expired(self, bans: list[ActiveBan]) -> None:
        """Called from the scheduler's thread; hooks hand over to the event loop."""
        for ban in bans:
            self.hooks.unbanned(ban.jail, ban.address, f"expired: {ban.reason}")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _fatal(self, exc: BaseException) -> None:
        """Stop with an error: what was read but not recorded is read again after a restart."""
        log.error("stopping: a batch could not be recorded in the ledger: %s", exc)
        self._failure = exc
        self.stop()

    async def run(self) -> None:
        switch, collect = sys.getswitchinterval(), gc.get_threshold()
        sys.setswitchinterval(SWITCH_INTERVAL)
        gc.set_threshold(GC_YOUNG, *collect[1:])
        try:
            await self._run()
        finally:
            sys.setswitchinterval(switch)
            gc.set_threshold(*collect)
            gc.unfreeze()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        self.hooks.start()
        self.ledger.prepare()  # SQLite upgrades itself; a shared ledger must already be current
        self._restore_state()
        result = self.schedule.run_at_start()
        log.info("firewall reconciled at start: %d ban(s) expired, %s",
                 result.expired, "repaired" if result.healed else "in order")
        await self.intake.open()
        self.schedule.start()
        self._start_fleet()
        self.schedule.scheduler.add_job(self._purge, "interval", hours=1, id="retention",
                                        next_run_time=datetime.now(UTC))
        await self.control.start()
        settle_long_lived()
        log.info("journalban ready: %d jail(s), %d file(s) followed%s%s", len(self.jails), len(self.intake.files),
                 ", journald" if self.intake.journal else "", ", syslog" if self.intake.syslog else "")
        self.notifier.send("READY=1", f"STATUS={self.status_line()}")
        try:
            await self._follow()
        finally:
            self.notifier.send("STOPPING=1")
            await self.control.stop()
            await self.intake.close()
            self._commit_positions()
            self.pipeline.close()
            if self.fleet is not None:
                await self.fleet.stop()
            self.schedule.stop()
            await self.hooks.stop()
            self._on_stop()
            self.ledger.close()
            log.info("journalban stopped")
        if self._failure is not None:
            raise DaemonFailed(f"journalban: {self._failure}")

    def _commit_positions(self) -> None:
        """The positions read past at the end: if the ledger will not take them, those lines
        (which produced nothing) are read again at the next start."""
        try:
            self.pipeline.commit_positions(self.clock())
        except Exception as exc:  # stopping anyway; the ledger's own error says why
            log.error("positions not recorded at stop, their lines will be read again: %s", exc)

    def _purge(self) -> None:
        """Retention: failures older than ``[ledger] keep_failures`` go; bans stay."""
        try:
            purged = self.ledger.purge_failures(self.clock() - timedelta(seconds=self.config.keep_failures))
        except Exception:  # the next hour tries again
            log.exception("purging old failures failed")
            return
        if purged:
            log.info("purged %d failure(s) older than %ds", purged, self.config.keep_failures)

    def _start_fleet(self) -> None:
        """On a shared ledger: count the fleet's failures in fleet-scoped jails, and reconcile
        at once when another host bans or unbans (LISTEN/NOTIFY)."""
        if not self.ledger.shared:
            return
        from journalban.fleet import FleetWatcher

        findtime = max((j.findtime for j in self.jails if j.scope == "fleet"), default=0)
        self.fleet = FleetWatcher(self.ledger, self.pipeline, self.schedule.wake, self.clock, findtime)
        self.fleet.start()
        log.info("fleet: node %s on a shared ledger; fleet-scoped jails: %s", self.ledger.node,
                 ", ".join(sorted(self.ledger.fleet_jails)) or "none")

    def _sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> list[str]:
        """Load config and grammars again; windows and bans are kept. What needs a restart
        (another ledger, other sources or firewalls, jails added or removed) is refused, and
        so is a config with errors: either way the running one stays."""
        try:
            loaded = await asyncio.to_thread(load, self.config.path)
        except LoadError as exc:
            log.error("reload refused; the running config stays:\n%s", "\n".join(exc.problems))
            return exc.problems
        problems = restart_needed(self.config, loaded.config)
        if problems:
            log.error("reload refused; the running config stays:\n%s", "\n".join(problems))
            return problems
        self.config = loaded.config
        self.jails = loaded.config.enabled_jails
        own = own_addresses() if any(j.ignoreself for j in self.jails) else ()
        self.detector.policies.update({j.name: policy(j, own) for j in self.jails})
        self.pipeline.matchers = matchers(loaded.config, self.jails, loaded.grammars)
        self.hooks.jails = {j.name: JailHooks(j.on_ban, j.on_unban) for j in self.jails}
        settle_long_lived()  # the old grammars' cycles are collected, the new ones frozen
        log.info("reloaded %s: %d jail(s)", loaded.config.path, len(self.jails))
        return []

    def _on_stop(self) -> None:
        removing = [j for j in self.jails if j.on_stop == "remove"]
        if removing:
            names = {j.name for j in removing}
            self.reconciler.remove(names)
            log.info("bans of %s taken out of the firewall (on_stop = remove)", ", ".join(sorted(names)))
        kept = len(self.jails) - len(removing)
        if kept:
            log.info("bans of %d jail(s) stay in the firewall until they expire (on_stop = keep)", kept)

    def _restore_state(self) -> None:
        now = self.clock()
        longest = max((j.findtime for j in self.jails), default=0)
        if isinstance(self.ledger, SpoolingLedger):  # it knows the bans while its server is away
            active: Iterable[tuple[str, str, datetime]] = (
                (b.jail, b.address, b.expires_at) for b in self.ledger.active_bans())
        else:
            active = self.ledger.ban_expiries()
        # Previous bans matter only where ban times grow: no jail with bantime_increment, no count.
        counts = self.ledger.ban_counts() if any(j.bantime_increment for j in self.jails) else {}
        self.detector.prime(self.ledger.open_failures(now - timedelta(seconds=longest)), active, counts)

    async def _follow(self) -> None:
        """Read followed files when inotify says one changed (at once), when a file was left
        behind a full slice (soon, after other work), and every ``poll_interval`` anyway."""
        next_sweep = self.clock() + SWEEP_EVERY
        heartbeat = self.notifier.watchdog_interval or STATUS_EVERY.total_seconds()
        next_heartbeat = time.monotonic() + heartbeat
        loop = asyncio.get_running_loop()
        globs = [path for jail in self.intake.jails for path in jail.files if is_glob(path)]
        watch = FileWatch([f.follower.path for f in self.intake.files], globs) if self.intake.files or globs else None
        if watch is not None and watch.available:
            loop.add_reader(watch.fileno(), lambda: watch.changed() and self._wake.set())
        self.pipeline.on_recorded = lambda: loop.call_soon_threadsafe(self._wake.set)  # its bans handed on at once
        try:
            while not self._stop.is_set():
                if self.notifier.enabled and time.monotonic() >= next_heartbeat:
                    self.notifier.send("WATCHDOG=1", f"STATUS={self.status_line()}")
                    next_heartbeat = time.monotonic() + heartbeat
                self._wake.clear()
                self.intake.poll_files()
                now = self.clock()
                self.pipeline.commit_positions(now, due_only=True)
                if now >= next_sweep:
                    self.detector.sweep(now)
                    release_free_memory()
                    next_sweep = now + SWEEP_EVERY
                if any(f.follower.behind for f in self.intake.files):
                    self._bursting = True
                    await asyncio.sleep(0)  # more to read: let the journal, syslog and control run first
                    continue
                if self._bursting:  # the burst's held batches recorded, their memory given back
                    self._bursting = False
                    self.pipeline.commit_positions(now)
                    release_free_memory()
                wait = self.config.file_poll_interval
                if self.pipeline.holds:  # a backlog's last batches, recorded once they waited; a transaction in flight
                    wait = min(wait, HOLD_SECONDS)
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            if watch is not None:
                if watch.available:
                    loop.remove_reader(watch.fileno())
                watch.close()
