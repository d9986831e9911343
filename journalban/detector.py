"""Counting failures per jail and address, and deciding bans.

Pure: no I/O and no wall clock. The caller passes ``now`` (the moment the event
was read) and gets a verdict back; the ledger records what it decides.
"""

import ipaddress
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from journalban.events import BanDecision, Failure

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
REASON_TEXT_LIMIT = 200


@dataclass(frozen=True, slots=True)
class JailPolicy:
    name: str
    maxretry: int
    findtime: int  # seconds
    bantime: int  # seconds
    ignoreip: tuple[IPNetwork, ...] = ()

    def ignores(self, address: str) -> bool:
        """Loopback is never banned, listed in ``ignoreip`` or not."""
        ip = ipaddress.ip_address(address)
        return any(ip in net for net in (*LOOPBACK, *self.ignoreip) if net.version == ip.version)


class Verdict(Enum):
    COUNTED = "counted"  # in the window, below maxretry
    BANNED = "banned"  # reached maxretry: a ban decision comes with it
    ALREADY_BANNED = "already-banned"  # an active ban covers it; recorded, not counted
    IGNORED = "ignored"  # ignoreip or loopback: neither counted nor recorded
    TOO_OLD = "too-old"  # event time before now - findtime: logged, never banned


class Detector:
    """Per (jail, address) sliding windows in event time."""

    def __init__(self, policies: Mapping[str, JailPolicy]) -> None:
        self.policies = dict(policies)
        self._windows: dict[tuple[str, str], deque[Failure]] = {}
        self._banned_until: dict[tuple[str, str], datetime] = {}

    def prime(self, open_failures: Iterable[Failure], active_bans: Iterable[tuple[str, str, datetime]]) -> None:
        """Restore state after a restart: active bans, and failures not yet behind a ban."""
        for jail, address, expiry in active_bans:
            self._banned_until[(jail, address)] = expiry
        for failure in open_failures:
            if failure.jail in self.policies:
                self._windows.setdefault((failure.jail, failure.address), deque()).append(failure)

    def observe(self, failure: Failure, now: datetime) -> tuple[Verdict, BanDecision | None]:
        policy = self.policies[failure.jail]
        if policy.ignores(failure.address):
            return Verdict.IGNORED, None
        window_start = now - timedelta(seconds=policy.findtime)
        if failure.time < window_start:
            return Verdict.TOO_OLD, None
        key = (failure.jail, failure.address)
        banned_until = self._banned_until.get(key)
        if banned_until is not None:
            if banned_until > now:
                return Verdict.ALREADY_BANNED, None
            del self._banned_until[key]
        window = self._windows.setdefault(key, deque())
        window.append(failure)
        while window and window[0].time < window_start:
            window.popleft()
        if len(window) < policy.maxretry:
            return Verdict.COUNTED, None
        del self._windows[key]
        expiry = now + timedelta(seconds=policy.bantime)
        self._banned_until[key] = expiry
        return Verdict.BANNED, BanDecision(
            jail=failure.jail, address=failure.address, start=now, expiry=expiry,
            reason=_reason(len(window), policy.findtime, failure.text), failures=tuple(window))

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

    @property
    def tracked(self) -> int:
        return len(self._windows)


def _reason(count: int, findtime: int, text: str) -> str:
    noun = "failure" if count == 1 else "failures"
    if len(text) > REASON_TEXT_LIMIT:
        text = text[:REASON_TEXT_LIMIT] + "…"
    return f"{count} {noun} in {findtime}s: {text}"
