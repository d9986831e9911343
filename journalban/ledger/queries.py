"""What the operator asks of the ledger, and the two writes done by hand (ban, unban).

Functions over a ``Ledger``, so the daemon (through the control socket) and the CLI
(reading the ledger itself while the daemon is stopped) ask the same questions the
same way. Addresses come in normalised (``journalban.control.protocol.parse_target``):
a host bare, a network with its prefix.
"""

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, create_engine, func, select
from sqlalchemy.engine import make_url

from journalban.events import FOREVER
from journalban.ledger.models import Ban, Failure
from journalban.ledger.store import Ledger

MANUAL = "manual: "  # the reason of every ban made by hand starts so
HISTORY_FAILURES = 1000  # the latest failures a history shows; the total is counted


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True, slots=True)
class BanRecord:
    id: int
    jail: str
    address: str
    started_at: datetime
    expires_at: datetime
    reason: str
    ended_at: datetime | None
    end_reason: str | None  # expired | unbanned | aggregated | replaced; None while active
    node: str | None = None  # the host that decided it ([node] name)

    @classmethod
    def of(cls, row: Ban) -> "BanRecord":
        return cls(row.id, row.jail, row.address, row.started_at, row.expires_at, row.reason,
                   row.ended_at, row.end_reason, row.node)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "jail": self.jail, "address": self.address, "started_at": _iso(self.started_at),
                "expires_at": _iso(self.expires_at), "forever": self.expires_at >= FOREVER, "reason": self.reason,
                "ended_at": _iso(self.ended_at), "end_reason": self.end_reason, "node": self.node}

    def __str__(self) -> str:
        until = "forever" if self.expires_at >= FOREVER else f"until {self.expires_at.isoformat()}"
        return f"ban #{self.id} {self.jail} {self.address} {until}: {self.reason}"


@dataclass(frozen=True, slots=True)
class FailureRecord:
    id: int
    occurred_at: datetime
    jail: str
    address: str
    rule: str
    text: str
    source: str
    ban_id: int | None  # the ban it helped open
    node: str | None = None  # the host that read it ([node] name)

    @classmethod
    def of(cls, row: Failure) -> "FailureRecord":
        return cls(row.id, row.occurred_at, row.jail, row.address, row.rule, row.text, row.source, row.ban_id,
                   row.node)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "occurred_at": _iso(self.occurred_at), "jail": self.jail, "address": self.address,
                "rule": self.rule, "text": self.text, "source": self.source, "ban_id": self.ban_id,
                "node": self.node}


@dataclass(frozen=True, slots=True)
class History:
    address: str
    failures: tuple[FailureRecord, ...]  # oldest first, at most HISTORY_FAILURES of them
    failures_total: int
    bans: tuple[BanRecord, ...]  # oldest first; a host's includes the network bans covering it

    def as_json(self) -> dict[str, Any]:
        return {"address": self.address, "failures": [f.as_json() for f in self.failures],
                "failures_total": self.failures_total, "bans": [b.as_json() for b in self.bans]}


def active_bans(ledger: Ledger, now: datetime, jail: str | None = None, host: str | None = None) -> list[BanRecord]:
    """Bans in force at ``now`` (one past its time but not yet lifted by a reconcile is left out),
    of one jail and of the bans one host decided when given."""
    query = select(Ban).where(Ban.ended_at.is_(None), Ban.expires_at > now).order_by(Ban.jail, Ban.id)
    if jail is not None:
        query = query.where(Ban.jail == jail)
    if host is not None:
        query = query.where(Ban.node == host)
    with ledger.transaction() as session:
        return [BanRecord.of(row) for row in session.scalars(query)]


def failures_in_window(ledger: Ledger, since: Mapping[str, datetime], host: str | None = None) -> dict[str, int]:
    """Per jail, failures since its window opened that no ban has consumed yet (read by ``host`` if given)."""
    return {jail: sum(counts.values()) for jail, counts in
            failures_in_window_by_host(ledger, since, host).items()}


def failures_in_window_by_host(ledger: Ledger, since: Mapping[str, datetime],
                               host: str | None = None) -> dict[str, dict[str, int]]:
    """Per jail and per host that read them, failures in the jail's window no ban has consumed yet."""
    out: dict[str, dict[str, int]] = {jail: {} for jail in since}
    with ledger.transaction() as session:
        for jail, start in since.items():
            query = select(Failure.node, func.count()).where(
                Failure.jail == jail, Failure.ban_id.is_(None), Failure.occurred_at >= start).group_by(Failure.node)
            if host is not None:
                query = query.where(Failure.node == host)
            out[jail] = {node: count for node, count in session.execute(query)}
    return out


def _covers(network: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network)
    except (ValueError, TypeError):
        return False


def covering_bans(ledger: Ledger, address: str, now: datetime) -> list[BanRecord]:
    """Active network bans that cover the host ``address`` (networks are few: they are read whole)."""
    if "/" in address:
        return []
    with ledger.transaction() as session:
        rows = session.scalars(select(Ban).where(Ban.ended_at.is_(None), Ban.expires_at > now,
                                                 Ban.address.contains("/")).order_by(Ban.id))
        return [BanRecord.of(r) for r in rows if _covers(r.address, address)]


def history(ledger: Ledger, address: str, limit: int = HISTORY_FAILURES, host: str | None = None) -> History:
    """Every failure and ban of ``address`` (those one host read and decided, when given). A host's
    bans include network bans covering it; a network's failures are those behind its own bans
    (hosts are not scanned by range)."""
    with ledger.transaction() as session:
        bans = list(session.scalars(select(Ban).where(Ban.address == address)))
        if "/" in address:
            where: list[ColumnElement[bool]] = [Failure.ban_id.in_([b.id for b in bans])]
        else:
            networks = session.scalars(select(Ban).where(Ban.address.contains("/")))
            bans += [b for b in networks if _covers(b.address, address)]
            where = [Failure.address == address]
        if host is not None:
            bans = [b for b in bans if b.node == host]
            where.append(Failure.node == host)
        total = session.scalar(select(func.count()).select_from(Failure).where(*where)) or 0
        latest = session.scalars(select(Failure).where(*where).order_by(Failure.occurred_at.desc(),
                                                                        Failure.id.desc()).limit(limit))
        failures = sorted((FailureRecord.of(r) for r in latest), key=lambda f: (f.occurred_at, f.id))
        ordered = sorted((BanRecord.of(b) for b in bans), key=lambda b: (b.started_at, b.id))
        return History(address, tuple(failures), total, tuple(ordered))


def manual_ban(ledger: Ledger, jail: str, address: str, now: datetime, expiry: datetime,
               reason: str) -> tuple[BanRecord, BanRecord | None]:
    """Record a ban made by hand; an active ban of the same address in the jail ends
    as ``replaced`` in the same transaction. Returns the new ban and the replaced one."""
    with ledger.transaction() as session:
        old = session.scalars(select(Ban).where(Ban.jail == jail, Ban.address == address,
                                                Ban.ended_at.is_(None))).first()
        if old is not None:
            old.ended_at, old.end_reason = now, "replaced"
            session.flush()  # the one-active-ban index must see it ended before the new row
        row = Ban(jail=jail, address=address, started_at=now, expires_at=expiry, reason=reason)
        session.add(row)
        session.flush()
        return BanRecord.of(row), None if old is None else BanRecord.of(old)


def unban(ledger: Ledger, address: str, jails: Collection[str] | None, now: datetime) -> list[BanRecord]:
    """End the bans of exactly ``address`` in force in ``jails`` (all when None) as ``unbanned``."""
    query = select(Ban).where(Ban.address == address, Ban.ended_at.is_(None), Ban.expires_at > now)
    if jails is not None:
        query = query.where(Ban.jail.in_(list(jails)))
    with ledger.transaction() as session:
        rows = list(session.scalars(query.order_by(Ban.id)))
        for row in rows:
            row.ended_at, row.end_reason = now, "unbanned"
        return [BanRecord.of(r) for r in rows]


class _ReadOnlyLedger(Ledger):
    def __init__(self, url: str) -> None:  # no super().__init__: it would create directories
        self.url = url
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self.engine = create_engine(f"sqlite:///file:{parsed.database}?mode=ro&uri=true")
        else:
            self.engine = create_engine(url, pool_pre_ping=True)


def open_read_only(url: str) -> Ledger:
    """The ledger for reading only, as the CLI does while the daemon is stopped: SQLite is opened
    with ``mode=ro`` (no file is created, nothing can be written); other databases as they are."""
    return _ReadOnlyLedger(url)
