"""The whole daemon: throughput, detection latency (beside fail2ban's), start-up, memory.

    .venv/bin/python -m bench.daemon [--lines 1000000] [--latency-bans 1000] [--latency-kinds file,journald,syslog]
                                     [--latency-backends nftables,iptables] [--latency-in-force 100000]
                                     [--background-rate 50000]
                                     [--f2b-bans 300] [--startup-bans 100000]
                                     [--rss-lines 3000000 --rss-sources 1000000] [--profile-lines 300000]
                                     [--skip throughput,latency,kernel,f2b-latency,startup,rss,profile]

Every run is ``journalban run`` as a child process in a temporary directory (removed at
the end): SQLite ledger and ``[control] socket`` there, ``[sources.files] poll_interval =
0.05``, ``ignoreself = false``, one jail on a file there; firewall ``dry-run`` unless said.

1. **Throughput.** Jail ``sshd`` (``applies syslog``: the file is read as syslog), maxretry
   5, findtime 10m. ``corpus.py sshd N --start now --span 60`` is generated first, then
   appended to the followed file in 1 MiB writes as fast as possible once the daemon
   says "journalban ready". Timed from the first write until ``SELECT count(*) FROM
   failures`` equals the corpus's failure count (polled every 0.1 s, bounded), and the
   set of banned addresses must equal the bans of ``journalban replay -g sshd FILE --json
   --maxretry 5 --findtime 600`` on the same file. Target >= 500,000 lines/s.
2. **Detection latency** (``bench/latency.py`` says how): one jail, maxretry 1, reading a
   followed file, a journald namespace instance and a TCP syslog listener, while
   ``--background-rate`` (50,000) non-failure lines a second go to it: 20,000 to that
   journald instance (rate limit off; one journald stores about 29,000 a second here), the
   rest to a second file the jail follows. Per intake kind (``--latency-kinds``) ``--latency-bans`` failures with new
   addresses are written, 0-50 ms apart: p50/p99/max from the write to the ban row in the
   ledger (``latency``: dry-run) and to the DROP in the kernel (``kernel``: nftables and
   iptables, each in a network namespace, the moment ``nft monitor`` reports it), and for
   nftables once more with ``--latency-in-force`` (100,000) active bans in the ledger from
   the start, a botnet's worth: a new ban must not wait for them. Target
   p99 <= 50 ms. ``f2b-latency``: fail2ban 1.0 in a namespace, backends polling and
   pyinotify, ``--f2b-bans`` lines appended to its file, to its DROP rule (same watcher).
3. **Start-up** with ``--startup-bans`` active bans written straight into the ledger's
   ``bans`` table and an empty firewall: from process start to "journalban ready" on
   stderr; dry-run, and ipset and nftables in a network namespace. Target <= 5 s. The
   daemon's VmRSS a second after ready is the "RSS with N active bans" figure (<= 200 MB).
4. **Memory.** Jail ``wp-limit-login`` (raw lines), maxretry 1,000,000,000, findtime 1h:
   ``corpus.py wplimit L --sources S --start now --span 300`` appended; once every failure
   is in the ledger, VmRSS (and VmHWM) of the daemon from /proc/PID/status, with S
   addresses in its windows. Target <= 200 MB.
5. **Profile** (``--profile-lines``): run 1 again under ``python -m cProfile`` (the main
   thread only: the reconcile scheduler's thread is not seen) and print where the time
   goes, grouped by stage of the file path.

``JOURNALBAN_BENCH_TREE=DIR`` runs the daemon from another tree (its working directory,
which ``python -m`` puts before ``PYTHONPATH``), e.g. ``git archive HEAD journalban grammars
migrations packaging | tar -x -C DIR``: the previous commit, A/B on the same machine state.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pstats
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.run import Figure

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
TREE = Path(os.environ.get("JOURNALBAN_BENCH_TREE") or ROOT)  # the journalban the daemon runs

from bench.latency import KINDS  # noqa: E402
from bench.replay import PYTHON, Corpus, corpus  # noqa: E402

NODE = "bench"
STAMP = "%Y-%m-%d %H:%M:%S.%f"
TARGET_RATE = 500_000
TARGET_P99_MS = 50.0
TARGET_STARTUP = 5.0
TARGET_RSS_MB = 200.0


def config(tmp: Path, log: Path, grammar: str, maxretry: int, findtime: str, firewall: str = "dry-run",
           also: Sequence[Path] = (), poll: float = 0.05) -> Path:
    files = ", ".join(f'"{f}"' for f in (log, *also))
    path = tmp / "journalban.toml"
    path.write_text(f"""
[control]
socket = "{tmp}/control.sock"

[ledger]
url = "sqlite:///{tmp}/ledger.db"

[node]
name = "{NODE}"

[sources.files]
poll_interval = {poll}

[sources.journal]
enabled = false

[jails.bench]
grammar = "{grammar}"
files = [{files}]
maxretry = {maxretry}
findtime = "{findtime}"
firewall = "{firewall}"
ignoreself = false
""")
    return path


class Daemon:
    """``journalban run`` as a child; optionally inside a namespace or under cProfile."""

    def __init__(self, tmp: Path, cfg: Path, prefix: Sequence[str] = (), profile: Path | None = None) -> None:
        self.tmp = tmp
        self.stderr = tmp / f"daemon-{time.monotonic_ns()}.log"
        argv = [PYTHON, *(["-m", "cProfile", "-o", str(profile)] if profile else []), "-m", "journalban", "run",
                "-c", str(cfg)]
        self._err = self.stderr.open("w")
        self.started = time.perf_counter()
        self.process = subprocess.Popen([*prefix, *argv], stdout=subprocess.DEVNULL, stderr=self._err, cwd=TREE)
        self.ready_at: float | None = None

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from process start to "journalban ready"."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if "journalban ready" in self.stderr.read_text(errors="replace"):
                self.ready_at = time.perf_counter()
                return self.ready_at - self.started
            if self.process.poll() is not None:
                raise RuntimeError(f"journalban exited {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(0.01)
        raise RuntimeError(f"journalban not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-3000:]

    def rss(self) -> tuple[float, float]:
        """VmRSS and VmHWM in MB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        values = {k: int(v.split()[0]) / 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.*)$", status, re.M)}
        return values["VmRSS"], values["VmHWM"]

    def thread_cpu(self) -> dict[str, float]:
        """User + system CPU seconds of each of the daemon's threads so far, by "name:tid"
        (the main thread's id is the process's): how much of a core each one used,
        which the machine's load moves far less than a wall clock."""
        out: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        tasks = Path(f"/proc/{self.process.pid}/task")
        for task in tasks.iterdir() if tasks.exists() else ():
            try:
                stat = (task / "stat").read_text()
                name = (task / "comm").read_text().strip()
            except OSError:  # the thread ended meanwhile
                continue
            fields = stat.rsplit(")", 1)[1].split()
            out[f"{name}:{task.name}"] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._err.close()


@contextlib.contextmanager
def daemon(tmp: Path, cfg: Path, prefix: Sequence[str] = (), profile: Path | None = None) -> Iterator[Daemon]:
    running = Daemon(tmp, cfg, prefix, profile)
    try:
        yield running
    finally:
        running.stop()


def query(tmp: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    path = tmp / "ledger.db"
    if not path.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []


def failures(tmp: Path) -> int:
    rows = query(tmp, "SELECT count(*) FROM failures")
    return int(str(rows[0][0])) if rows else 0


def banned(tmp: Path) -> set[str]:
    return {str(r[0]) for r in query(tmp, "SELECT DISTINCT address FROM bans")}


def append(source: Path, target: Path, chunk: int = 1 << 20) -> float:
    """Copy ``source`` onto the end of ``target``; returns the seconds it took."""
    started = time.perf_counter()
    with source.open("rb") as src, target.open("ab", buffering=0) as dst:
        while data := src.read(chunk):
            dst.write(data)
    return time.perf_counter() - started


def replay_bans(path: Path, grammar: str, maxretry: int, findtime: int) -> set[str]:
    done = subprocess.run([PYTHON, "-m", "journalban", "replay", "-g", grammar, str(path), "--json",
                           "--maxretry", str(maxretry), "--findtime", str(findtime)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return {b["address"] for b in json.loads(done.stdout)["bans"]}


# --- 1. throughput --------------------------------------------------------------------------------------


def throughput(tmp: Path, data: Corpus, expected_bans: set[str], profile: Path | None = None) -> dict[str, object]:
    work = tmp / ("profile" if profile else "throughput")
    work.mkdir()
    log = work / "auth.log"
    log.touch()
    cfg = config(work, log, "sshd", 5, "10m")
    with daemon(work, cfg, profile=profile) as running:
        ready = running.wait_ready()
        before = running.thread_cpu()
        started = time.perf_counter()
        writing = append(data.path, log)
        deadline = started + max(120.0, data.lines / 10_000)
        seen = 0
        while time.perf_counter() < deadline and running.process.poll() is None:
            seen = failures(work)
            if seen >= data.failures:
                break
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        used = {name: cpu - before.get(name, 0.0) for name, cpu in running.thread_cpu().items()}
        main = sum(used.pop(name) for name in list(used) if name.endswith(f":{running.process.pid}"))
        bans = banned(work)
        tail = running.log_tail()
    return {"seconds": seconds, "main_cpu": main, "other_cpu": sum(used.values()),
            "writing": writing, "ready": ready, "failures": seen, "bans": bans,
            "bans_ok": bans == expected_bans, "missing": len(expected_bans - bans), "extra": len(bans - expected_bans),
            "complete": seen >= data.failures, "tail": tail}


# --- 3. start-up ------------------------------------------------------------------------------------------


def fill_bans(tmp: Path, cfg: Path, count: int) -> None:
    """The schema (``journalban db upgrade``), then ``count`` active bans in jail ``bench``."""
    subprocess.run([PYTHON, "-m", "journalban", "db", "upgrade", "-c", str(cfg)], cwd=ROOT, check=True,
                   capture_output=True)
    now = datetime.now(UTC).replace(tzinfo=None)
    started, expires = (now - timedelta(minutes=1)).strftime(STAMP), (now + timedelta(days=1)).strftime(STAMP)
    rows = ((f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" if i else "10.255.255.254", started, expires)
            for i in range(1, count + 1))
    with contextlib.closing(sqlite3.connect(tmp / "ledger.db")) as db, db:
        db.executemany("INSERT INTO bans (jail, address, started_at, expires_at, reason, node) "
                       "VALUES ('bench', ?, ?, ?, 'bench', 'bench')", rows)


def startup(tmp: Path, count: int, firewall: str) -> tuple[float, str, float]:
    work = tmp / f"startup-{firewall}"
    work.mkdir()
    log = work / "auth.log"
    log.touch()
    cfg = config(work, log, "sshd", 5, "10m", firewall)
    fill_bans(work, cfg, count)
    with contextlib.ExitStack() as stack:
        prefix: list[str] = []
        ns = None
        if firewall != "dry-run":
            from tests.netns import namespace

            ns = stack.enter_context(namespace("jb-bench"))
            prefix = ["ip", "netns", "exec", ns.name]
        running = stack.enter_context(daemon(work, cfg, prefix))
        seconds = running.wait_ready(timeout=300)
        time.sleep(1.0)  # the first reconcile's garbage is gone
        rss, hwm = running.rss()
        note = f"RSS at ready {rss:.0f} MB (VmHWM {hwm:.0f} MB)"
        if ns is not None and firewall == "ipset":
            listing = ns.run(["ipset", "list", "-t"], check=False).stdout
            entries = sum(int(n) for n in re.findall(r"Number of entries: (\d+)", listing))
            note += f"; {entries:,} entries in the kernel's sets at ready"
        if ns is not None and firewall == "nftables":
            listing = ns.run(["nft", "list", "set", "inet", "journalban", "bench-4"], check=False).stdout
            note += f"; {listing.count(',') + 1 if 'elements' in listing else 0:,} elements in the kernel's set"
        reconciled = re.search(r"firewall reconciled at start[^\n]*", running.log_tail())
        if reconciled:
            note += "; " + reconciled.group(0)
    return seconds, note, rss


# --- 4. memory --------------------------------------------------------------------------------------------


def memory(tmp: Path, lines: int, sources: int) -> dict[str, object]:
    work = tmp / "rss"
    work.mkdir()
    data = corpus("wplimit", lines, work / "wplimit.corpus", "--sources", str(sources), "--start", "now",
                  "--span", "300")
    log = work / "wp.log"
    log.touch()
    cfg = config(work, log, "wp-limit-login", 1_000_000_000, "1h")
    with daemon(work, cfg) as running:
        running.wait_ready()
        idle_rss, _ = running.rss()
        started = time.perf_counter()
        append(data.path, log)
        deadline = started + max(300.0, lines / 2_000)
        seen = 0
        while time.perf_counter() < deadline and running.process.poll() is None:
            seen = failures(work)
            if seen >= data.failures:
                break
            time.sleep(0.25)
        seconds = time.perf_counter() - started
        time.sleep(0.5)
        rss, hwm = running.rss()
        status = running.log_tail()
    data.path.unlink()
    return {"rss": rss, "hwm": hwm, "idle": idle_rss, "failures": seen, "expected": data.failures,
            "addresses": data.addresses, "seconds": seconds, "tail": status}


# --- 5. profile -----------------------------------------------------------------------------------------

STAGES = [
    ("FileFollower.poll (read + split + decode)", "sources/files.py", "poll"),
    ("FollowedFile.events (prefilter + syslog parse)", "intake.py", "events"),
    ("  _syslog_events (the lines' syslog headers)", "sources/lines.py", "_syslog_events"),
    ("Pipeline.process (all below + record)", "pipeline.py", "process"),
    ("  JailMatcher.match_batch (grammar)", "match.py", "match_batch"),
    ("  Detector.observe_batch", "detector.py", "observe_batch"),
    ("  Ledger.writer (a burst's rows and JSON, on this thread)", "ledger/store.py", "writer"),
    ("  Pipeline._record -> Ledger.record (SQLAlchemy + SQLite)", "pipeline.py", "_record"),
    ("    Ledger._record (ORM rows, bans, positions)", "ledger/store.py", "_record"),
    ("    Session.flush (SQLAlchemy unit of work)", "orm/session.py", "flush"),
    ("    Session.commit", "orm/session.py", "commit"),
    ("    sqlite3 execute + executemany (C, SQLite itself)", "~", "<method 'execute' of 'sqlite3.Cursor' objects>"),
    ("", "~", "<method 'executemany' of 'sqlite3.Cursor' objects>"),
    ("Intake.poll_files (whole file path)", "intake.py", "poll_files"),
]


def profile_report(path: Path, lines: int, seconds: float) -> str:
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    total_poll = 0.0
    rows = []
    for label, file_end, func in STAGES:
        cum = sum(v[3] for (f, _, name), v in raw.items() if f.endswith(file_end) and name == func)
        calls = sum(v[1] for (f, _, name), v in raw.items() if f.endswith(file_end) and name == func)
        if func == "poll_files":
            total_poll = cum
        rows.append((label, cum, calls))
    out = [f"cProfile of `journalban run` (main thread) while it took {lines:,} sshd lines "
           f"({seconds:.1f} s wall under the profiler):", "",
           f"{'stage':<62} {'cum s':>8} {'share':>7} {'calls':>9}"]
    merged: list[tuple[str, float, int]] = []
    for label, cum, calls in rows:  # an empty label adds to the row above it
        if not label and merged:
            merged[-1] = (merged[-1][0], merged[-1][1] + cum, merged[-1][2] + calls)
        else:
            merged.append((label, cum, calls))
    for label, cum, calls in merged:
        share = f"{cum / total_poll:6.1%}" if total_poll else "-"
        out.append(f"{label:<62} {cum:8.2f} {share:>7} {calls:9,}")
    buffer = io.StringIO()
    pstats.Stats(str(path), stream=buffer).sort_stats("tottime").print_stats(25)
    body = buffer.getvalue()
    body = body[body.find("   ncalls"):] if "   ncalls" in body else body
    out += ["", "Top 25 functions by own time (tottime), whole process (start-up included: the pyparsing "
            "entries are grammar loading):", "", body.rstrip()]
    return "\n".join(out)


# --- 2. latency figures ------------------------------------------------------------------------------------

PARTS = ("throughput", "latency", "kernel", "f2b-latency", "startup", "rss", "profile")
SKIP_BUT = {part: ",".join(p for p in PARTS if p not in (part, "profile")) for part in PARTS}


def latency_figures(count: int, skip: Sequence[str], background_rate: int, kinds: Sequence[str],
                    backends: Sequence[str], f2b_bans: int, say: Callable[[str], None],
                    in_force: int = 0) -> list[Figure]:
    """Written line -> ban row (dry-run) and -> DROP in the kernel, per intake kind and backend;
    with ``in_force``, nftables again with that many bans in force from the start;
    fail2ban's appended line -> DROP beside them."""
    from bench import latency
    from bench.run import Figure

    figures: list[Figure] = []
    base = ".venv/bin/python -m bench.daemon"
    runs = ([("dry-run", "latency", 0)] if "latency" not in skip else []) + \
        ([(b, "kernel", 0) for b in backends] if "kernel" not in skip else []) + \
        ([("nftables", "kernel", in_force)] if "kernel" not in skip and in_force else [])
    for firewall, part, preloaded in runs if count else []:
        say(f"latency, {firewall}: {count} bans per intake ({', '.join(kinds)}), background {background_rate:,}/s"
            + (f", {preloaded:,} bans in force" if preloaded else ""))
        command = (f"{base} --latency-bans {count} --latency-kinds {','.join(kinds)} --skip {SKIP_BUT[part]}"
                   + (f" --latency-backends {firewall}" if part == "kernel" else "")
                   + (f" --latency-in-force {preloaded}" if preloaded else " --latency-in-force 0"))
        try:
            results, note = latency.journalban(count, firewall, kinds, background_rate, in_force=preloaded)
        except Exception as exc:  # a missing tool or namespace support: say so, go on
            figures.append(Figure(f"daemon: detection latency, {firewall}", None, "ms",
                                  f"p99 <= {TARGET_P99_MS:.0f} ms", False, command, f"failed: {exc}"[:300]))
            continue
        where = ("the ban row in the ledger (dry-run)" if firewall == "dry-run"
                 else f"the DROP in {firewall} (namespace)") + (f", {preloaded:,} bans in force" if preloaded else "")
        for result in results:
            kind = result.what.split(" ")[0]
            if not result.values:
                figures.append(Figure(f"daemon: detection latency, {kind} line written to {where}", None, "ms",
                                      f"<= {TARGET_P99_MS:.0f} ms", False, command, f"failed: {result.note}"))
                continue
            figures.append(Figure(
                f"daemon: detection latency p99, maxretry 1: {kind} line written to {where}", result.p99, "ms",
                f"<= {TARGET_P99_MS:.0f} ms", result.p99 <= TARGET_P99_MS, command,
                f"{result.summary()}; {note}" + ("; kernel moment from nft monitor" if firewall != "dry-run" else "")))
    if "f2b-latency" not in skip and f2b_bans:
        for backend in ("polling", "pyinotify"):
            say(f"fail2ban latency, backend {backend}: {f2b_bans} bans")
            command = f"{base} --f2b-bans {f2b_bans} --skip {SKIP_BUT['f2b-latency']}"
            try:
                result = latency.fail2ban(f2b_bans, backend)
            except Exception as exc:
                figures.append(Figure(f"fail2ban detection latency, backend {backend}", None, "ms", "—", None,
                                      command, f"failed: {exc}"[:300]))
                continue
            figures.append(Figure(
                f"fail2ban detection latency p99, maxretry 1: file line written to the DROP in iptables "
                f"(namespace), backend {backend}", result.p99 if result.values else None, "ms", "—", None, command,
                (f"{result.summary()}; " if result.values else "") + result.note + "; no background load"))
    return figures


# --- all -----------------------------------------------------------------------------------------------------


def run(lines: int = 1_000_000, latency_bans: int = 1000, startup_bans: int = 100_000, rss_lines: int = 3_000_000,
        rss_sources: int = 1_000_000, profile_lines: int = 300_000, skip: Sequence[str] = (),
        echo: bool = True, background_rate: int = 50_000, kinds: Sequence[str] = KINDS,
        backends: Sequence[str] = ("nftables", "iptables"), f2b_bans: int = 300,
        in_force: int = 100_000) -> tuple[list[Figure], str]:
    from bench.run import Figure

    figures: list[Figure] = []
    profile_text = ""

    def say(text: str) -> None:
        if echo:
            print(f"  daemon: {text}", file=sys.stderr, flush=True)

    base = ".venv/bin/python -m bench.daemon"
    with tempfile.TemporaryDirectory(prefix="jb-bench-daemon-") as scratch:
        tmp = Path(scratch)
        if "throughput" not in skip and lines:
            say(f"throughput: generating {lines:,} lines")
            data = corpus("sshd", lines, tmp / "sshd.corpus", "--start", "now", "--span", "60")
            expected = replay_bans(data.path, "sshd", 5, 600)
            say(f"throughput: {data.failures:,} failures, replay predicts {len(expected):,} bans; running")
            result = throughput(tmp, data, expected)
            rate = lines / float(result["seconds"])  # type: ignore[arg-type]
            ok = bool(result["complete"]) and bool(result["bans_ok"])
            figures.append(Figure(
                f"daemon: file source, sshd, {lines:,} lines appended to every failure + ban in the ledger",
                rate, "lines/s", f">= {TARGET_RATE:,}", ok and rate >= TARGET_RATE,
                f"{base} --lines {lines} --skip {SKIP_BUT['throughput']},profile",
                f"{result['seconds']:.1f} s; {result['failures']:,} of {data.failures:,} failures; bans "
                f"{len(result['bans']):,} (replay {len(expected):,}: missing {result['missing']}, extra "  # type: ignore[arg-type]
                f"{result['extra']}); append itself {result['writing']:.2f} s; CPU of the daemon's main thread "
                f"{result['main_cpu']:.2f} s, of its other threads {result['other_cpu']:.2f} s"))
            if not result["complete"]:
                say("throughput incomplete; daemon log tail:\n" + str(result["tail"]))
            if "profile" not in skip and profile_lines:
                small = data if profile_lines >= lines else corpus(
                    "sshd", profile_lines, tmp / "sshd-profile.corpus", "--start", "now", "--span", "60")
                say(f"profile: {small.lines:,} lines under cProfile")
                prof = tmp / "daemon.prof"
                presult = throughput(tmp, small, replay_bans(small.path, "sshd", 5, 600), profile=prof)
                if prof.exists():
                    profile_text = profile_report(prof, small.lines, float(presult["seconds"]))  # type: ignore[arg-type]
                    print(profile_text, file=sys.stderr)
            data.path.unlink()
        figures += latency_figures(latency_bans, skip, background_rate, kinds, backends, f2b_bans, say, in_force)
        if "startup" not in skip and startup_bans:
            for firewall in ("dry-run", "ipset", "nftables"):
                say(f"start-up: {startup_bans:,} active bans, {firewall}")
                try:
                    seconds, note, rss = startup(tmp, startup_bans, firewall)
                except Exception as exc:
                    figures.append(Figure(f"daemon: start-up to ready, {startup_bans:,} active bans, {firewall}",
                                          None, "s", f"<= {TARGET_STARTUP:.0f} s", False,
                                          f"{base} --startup-bans {startup_bans} --skip {SKIP_BUT['startup']}",
                                          f"failed: {exc}"[:300]))
                    continue
                where = f"{firewall}{' (namespace)' if firewall != 'dry-run' else ''}"
                figures.append(Figure(
                    f"daemon: start-up to 'journalban ready', {startup_bans:,} active bans, empty firewall, {where}",
                    seconds, "s", f"<= {TARGET_STARTUP:.0f} s", seconds <= TARGET_STARTUP,
                    f"{base} --startup-bans {startup_bans} --skip {SKIP_BUT['startup']}", note))
                figures.append(Figure(
                    f"daemon: RSS with {startup_bans:,} active bans, at ready, {where}", rss, "MB",
                    f"<= {TARGET_RSS_MB:.0f} MB", rss <= TARGET_RSS_MB,
                    f"{base} --startup-bans {startup_bans} --skip {SKIP_BUT['startup']}",
                    "the bans written into the ledger, read by the daemon at start (detector, reconciler, "
                    "backend), one reconcile done"))
        if "rss" not in skip and rss_lines:
            say(f"memory: wplimit {rss_lines:,} lines from {rss_sources:,} addresses")
            m = memory(tmp, rss_lines, rss_sources)
            complete = m["failures"] == m["expected"]
            figures.append(Figure(
                f"daemon: RSS with windows holding failures from {m['addresses']:,} addresses "
                f"(wplimit {rss_lines:,} lines)", float(m["rss"]), "MB", f"<= {TARGET_RSS_MB:.0f} MB",  # type: ignore[arg-type]
                complete and float(m["rss"]) <= TARGET_RSS_MB,  # type: ignore[arg-type]
                f"{base} --rss-lines {rss_lines} --rss-sources {rss_sources} --skip {SKIP_BUT['rss']}",
                f"VmHWM {m['hwm']:.0f} MB, idle {m['idle']:.0f} MB; {m['failures']:,} of {m['expected']:,} failures "
                f"in the ledger after {m['seconds']:.1f} s ({rss_lines / float(m['seconds']):,.0f} lines/s)"))  # type: ignore[arg-type]
            if not complete:
                say("memory run incomplete; daemon log tail:\n" + str(m["tail"]))
    return figures, profile_text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.daemon", description=__doc__.splitlines()[0],
                                     epilog="Each figure alone: --skip every part but its own (the table's command "
                                            "column says which).")
    parser.add_argument("--lines", type=int, default=1_000_000, help="throughput: sshd corpus lines appended")
    parser.add_argument("--latency-bans", type=int, default=1000,
                        help="latency: bans per intake kind and backend (the issue asks >= 1,000)")
    parser.add_argument("--latency-kinds", default=",".join(KINDS),
                        help="latency: how the failure is written: file,journald,syslog (TCP)")
    parser.add_argument("--latency-backends", default="nftables,iptables",
                        help="kernel latency: firewall backends, each in its own network namespace")
    parser.add_argument("--background-rate", type=int, default=50_000,
                        help="latency: non-failure lines/s the daemon reads meanwhile (journald and a second file)")
    parser.add_argument("--latency-in-force", type=int, default=100_000,
                        help="kernel latency: nftables once more with this many bans in force from the start (0: not)")
    parser.add_argument("--f2b-bans", type=int, default=300,
                        help="fail2ban latency: bans per backend (polling, pyinotify)")
    parser.add_argument("--startup-bans", type=int, default=100_000,
                        help="start-up time and RSS with this many active bans in the ledger")
    parser.add_argument("--rss-lines", type=int, default=3_000_000, help="memory: wplimit corpus lines")
    parser.add_argument("--rss-sources", type=int, default=1_000_000, help="memory: distinct addresses asked of it")
    parser.add_argument("--profile-lines", type=int, default=300_000, help="cProfile of the throughput run")
    parser.add_argument("--skip", default="", help=f"comma-separated: {','.join(PARTS)}")
    args = parser.parse_args(argv)
    from bench.run import print_figures

    figures, profile_text = run(args.lines, args.latency_bans, args.startup_bans, args.rss_lines, args.rss_sources,
                                args.profile_lines, [s for s in args.skip.split(",") if s],
                                background_rate=args.background_rate, kinds=args.latency_kinds.split(","),
                                backends=args.latency_backends.split(","), f2b_bans=args.f2b_bans,
                                in_force=args.latency_in_force)
    print_figures(figures)
    if profile_text:
        print("\n" + profile_text)


if __name__ == "__main__":
    main()
