"""What each control command does, given a small view of the daemon.

Handlers see only ``ControlContext``: the ledger, the jails' policies, a clock and a
few callbacks. They are tested with a real ledger, a real reconciler and the
in-memory firewall, without a daemon or a socket. A handler raises ``ControlError``
for a request it refuses; ``dispatch`` turns that (and anything unexpected) into
an error reply, so nothing escapes to the server.
"""

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from journalban.control.protocol import ControlError, error_reply, parse_target
from journalban.detector import JailPolicy
from journalban.durations import parse_duration
from journalban.events import FOREVER
from journalban.ledger import queries
from journalban.ledger.spool import ledger_health
from journalban.ledger.store import Ledger
from journalban.logs import event_fields
from journalban.reconcile import ReconcileResult

log = logging.getLogger(__name__)
REASON_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The daemon's counters at one moment, for ``status``."""

    sources: Mapping[str, object]  # per source: lines unparsed, cut, read...
    counters: Mapping[str, int]  # the pipeline's: lines, counted, banned...
    last_reconcile: ReconcileResult | None
    last_reconcile_at: datetime | None


class ControlContext(Protocol):
    """The daemon as the handlers see it. The daemon's adapter is ``control.context.DaemonContext``."""

    @property
    def ledger(self) -> Ledger: ...

    @property
    def policies(self) -> Mapping[str, JailPolicy]:
        """The enabled jails by name; their ``ignoreip`` already holds the own addresses."""
        ...

    def now(self) -> datetime: ...

    def reconcile_now(self) -> None:
        """Ask for a reconcile soon; never waits for it."""
        ...

    def banned(self, jail: str, address: str, expiry: datetime, reason: str) -> None:
        """A ban was recorded by hand: the detector must count it as in force; on_ban hooks run."""
        ...

    def lifted(self, jail: str, address: str, reason: str) -> None:
        """A ban was ended by hand: the detector counts afresh; on_unban hooks run."""
        ...

    def snapshot(self) -> Snapshot: ...

    def reload(self) -> Awaitable[Sequence[str]]:
        """Load the config again and switch to it; the problems found (empty: switched).
        On problems the running config stays."""
        ...


Request = Mapping[str, Any]
Handler = Callable[[ControlContext, Request], Awaitable[dict[str, Any]]]


def _text(request: Request, key: str, required: bool = False) -> str | None:
    value = request.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ControlError(f"'{key}' must be a non-empty string")
    return value.strip()


def _flag(request: Request, key: str) -> bool:
    value = request.get(key, False)
    if not isinstance(value, bool):
        raise ControlError(f"'{key}' must be true or false")
    return value


def _target(request: Request) -> str:
    try:
        return parse_target(_text(request, "address", required=True) or "")
    except ValueError as exc:
        raise ControlError(str(exc)) from None


def _jail(ctx: ControlContext, request: Request, required: bool) -> str | None:
    """The jail named, which must be enabled; with only one jail, it may go unnamed."""
    name = _text(request, "jail")
    if name is None:
        if not required:
            return None
        if len(ctx.policies) == 1:
            return next(iter(ctx.policies))
        raise ControlError(f"name the jail: one of {', '.join(sorted(ctx.policies)) or '(none enabled)'}")
    if name not in ctx.policies:
        raise ControlError(f"no enabled jail named '{name}' (enabled: {', '.join(sorted(ctx.policies))})")
    return name


def _ban_seconds(request: Request, policy: JailPolicy) -> int | None:
    """``for`` (seconds or a duration like "1h"), ``forever``, or the jail's own ``bantime``."""
    seconds, forever = request.get("for"), _flag(request, "forever")
    if seconds is not None and forever:
        raise ControlError("give 'for' or 'forever', not both")
    if forever:
        return None
    if seconds is None:
        return policy.bantime
    try:
        return parse_duration(seconds)
    except ValueError as exc:
        raise ControlError(f"'for': {exc}") from None


async def status(ctx: ControlContext, request: Request) -> dict[str, Any]:
    now = ctx.now()
    since = {name: now - timedelta(seconds=p.findtime) for name, p in ctx.policies.items()}
    host = _text(request, "host")
    health = ledger_health(ctx.ledger)
    hosts: list[dict[str, Any]] | None = None
    if health["state"] == "unreachable":  # what the spool knows: the bans enforced; no counts
        in_window: Mapping[str, int | None] = dict.fromkeys(ctx.policies)
        active: Sequence[Any] = ctx.ledger.active_bans()
    else:
        by_host = queries.failures_in_window_by_host(ctx.ledger, since, host)
        in_window = {jail: sum(counts.values()) for jail, counts in by_host.items()}
        active = queries.active_bans(ctx.ledger, now, host=host)
        hosts = _hosts(by_host, active)
    jails = [{"name": name, "failures_in_window": in_window[name],
              "active_bans": sum(1 for b in active if b.jail == name)} for name in ctx.policies]
    snap = ctx.snapshot()
    last = snap.last_reconcile
    reconcile = None if last is None else {
        "at": snap.last_reconcile_at.isoformat() if snap.last_reconcile_at else None,
        "expired": last.expired, "applied": [str(d) for d in last.applied],
        "healed": [{"restored": sorted(f"{j}:{a}" for j, a in h.restored),
                    "removed": sorted(f"{j}:{a}" for j, a in h.removed), "layout": h.layout} for h in last.healed],
        "failed": last.failed, "next_expiry": last.next_expiry.isoformat() if last.next_expiry else None}
    return {"jails": jails, "hosts": hosts, "sources": dict(snap.sources), "counters": dict(snap.counters),
            "last_reconcile": reconcile, "ledger": health}


def _hosts(in_window: Mapping[str, Mapping[str, int]], active: Sequence[queries.BanRecord]) -> list[dict[str, Any]]:
    """Per host ([node] name): the failures it read that are in a window, the bans in force it decided."""
    hosts: dict[str, list[int]] = {}
    for counts in in_window.values():
        for node, count in counts.items():
            hosts.setdefault(node, [0, 0])[0] += count
    for ban in active:
        hosts.setdefault(ban.node or "-", [0, 0])[1] += 1
    return [{"host": node, "failures_in_window": failures, "active_bans": bans}
            for node, (failures, bans) in sorted(hosts.items())]


async def ban(ctx: ControlContext, request: Request) -> dict[str, Any]:
    target = _target(request)
    jail = _jail(ctx, request, required=True)
    assert jail is not None
    policy = ctx.policies[jail]
    if policy.protects_any_of(ipaddress.ip_network(target)) and not _flag(request, "force"):
        raise ControlError(f"{target} is or covers an address jail '{jail}' never bans (loopback, ignoreip "
                           "or the host's own); add force to ban it anyway")
    seconds = _ban_seconds(request, policy)
    text = _text(request, "reason") or "by the operator"
    reason = queries.MANUAL + (text[:REASON_LIMIT] + "…" if len(text) > REASON_LIMIT else text)
    now = ctx.now()
    expiry = FOREVER if seconds is None else now + timedelta(seconds=seconds)
    record, replaced = queries.manual_ban(ctx.ledger, jail, target, now, expiry, reason)
    log.info("%s (by hand)%s", record, f", replacing ban #{replaced.id}" if replaced else "",
             extra=event_fields("ban", jail, target))
    ctx.banned(jail, target, expiry, reason)
    ctx.reconcile_now()
    return {"ban": record.as_json(), "replaced": replaced.as_json() if replaced else None}


async def unban(ctx: ControlContext, request: Request) -> dict[str, Any]:
    target = _target(request)
    jail = _text(request, "jail")  # any jail with bans, even one no longer configured
    now = ctx.now()
    ended = queries.unban(ctx.ledger, target, None if jail is None else [jail], now)
    for record in ended:
        log.info("unbanned by hand: %s in %s (%s)", record.address, record.jail, record.reason,
                 extra=event_fields("unban", record.jail, record.address))
        ctx.lifted(record.jail, record.address, record.reason)
    if ended:
        ctx.reconcile_now()
    covering = [b for b in queries.covering_bans(ctx.ledger, target, now) if jail is None or b.jail == jail]
    return {"unbanned": len(ended), "bans": [b.as_json() for b in ended],
            "still_covered_by": [b.as_json() for b in covering]}


async def list_bans(ctx: ControlContext, request: Request) -> dict[str, Any]:
    jail, host = _text(request, "jail"), _text(request, "host")
    return {"bans": [b.as_json() for b in queries.active_bans(ctx.ledger, ctx.now(), jail, host)]}


async def history(ctx: ControlContext, request: Request) -> dict[str, Any]:
    return queries.history(ctx.ledger, _target(request), host=_text(request, "host")).as_json()


async def reload(ctx: ControlContext, request: Request) -> dict[str, Any]:
    problems = tuple(await ctx.reload())
    if problems:
        raise ControlError("the new config has problems; the running one stays", problems)
    return {"reloaded": True}


HANDLERS: dict[str, Handler] = {
    "status": status, "ban": ban, "unban": unban, "list": list_bans, "history": history, "reload": reload,
}
FIELDS: dict[str, frozenset[str]] = {
    "status": frozenset({"host"}), "ban": frozenset({"address", "jail", "for", "forever", "reason", "force"}),
    "unban": frozenset({"address", "jail"}), "list": frozenset({"jail", "host"}),
    "history": frozenset({"address", "host"}),
    "reload": frozenset(),
}


async def dispatch(ctx: ControlContext, request: object) -> dict[str, Any]:
    """The reply to one decoded request; never raises."""
    if not isinstance(request, dict):
        return error_reply("a request is a JSON object like {\"command\": \"status\"}")
    command = request.get("command")
    if not isinstance(command, str) or command not in HANDLERS:
        return error_reply(f"unknown command {command!r}; known: {', '.join(HANDLERS)}")
    unknown = set(request) - FIELDS[command] - {"command"}
    if unknown:
        return error_reply(f"{command}: unknown field(s) {', '.join(sorted(unknown))}")
    try:
        return {"ok": True, **await HANDLERS[command](ctx, request)}
    except ControlError as exc:
        return error_reply(str(exc), exc.problems)
    except Exception as exc:  # the server must outlive a failing handler (the ledger locked, say)
        log.exception("control command %s failed", command)
        return error_reply(f"{command} failed: {exc}")
