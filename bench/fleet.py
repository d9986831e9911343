"""A fleet on one PostgreSQL: aggregate recording throughput, and ban → DROP on another host.

    .venv/bin/python -m bench.fleet [--hosts 20] [--seconds 10] [--batch 500] [--bans 500] [--ban-rate 20]
                                    [--skip throughput,latency] [--json]

Both parts run against a temporary PostgreSQL 15 (``tests.postgres``: Unix socket,
``fsync=off``, ``synchronous_commit=off``, as in the tests; a production server with
``fsync`` on commits slower).

- **throughput**: ``--hosts`` processes, each a simulated host with its own ``[node]
  name``, record batches of ``--batch`` failures of a fleet-scoped jail (one ban per
  batch) through ``Ledger.record``, the daemon's write path (multi-row INSERTs, the
  ban, the source position, the fleet's ``NOTIFY``) for ``--seconds`` seconds, all at
  once. Figure: failures committed per second, all hosts together (target ≥ 20,000).
- **latency**: one real ``journalban run`` in a network namespace of its own, with
  the nftables firewall and a fleet-scoped jail, is "another host"; this process is
  the deciding host and records ``--bans`` bans (``--ban-rate`` per second) as its
  pipeline would. A watcher inside the namespace follows the kernel's events (``nft
  monitor``; ``--watch poll``: lists the set every 5 ms, as before, which spawns 200
  ``nft`` a second on the cores being measured).
  Figure: p50/p99 from the start of the deciding host's ``record`` to the address in
  the other host's kernel set (target p99 ≤ 1 s). The periodic reconcile is set to
  5 minutes, so only ``LISTEN/NOTIFY`` can deliver in time. Twenty real daemons in
  twenty namespaces are not started: on two cores their start-up alone would be
  measured; the other nineteen hosts' load is the throughput part's (run
  ``--load-hosts N`` to keep N recording hosts busy during the latency part, and
  ``--load-rate R`` to pace each at R failures/s: ``--load-hosts 19 --load-rate 1053``
  is the fleet at the throughput target, 20,000 failures/s, while bans travel).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from journalban.events import BanDecision, Failure  # noqa: E402
from journalban.ledger.store import Ledger  # noqa: E402
from journalban.sources.files import Position  # noqa: E402

JAIL = "wplogin"
ARRIVAL_GRACE = 30.0  # seconds the watcher waits for the last bans once all are recorded
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable

# Lists the nftables set every 5 ms inside the namespace; prints "ADDRESS UNIX_TIME" per new element.
# (--watch poll: 200 nft processes a second, on the cores the daemon is measured on.)
WATCH_POLL = r"""
import json, subprocess, sys, time
want, deadline, seen = int(sys.argv[1]), time.time() + float(sys.argv[2]), set()
print("watching", flush=True)
while len(seen) < want and time.time() < deadline:
    out = subprocess.run(["nft", "-j", "list", "set", "inet", "journalban", sys.argv[3]],
                         capture_output=True, text=True).stdout
    now = time.time()
    try:
        items = json.loads(out)["nftables"]
    except ValueError:
        items = []
    for item in items:
        for element in item.get("set", {}).get("elem", ()):
            address = element if isinstance(element, str) else element.get("elem", {}).get("val")
            if isinstance(address, str) and address not in seen:
                seen.add(address)
                print(address, now, flush=True)
    time.sleep(0.005)
"""

# Follows the kernel's netlink events inside the namespace (``nft monitor``): the time each
# element is committed to the set, with no polling load; prints "ADDRESS UNIX_TIME" per new one.
WATCH_MONITOR = r"""
import os, selectors, signal, subprocess, sys, time
want, deadline, name, seen = int(sys.argv[1]), time.time() + float(sys.argv[2]), sys.argv[3], set()
monitor = subprocess.Popen(["nft", "monitor", "new", "elements"], stdout=subprocess.PIPE)
signal.signal(signal.SIGTERM, lambda *_: (monitor.terminate(), sys.exit(0)))  # stopped early: nft too
time.sleep(0.5)  # subscribed before the first ban
print("watching", flush=True)
selector, pending = selectors.DefaultSelector(), b""
selector.register(monitor.stdout, selectors.EVENT_READ)
while len(seen) < want and time.time() < deadline:
    if not selector.select(max(0.0, deadline - time.time())):
        continue
    chunk = os.read(monitor.stdout.fileno(), 65536)
    now = time.time()
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    for line in lines:  # "add element inet journalban wplogin-4 { 192.0.2.5 }"
        text = line.decode()
        if f" {name} {{" not in text:
            continue
        for element in text.split("{", 1)[1].rsplit("}", 1)[0].split(","):
            words = element.split()
            if words and words[0] not in seen:
                seen.add(words[0])
                print(words[0], now, flush=True)
monitor.terminate()
"""
WATCHERS = {"monitor": WATCH_MONITOR, "poll": WATCH_POLL}


def _address(host: int, n: int) -> str:
    """A distinct address per simulated host and number (n < 65,536)."""
    return f"10.{host}.{n >> 8 & 0xFF}.{n & 0xFF}"


def _feeder(url: str, host: int, seconds: float, batch: int, start: multiprocessing.synchronize.Event,
            results: multiprocessing.Queue[tuple[int, int, float, float]], jail: str = JAIL,
            rate: float = 0.0) -> None:
    """One simulated host: record batches for ``seconds`` (at ``rate`` failures/s, or as fast
    as it can when 0); report failures and its time span."""
    ledger = Ledger(url, node=f"host{host:02d}", fleet_jails={jail})
    now = datetime.now(UTC)
    batches = []
    for b in range(64):  # prepared up front: the figure is the ledger's, not the generator's
        failures = [Failure(jail, _address(host, (b * batch + i) % 60000), now - timedelta(seconds=1),
                            "wp-limit-login/lockout", f"IP locked out by wp-limit-login: {_address(host, i)}",
                            "file:/var/log/wp.log") for i in range(batch)]
        batches.append(failures)
    ledger.last_failure_id()  # connected before the clock starts
    start.wait()
    began, recorded, number = time.monotonic(), 0, 0
    while time.monotonic() - began < seconds:
        if rate:  # paced: the next batch is due once the ones before it fill the rate
            time.sleep(max(0.0, began + recorded / rate - time.monotonic()))
        failures = batches[number % len(batches)]
        decision = BanDecision(jail, f"10.{100 + host}.{number >> 8 & 0xFF}.{number & 0xFF}", now,
                               now + timedelta(minutes=10), "bench", (failures[-1],))
        ledger.record(failures, [decision], {"file:/var/log/wp.log": Position(1, number * batch * 80)},
                      datetime.now(UTC))
        recorded += len(failures)
        number += 1
    ended = time.monotonic()
    ledger.close()
    results.put((host, recorded, began, ended))


def throughput(url: str, hosts: int, seconds: float, batch: int) -> dict[str, float]:
    context = multiprocessing.get_context("fork")
    start = context.Event()
    results: multiprocessing.Queue[tuple[int, int, float, float]] = context.Queue()
    feeders = [context.Process(target=_feeder, args=(url, h, seconds, batch, start, results)) for h in range(hosts)]
    for feeder in feeders:
        feeder.start()
    time.sleep(2.0)  # every host connected and its batches built
    start.set()
    rows = [results.get(timeout=seconds + 120) for _ in feeders]
    for feeder in feeders:
        feeder.join(timeout=30)
    total = sum(r[1] for r in rows)
    span = max(r[3] for r in rows) - min(r[2] for r in rows)
    return {"hosts": hosts, "batch": batch, "failures": total, "seconds": round(span, 2),
            "failures_per_s": round(total / span), "slowest_host_per_s": round(min(r[1] / (r[3] - r[2]) for r in rows))}


def _config(directory: Path, url: str) -> Path:
    log = directory / "wp.log"
    log.touch()
    config = directory / "journalban.toml"
    config.write_text(f"""
[control]
socket = "{directory / 'control.sock'}"
[ledger]
url = "{url}"
spool = "{directory / 'spool.db'}"
[node]
name = "other"
[reconcile]
interval = "5m"
[jails.{JAIL}]
grammar = "wp-limit-login"
files = ["{log}"]
maxretry = 3
findtime = "10m"
bantime = "1h"
firewall = "nftables"
scope = "fleet"
""")
    return config


def latency(url: str, bans: int, rate: float, load_hosts: int, load_rate: float = 0.0,
            seconds_per_ban_timeout: float = 5.0, watch: str = "monitor") -> dict[str, object]:
    from tests.netns import namespace

    with tempfile.TemporaryDirectory(prefix="jb-bench-fleet-") as tmp, namespace("jb-bfleet") as ns:
        directory = Path(tmp)
        daemon_log = directory / "daemon.log"
        with daemon_log.open("w") as stderr:
            daemon = ns.popen([PYTHON, "-m", "journalban", "run", "-c", str(_config(directory, url))],
                              stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 60
            while "journalban ready" not in daemon_log.read_text():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the other host's daemon did not start:\n{daemon_log.read_text()}")
                time.sleep(0.1)
            watcher = ns.popen([PYTHON, "-c", WATCHERS[watch], str(bans), str(bans / rate + 3600), f"{JAIL}-4"],
                               stdout=subprocess.PIPE)
            assert watcher.stdout is not None
            watcher.stdout.readline()  # "watching"
            load = _background_load(url, load_hosts, load_rate)
            decider = Ledger(url, node="decider", fleet_jails={JAIL})
            started: dict[str, float] = {}
            recorded: dict[str, float] = {}  # when the deciding host's commit returned
            now = datetime.now(UTC)
            begin = time.monotonic()
            for n in range(bans):
                address = f"192.0.{2 + (n >> 8)}.{n & 0xFF}" if n < 512 else f"203.0.{n >> 8}.{n & 0xFF}"
                failure = Failure(JAIL, address, now, "wp-limit-login/lockout", f"locked out: {address}",
                                  "file:/var/log/wp.log")
                decision = BanDecision(JAIL, address, now, now + timedelta(hours=1), "bench", (failure,))
                due = begin + n / rate
                time.sleep(max(0.0, due - time.monotonic()))
                started[address] = time.time()
                decider.record([failure], [decision], {}, datetime.now(UTC))
                recorded[address] = time.time()
            decider.close()
            # The watcher stops at the last ban, or ARRIVAL_GRACE seconds after the deciding host
            # recorded it (on a machine so loaded that the deciding host falls behind its rate,
            # a deadline from the start would cut off bans it recorded late).
            stop = threading.Timer(ARRIVAL_GRACE, watcher.terminate)
            stop.start()
            seen: dict[str, float] = {}
            for line in watcher.stdout:
                address, at = line.split()
                seen[address] = float(at)
            stop.cancel()
            watcher.wait(timeout=30)
            for process in load:
                process.terminate()
            for process in load:
                process.join(timeout=30)
        finally:
            daemon.terminate()
            try:
                daemon.wait(timeout=90)
            except subprocess.TimeoutExpired:  # a machine this loaded: the figures stand, the daemon goes
                print(f"the other host's daemon did not stop in 90 s; killed:\n{daemon_log.read_text()[-3000:]}",
                      file=sys.stderr)
                daemon.kill()
                daemon.wait(timeout=30)
    delays = sorted((seen[a] - t) * 1000 for a, t in started.items() if a in seen)
    first = min(started.values(), default=0.0)
    commits = sorted((recorded[a] - t) * 1000 for a, t in started.items())
    if not delays:
        raise SystemExit("no ban reached the other host's kernel")
    return {"bans": bans, "rate_per_s": rate, "load_hosts": load_hosts, "load_rate": load_rate, "watch": watch,
            "arrived": len(delays),
            "p50_ms": round(statistics.median(delays), 1),
            "p99_ms": round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 1),
            "max_ms": round(delays[-1], 1),
            "commit_p50_ms": round(statistics.median(commits), 1),
            "commit_p99_ms": round(commits[min(len(commits) - 1, int(len(commits) * 0.99))], 1),
            # when the slowest 1% were decided (seconds into the run): one stall, or spread out?
            "slowest_at_s": sorted(round(started[a] - first, 1) for a in sorted(
                (a for a in started if a in seen), key=lambda a: seen[a] - started[a])[-max(1, len(delays) // 100):])}


def _background_load(url: str, hosts: int, rate: float = 0.0) -> list[multiprocessing.process.BaseProcess]:
    """Hosts recording meanwhile (``rate`` failures/s each, 0: as fast as they can), in a
    fleet-scoped jail the other host does not run (otherwise it would count their failures
    and open their bans: another benchmark)."""
    if not hosts:
        return []
    context = multiprocessing.get_context("fork")
    start = context.Event()
    results: multiprocessing.Queue[tuple[int, int, float, float]] = context.Queue()
    load: list[multiprocessing.process.BaseProcess] = [
        context.Process(target=_feeder, args=(url, 200 + h, 3600.0, 200, start, results, "sshd", rate), daemon=True)
        for h in range(hosts)]
    for process in load:
        process.start()
    time.sleep(2.0)
    start.set()
    return load


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=500, help="failures per recorded batch (a poll's worth)")
    parser.add_argument("--bans", type=int, default=500)
    parser.add_argument("--ban-rate", type=float, default=20.0, help="bans per second on the deciding host")
    parser.add_argument("--load-hosts", type=int, default=0, help="hosts recording during the latency part")
    parser.add_argument("--load-rate", type=float, default=0.0,
                        help="failures/s each load host records (0: as fast as it can)")
    parser.add_argument("--watch", choices=sorted(WATCHERS), default="monitor",
                        help="how the other host's kernel set is watched: nft monitor events, or a listing every 5 ms")
    parser.add_argument("--skip", default="", help="comma list: throughput, latency")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    from tests.postgres import running_postgres

    out: dict[str, object] = {"load_before": os.getloadavg()[0]}
    with running_postgres() as server:
        if "throughput" not in skip:
            url = server.create_database("bench_fleet")
            Ledger(url, node="admin").upgrade()
            out["throughput"] = throughput(url, args.hosts, args.seconds, args.batch)
            _show("throughput", out["throughput"])
        if "latency" not in skip:
            url = server.create_database("bench_fleet")
            Ledger(url, node="admin").upgrade()
            out["latency"] = latency(url, args.bans, args.ban_rate, args.load_hosts, args.load_rate, watch=args.watch)
            _show("latency", out["latency"])
    out["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))
    else:
        print(f"load average (1 min): {out['load_before']:.2f} before, {out['load_after']:.2f} after")


def _show(part: str, figures: object) -> None:
    assert isinstance(figures, dict)
    if part == "throughput":
        verdict = "met" if figures["failures_per_s"] >= 20000 else "MISSED"
        print(f"throughput: {figures['hosts']} hosts, {figures['failures']:,} failures in {figures['seconds']} s = "
              f"{figures['failures_per_s']:,} failures/s into the ledger (target >= 20,000: {verdict}); "
              f"slowest host {figures['slowest_host_per_s']:,}/s; batches of {figures['batch']}", flush=True)
    else:
        verdict = "met" if figures["p99_ms"] <= 1000 and figures["arrived"] == figures["bans"] else "MISSED"
        pace = f"each at {figures['load_rate']:,.0f} failures/s" if figures["load_rate"] else "at full speed"
        print(f"latency: {figures['arrived']}/{figures['bans']} bans at {figures['rate_per_s']}/s reached the other "
              f"host's nftables set; record start -> element in the kernel p50 {figures['p50_ms']} ms, "
              f"p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms (target p99 <= 1000 ms: {verdict}); "
              f"{figures['load_hosts']} other host(s) recording meanwhile, "
              f"{pace}; "
              f"watched by {figures['watch']}; "
              f"the deciding host's own commit p50 {figures['commit_p50_ms']} ms, p99 {figures['commit_p99_ms']} ms; "
              f"the slowest 1% decided at {figures['slowest_at_s']} s into the run",
              flush=True)


if __name__ == "__main__":
    main()
