"""The one contract every firewall backend keeps.

The reconciler owns the decisions: it calls ``read`` and then, only if the diff
against the ledger is not empty, ``apply`` once, in the same reconcile pass.
A backend touches only its own objects (chains, sets, tables) and the single
jump rule that hooks each jail in; never the operator's other rules.
"""

import functools
from collections.abc import Collection, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Literal, Protocol

BlockType = Literal["drop", "reject"]
SHOW_ENTRIES = 20  # a Diff longer than this prints as counts


@dataclass(frozen=True, slots=True)
class PortSpec:
    """Ports a jail blocks for one protocol: ``ports`` like ``("80", "443", "8000:8100")``."""

    protocol: Literal["tcp", "udp"]
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JailLayout:
    """What a backend must build for one jail."""

    name: str
    blocktype: BlockType = "drop"
    ports: tuple[PortSpec, ...] | None = None  # None: all ports, all protocols
    chain: str = "INPUT"  # where the jump is hooked: INPUT, FORWARD, DOCKER-USER
    log: bool = False  # kernel-log dropped packets, rate-limited, prefix "journalban <jail>: "


# One banned address or network in one jail, ipaddress-normalised: a host is
# written bare ("203.0.113.9", "2001:db8::1"), a network with its prefix
# ("203.0.113.0/24", "2001:db8:1::/64").
Entry = tuple[str, str]


def by_jail(entries: Collection[Entry]) -> dict[str, list[str]]:
    """The entries' addresses per jail; a single jail's (the usual case) without a Python loop."""
    jails = set(map(itemgetter(0), entries))
    if len(jails) == 1:
        return {jails.pop(): list(map(itemgetter(1), entries))}
    grouped: dict[str, list[str]] = {jail: [] for jail in jails}
    for jail, address in entries:
        grouped[jail].append(address)
    return grouped


@dataclass(frozen=True, slots=True)
class Kinds:
    """A jail's addresses by family and kind, told apart by their text: entries are normalised,
    so a network has a ``/`` and only IPv6 has a ``:``, and none needs parsing."""

    hosts4: list[str]
    hosts6: list[str]
    nets4: list[str]
    nets6: list[str]

    @classmethod
    def of(cls, addresses: Collection[str]) -> "Kinds":
        text = "".join(addresses)  # one search in C tells whether a kind is there at all
        nets = [a for a in addresses if "/" in a] if "/" in text else []
        hosts = [a for a in addresses if "/" not in a] if nets else list(addresses)
        hosts6 = [a for a in hosts if ":" in a] if ":" in text else []
        hosts4 = [a for a in hosts if ":" not in a] if hosts6 else hosts
        return cls(hosts4, hosts6, [a for a in nets if ":" not in a], [a for a in nets if ":" in a])

    def hosts(self, version: int) -> list[str]:
        return self.hosts4 if version == 4 else self.hosts6

    def nets(self, version: int) -> list[str]:
        return self.nets4 if version == 4 else self.nets6


@functools.lru_cache(maxsize=2)
def kinds_by_jail(entries: frozenset[Entry]) -> dict[str, "Kinds"]:
    """Each jail's addresses by kind. Kept for the last two diffs (an apply's additions and
    removals), since a backend plans each family in turn from the same diff; callers must
    not change what it returns."""
    return {jail: Kinds.of(addresses) for jail, addresses in by_jail(entries).items()}


@dataclass(frozen=True, slots=True)
class Actual:
    """What the firewall holds now. ``entries`` may be the backend's own set, which its next
    apply changes in place (``iptables.entries_after``): use it before then, keep no reference."""

    entries: AbstractSet[Entry]
    layout_ok: bool  # every jail's chain exists and its jump sits where it must


@dataclass(frozen=True, slots=True)
class Diff:
    """What one apply call must change."""

    add: frozenset[Entry] = field(default_factory=frozenset)
    remove: frozenset[Entry] = field(default_factory=frozenset)
    repair_layout: bool = False

    def __bool__(self) -> bool:
        return bool(self.add or self.remove or self.repair_layout)

    def __str__(self) -> str:
        if len(self.add) + len(self.remove) > SHOW_ENTRIES:  # a botnet's worth: counts, not a wall of text
            return (f"+{len(self.add)} -{len(self.remove)} entries"
                    + (" repair-layout" if self.repair_layout else ""))
        parts = [f"+{j}:{a}" for j, a in sorted(self.add)]
        parts += [f"-{j}:{a}" for j, a in sorted(self.remove)]
        if self.repair_layout:
            parts.append("repair-layout")
        return " ".join(parts) or "no change"


class FirewallError(RuntimeError):
    """A firewall command failed; the message carries the command and its stderr."""


class FirewallBackend(Protocol):
    name: str

    def read(self, jails: Sequence[JailLayout]) -> Actual:
        """Read what the firewall holds for these jails."""
        ...

    def apply(self, jails: Sequence[JailLayout], diff: Diff) -> None:
        """Apply ``diff`` in one atomic batch per address family; may rely on the
        snapshot taken by the ``read`` of the same reconcile pass."""
        ...

    def remove(self, jails: Sequence[JailLayout]) -> None:
        """Delete every object this backend created for these jails."""
        ...
