"""Control replies as tables: drawn by rich on a terminal, plain aligned text otherwise.
Pure: JSON in, text out (``rich=True`` for the terminal's form).

The CLI renders what the daemon replied and what it read from the ledger itself
alike, because both are the same JSON (``queries.*.as_json``).
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from journalban.control.tables import drawn, printable
from journalban.events import FOREVER

TEXT_WIDTH = 80  # a log line in a history table is cut here; --json has it whole


def when(iso: str | None) -> str:
    """Local time to the second, ``forever`` for a permanent ban, ``-`` for none."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso)
    if moment >= FOREVER:
        return "forever"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], rich: bool = False) -> str:
    """Columns padded to their widest cell, the last one left ragged; or rich's table."""
    if rich:
        return drawn(headers, rows)
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in (headers, *rows)) for i in range(len(headers) - 1)]
    lines = ["  ".join([*(str(c).ljust(w) for c, w in zip(r, widths, strict=False)), str(r[-1])])
             for r in (headers, *rows)]
    return "\n".join(line.rstrip() for line in lines)


def _cut(text: str, width: int = TEXT_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def bans(items: Sequence[Mapping[str, Any]], rich: bool = False) -> str:
    if not items:
        return "no active bans"
    rows = [(b["jail"], b["address"], b.get("node") or "-", when(b["started_at"]), when(b["expires_at"]), b["reason"])
            for b in items]
    return table(("JAIL", "ADDRESS", "HOST", "SINCE", "UNTIL", "REASON"), rows, rich)


def _ended(ban: Mapping[str, Any]) -> str:
    if ban["ended_at"] is None:
        return "in force, " + ("forever" if ban["forever"] else f"until {when(ban['expires_at'])}")
    return f"{ban['end_reason']} {when(ban['ended_at'])}"


def history(reply: Mapping[str, Any], rich: bool = False) -> str:
    """One timeline: failures and bans by time, each with the host that saw it; each ban says how it ended."""
    events: list[tuple[str, str, str, str, str, str]] = []
    for f in reply["failures"]:
        behind = f" → ban #{f['ban_id']}" if f["ban_id"] else ""
        events.append((f["occurred_at"], "failure", f["jail"], f.get("node") or "-", f["rule"],
                       _cut(f["text"]) + behind))
    for b in reply["bans"]:
        what = f"ban #{b['id']}" + (f" {b['address']}" if b["address"] != reply["address"] else "")
        events.append((b["started_at"], what, b["jail"], b.get("node") or "-", _ended(b), b["reason"]))
    if not events:
        return f"{reply['address']}: no failures and no bans in the ledger"
    events.sort(key=lambda e: datetime.fromisoformat(e[0]))
    text = table(("TIME", "WHAT", "JAIL", "HOST", "RULE / STATE", "DETAIL"), [(when(e[0]), *e[1:]) for e in events],
                 rich)
    shown, total = len(reply["failures"]), reply["failures_total"]
    return text + (f"\n({shown} latest of {total} failures shown)" if total > shown else "")


def _count(value: int | None) -> object:
    return "?" if value is None else value


def status(reply: Mapping[str, Any], rich: bool = False) -> str:
    lines = [table(("JAIL", "FAILURES IN WINDOW", "ACTIVE BANS"),
                   [(j["name"], _count(j["failures_in_window"]), j["active_bans"]) for j in reply["jails"]], rich)]
    hosts = reply.get("hosts")
    if hosts:  # a shared ledger: which host saw what
        lines += ["", table(("HOST", "FAILURES IN WINDOW", "ACTIVE BANS"),
                            [(h["host"], _count(h["failures_in_window"]), h["active_bans"]) for h in hosts], rich)]
    counters = reply.get("counters") or {}
    lines += ["", "pipeline: " + (", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "nothing yet")]
    ledger = reply.get("ledger") or {}
    if ledger.get("spool"):  # a PostgreSQL ledger: reachable or not, and what waits in the spool
        lines.append(f"ledger: {ledger['state']}, {ledger['spooled']} record(s) in the spool {ledger['spool']}")
    for source, numbers in sorted((reply.get("sources") or {}).items()):
        shown = ", ".join(f"{k} {v}" for k, v in numbers.items()) if isinstance(numbers, dict) else str(numbers)
        lines.append(f"{source}: {shown}")
    last = reply.get("last_reconcile")
    if last is None:
        lines.append("last reconcile: not yet")
    else:
        healed = sum(len(h["restored"]) + len(h["removed"]) + h["layout"] for h in last["healed"])
        lines.append(f"last reconcile: {when(last['at'])}, {len(last['applied'])} change(s) applied, "
                     f"{last['expired']} expired, {healed} drift(s) healed" + (", FAILED" if last["failed"] else ""))
    return "\n".join(lines)
