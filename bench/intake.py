"""Intake throughput: journald entries and syslog messages per second into the matcher.

Run by hand, not in CI (needs systemd-journal-remote and /work/shared/bench/corpus.py):

    .venv/bin/python bench/intake.py                 # 1,000,000 entries / messages
    .venv/bin/python bench/intake.py --entries 200000 --messages 200000
    .venv/bin/python bench/intake.py --cache /tmp/jb-bench   # keep the built corpora between runs
    .venv/bin/python bench/intake.py --profile       # where the journald time goes

Figures (issue targets): journald >= 500,000 entries/s, TCP >= 150,000 msg/s with
no loss, UDP >= 100,000 msg/s received. journald: the sshd corpus as a journal
directory (journal-remote splits 1,000,000 entries into several files), read by
``JournalSource`` with the matches and the literal prefilter the daemon uses; beside
it the bare libsystemd loop under the same matches, the ceiling. Syslog: one sender
process per run writes the corpus over TCP (octet-counted) or as datagrams over UDP;
the listener runs with the ``keep`` and ``keep_raw`` filters the daemon builds and the sink runs the
sshd matcher; sent, received and lost are counted (lost UDP datagrams also from the
kernel's RcvbufErrors). The whole daemon (``--daemon-entries``, ``--daemon-messages``):
``journalban run`` with a SQLite ledger over the journal (from "journalban ready"), and
listening on TCP while one sender writes the syslog corpus (from its first byte), each
until every failure is in the ledger. Each row gives wall-clock and CPU rates: on a shared machine
the CPU rate says what the code does with one core. Everything runs in a temporary
directory that is removed at the end, unless ``--cache`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from systemd import journal as systemd_journal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from journalban.events import Event  # noqa: E402
from journalban.grammar import Grammar, load_grammar  # noqa: E402
from journalban.match import JailMatcher, prefilter_bytes, prefilter_marks, syslog_keep  # noqa: E402
from journalban.sources.journal import JournalSource, add_matches  # noqa: E402
from journalban.sources.syslog import SyslogListener  # noqa: E402

CORPUS = Path("/work/shared/bench/corpus.py")
JOURNAL_REMOTE = "/usr/lib/systemd/systemd-journal-remote"
QUIET = 0.5  # seconds without a new message: the sender's datagrams are all in

TCP_SENDER = """
import socket, sys
data = open(sys.argv[3], "rb").read()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
view = memoryview(data)
for at in range(0, len(view), 1 << 20):
    s.sendall(view[at:at + (1 << 20)])
s.shutdown(socket.SHUT_WR)
s.recv(1)
"""

UDP_SENDER = """
import socket, sys
frames = open(sys.argv[3], "rb").read().split(b"\\0")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
sent = 0
for frame in frames:
    try:
        s.send(frame)
        sent += 1
    except OSError:
        pass
print(sent)
"""


@dataclass
class Row:
    """One measured path: ``seconds`` of wall time and, where one process did all the
    work, ``cpu`` seconds of its CPU time (on a shared, loaded machine the CPU rate says
    what the code does on one core; the wall rate what it did here, now)."""

    name: str
    count: int
    seconds: float
    note: str = ""
    cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def cpu_rate(self) -> float | None:
        return self.count / self.cpu if self.cpu else None


class Clock:
    """Wall and process CPU time of one measured stretch."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def sshd_grammar() -> Grammar:
    return load_grammar(ROOT / "grammars" / "sshd.grammar")


def corpus(kind: str, count: int, out: Path, *extra: str) -> str:
    """Write a corpus to ``out``; return the summary line corpus.py prints on stderr."""
    with out.open("wb") as sink:
        done = subprocess.run([sys.executable, str(CORPUS), kind, str(count), *extra], stdout=sink,
                              stderr=subprocess.PIPE, check=True, text=False)
    return done.stderr.decode().strip().splitlines()[-1]


# --- journald -------------------------------------------------------------------------------


def build_journal(count: int, tmp: Path, *extra: str) -> tuple[Path, int]:
    """A journal directory of the sshd corpus; the number of failures it holds.

    A directory, not one file: journal-remote rotates its output file when it is full
    (a 1,000,000-entry corpus makes several), and the reader must see all of them.
    Kept in ``tmp`` (with ``--cache`` across runs) under a name that says what it holds.
    """
    name = f"journal-{count}-{'-'.join(extra) or 'default'}"
    directory, summary_file = tmp / name, tmp / f"{name}.summary"
    if not summary_file.exists() or "now" in extra:  # stamps relative to now go stale
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        export = tmp / f"{name}.export"
        summary = corpus("export", count, export, *extra)
        with export.open("rb") as source:
            subprocess.run([JOURNAL_REMOTE, "-o", str(directory / "corpus.journal"), "-"], stdin=source,
                           check=True, capture_output=True)
        export.unlink()
        summary_file.write_text(summary)
    summary = summary_file.read_text()
    return directory, int(re.search(r"(\d+) failures", summary).group(1))  # type: ignore[union-attr]


def bare_loop(directory: Path, grammar: Grammar) -> tuple[int, Clock]:
    """The ceiling: libsystemd's iteration under the same matches, fetching MESSAGE only."""
    reader = systemd_journal.Reader(path=str(directory))
    try:
        add_matches(reader, grammar.journal_matches)  # as the source does
        reader.seek_head()
        advance, get, selected = reader._next, reader._get, 0
        with Clock() as clock:
            while advance():
                get("MESSAGE")
                selected += 1
        return selected, clock
    finally:
        reader.close()


def read_journal(directory: Path, grammar: Grammar, match: bool, prefilter: bool = True
                 ) -> tuple[int, int, Clock, dict[str, int]]:
    """Drain the journal through the source (and the matcher), with the literal prefilter as
    the daemon sets it up: delivered events, failures, seconds, the source's counters."""
    matcher = JailMatcher("sshd", grammar)
    delivered = failures = 0
    may_match = prefilter_bytes([grammar]) if prefilter else None
    with JournalSource(grammar.journal_matches, directory=str(directory), since="all",
                       may_match=may_match) as source:
        source.open()
        with Clock() as clock:
            while True:
                events, _ = source.read()
                delivered += len(events)
                if match:  # as the pipeline does: a batch at a time
                    found, rejected = matcher.match_batch(events)
                    failures += len(found) + len(rejected)
                if not source.more_pending:
                    break
        counters = dict(source.counters)
    return delivered, failures, clock, counters


def bench_journal(entries: int, cache: Path, profile: bool) -> list[Row]:
    grammar = sshd_grammar()
    started = time.perf_counter()
    journal, expected = build_journal(entries, cache)
    size = sum(path.stat().st_size for path in journal.iterdir())
    print(f"journal of {entries:,} entries ready in {time.perf_counter() - started:.1f}s "
          f"({size / 1e6:.0f} MB in {len(list(journal.iterdir()))} file(s), {expected:,} failures)", file=sys.stderr)
    rows = []
    selected, clock = bare_loop(journal, grammar)
    rows.append(Row("journald: bare libsystemd _next + _get(MESSAGE)", entries, clock.wall,
                    f"{selected:,} entries selected by the grammar's matches (the ceiling)", clock.cpu))
    delivered, _, clock, counters = read_journal(journal, grammar, match=False)
    rows.append(Row("journald: source only", entries, clock.wall,
                    f"{counters['read']:,} selected, {delivered:,} past the prefilter", clock.cpu))
    delivered, failures, clock, _ = read_journal(journal, grammar, match=True)
    rows.append(Row("journald: source + JailMatcher.match_batch", entries, clock.wall,
                    f"{failures:,} failures (corpus: {expected:,})", clock.cpu))
    delivered, failures, clock, _ = read_journal(journal, grammar, match=True, prefilter=False)
    rows.append(Row("journald: source + match, no prefilter", entries, clock.wall,
                    f"{failures:,} failures, {delivered:,} events built", clock.cpu))
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        read_journal(journal, grammar, match=True)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
        print(text.getvalue(), file=sys.stderr)
    return rows


def ledger_failures(ledger: Path) -> int:
    """The failure rows in a daemon's SQLite ledger (0 before it exists or while it is locked)."""
    import sqlite3

    if not ledger.exists():
        return 0
    try:
        with sqlite3.connect(ledger, timeout=10) as db:
            return int(db.execute("SELECT count(*) FROM failures").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def daemon_config(tmp: Path, name: str, source: str, jail: str) -> tuple[Path, Path]:
    """A config (and its ledger) for the whole-daemon runs: the sshd grammar on ``source``,
    nothing banned (every failure is only counted and recorded), the dry-run firewall."""
    ledger, config = tmp / f"ledger-{name}.db", tmp / f"journalban-{name}.toml"
    config.write_text(f"""
[ledger]
url = "sqlite:///{ledger}"
{source}
[jails.sshd]
grammar = "sshd"
{jail}
maxretry = 1000000000
findtime = "1d"
firewall = "dry-run"
ignoreself = false
""")
    return config, ledger


@contextmanager
def running_daemon(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``journalban run`` on ``config``, stopped (and killed if it will not stop) on the way out."""
    with log.open("w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "journalban", "run", "-c", str(config)],
                                   stdout=subprocess.DEVNULL, stderr=sink, cwd=ROOT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_failures(ledger: Path, expected: int, deadline: float, process: subprocess.Popen[bytes]) -> int:
    """Poll the ledger until it holds ``expected`` failures, the deadline passes or the daemon exits."""
    seen = 0
    while time.perf_counter() < deadline and process.poll() is None:
        seen = ledger_failures(ledger)
        if seen >= expected:
            break
        time.sleep(0.05)
    return seen


def bench_daemon(entries: int, tmp: Path, timeout: float) -> Row:
    """The whole daemon: journalban run over a journal with recent stamps, until every failure is in the ledger."""
    journal, expected = build_journal(entries, tmp, "--start", "now", "--span", "3600")
    config, ledger = daemon_config(tmp, "journal", f'[sources.journal]\ndirectory = "{journal}"\nsince = "all"\n',
                                   "journal = true")
    log = tmp / "daemon-journal.log"
    started = time.perf_counter()
    with running_daemon(config, log) as process:
        ready, early = wait_for_ready(log, started + 60, process), 0
        if ready is not None:
            early = ledger_failures(ledger)
        seen = wait_for_failures(ledger, expected, started + timeout, process)
        finished = time.perf_counter()
    if ready is None:
        return Row("journald: whole daemon (SQLite ledger)", 0, 0.0, "the daemon was not ready within 60 s")
    note = (f"{seen:,} of {expected:,} failures in the ledger; clock from 'journalban ready' ({ready - started:.2f} s "
            f"of start-up excluded; the daemon starts reading just before it, and {early:,} failures were in the "
            f"ledger then); with start-up {entries / (finished - started):,.0f} entries/s")
    return Row("journald: whole daemon (SQLite ledger)", entries, finished - ready, note)


def wait_for_ready(log: Path, deadline: float, process: subprocess.Popen[bytes]) -> float | None:
    """When the daemon's log first says it is ready (polled every 10 ms); None if it never does."""
    while time.perf_counter() < deadline and process.poll() is None:
        if "journalban ready" in log.read_text(errors="replace"):
            return time.perf_counter()
        time.sleep(0.01)
    return None


def bench_daemon_syslog(messages: int, tmp: Path, timeout: float) -> Row:
    """The whole daemon: journalban run listening on TCP, sent the syslog corpus (recent
    stamps) over one connection as fast as it takes it, until every failure is in the
    ledger. The clock starts with the first byte sent, once the daemon listens."""
    frames = tmp / f"daemon-frames-{messages}.bin"
    summary = corpus("syslog", messages, frames, "--start", "now", "--span", "3600")
    expected = int(re.search(r"(\d+) failures", summary).group(1))  # type: ignore[union-attr]
    with socket.socket() as probe:  # a free port on loopback for the listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config, ledger = daemon_config(tmp, "syslog", f'[sources.syslog]\nlisten = ["tcp://127.0.0.1:{port}"]\n',
                                   "syslog = true")
    with running_daemon(config, tmp / "daemon-syslog.log") as process:
        listening = time.perf_counter() + 60
        while time.perf_counter() < listening and process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            return Row("syslog TCP: whole daemon (SQLite ledger)", 0, 0.0, "the daemon did not listen within 60 s")
        started = time.perf_counter()
        sender = subprocess.Popen([sys.executable, "-c", TCP_SENDER, "127.0.0.1", str(port), str(frames)])
        try:
            seen = wait_for_failures(ledger, expected, started + timeout, process)
            seconds = time.perf_counter() - started
        finally:
            sender.kill()
            sender.wait()
    note = f"{seen:,} of {expected:,} failures in the ledger, from the first byte sent (start-up excluded)"
    return Row("syslog TCP: whole daemon (SQLite ledger)", messages, seconds, note)


# --- syslog ---------------------------------------------------------------------------------


class CountingSink:
    """Runs the sshd matcher on what the listener hands over, and counts failures."""

    def __init__(self, grammar: Grammar) -> None:
        self.matcher = JailMatcher("sshd", grammar)
        self.events = 0
        self.failures = 0

    def __call__(self, source: str, events: list[Event]) -> None:
        self.events += len(events)
        match = self.matcher.match
        self.failures += sum(1 for event in events if match(event) is not None)


class IngestClock:
    """The listener's clock, called once per batch: wall and CPU time of the first and last."""

    def __init__(self) -> None:
        self.first: tuple[float, float] | None = None
        self.last = (0.0, 0.0)

    def __call__(self) -> datetime:
        self.last = (time.perf_counter(), time.process_time())
        if self.first is None:
            self.first = self.last
        return datetime.now(UTC)

    @property
    def wall(self) -> float:
        return self.last[0] - self.first[0] if self.first else 0.0

    @property
    def cpu(self) -> float:
        return self.last[1] - self.first[1] if self.first else 0.0


def split_frames(data: bytes) -> list[bytes]:
    """RFC6587 octet-counted frames back into single messages (for UDP)."""
    out, at = [], 0
    while at < len(data):
        space = data.index(b" ", at)
        length = int(data[at:space])
        out.append(data[space + 1:space + 1 + length])
        at = space + 1 + length
    return out


def udp_receive_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


async def wait_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not done() and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)


@dataclass
class SyslogRun:
    sent: int
    received: int
    sink: CountingSink
    clock: IngestClock
    counters: dict[str, object]
    kernel_drops: int


async def syslog_run(scheme: str, payload: Path, expected: int, timeout: float, keep: bool) -> SyslogRun:
    grammar = sshd_grammar()
    sink, clock = CountingSink(grammar), IngestClock()
    url = f"{scheme}://127.0.0.1:0"
    listener = SyslogListener([url], sink, max_connections=4, clock=clock,
                              keep=syslog_keep([grammar]) if keep else None,
                              keep_raw=prefilter_bytes([grammar]) if keep else None,
                              keep_block=prefilter_marks([grammar]) if keep else None)
    await listener.start()
    port = listener.addresses[url].rsplit(":", 1)[1]
    drops_before = udp_receive_errors()
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-c", TCP_SENDER if scheme == "tcp" else UDP_SENDER, "127.0.0.1", port, str(payload),
        stdout=asyncio.subprocess.PIPE)

    def received() -> int:
        return int(listener.counters["received"])

    try:
        if scheme == "tcp":
            await wait_until(lambda: received() >= expected, timeout)
            sent = expected
        else:
            out, _ = await asyncio.wait_for(sender.communicate(), timeout)
            sent = int(out)
            await wait_until(lambda: received() >= sent or time.perf_counter() - clock.last[0] > QUIET, timeout)
    finally:
        if sender.returncode is None:
            sender.kill()
        await sender.wait()
        counters = listener.counters
        await listener.stop(grace=0)
    return SyslogRun(sent, int(counters["received"]), sink, clock, counters, udp_receive_errors() - drops_before)


def bench_syslog(messages: int, cache: Path) -> list[Row]:
    frames = cache / f"frames-{messages}.bin"
    summary_file = cache / f"frames-{messages}.summary"
    if not summary_file.exists():
        summary_file.write_text(corpus("syslog", messages, frames))
    expected_failures = int(re.search(r"(\d+) failures", summary_file.read_text()).group(1))  # type: ignore[union-attr]
    rows = []
    for keep in (True, False):
        run = asyncio.run(syslog_run("tcp", frames, messages, timeout=300, keep=keep))
        rows.append(Row("syslog TCP (octet-counted) + match" + ("" if keep else ", no prefilter"), run.received,
                        run.clock.wall, f"sent {run.sent:,}, lost {run.sent - run.received:,}, failures "
                        f"{run.sink.failures:,}/{expected_failures:,}, events {run.sink.events:,}, "
                        f"malformed {sum(run.counters['malformed'].values()):,}", run.clock.cpu))  # type: ignore[attr-defined]
    datagrams = cache / f"datagrams-{messages}.bin"
    if not datagrams.exists():
        datagrams.write_bytes(b"\0".join(split_frames(frames.read_bytes())))
    run = asyncio.run(syslog_run("udp", datagrams, messages, timeout=300, keep=True))
    rows.append(Row("syslog UDP + match", run.received, run.clock.wall,
                    f"sent {run.sent:,}, received {run.received:,}, lost {run.sent - run.received:,} "
                    f"(kernel receive-buffer drops {run.kernel_drops:,}), failures {run.sink.failures:,}",
                    run.clock.cpu))
    return rows


def print_table(rows: list[Row]) -> None:
    width = max(len(r.name) for r in rows)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{'path':<{width}}  {'count':>10}  {'seconds':>8}  {'per second':>12}  {'per CPU second':>14}  note")
    for r in rows:
        cpu = f"{r.cpu_rate:>14,.0f}" if r.cpu_rate is not None else f"{'':>14}"
        print(f"{r.name:<{width}}  {r.count:>10,}  {r.seconds:>8.2f}  {r.rate:>12,.0f}  {cpu}  {r.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="journal entries (0: skip journald)")
    parser.add_argument("--messages", type=int, default=1_000_000, help="syslog messages (0: skip syslog)")
    parser.add_argument("--daemon-entries", type=int, default=None,
                        help="entries for the whole-daemon run (default: --entries; 0: skip)")
    parser.add_argument("--daemon-messages", type=int, default=None,
                        help="syslog messages for the whole-daemon TCP run (default: --messages; 0: skip)")
    parser.add_argument("--profile", action="store_true", help="print where the journald read time goes")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the built journal and syslog corpora in this directory across runs "
                             "(building a 1,000,000-entry journal takes a minute or two)")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="jb-bench-") as directory:
        tmp = Path(directory)
        cache = args.cache or tmp
        cache.mkdir(parents=True, exist_ok=True)
        if args.entries:
            rows += bench_journal(args.entries, cache, args.profile)
        daemon_entries = args.entries if args.daemon_entries is None else args.daemon_entries
        if daemon_entries:
            rows.append(bench_daemon(daemon_entries, tmp, timeout=600))
        if args.messages:
            rows += bench_syslog(args.messages, cache)
        daemon_messages = args.messages if args.daemon_messages is None else args.daemon_messages
        if daemon_messages:
            rows.append(bench_daemon_syslog(daemon_messages, tmp, timeout=600))
    print_table(rows)


if __name__ == "__main__":
    main()
