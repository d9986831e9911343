"""Rules with free text: match time of crafted lines at 16 KiB and 1 MB, past the 16 KiB cap.

    .venv/bin/python -m bench.free_text [--grammars dovecot,mysqld-auth] [--cap 20] [--unchecked FILE ...]

``Grammar.decide`` rejects messages over 16 KiB unread, so ``bench.grammar`` cannot see
what a rule would cost on a longer line. This times the rules themselves (every rule of
the grammar, ignore rules first, as ``decide`` runs them) on ``bench.grammar``'s line
shapes: each shape at 1 KiB and 16 KiB (screening), the worst three by time at 16 KiB
then at 64 KiB, 256 KiB and 1 MB. A 1 MB run predicted (256 KiB time x its growth) to
take more than ``--cap`` seconds is extrapolated, and marked so. Linear: 1 MB / 16 KiB
~ 64; quadratic ~ 4096. ``--unchecked FILE ...`` also times grammar files with the
loader's free-text slot check switched off: rules written before it (``git show
HEAD~:grammars/dovecot.grammar``), timed beside today's in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.grammar import Attack, attacks, shipped  # noqa: E402
from journalban.grammar import Grammar, compiler, load_grammar  # noqa: E402
from journalban.grammar.model import RuleSpec  # noqa: E402
from journalban.grammar.syntax import parse_statements  # noqa: E402

KIB = 1024


def run_rules(grammar: Grammar, line: str) -> None:
    for rule in grammar.rules:  # ignore rules come first in decide; every rule may run
        rule.search(line)


def timed(grammar: Grammar, line: str, budget: float = 0.01) -> float:
    started = time.perf_counter()
    run_rules(grammar, line)
    once = time.perf_counter() - started
    number = max(1, min(1000, int(budget / max(once, 1e-7))))
    if number == 1:
        return once
    started = time.perf_counter()
    for _ in range(number):
        run_rules(grammar, line)
    return (time.perf_counter() - started) / number


def bench(path: Path, cap: float) -> tuple[str, float, float, bool, Attack | None]:
    grammar = load_grammar(path)
    specs = [s for s in parse_statements(path.read_text(), path) if isinstance(s, RuleSpec)]
    shapes = [a for spec in specs for a in attacks(spec)]
    screened = sorted(((timed(grammar, s.line(16 * KIB), 0.002), s) for s in shapes), key=lambda t: -t[0])[:3]
    worst: tuple[float, float, bool, Attack | None] = (0.0, 0.0, False, None)
    for _, shape in screened:
        t16 = timed(grammar, shape.line(16 * KIB), 0.02)
        t64 = timed(grammar, shape.line(64 * KIB))
        t256 = timed(grammar, shape.line(256 * KIB))
        growth = t256 / max(t64, 1e-9)
        if t256 * growth > cap:
            t1m, estimated = t256 * growth, True
        else:
            t1m, estimated = timed(grammar, shape.line(1024 * KIB), 0.05), False
        if t1m > worst[1]:
            worst = (t16, t1m, estimated, shape)
    return (grammar.name, *worst)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.free_text", description=__doc__.splitlines()[0])
    parser.add_argument("--grammars", help="comma-separated names (default: every shipped grammar)")
    parser.add_argument("--cap", type=float, default=20.0)
    parser.add_argument("--unchecked", nargs="*", default=[], type=Path)
    args = parser.parse_args(argv)
    print(f"load {os.getloadavg()[0]:.2f}")
    runs = [(path, path.stem) for path in shipped(args.grammars.split(",") if args.grammars else None)]
    runs += [(path, f"{path.stem} (unchecked)") for path in args.unchecked]
    for path, label in runs:
        if label.endswith("(unchecked)"):
            saved, compiler._check_free_text_slots = compiler._check_free_text_slots, lambda *args: None
        try:
            _, t16, t1m, estimated, shape = bench(path, args.cap)
        finally:
            if label.endswith("(unchecked)"):
                compiler._check_free_text_slots = saved
        where = f"rule {shape.rule}, {shape.label}" if shape else "-"
        mark = " (extrapolated)" if estimated else ""
        print(f"{label:30} 16 KiB {t16 * 1e3:9.3f} ms   1 MB {t1m * 1e3:11.1f} ms{mark}   "
              f"ratio {t1m / max(t16, 1e-9):7.0f}   worst: {where}", flush=True)


if __name__ == "__main__":
    main()
