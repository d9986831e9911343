"""Adversarial input: does any shipped grammar take super-linear time on a long crafted line?

    .venv/bin/python -m bench.grammar [--grammars sshd,nginx-wp-login] [--big 1048576] [--small 1024]

For every rule of every shipped grammar (``grammars/*.grammar``), lines are built from
the rule's own pieces: its literals and capture-like text standing in for each
placeholder (``1.2.3.4``, ``2001:db8::1``, ``root``, ``22``, ``"a\\"b"``, a stamp, long
runs of spaces or user-name letters). Each piece, and each pair of neighbouring pieces
(``" from " + "1.2.3.4"``, ``" port " + "22"`` ...), is repeated to the wanted size,
alone and between the rule's start and a whole well-formed tail (so the prefilter
literal is present and the anchored regex really runs); a long user name or run of
spaces sits in each free-text slot too.

``Grammar.match`` (every rule of the grammar, as the daemon calls it) is timed on each
line at 1 KB and 32 KB (screening; best of 3). The worst lines of each grammar (by the
32 KB / 1 KB ratio and by 32 KB time) are then timed at 1 MB. Reported per grammar: the
largest ratio time(1 MB) / time(1 KB); linear is ~1000 (a little less, as the fixed
cost per call counts more at 1 KB), and above 2000 is flagged super-linear with the
rule and line. Each is also timed at 64 KB and 256 KB: the growth per 4x of
size (linear ~4, quadratic ~16) tells a per-byte cost that is merely higher for long
lines (caches, noise on a loaded machine) from real super-linear work; only a ratio above
2000 with growth above 6 is flagged super-linear. A 1 MB run predicted (256 KB time x
growth) to take more than ``--cap`` seconds is not run but extrapolated so, and marked.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run import Figure

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from journalban.grammar import Grammar, load_grammar  # noqa: E402
from journalban.grammar.model import Alternatives, Element, Literal, OptionalGroup, Placeholder, RawRegex, RuleSpec  # noqa: E402
from journalban.grammar.scan import build_scanner  # noqa: E402
from journalban.grammar.syntax import parse_statements  # noqa: E402
from journalban.paths import SHIPPED_GRAMMARS  # noqa: E402

SUPER_LINEAR = 2000.0
GROWTH_LIMIT = 6.0  # time(1 MB) / time(256 KB): linear 4, quadratic 16
FILLERS: dict[str, list[str]] = {
    "address": ["1.2.3.4", "2001:db8::1", "::ffff:1.2.3.4"],
    "word": ["root"],
    "int": ["22"],
    "any": ["root x"],
    "quoted": ['a\\"b'],
}
STAMPS = {"syslog": "Nov 14 22:13:20", "clf": "14/Nov/2023:22:42:08 +0000", "iso8601": "2023-11-14T22:13:20Z"}


def filler(kind: str) -> list[str]:
    if kind.startswith("stamp:"):
        return [STAMPS.get(kind[6:], "2023-11-14 22:13:20")]
    return FILLERS.get(kind, ["x"])


def pieces(elements: tuple[Element, ...]) -> Iterator[tuple[str, str]]:
    """(text, kind) of a well-formed line, in order: optional groups taken, first branch of alternatives."""
    for element in elements:
        if isinstance(element, Literal):
            yield element.text, "literal"
        elif isinstance(element, Placeholder):
            yield filler(element.kind)[0], element.kind
        elif isinstance(element, OptionalGroup):
            yield from pieces(element.elements)
        elif isinstance(element, Alternatives):
            yield from pieces(element.branches[0])
        elif isinstance(element, RawRegex):
            yield "x", "regex"


def literals(elements: tuple[Element, ...]) -> Iterator[str]:
    for element in elements:
        if isinstance(element, Literal):
            yield element.text
        elif isinstance(element, OptionalGroup):
            yield from literals(element.elements)
        elif isinstance(element, Alternatives):
            for branch in element.branches:
                yield from literals(branch)


def placeholders(elements: tuple[Element, ...]) -> Iterator[str]:
    for element in elements:
        if isinstance(element, Placeholder):
            yield element.kind
        elif isinstance(element, OptionalGroup):
            yield from placeholders(element.elements)
        elif isinstance(element, Alternatives):
            for branch in element.branches:
                yield from placeholders(branch)


def repeat(unit: str, size: int) -> str:
    return (unit * (size // max(len(unit), 1) + 1))[:size]


@dataclass(frozen=True)
class Attack:
    """A line shape: ``head + fill(size) + tail``, where fill repeats ``unit``."""

    rule: str
    label: str
    head: str
    unit: str
    tail: str

    def line(self, size: int) -> str:
        return self.head + repeat(self.unit, max(size - len(self.head) - len(self.tail), 1)) + self.tail


def attacks(rule: RuleSpec) -> list[Attack]:
    name = rule.name.text
    skeleton = list(pieces(rule.elements))
    whole = "".join(text for text, _ in skeleton)
    first = skeleton[0][0] if skeleton else ""
    units: dict[str, str] = {}
    for text in [*literals(rule.elements), " ", "a", "9", ".", ":"]:
        units.setdefault(text, repr(text))
    for kind in set(placeholders(rule.elements)):
        for text in filler(kind):
            units.setdefault(text, f"<{kind}>")
    for a, b in itertools.pairwise(skeleton):
        units.setdefault(a[0] + b[0], repr(a[0] + b[0]))
    for a, b, c in zip(skeleton, skeleton[1:], skeleton[2:], strict=False):
        units.setdefault(a[0] + b[0] + c[0], repr(a[0] + b[0] + c[0]))
    units.setdefault(whole, "whole line")
    out: list[Attack] = []
    for unit, label in units.items():
        out.append(Attack(name, f"{label} * n", "", unit, ""))
        out.append(Attack(name, f"start + {label} * n + whole line", first, unit, whole))
    # a long value in each free slot (user names, spaces), the rest well formed
    for index, (_, kind) in enumerate(skeleton):
        if kind == "literal":
            continue
        head = "".join(text for text, _ in skeleton[:index])
        tail = "".join(text for text, _ in skeleton[index + 1:])
        for unit in ("a", " ", "1.2.3.4 ", " from 1.2.3.4 port 22"):
            out.append(Attack(name, f"long <{kind}> of {unit!r}", head, unit, tail))
    return out


def timed(grammar: Grammar, line: str, budget: float = 0.002, best_of: int = 3) -> float:
    """Seconds per ``Grammar.match`` call: repeated to fill ``budget``, best of ``best_of``."""
    return timed_call(grammar.match, line, budget, best_of)


def timed_call(match: Callable[[Any], object], line: Any, budget: float = 0.002, best_of: int = 3) -> float:
    """Seconds per ``match(line)`` call: repeated to fill ``budget``, best of ``best_of``."""
    started = time.perf_counter()
    match(line)
    once = time.perf_counter() - started
    number = max(1, int(budget / max(once, 1e-7)))
    best = once
    for _ in range(best_of if number > 1 or once < 1.0 else 1):
        started = time.perf_counter()
        for _ in range(number):
            match(line)
        best = min(best, (time.perf_counter() - started) / number)
    return best


def slowest_rule(grammar: Grammar, line: str) -> str:
    costs = []
    for rule in grammar.rules:
        started = time.perf_counter()
        rule.search(line)
        costs.append((time.perf_counter() - started, rule.name))
    return max(costs)[1] if costs else "-"


@dataclass
class GrammarResult:
    grammar: str
    rules: int
    lines: int
    ratio: float = 0.0
    worst: Attack | None = None
    small: float = 0.0
    big: float = 0.0
    estimated: bool = False
    growth: float = 0.0  # time(big) / time(big / 4) on the worst line: linear ~4, quadratic ~16
    slow_rule: str = "-"
    notes: list[str] = field(default_factory=list)
    # per scanner engine: the largest time(big) / time(small) of a buffer holding one crafted
    # line, with the times, the growth from big / 4 to big, and the line's shape
    scan_ratios: dict[str, tuple[float, float, float, float, str]] = field(default_factory=dict)

    @property
    def above(self) -> bool:
        return self.ratio > SUPER_LINEAR

    @property
    def super_linear(self) -> bool:
        """Above the ratio and still growing faster than the size from 256 KB to 1 MB (a ratio
        above 2000 with growth ~4 is a per-byte cost that is higher for long lines, caches)."""
        return self.above and self.growth > GROWTH_LIMIT


def bench_grammar(path: Path, small: int, mid: int, big: int, keep: int, cap: float) -> GrammarResult:
    grammar = load_grammar(path)
    specs = [s for s in parse_statements(path.read_text(), path) if isinstance(s, RuleSpec)]
    shapes = [a for spec in specs for a in attacks(spec)]
    result = GrammarResult(grammar.name, len(specs), len(shapes))
    screened = []
    for shape in shapes:
        t_small = timed(grammar, shape.line(small))
        t_mid = timed(grammar, shape.line(mid), budget=0.001, best_of=2)
        screened.append((t_mid / t_small, t_mid, t_small, shape))
    candidates = {id(s[3]): s for s in sorted(screened, key=lambda s: -s[0])[:keep]}
    candidates.update({id(s[3]): s for s in sorted(screened, key=lambda s: -s[1])[:keep]})
    for _, _, _, shape in candidates.values():
        t_small = timed(grammar, shape.line(small), budget=0.02, best_of=5)  # again, carefully
        t_64k = timed(grammar, shape.line(big // 16), budget=0.01, best_of=2)
        t_256k = timed(grammar, shape.line(big // 4), budget=0.02, best_of=2)
        growth = t_256k / t_64k
        if t_256k * growth > cap:  # would take too long: extrapolate at the growth measured
            t_big, estimated = t_256k * growth, True
        else:
            t_big, estimated = timed(grammar, shape.line(big), budget=0.05, best_of=3), False
            growth = t_big / t_256k
        ratio = t_big / t_small
        if ratio > result.ratio:
            result.ratio, result.worst, result.small, result.big = ratio, shape, t_small, t_big
            result.estimated, result.growth = estimated, growth
    if result.worst is not None:
        result.slow_rule = slowest_rule(grammar, result.worst.line(big // 4 if result.estimated else big))
    bench_scanners(grammar, result, [shape for _, _, _, shape in candidates.values()], small, big)
    return result


def bench_scanners(grammar: Grammar, result: GrammarResult, shapes: list[Attack], small: int, big: int) -> None:
    """The buffer scanners ``replay`` runs before any per-line regex, on the same worst
    lines: each must stay linear too (the per-line path never sees a line over 16 KiB)."""
    for engine in ("hyperscan", "literal"):
        scanner = build_scanner(grammar, engine, warn=lambda _: None)
        if scanner.engine != engine:
            continue
        for shape in shapes:
            t_small = timed_call(scanner.flagged, shape.line(small).encode(), budget=0.01, best_of=5)
            t_quarter = timed_call(scanner.flagged, shape.line(big // 4).encode(), budget=0.02, best_of=3)
            t_big = timed_call(scanner.flagged, shape.line(big).encode(), budget=0.05, best_of=3)
            if t_big / t_small > result.scan_ratios.get(engine, (0.0,))[0]:
                result.scan_ratios[engine] = (t_big / t_small, t_small, t_big, t_big / t_quarter, shape.label)


def shipped(names: list[str] | None) -> list[Path]:
    paths = sorted(SHIPPED_GRAMMARS.glob("*.grammar"))
    if names:
        paths = [p for p in paths if p.stem in names]
    return paths


def run(names: list[str] | None = None, small: int = 1024, big: int = 1 << 20, keep: int = 3,
        cap: float = 30.0, echo: bool = True) -> tuple[list[GrammarResult], list[Figure]]:
    from bench.run import Figure

    mid = 32 * small
    results: list[GrammarResult] = []
    figures: list[Figure] = []
    for path in shipped(names):
        started = time.perf_counter()
        result = bench_grammar(path, small, mid, big, keep, cap)
        results.append(result)
        if echo:
            print(f"  grammar {result.grammar}: ratio {result.ratio:,.0f} ({time.perf_counter() - started:.1f} s, "
                  f"{result.lines} lines)", file=sys.stderr, flush=True)
        worst = result.worst
        extrapolated = " (extrapolated: 256 KB time x its growth from 64 KB)" if result.estimated else ""
        note = (f"worst: rule {worst.rule}, {worst.label}; {result.small * 1e6:,.1f} us at {small:,} B, "
                f"{result.big * 1e3:,.1f} ms at {big:,} B{extrapolated}; growth per 4x size "
                f"{result.growth:.1f}x; slowest rule on it: {result.slow_rule}") if worst else "no rules"
        if result.above and not result.super_linear:
            note += "  (above 2000 but growing linearly from 256 KB: not super-linear)"
        figures.append(Figure(
            f"grammar {result.grammar}: match time 1 MB / 1 KB ({result.rules} rules, {result.lines} line shapes)",
            result.ratio, "x", f"<= {SUPER_LINEAR:,.0f} (linear ~1000)", not result.super_linear,
            f".venv/bin/python -m bench.grammar --grammars {result.grammar}",
            note + ("  SUPER-LINEAR" if result.super_linear else "")))
        for engine, (ratio, t_small, t_big, growth, label) in result.scan_ratios.items():
            linear = ratio <= SUPER_LINEAR or growth <= GROWTH_LIMIT
            figures.append(Figure(
                f"grammar {result.grammar}: replay's {engine} scan 1 MB / 1 KB line", ratio, "x",
                f"<= {SUPER_LINEAR:,.0f} (linear ~1000)", linear,
                f".venv/bin/python -m bench.grammar --grammars {result.grammar}",
                f"worst: {label}; {t_small * 1e6:,.1f} us at {small:,} B, {t_big * 1e3:,.2f} ms at {big:,} B "
                f"(a buffer holding that one line); growth per 4x size {growth:.1f}x"
                + ("" if ratio <= SUPER_LINEAR else "  (above 2000 but growing linearly: not super-linear)"
                   if linear else "  SUPER-LINEAR")))
    return results, figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.grammar", description=__doc__.splitlines()[0])
    parser.add_argument("--grammars", help="comma-separated names (default: every shipped grammar)")
    parser.add_argument("--small", type=int, default=1024)
    parser.add_argument("--big", type=int, default=1 << 20)
    parser.add_argument("--keep", type=int, default=3, help="worst lines per grammar timed at --big, per criterion")
    parser.add_argument("--cap", type=float, default=30.0, help="seconds a single --big match may be predicted to take")
    args = parser.parse_args(argv)
    from bench.run import print_figures

    _, figures = run(args.grammars.split(",") if args.grammars else None, args.small, args.big, args.keep, args.cap)
    print_figures(figures)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
