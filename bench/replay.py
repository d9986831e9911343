"""Replay throughput: ``journalban replay`` (hyperscan and portable) vs ``fail2ban-regex`` vs ``sshg-parser``.

    .venv/bin/python -m bench.replay [--lines 1000000] [--f2b-lines 1000000] [--kinds sshd,nginx]

Corpora come from ``/work/shared/bench/corpus.py`` (``sshd N`` and ``nginx N``), written
to a temporary directory that is removed at the end. Every tool reads the same file
(``--f2b-lines`` smaller than ``--lines`` gives fail2ban-regex a prefix-sized corpus of
the same generator and seed instead, when its ~20-50k lines/s would take too long):

Each tool runs ``--rounds`` times (3) and its fastest run counts.

* ``journalban replay -g sshd|nginx-wp-login FILE --json``, three ways: as it runs by
  default (the fast path of ``journalban.replay_blocks``: hyperscan flags the lines each
  rule may match, they are decided as bytes, in one worker process per CPU reading a
  share of the file each); the same in one process (``--workers 1``); and the exact
  per-line path with the portable literal scanner (``JOURNALBAN_SCANNER=literal``, what
  machines without hyperscan use). Two rates each: its own ``lines_per_second`` (the
  replay loop: read, scan, parse, match, detect) and the wall clock of the whole command
  (Python start-up, grammar loading and the scanner's compilation included).
* ``fail2ban-regex FILE /etc/fail2ban/filter.d/sshd.conf`` (mode ``normal``) and, for
  nginx, a filter written to the temporary directory that takes what the
  ``nginx-wp-login`` grammar takes (every POST to /wp-login.php or /xmlrpc.php in the
  combined format). Its rate is its own "processed in" figure; the wall clock beside it.
* ``sshg-parser < FILE`` (SSHGuard's parser): wall clock; it prints one line per attack
  it recognises.

The tools run one after the other on a shared machine, so the ratio journalban /
fail2ban-regex is the figure to read (both are CPU-bound Python); the target is >= 50x
on sshd. Correctness: the failures the corpus generator wrote (its stderr), journalban's
matched lines with each scanner, fail2ban-regex's matched lines (and in its aggressive
mode for sshd), sshg-parser's attack lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.run import Figure

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CORPUS = Path("/work/shared/bench/corpus.py")
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
SSHG_PARSER = "/usr/libexec/sshguard/sshg-parser"
F2B_SSHD = "/etc/fail2ban/filter.d/sshd.conf"
GRAMMAR = {"sshd": "sshd", "nginx": "nginx-wp-login"}
TARGET_RATIO = 50.0
FAILREGEX = (r'^<HOST> - \S+ \[\] "POST /(?:wp-login|xmlrpc)\.php(?:\?\S*)? HTTP/\d+\.\d+" \d+ \d+ '
             r'"(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*"$')
NGINX_FILTER = ("[Definition]\n"
                "# what grammars/nginx-wp-login.grammar takes: any POST to the login form or XML-RPC, combined format\n"
                f"failregex = {FAILREGEX}\n"
                "ignoreregex =\n"
                "datepattern = ^[^\\[]*\\[({DATE})\n"
                "              {^LN-BEG}\n")


@dataclass
class Corpus:
    path: Path
    lines: int
    failures: int
    addresses: int


def corpus(kind: str, count: int, out: Path, *extra: str) -> Corpus:
    with out.open("wb") as sink:
        done = subprocess.run([sys.executable, str(CORPUS), kind, str(count), *extra], stdout=sink,
                              stderr=subprocess.PIPE, text=True, check=True)
    found = re.search(r"(\d+) lines, (\d+) failures from (\d+) distinct", done.stderr)
    assert found, done.stderr
    return Corpus(out, int(found[1]), int(found[2]), int(found[3]))


@dataclass
class Run:
    lines: int
    matched: int
    seconds: float  # the tool's own processing time
    wall: float
    cpu: float = 0.0  # user + system seconds of the whole command (start-up included)

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    @property
    def wall_rate(self) -> float:
        return self.lines / self.wall if self.wall else 0.0

    @property
    def cpu_rate(self) -> float:
        return self.lines / self.cpu if self.cpu else 0.0


def children_cpu() -> float:
    """User + system seconds of the finished children so far: a command's CPU time is the
    difference around it, which a loaded machine stretches far less than its wall clock."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def journalban(kind: str, path: Path, scanner: str = "hyperscan", workers: int = 0) -> Run:
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run([PYTHON, "-m", "journalban", "replay", "-g", GRAMMAR[kind], str(path), "--json",
                           "--workers", str(workers)],
                          cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "JOURNALBAN_SCANNER": scanner})
    wall = time.perf_counter() - started
    summary = json.loads(done.stdout)
    return Run(summary["lines"], summary["matched"], summary["seconds"], wall, children_cpu() - cpu)


def fail2ban_regex(path: Path, filter_: str) -> Run:
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(["fail2ban-regex", str(path), filter_], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    lines = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", done.stdout, re.M)
    seconds = re.search(r"\[processed in ([0-9.]+) sec\]", done.stdout)
    assert lines and seconds, done.stdout[-2000:]
    return Run(int(lines[1]), int(lines[3]), float(seconds[1]), wall, children_cpu() - cpu)


def missing_tools() -> None:
    """Stop before any corpus is generated if a tool compared against is not installed
    (``./scripts/install --test`` brings fail2ban; SSHGuard is for the benchmark alone)."""
    missing = [package for package, present in (("fail2ban", shutil.which("fail2ban-regex")),
                                                ("sshguard", Path(SSHG_PARSER).exists())) if not present]
    if missing:
        raise SystemExit(f"bench.replay compares with {' and '.join(missing)}, not installed here: "
                         f"apt-get install {' '.join(missing)} (with /usr/sbin/policy-rc.d keeping its service "
                         "from starting, as scripts/install does)")


def sshg_parser(path: Path) -> Run:
    with path.open("rb") as source:
        started = time.perf_counter()
        done = subprocess.run([SSHG_PARSER], stdin=source, capture_output=True, check=True)
        wall = time.perf_counter() - started
    lines = sum(1 for _ in path.open("rb"))
    return Run(lines, done.stdout.count(b"\n"), wall, wall)


def fastest(rounds: int, measure: Callable[..., Run], *args: object, **kwargs: object) -> Run:
    """The fastest of ``rounds`` runs of ``measure(*args, **kwargs)`` (by the tool's own rate):
    on a shared machine a run can only be slowed by the others, never sped up. Each tool
    gets the same number of rounds."""
    return max((measure(*args, **kwargs) for _ in range(max(1, rounds))), key=lambda run: run.rate)


def run(lines: int = 1_000_000, f2b_lines: int = 1_000_000, kinds: tuple[str, ...] = ("sshd", "nginx"),
        echo: bool = True, rounds: int = 3) -> list[Figure]:
    from bench.run import Figure

    figures: list[Figure] = []
    here = f".venv/bin/python -m bench.replay --lines {lines} --f2b-lines {f2b_lines} --rounds {rounds}"

    def say(text: str) -> None:
        if echo:
            print(f"  replay: {text}", file=sys.stderr, flush=True)

    missing_tools()
    with tempfile.TemporaryDirectory(prefix="jb-bench-replay-") as scratch:
        tmp = Path(scratch)
        nginx_filter = tmp / "nginx-wp-login.conf"
        nginx_filter.write_text(NGINX_FILTER)
        for kind in kinds:
            say(f"{kind}: generating {lines:,} and {f2b_lines:,} lines")
            big = corpus(kind, lines, tmp / f"{kind}.log")
            small = corpus(kind, f2b_lines, tmp / f"{kind}-small.log") if f2b_lines != lines else big
            f2b_filter = F2B_SSHD if kind == "sshd" else str(nginx_filter)
            say(f"{kind}: journalban replay (a worker per CPU, one process, the portable scanner)")
            jb = fastest(rounds, journalban, kind, big.path)
            alone = fastest(rounds, journalban, kind, big.path, workers=1)
            portable = fastest(rounds, journalban, kind, big.path, "literal")
            say(f"{kind}: fail2ban-regex on {small.lines:,} lines")
            f2b = fastest(rounds, fail2ban_regex, small.path, f2b_filter)
            jb_small = journalban(kind, small.path) if small is not big else jb
            say(f"{kind}: sshg-parser")
            sg = sshg_parser(big.path)
            ratio = jb.rate / f2b.rate if f2b.rate else 0.0
            same_file = "the same file" if small is big else f"corpus.py {kind} {f2b_lines}"
            for name, result, how in (
                    (f"fast path, a worker per CPU ({os.cpu_count()})", jb, ""),
                    ("fast path, one process", alone, " --workers 1"),
                    ("exact path, portable literal scanner", portable, "")):
                figures.append(Figure(
                    f"replay {kind}: journalban replay -g {GRAMMAR[kind]}, {name} ({big.lines:,} lines)", result.rate,
                    "lines/s", "", None, f"JOURNALBAN_SCANNER={'literal' if result is portable else 'hyperscan'} "
                    f"journalban replay -g {GRAMMAR[kind]} FILE --json{how}  (FILE: corpus.py {kind} {lines})",
                    f"its lines_per_second, fastest of {rounds}; wall clock with start-up "
                    f"{result.wall_rate:,.0f} lines/s "
                    f"({result.wall:.1f} s); {result.rate / f2b.rate if f2b.rate else 0:.1f}x fail2ban-regex"))
            figures.append(Figure(
                f"replay {kind}: fail2ban-regex ({f2b.lines:,} lines, {same_file})", f2b.rate,
                "lines/s", "", None, f"fail2ban-regex FILE {f2b_filter if kind == 'sshd' else 'nginx-wp-login.conf'}"
                f"  (FILE: corpus.py {kind} {f2b_lines}; filter text in bench/replay.py)",
                f"its 'processed in' time, fastest of {rounds}; wall clock {f2b.wall_rate:,.0f} lines/s "
                f"({f2b.wall:.1f} s)"))
            figures.append(Figure(
                f"replay {kind}: sshg-parser ({big.lines:,} lines)", sg.rate, "lines/s", "", None,
                f"sshg-parser < FILE  (FILE: corpus.py {kind} {lines})",
                f"wall clock; {sg.matched:,} attacks printed; journalban (hyperscan) / sshg-parser "
                f"{jb.rate / sg.rate if sg.rate else 0:.2f}x"))
            figures.append(Figure(
                f"replay {kind}: journalban (fast path, a worker per CPU) / fail2ban-regex", ratio, "x",
                f">= {TARGET_RATIO:.0f}x" if kind == "sshd" else "", ratio >= TARGET_RATIO if kind == "sshd" else None,
                here, f"one process {alone.rate / f2b.rate if f2b.rate else 0:.1f}x; "
                f"exact path, portable scanner {portable.rate / f2b.rate if f2b.rate else 0:.1f}x; wall clock to wall "
                f"clock: {jb.wall_rate / f2b.wall_rate if f2b.wall_rate else 0:.1f}x; CPU time of the whole "
                f"commands: {jb.cpu:.1f} s vs {f2b.cpu:.1f} s, "
                f"{jb.cpu_rate / f2b.cpu_rate if f2b.cpu_rate else 0:.1f}x (portable {portable.cpu:.1f} s)"))
            correctness = (f"corpus: {small.failures:,} failures; journalban matched {jb_small.matched:,}; "
                           f"fail2ban-regex matched {f2b.matched:,}")
            if kind == "sshd":
                say("sshd: fail2ban-regex aggressive")
                aggressive = fail2ban_regex(small.path, "sshd[mode=aggressive]")
                correctness += f" (mode=aggressive: {aggressive.matched:,})"
            correctness += f"; sshg-parser printed {sg.matched:,} attacks on the {big.lines:,}-line corpus"
            whole = (f"; on the {big.lines:,}-line corpus: {big.failures:,} failures, journalban matched "
                     f"{jb.matched:,} (fast, workers), {alone.matched:,} (fast, one process) and "
                     f"{portable.matched:,} (exact, portable)")
            figures.append(Figure(
                f"replay {kind}: correctness ({small.lines:,} lines): journalban matched - corpus failures",
                jb_small.matched - small.failures, "", "0", jb_small.matched == small.failures and
                jb.matched == alone.matched == portable.matched == big.failures, here, correctness + whole))
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--f2b-lines", type=int, default=1_000_000,
                        help="corpus size fail2ban-regex runs on (default: the same file as the others)")
    parser.add_argument("--kinds", default="sshd,nginx")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool; the fastest counts")
    args = parser.parse_args(argv)
    from bench.run import print_figures

    print_figures(run(args.lines, min(args.f2b_lines, args.lines), tuple(args.kinds.split(",")), rounds=args.rounds))


if __name__ == "__main__":
    main()
