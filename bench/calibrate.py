"""How fast this machine is right now, on fixed work that owes nothing to journalban.

    .venv/bin/python -m bench.calibrate

The machine is shared, and its speed moves with what runs beside it on the host, which
the load average inside it does not show: the daemon's throughput run of one commit
took 5.06 s of its main thread's CPU one evening and 3.19-3.67 s the next night, at a
load of 1.1 and 0.6. CPU time alone does not make figures comparable across runs.

Two fixed workloads, each timed in CPU seconds, best of three:

- python: the interpreter's everyday work on the daemon's hot path (a regex over a log
  line, a dict of tuples keyed by address text, float arithmetic);
- sqlite: 100,000 rows inserted into a WAL database on disk with an index on a random
  text key, a commit every 4,000 rows (the ledger's kind of write).

``bench.run`` takes them at its start and its end; a figure from a run whose
calibration is 1.5x slower is not a 1.5x slower journalban.
"""

from __future__ import annotations

import random
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_LINE = "Nov 26 17:58:01 web1 sshd[4242]: Failed password for root from 203.0.113.{} port 22 ssh2"
_PATTERN = re.compile(r"Failed password for (?P<user>\S+) from (?P<address>[0-9.]+) port \d+ ssh2")
ROUNDS = 3


def python_work(n: int = 300_000) -> None:
    held: dict[str, tuple[float, ...]] = {}
    for i in range(n):
        found = _PATTERN.search(_LINE.format(i & 255))
        if found is not None:
            address = found["address"]
            times = held.get(address, ())
            held[address] = (*times[-4:], i * 0.5)


def sqlite_work(rows: int = 100_000, per_commit: int = 4_000) -> None:
    chooser = random.Random(9)
    with tempfile.TemporaryDirectory(prefix="jb-calibrate-") as scratch:
        db = sqlite3.connect(Path(scratch) / "c.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, at TEXT, address TEXT, text TEXT)")
        db.execute("CREATE INDEX t_address_at ON t (address, at)")
        for start in range(0, rows, per_commit):
            batch = [(f"2026-11-26 17:58:{i % 60:02d}.{i:06d}", f"10.{chooser.randrange(256)}."
                      f"{chooser.randrange(256)}.{chooser.randrange(256)}", _LINE)
                     for i in range(start, start + per_commit)]
            db.execute("BEGIN")
            db.executemany("INSERT INTO t (at, address, text) VALUES (?, ?, ?)", batch)
            db.execute("COMMIT")
        db.close()


def cpu_seconds(work: Callable[[], None], rounds: int = ROUNDS) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def calibration() -> dict[str, float]:
    """CPU seconds of each fixed workload, best of ``ROUNDS``."""
    return {"python": cpu_seconds(python_work), "sqlite": cpu_seconds(sqlite_work)}


def shown(measured: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.3f} s" for name, seconds in measured.items())


def main() -> None:
    print(f"calibration (CPU seconds, best of {ROUNDS}; less is a faster machine): {shown(calibration())}")


if __name__ == "__main__":
    main()
