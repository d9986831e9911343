"""Every benchmark in one go: one table on stdout, and ``bench/RESULTS.md``.

    .venv/bin/python -m bench.run [--lines 1000000] [--f2b-lines 100000] [--daemon-lines 1000000]
                                  [--rss-lines 3000000 --rss-sources 1000000] [--latency-bans 1000]
                                  [--startup-bans 100000] [--grammars all] [--only replay,grammar,daemon,...]
                                  [--no-results-file]

Runs ``bench.replay``, ``bench.grammar``, ``bench.daemon`` and ``bench.stages`` in this process (each
also runs alone: ``python -m bench.replay`` ...), then the other engineers' modules
that are present and importable (``bench.intake``, ``bench.enforce``, ``bench.report``,
``bench.fleet``)
as child processes at small sizes, their own output quoted as it is. Every figure is
printed with its target, whether it is met, the 1-minute load average when it was
taken (the machine is shared) and the command that reproduces it alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "RESULTS.md"
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def load() -> float:
    return os.getloadavg()[0]


@dataclass
class Figure:
    """One measured figure against its target."""

    name: str
    value: float | None
    unit: str
    target: str
    passed: bool | None  # None: no target
    command: str
    note: str = ""
    load: float = field(default_factory=load)

    def shown(self) -> str:
        if self.value is None:
            return "—"
        if self.unit == "x":
            return f"{self.value:,.1f}x" if self.value < 100 else f"{self.value:,.0f}x"
        if self.unit in ("s", "ms"):
            return f"{self.value:,.3f} {self.unit}" if self.value < 10 else f"{self.value:,.1f} {self.unit}"
        return f"{self.value:,.0f} {self.unit}".rstrip()

    @property
    def verdict(self) -> str:
        return "—" if self.passed is None else ("met" if self.passed else "MISSED")


def table(figures: list[Figure]) -> str:
    rows = ["| figure | value | target | | load | note |", "|---|---:|---|---|---:|---|"]
    for f in figures:
        rows.append(f"| {f.name} | {f.shown()} | {f.target or '—'} | {f.verdict} | {f.load:.2f} | "
                    f"{f.note.replace('|', '/')} |")
    return "\n".join(rows)


def print_figures(figures: list[Figure]) -> None:
    print(table(figures), flush=True)


def machine() -> dict[str, str]:
    memory = "?"
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpu = "?"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": memory, "kernel": platform.release(),
            "python": platform.python_version(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


# --- other engineers' modules: child processes, output quoted ----------------------------------

OTHERS = {
    "intake": ["--entries", "100000", "--messages", "100000", "--daemon-entries", "1000000",
               "--daemon-messages", "1000000"],  # 9.3: the whole daemon, journald and TCP syslog
    "enforce": ["--sizes", "1000,10000", "--skip-fail2ban", "--flood-seconds", "1", "--flood-rounds", "1",
                "--no-results-file"],
    "report": ["--failures", "100000", "--bans", "10000"],
    "fleet": ["--hosts", "20", "--seconds", "5", "--bans", "500"],
}


def run_other(name: str, timeout: float) -> tuple[Figure, str]:
    argv = [PYTHON, "-m", f"bench.{name}", *OTHERS[name]]
    command = " ".join([".venv/bin/python", *argv[1:]])
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        output, ok = done.stdout + (f"\n[stderr tail]\n{done.stderr[-2000:]}" if done.returncode else ""), \
            done.returncode == 0
    except subprocess.TimeoutExpired as exc:
        output, ok = f"killed after {timeout:.0f} s\n{(exc.stdout or b'')!r}"[:4000], False
    seconds = time.perf_counter() - started
    figure = Figure(f"bench.{name} (small sizes; its own figures below)", seconds, "s", "runs", ok, command,
                    "completed" if ok else "failed or timed out: see its output below")
    return figure, output


def calibration_figure(when: str) -> Figure:
    """The machine's speed on fixed work (``bench.calibrate``): figures of runs compare through it."""
    from bench.calibrate import ROUNDS, calibration, shown

    measured = calibration()
    return Figure(f"calibration {when}: fixed Python work, CPU s (bench.calibrate; less is faster)",
                  measured["python"], "s", "", None, ".venv/bin/python -m bench.calibrate",
                  f"{shown(measured)}, best of {ROUNDS}; the machine's speed when the figures around it were taken")


# --- main ------------------------------------------------------------------------------------------


def write_results(figures: list[Figure], sections: list[tuple[str, str]], sizes: str, argv: list[str]) -> None:
    info = machine()
    lines = ["# Benchmark results", "",
             f"Written by `{' '.join(['.venv/bin/python -m bench.run', *argv])}` on {info['date']}.",
             "", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "date") + ".",
             f"The machine is shared with other engineers' test runs: the load column is the 1-minute load "
             f"average when each figure was taken (at {info['nproc']} CPUs, anything above {info['nproc']} means "
             "the benchmark did not have the machine to itself and its rate is understated). Contention on the "
             "host does not show in it: the calibration rows (fixed work that owes nothing to journalban, "
             "`bench/calibrate.py`) say how fast the machine was at the start and the end of the run; compare "
             "figures of two runs only beside theirs.", "",
             f"Sizes: {sizes}", "", table(figures), "", "## Commands", "",
             "Each figure alone:", ""]
    seen = []
    for f in figures:
        if f.command not in seen:
            seen.append(f.command)
            lines.append(f"    {f.command}")
    for title, body in sections:
        lines += ["", f"## {title}", "", "```", body.rstrip(), "```"]
    RESULTS.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="replay corpus size")
    parser.add_argument("--f2b-lines", type=int, default=100_000,
                        help="lines fail2ban-regex runs on (its rate is scaled)")
    parser.add_argument("--daemon-lines", type=int, default=1_000_000)
    parser.add_argument("--rss-lines", type=int, default=3_000_000)
    parser.add_argument("--rss-sources", type=int, default=1_000_000)
    parser.add_argument("--latency-bans", type=int, default=1000,
                        help="bench.daemon: bans per intake kind and backend (fail2ban: its --f2b-bans 300)")
    parser.add_argument("--startup-bans", type=int, default=100_000)
    parser.add_argument("--grammars", default="all", help="comma-separated grammar names for bench.grammar, or all")
    parser.add_argument("--only", default="replay,grammar,daemon,intake,enforce,report,fleet")
    parser.add_argument("--other-timeout", type=float, default=900.0)
    parser.add_argument("--no-results-file", action="store_true")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    figures: list[Figure] = [calibration_figure("at the start")]
    sections: list[tuple[str, str]] = []
    if "replay" in only:
        from bench import replay

        figures += replay.run(args.lines, args.f2b_lines)
    if "grammar" in only:
        from bench import grammar

        _, found = grammar.run(None if args.grammars == "all" else args.grammars.split(","))
        figures += found
    if "daemon" in only:
        from bench import daemon

        found, profile = daemon.run(args.daemon_lines, args.latency_bans, args.startup_bans, args.rss_lines,
                                    args.rss_sources)
        figures += found
        if profile:
            sections.append(("Profile of the daemon's file path", profile))
        from bench import stages

        print("running bench.stages ...", file=sys.stderr, flush=True)
        sections.append(("Where a failure's CPU time goes on the file path (`.venv/bin/python -m bench.stages "
                         f"--lines {args.daemon_lines}`)", stages.run(args.daemon_lines)))
    for name in ("intake", "enforce", "report", "fleet"):
        if name in only and importlib.util.find_spec(f"bench.{name}") is not None:
            print(f"running bench.{name} ...", file=sys.stderr, flush=True)
            figure, output = run_other(name, args.other_timeout)
            figures.append(figure)
            sections.append((f"bench.{name} output ({figure.command})", output))
    figures.append(calibration_figure("at the end"))
    print_figures(figures)
    sizes = (f"replay {args.lines:,} lines (fail2ban-regex on {args.f2b_lines:,}); daemon throughput "
             f"{args.daemon_lines:,} lines; latency {args.latency_bans} bans per intake and backend; start-up and RSS "
             f"{args.startup_bans:,} bans; "
             f"RSS {args.rss_lines:,} lines from {args.rss_sources:,} addresses")
    if not args.no_results_file:
        write_results(figures, sections, sizes, argv)
        print(f"\nwritten to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
