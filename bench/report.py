"""How long ``journalban report`` takes on a big ledger: collect, then each renderer.

    .venv/bin/python -m bench.report [--failures 1000000] [--bans 100000] [--days 30] [--keep DIR]

A SQLite ledger in a temporary directory (or ``--keep DIR``, reused when it is
already there) is filled by bulk inserts, not timed: failures from 20,000 addresses
(a tenth IPv6) in five jails and eight rules over ``--days`` days, bans of those
addresses with ban times from 10 minutes to permanent, the newest 2,000 still active.
The schema comes from ``Ledger.upgrade``, so it has migration 0007's
``ix_failures_report``, which lets SQLite group failures by hour, rule and host without
sorting them. Then ``collect`` over the whole window and each renderer are timed, best
of three, with the machine's load printed beside (the figures scale with it).
Target: collect plus any renderer under 3 s.
"""

import argparse
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from journalban.ledger.store import Ledger
from journalban.ledger.views import ban_seconds, day_of, network_of
from journalban.report import render_csv, render_html, render_json, render_text
from journalban.report.collect import collect

JAILS = ("sshd", "nginx", "postfix", "dovecot", "wordpress")
RULES = tuple(f"{jail}/{rule}" for jail in JAILS[:4] for rule in ("fail", "invalid"))
BAN_SECONDS = (600, 3600, 86400, 7 * 86400, None)  # None: permanent
STAMP = "%Y-%m-%d %H:%M:%S.%f"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
ACTIVE = 2000


def addresses(rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        if rng.random() < 0.1:
            out.append(f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}")
        else:
            out.append(f"{rng.choice([23, 45, 61, 89, 103, 185, 193])}.{rng.randrange(256)}.{rng.randrange(256)}."
                       f"{rng.randrange(1, 255)}")
    return out


def fill(path: Path, failures: int, bans: int, days: int) -> None:
    ledger = Ledger(f"sqlite:///{path}")
    ledger.upgrade()
    ledger.close()
    rng = random.Random(2013)
    pool = list(dict.fromkeys(addresses(rng, 20_000)))
    start = NOW - timedelta(days=days)
    span = days * 86400
    db = sqlite3.connect(path)

    def ban_rows() -> Iterator[tuple[object, ...]]:
        for index in range(bans):
            active = index >= bans - ACTIVE  # the newest, each address once: one active ban per jail and address
            address = pool[index % len(pool)] if active else rng.choice(pool)
            seconds = None if active else rng.choice(BAN_SECONDS)
            began = start + timedelta(seconds=span * index / bans)
            expiry = datetime(9999, 12, 31, tzinfo=UTC) if seconds is None else began + timedelta(seconds=seconds)
            ended, reason = (None, None) if active else (min(expiry, NOW), "expired")
            yield (JAILS[index % len(JAILS)], address,
                   began.strftime(STAMP), expiry.strftime(STAMP), f"5 failures in 600s from {address}",
                   None if ended is None else ended.strftime(STAMP), reason, day_of(began), network_of(address),
                   ban_seconds(began, expiry))

    db.executemany("INSERT INTO bans (jail, address, started_at, expires_at, reason, ended_at, end_reason, day, "
                   "network, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ban_rows())

    def failure_rows() -> Iterator[tuple[object, ...]]:
        for index in range(failures):
            address = rng.choice(pool)
            when = start + timedelta(seconds=span * index / failures)
            rule = rng.choice(RULES)
            yield (when.strftime(STAMP), when.strftime(STAMP), rule.split("/")[0], address, rule,
                   f"Failed password for root from {address} port 22 ssh2", "journal",
                   rng.randrange(1, bans + 1) if rng.random() < 0.3 else None, day_of(when), network_of(address))

    db.executemany("INSERT INTO failures (occurred_at, recorded_at, jail, address, rule, text, source, ban_id, day, "
                   "network) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", failure_rows())
    db.commit()
    db.close()


def best_of(runs: int, step: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failures", type=int, default=1_000_000)
    parser.add_argument("--bans", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="Directory for the ledger, kept (and reused) afterwards.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jb-report-") as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"ledger-{args.failures}-{args.bans}.db"
        if not path.exists():
            started = time.perf_counter()
            fill(path, args.failures, args.bans, args.days)
            print(f"filled {path} with {args.failures:,} failures and {args.bans:,} bans "
                  f"in {time.perf_counter() - started:.1f} s (not part of the figures)")
        url = f"sqlite:///{path}"
        since = NOW - timedelta(days=args.days)
        print("load average: " + ", ".join(f"{n:.2f}" for n in os.getloadavg()))
        seconds, data = best_of(3, lambda: collect(url, since, now=NOW))
        print(f"| step | seconds (best of 3) |\n|---|---|\n| collect | {seconds:.3f} |")
        total = seconds
        for name, render in (("text", render_text), ("json", render_json), ("csv", render_csv),
                             ("html", render_html)):
            rendered_seconds, rendered = best_of(3, lambda render=render: render(data))  # type: ignore[misc]
            total = max(total, seconds + rendered_seconds)
            print(f"| render {name} ({len(str(rendered)):,} characters) | {rendered_seconds:.3f} |")
        print(f"\nslowest collect + render: {total:.3f} s (target < 3 s)")


if __name__ == "__main__":
    main()
