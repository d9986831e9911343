"""Where a failure's CPU time goes on the file path, stage by stage, against the 500k budget.

    .venv/bin/python -m bench.stages [--lines 1000000]

The daemon's throughput figure (``bench.daemon``) is one wall-clock number from a shared
machine. This runs each stage of the file path alone, in this process, on the objects a
``Daemon`` builds from the throughput benchmark's own configuration, over the same sshd
corpus (``--start now --span 60``, 1 line in 10 a failure), and counts CPU time, which
moves far less with the machine's load:

1. read the file in blocks, scan every line for the grammar's literals, parse the
   header of the lines flagged (``FollowedFile.events``' work);
2. match: ``JailMatcher.match_batch`` (the grammar, the Failures);
3. detect: ``Detector.observe_batch`` (windows, ban decisions);
4. record: ``Ledger.record`` of the blocks' failures and bans into a fresh SQLite
   ledger, the blocks held together as the daemon holds a burst's batches (until
   ``HOLD_FAILURES``), one transaction each; then again on a second fresh
   ledger under cProfile, for the share spent inside SQLite (statements and commits).

At 500,000 lines/s the daemon has 2 s of one CPU per 1,000,000 lines: with 100,057
failures, 20 us per failure for everything (the 900,000 other lines included). The
table gives each stage's us per failure beside that budget. Run beside the daemon's
figure, it says which stage a change must take time out of, and whether any single
one could.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.daemon import config  # noqa: E402
from bench.replay import corpus  # noqa: E402

TARGET_RATE = 500_000  # lines/s, issue 9.2
SQLITE_CALLS = ("executemany", "execute", "commit", "fetchone", "fetchall", "fetchmany")


@contextlib.contextmanager
def built_daemon(work: Path, log: Path) -> Iterator[Any]:
    """A ``Daemon`` as ``journalban run`` builds it from the throughput configuration, its
    ledger created; never started (no loop, no reconciler thread)."""
    from journalban.config import load_config
    from journalban.daemon import Daemon
    from journalban.grammar.loader import load_grammars

    cfg = load_config(config(work, log, "sshd", 5, "10m"))
    grammars, errors = load_grammars(cfg.grammar_dirs)
    if errors:
        raise SystemExit(f"grammars do not load: {errors[0]}")
    built = Daemon(cfg, grammars)
    built.ledger.prepare()
    try:
        yield built
    finally:
        built.ledger.close()


def cpu(step: Callable[[], Any]) -> tuple[float, Any]:
    started = time.process_time()
    result = step()
    return time.process_time() - started, result


def sqlite_share(profile: cProfile.Profile) -> float:
    """CPU seconds in the sqlite3 module's calls: SQLite's own work, done with the GIL let go."""
    stats = pstats.Stats(profile)
    return sum(row[2] for (path, _line, name), row in stats.stats.items()  # type: ignore[attr-defined]
               if path == "~" and any(f"'{call}' of 'sqlite3." in name for call in SQLITE_CALLS))


def measure(path: Path, lines: int, failures: int) -> str:
    from journalban.match import flagged_lines
    from journalban.sources.lines import flagged_events, read_whole_lines

    # the moment of reading: the corpus's last minute has just been written (--span 60)
    now = datetime.fromtimestamp(path.stat().st_mtime + 60, UTC)
    with tempfile.TemporaryDirectory(prefix="jb-bench-stages-") as scratch:
        work = Path(scratch)
        log = work / "auth.log"
        log.touch()
        with built_daemon(_dir(work / "a"), log) as first:
            matcher = next(iter(first.pipeline.matchers.values()))[0]
            flagged = flagged_lines([matcher.grammar])

            def parse() -> list[list[Any]]:
                with path.open("rb") as stream:
                    return [flagged_events(block, flagged, "file:" + str(log), matcher.grammar.file_format, now)[0]
                            for block in read_whole_lines(stream)]

            parse_s, blocks = cpu(parse)
            match_s, answers = cpu(lambda: [matcher.match_batch(block) for block in blocks])
            matched = [failures for failures, _rejected in answers]
            found = sum(map(len, matched))
            detect_s, verdicts = cpu(lambda: [first.detector.observe_batch(matcher.jail, block, now)
                                              for block in matched])
            batches = held([(decided.kept, decided.bans) for decided in verdicts])
            record_s, _ = cpu(lambda: [first.ledger.record(block, bans, {}, now) for block, bans in batches])
        with built_daemon(_dir(work / "b"), log) as second:
            profile = cProfile.Profile(time.process_time)  # the C calls' own time is not inflated by it
            profile.runcall(lambda: [second.ledger.record(block, bans, {}, now) for block, bans in batches])
            sqlite = min(sqlite_share(profile), record_s)
    bans = sum(len(bans) for _, bans in batches)
    total = parse_s + match_s + detect_s + record_s
    budget = lines / TARGET_RATE / failures * 1e6

    def row(name: str, seconds: float) -> str:
        return f"{name:<52} {seconds:6.2f}  {seconds / found * 1e6:7.1f}  {seconds / total:6.1%}"

    out = [f"{lines:,} sshd lines, {found:,} failures (corpus: {failures:,}), {bans:,} bans, "
           f"{len(blocks)} blocks in {len(batches)} ledger transactions (held as the daemon holds a burst's); "
           "CPU time of this process", "",
           f"{'stage':<52} {'CPU s':>6}  {'us/fail':>7}  {'share':>6}",
           row(f"read, scan {lines:,} lines, parse the flagged", parse_s),
           row("match (JailMatcher.match_batch)", match_s),
           row("detect (Detector.observe_batch)", detect_s),
           row("record (Ledger.record)", record_s),
           row("  of which inside SQLite (from a profiled pass)", sqlite),
           row("  of which Python", record_s - sqlite),
           row("all four", total), "",
           f"budget at {TARGET_RATE:,} lines/s: {lines / TARGET_RATE:.1f} s of one CPU, {budget:.1f} us per failure; "
           f"these stages alone, with nothing else the daemon does, would allow {lines / total:,.0f} lines/s on "
           f"one CPU, and {lines / max(total - sqlite, sqlite):,.0f} lines/s were SQLite's part on a second CPU "
           "with nothing lost to the GIL"]
    return "\n".join(out)


def held(blocks: list[tuple[list[Any], list[Any]]]) -> list[tuple[list[Any], list[Any]]]:
    """The blocks' failures and bans gathered as ``Pipeline`` holds a burst's batches: until
    they reach ``HOLD_FAILURES`` failures (the time bound is not reached here)."""
    from journalban.pipeline import HOLD_FAILURES

    out: list[tuple[list[Any], list[Any]]] = []
    failures: list[Any] = []
    bans: list[Any] = []
    for block_failures, block_bans in blocks:
        failures += block_failures
        bans += block_bans
        if len(failures) >= HOLD_FAILURES:
            out.append((failures, bans))
            failures, bans = [], []
    if failures or bans:
        out.append((failures, bans))
    return out


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def run(lines: int = 1_000_000, echo: bool = True) -> str:
    with tempfile.TemporaryDirectory(prefix="jb-bench-stages-corpus-") as scratch:
        if echo:
            print(f"  stages: generating {lines:,} sshd lines", file=sys.stderr, flush=True)
        data = corpus("sshd", lines, Path(scratch) / "sshd.corpus", "--start", "now", "--span", "60")
        return measure(data.path, data.lines, data.failures)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="sshd corpus lines")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    print(run(args.lines))


if __name__ == "__main__":
    main()
