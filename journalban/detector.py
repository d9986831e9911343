"""Counting failures per jail and address, and deciding bans.

Pure: no I/O and no wall clock. The caller passes ``now`` (the moment the event
was read) and gets a verdict back; the ledger records what it decides, and
primes a new detector from what it recorded.
"""

import ipaddress
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from journalban.events import FOREVER, BanDecision, Failure

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
REASON_TEXT_LIMIT = 200
MAX_DOUBLINGS = 20


@dataclass(frozen=True, slots=True)
class JailPolicy:
    name: str
    maxretry: int
    findtime: int  # seconds
    bantime: int | None  # seconds; None: forever
    ignoreip: tuple[IPNetwork, ...] = ()  # loopback is added, whatever this says
    bantime_increment: bool = False
    bantime_factor: float = 1.0
    bantime_maxtime: int = 7 * 86400
    subnet_threshold: int = 0  # 0: never aggregate
    subnet_prefix4: int = 24
    subnet_prefix6: int = 64

    def ignores(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in net for net in (*LOOPBACK, *self.ignoreip) if net.version == ip.version)

    def protects_any_of(self, network: IPNetwork) -> bool:
        """Whether a subnet ban would cover an ignored, loopback or own address."""
        return any(network.overlaps(net) for net in (*LOOPBACK, *self.ignoreip) if net.version == network.version)

    def ban_seconds(self, previous_bans: int) -> int | None:
        """``bantime``, or for a repeat offender with ``bantime_increment``
        bantime x factor x 2^previous, at most ``bantime_maxtime``."""
        if self.bantime is None or not self.bantime_increment or previous_bans == 0:
            return self.bantime
        grown = self.bantime * self.bantime_factor * (1 << min(previous_bans, MAX_DOUBLINGS))
        return int(min(grown, self.bantime_maxtime))

    def subnet_of(self, address: str) -> IPNetwork:
        ip = ipaddress.ip_address(address)
        prefix = self.subnet_prefix4 if ip.version == 4 else self.subnet_prefix6
        return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


class Verdict(Enum):
    COUNTED = "counted"  # in the window, below maxretry
    BANNED = "banned"  # reached maxretry: a ban decision comes with it
    ALREADY_BANNED = "already-banned"  # an active ban covers it; recorded, not counted
    IGNORED = "ignored"  # ignoreip, loopback or own address: neither counted nor recorded
    TOO_OLD = "too-old"  # event time before now - findtime: logged, never banned


Key = tuple[str, str]  # (jail, address or network)


class Detector:
    """Per (jail, address) sliding windows in event time, and the bans in force."""

    def __init__(self, policies: Mapping[str, JailPolicy]) -> None:
        self.policies = dict(policies)
        self._windows: dict[Key, deque[Failure]] = {}
        self._banned_until: dict[Key, datetime] = {}
        self._previous_bans: dict[Key, int] = {}
        self._banned_in_subnet: dict[Key, set[str]] = {}  # (jail, subnet) → banned hosts in it

    def prime(self, open_failures: Iterable[Failure], active_bans: Iterable[tuple[str, str, datetime]],
              ban_counts: Mapping[Key, int] | None = None) -> None:
        """Restore state after a restart: active bans, failures not yet behind a ban,
        and how often each address was banned before."""
        for jail, address, expiry in active_bans:
            self._banned_until[(jail, address)] = expiry
            policy = self.policies.get(jail)
            if policy is not None and policy.subnet_threshold and "/" not in address:
                subnet = str(policy.subnet_of(address))
                self._banned_in_subnet.setdefault((jail, subnet), set()).add(address)
        for failure in open_failures:
            if failure.jail in self.policies:
                self._windows.setdefault((failure.jail, failure.address), deque()).append(failure)
        self._previous_bans.update(ban_counts or {})

    def observe(self, failure: Failure, now: datetime) -> tuple[Verdict, BanDecision | None]:
        policy = self.policies[failure.jail]
        if policy.ignores(failure.address):
            return Verdict.IGNORED, None
        window_start = now - timedelta(seconds=policy.findtime)
        if failure.time < window_start:
            return Verdict.TOO_OLD, None
        key = (failure.jail, failure.address)
        subnet = (failure.jail, str(policy.subnet_of(failure.address))) if policy.subnet_threshold else None
        if self._is_banned(key, now) or (subnet is not None and self._is_banned(subnet, now)):
            return Verdict.ALREADY_BANNED, None
        window = self._windows.setdefault(key, deque())
        window.append(failure)
        while window and window[0].time < window_start:
            window.popleft()
        if len(window) < policy.maxretry:
            return Verdict.COUNTED, None
        del self._windows[key]
        reason = _reason(len(window), policy.findtime, failure.text)
        return Verdict.BANNED, (self._subnet_ban(policy, failure.address, tuple(window), reason, now)
                                or self._ban(policy, failure.address, tuple(window), reason, now))

    def _is_banned(self, key: Key, now: datetime) -> bool:
        until = self._banned_until.get(key)
        if until is None:
            return False
        if until > now:
            return True
        del self._banned_until[key]
        return False

    def _ban(self, policy: JailPolicy, address: str, failures: tuple[Failure, ...], reason: str,
             now: datetime, replaces: tuple[str, ...] = ()) -> BanDecision:
        key = (policy.name, address)
        previous = self._previous_bans.get(key, 0)
        seconds = policy.ban_seconds(previous)
        expiry = FOREVER if seconds is None else now + timedelta(seconds=seconds)
        if previous and seconds != policy.bantime:
            reason += f" (ban {previous + 1} of this address: {seconds}s)"
        self._previous_bans[key] = previous + 1
        self._banned_until[key] = expiry
        return BanDecision(policy.name, address, now, expiry, reason, failures, replaces)

    def _subnet_ban(self, policy: JailPolicy, address: str, failures: tuple[Failure, ...], reason: str,
                    now: datetime) -> BanDecision | None:
        """One subnet ban in place of ``subnet_threshold`` host bans in one subnet, never
        over an ignored, loopback or own address."""
        if not policy.subnet_threshold:
            return None
        subnet = policy.subnet_of(address)
        hosts = self._banned_in_subnet.setdefault((policy.name, str(subnet)), set())
        hosts.add(address)
        hosts -= {h for h in hosts if h != address and not self._is_banned((policy.name, h), now)}
        if len(hosts) < policy.subnet_threshold or policy.protects_any_of(subnet):
            return None
        replaced = tuple(sorted(hosts - {address}))
        for host in hosts:
            self._banned_until.pop((policy.name, host), None)
        hosts.clear()
        reason = f"{len(replaced) + 1} addresses of {subnet} banned; last: {reason}"
        return self._ban(policy, str(subnet), failures, reason, now, replaced)

    def lifted(self, jail: str, address: str) -> None:
        """A ban ended before its time (manual unban): count afresh from now on."""
        self._banned_until.pop((jail, address), None)

    def sweep(self, now: datetime) -> None:
        """Forget windows and bans that can no longer matter, so memory stays bounded."""
        for key in [k for k, until in self._banned_until.items() if until <= now]:
            del self._banned_until[key]
        for key, window in list(self._windows.items()):
            start = now - timedelta(seconds=self.policies[key[0]].findtime) if key[0] in self.policies else now
            while window and window[0].time < start:
                window.popleft()
            if not window:
                del self._windows[key]
        for key, hosts in list(self._banned_in_subnet.items()):
            hosts -= {h for h in hosts if (key[0], h) not in self._banned_until}
            if not hosts:
                del self._banned_in_subnet[key]

    @property
    def tracked(self) -> int:
        return len(self._windows)


def _reason(count: int, findtime: int, text: str) -> str:
    noun = "failure" if count == 1 else "failures"
    if len(text) > REASON_TEXT_LIMIT:
        text = text[:REASON_TEXT_LIMIT] + "…"
    return f"{count} {noun} in {findtime}s: {text}"
