"""Intake throughput: journald entries and syslog messages per second into the matcher.

Run by hand, not in CI (needs systemd-journal-remote and /work/shared/bench/corpus.py):

    .venv/bin/python bench/intake.py                 # 1,000,000 entries / messages
    .venv/bin/python bench/intake.py --entries 200000 --messages 200000
    .venv/bin/python bench/intake.py --profile       # where the journald time goes

Figures (issue targets): journald >= 500,000 entries/s, TCP >= 150,000 msg/s with
no loss, UDP >= 100,000 msg/s received. Everything runs in a temporary directory
that is removed at the end; the sender of each syslog run is a separate process.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from journalban.events import Event  # noqa: E402
from journalban.grammar import Grammar, load_grammar  # noqa: E402
from journalban.match import JailMatcher  # noqa: E402
from journalban.sources.journal import JournalSource  # noqa: E402
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
    name: str
    count: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


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
    """A journal of the sshd corpus; the number of failures it holds."""
    export = tmp / f"corpus{len(extra)}.export"
    summary = corpus("export", count, export, *extra)
    journal = tmp / f"corpus{len(extra)}.journal"
    with export.open("rb") as source:
        subprocess.run([JOURNAL_REMOTE, "-o", str(journal), "-"], stdin=source, check=True, capture_output=True)
    export.unlink()
    return journal, int(re.search(r"(\d+) failures", summary).group(1))  # type: ignore[union-attr]


def read_journal(journal: Path, grammar: Grammar, match: bool) -> tuple[int, int, float]:
    """Drain the journal through the source (and the matcher): delivered entries, failures, seconds."""
    matcher = JailMatcher("sshd", grammar)
    delivered = failures = 0
    with JournalSource(grammar.journal_matches, files=[str(journal)], since="all") as source:
        source.open()
        started = time.perf_counter()
        while True:
            events, _ = source.read()
            delivered += len(events)
            if match:
                for event in events:
                    if matcher.match(event) is not None:
                        failures += 1
            if not source.more_pending:
                break
        seconds = time.perf_counter() - started
    return delivered, failures, seconds


def bench_journal(entries: int, tmp: Path, profile: bool) -> list[Row]:
    grammar = sshd_grammar()
    started = time.perf_counter()
    journal, expected = build_journal(entries, tmp)
    print(f"built a {entries:,}-entry journal in {time.perf_counter() - started:.1f}s "
          f"({journal.stat().st_size / 1e6:.0f} MB, {expected:,} failures)", file=sys.stderr)
    rows = []
    delivered, _, seconds = read_journal(journal, grammar, match=False)
    rows.append(Row("journald: source only", entries, seconds,
                    f"{delivered:,} entries selected by the grammar's matches"))
    delivered, failures, seconds = read_journal(journal, grammar, match=True)
    rows.append(Row("journald: source + JailMatcher.match", entries, seconds,
                    f"{failures:,} failures (corpus: {expected:,})"))
    rows.append(Row("journald: selected entries only", delivered, seconds, "the same run, per delivered entry"))
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        read_journal(journal, grammar, match=True)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
        print(text.getvalue(), file=sys.stderr)
    journal.unlink()
    return rows


def bench_daemon(entries: int, tmp: Path, timeout: float) -> Row:
    """The whole daemon: journalban run over a journal with recent stamps, until every failure is in the ledger."""
    journal, expected = build_journal(entries, tmp, "--start", "now", "--span", "3600")
    ledger = tmp / "ledger.db"
    config = tmp / "journalban.toml"
    config.write_text(f"""
[ledger]
url = "sqlite:///{ledger}"

[sources.journal]
files = ["{journal}"]
since = "all"

[jails.sshd]
grammar = "sshd"
journal = true
maxretry = 1000000000
findtime = "1d"
firewall = "dry-run"
ignoreself = false
""")
    import sqlite3

    def recorded() -> int:
        if not ledger.exists():
            return 0
        try:
            with sqlite3.connect(ledger, timeout=10) as db:
                return int(db.execute("SELECT count(*) FROM failures").fetchone()[0])
        except sqlite3.OperationalError:
            return 0

    log = (tmp / "daemon.log").open("w")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "journalban", "run", "-c", str(config)],
                               stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
    try:
        deadline = started + timeout
        seen = 0
        while time.perf_counter() < deadline and process.poll() is None:
            seen = recorded()
            if seen >= expected:
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    note = f"{seen:,} of {expected:,} failures in the ledger, start-up included"
    return Row("journald: whole daemon (SQLite ledger)", entries, seconds, note)


# --- syslog ---------------------------------------------------------------------------------


class CountingSink:
    """Counts what the listener hands over and runs the sshd matcher on it."""

    def __init__(self, grammar: Grammar) -> None:
        self.matcher = JailMatcher("sshd", grammar)
        self.received = 0
        self.failures = 0
        self.first = self.last = 0.0


    def __call__(self, source: str, events: list[Event]) -> None:
        if not self.received:
            self.first = time.perf_counter()
        self.received += len(events)
        match = self.matcher.match
        self.failures += sum(1 for event in events if match(event) is not None)
        self.last = time.perf_counter()


def split_frames(data: bytes) -> list[bytes]:
    """RFC6587 octet-counted frames back into single messages (for UDP)."""
    out, at = [], 0
    while at < len(data):
        space = data.index(b" ", at)
        length = int(data[at:space])
        out.append(data[space + 1:space + 1 + length])
        at = space + 1 + length
    return out


async def wait_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not done() and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)


async def syslog_run(scheme: str, payload: Path, expected: int, timeout: float) -> tuple[CountingSink, float, int,
                                                                                         dict[str, object]]:
    sink = CountingSink(sshd_grammar())
    url = f"{scheme}://127.0.0.1:0"
    listener = SyslogListener([url], sink, max_connections=4)
    await listener.start()
    port = listener.addresses[url].rsplit(":", 1)[1]
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-c", TCP_SENDER if scheme == "tcp" else UDP_SENDER, "127.0.0.1", port, str(payload),
        stdout=asyncio.subprocess.PIPE)
    try:
        if scheme == "tcp":
            await wait_until(lambda: sink.received >= expected, timeout)
            sent = expected
        else:
            out, _ = await asyncio.wait_for(sender.communicate(), timeout)
            sent = int(out)
            await wait_until(lambda: sink.received >= sent or time.perf_counter() - sink.last > QUIET, timeout)
        seconds = sink.last - sink.first  # from the first batch: the sender's interpreter start-up is not ours
    finally:
        if sender.returncode is None:
            sender.kill()
        await sender.wait()
        counters = listener.counters
        await listener.stop(grace=0)
    return sink, seconds, sent, counters


def bench_syslog(messages: int, tmp: Path) -> list[Row]:
    frames = tmp / "frames.bin"
    summary = corpus("syslog", messages, frames)
    expected_failures = int(re.search(r"(\d+) failures", summary).group(1))  # type: ignore[union-attr]
    rows = []
    sink, seconds, _, counters = asyncio.run(syslog_run("tcp", frames, messages, timeout=120))
    lost = messages - sink.received
    rows.append(Row("syslog TCP (octet-counted) + match", sink.received, seconds,
                    f"sent {messages:,}, lost {lost:,}, failures {sink.failures:,}/{expected_failures:,}, "
                    f"malformed {counters['malformed'] or 0}"))
    datagrams = tmp / "datagrams.bin"
    datagrams.write_bytes(b"\0".join(split_frames(frames.read_bytes())))
    sink, seconds, sent, counters = asyncio.run(syslog_run("udp", datagrams, messages, timeout=120))
    rows.append(Row("syslog UDP + match", sink.received, seconds,
                    f"sent {sent:,}, received {sink.received:,}, lost {sent - sink.received:,}"))
    return rows


def print_table(rows: list[Row]) -> None:
    width = max(len(r.name) for r in rows)
    print(f"{'path':<{width}}  {'count':>10}  {'seconds':>8}  {'per second':>12}  note")
    for r in rows:
        print(f"{r.name:<{width}}  {r.count:>10,}  {r.seconds:>8.2f}  {r.rate:>12,.0f}  {r.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="journal entries (0: skip journald)")
    parser.add_argument("--messages", type=int, default=1_000_000, help="syslog messages (0: skip syslog)")
    parser.add_argument("--daemon-entries", type=int, default=None,
                        help="entries for the whole-daemon run (default: --entries; 0: skip)")
    parser.add_argument("--profile", action="store_true", help="print where the journald read time goes")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="jb-bench-") as directory:
        tmp = Path(directory)
        if args.entries:
            rows += bench_journal(args.entries, tmp, args.profile)
        daemon_entries = args.entries if args.daemon_entries is None else args.daemon_entries
        if daemon_entries:
            rows.append(bench_daemon(daemon_entries, tmp, timeout=600))
        if args.messages:
            rows += bench_syslog(args.messages, tmp)
    print_table(rows)


if __name__ == "__main__":
    main()
