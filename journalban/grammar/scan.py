"""Which lines of a read buffer a grammar's rules might match, found in one pass over many lines.

A scanner only narrows: it flags a superset of the lines on which the exact per-line
path (prefix parsing, ``Grammar.decide``) could find a fail or ignore rule, and that
path alone decides. So results are the same whatever the engine, and lines nobody
flags are counted as missed without a Python object being built for them.

Engines, best first: ``hyperscan`` (x86; every rule translated into a pattern over
the bytes, a line flagged where one ends), ``literal`` (portable: the lines holding
a rule's required literal, found by one ``re`` search over the buffer), ``lines``
(every line; the reference the others are tested against).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from . import scan_translate
from .compiler import CompiledRule
from .grammar import MAX_MESSAGE, Grammar
from .scan_translate import Untranslatable

log = logging.getLogger(__name__)

ENGINES = ("hyperscan", "literal", "lines")
ENGINE_ENV = "JOURNALBAN_SCANNER"  # forces an engine, e.g. for the tests that compare them


class BufferScanner(Protocol):
    """Says which lines of a buffer may match. The buffer holds whole lines, each ending
    with a newline except perhaps the last; a line is named by its end offset (the
    offset of its newline, or the buffer's length for a last line without one)."""

    engine: str

    def flagged(self, buffer: bytes) -> list[int]:
        """End offsets of the lines that may match, ascending, each once."""
        ...


class AllLines:
    """Every line is flagged: the per-line path decides them all."""

    engine = "lines"

    def flagged(self, buffer: bytes) -> list[int]:
        ends = [found.start() for found in _NEWLINE.finditer(buffer)]
        if buffer and not buffer.endswith(b"\n"):
            ends.append(len(buffer))
        return ends


_NEWLINE = re.compile(b"\n")


class LiteralScanner:
    """The lines that hold some rule's required literal (``CompiledRule.prefilter``): a
    rule's match always contains its literal, so no line the rules match is left out."""

    engine = "literal"

    def __init__(self, literals: Iterable[str]) -> None:
        ordered = sorted({literal.encode() for literal in literals}, key=len, reverse=True)
        self._search = re.compile(b"|".join(map(re.escape, ordered))).search

    def flagged(self, buffer: bytes) -> list[int]:
        ends: list[int] = []
        search, find, size = self._search, buffer.find, len(buffer)
        found = search(buffer)
        while found is not None:
            end = find(b"\n", found.end())
            if end < 0:
                end = size
            ends.append(end)
            found = search(buffer, end + 1)
        return ends


class HyperscanScanner:
    """All rules in one hyperscan database, each anchored at the end of a line."""

    engine = "hyperscan"

    def __init__(self, rule_expressions: list[bytes]) -> None:
        self._database = compiled_database([_NON_ASCII, *rule_expressions])

    def flagged(self, buffer: bytes) -> list[int]:
        ends: list[int] = []
        append = ends.append

        def on_match(_id: int, _start: int, end: int, _flags: int, _context: object) -> None:
            append(end)

        self._database.scan(buffer, match_event_handler=on_match)
        ends += long_line_ends(buffer)
        if len(ends) > 1:
            ends = sorted(set(ends))
        if ends and ends[-1] == len(buffer) and buffer.endswith(b"\n"):
            ends.pop()  # a rule that can match empty text, after the last line: no line there
        return ends


# Lines hyperscan is not asked about: any byte outside ASCII (the translated patterns
# speak ASCII only; the exact path has Unicode semantics) and lines longer than a
# message may be (``Grammar.decide`` rejects those, which counts them; ``long_line_ends``).
_NON_ASCII = rb"[\x80-\xff][^\n]*$"
LINE_END = rb"\r*$"


def hyperscan_expressions(rules: tuple[CompiledRule, ...], warn: Callable[[str], None],
                          check_each: bool = False) -> list[bytes] | None:
    """One expression per rule that can match an ASCII line; None if some rule can only
    be narrowed to "every line" (it has no literal and cannot be translated).
    ``check_each`` compiles each alone, to find the ones hyperscan refuses."""
    import hyperscan

    expressions: list[bytes] = []
    for rule in rules:
        why = ""
        try:
            body = scan_translate.translate(rule.pattern)
        except Untranslatable as error:
            body, why = "", str(error)
        if body is None:  # can only match text with non-ASCII characters
            continue
        if body:
            expression = b"(?:" + body.encode("ascii") + b")" + LINE_END
            try:
                if check_each:
                    compiled_database([expression])
                expressions.append(expression)
                continue
            except hyperscan.error as error:
                why = f"hyperscan refuses its translation ({error})"
        elif not why:
            why = "its translation matches every line"
        if not rule.prefilter:
            warn(f"scanner: rule {rule.name!r}: {why}; every line goes to the exact matcher")
            return None
        warn(f"scanner: rule {rule.name!r}: {why}; lines holding {rule.prefilter!r} go to the exact matcher")
        expressions.append(re.escape(rule.prefilter.encode()) + rb"[^\n]*$")
    return expressions


def compiled_database(expressions: list[bytes], ids: list[int] | None = None) -> Any:
    """A block-mode database of multi-line expressions; ``ids``: each one's id, default
    their places."""
    import hyperscan

    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=expressions, ids=ids if ids is not None else list(range(len(expressions))),
                     flags=[hyperscan.HS_FLAG_MULTILINE] * len(expressions))
    return database


def long_line_ends(buffer: bytes, longer_than: int = MAX_MESSAGE) -> list[int]:
    """Where each line of more than ``longer_than`` bytes ends (its newline's offset, or
    the buffer's end), found by looking for a newline in every ``step``-byte piece: such
    a line holds a whole piece without one. A third of a hyperscan scan's time when it
    was one more expression there (with a minimum match length)."""
    size, step = len(buffer), max(1, (longer_than + 1) // 2)
    ends: list[int] = []
    find, rfind = buffer.find, buffer.rfind
    at = 0
    while at + step <= size:
        if find(b"\n", at, at + step) >= 0:
            at += step
            continue
        start = rfind(b"\n", 0, at) + 1
        end = find(b"\n", at)
        if end < 0:
            end = size
        if end - start > longer_than:
            ends.append(end)
        at = (end // step + 1) * step
    return ends


def hyperscan_available() -> bool:
    """Whether the hyperscan module loads here (x86 only; a broken install counts as absent)."""
    try:
        import hyperscan  # noqa: F401
    except Exception:  # an ImportError, or a native library that fails to load
        return False
    return True


def build_scanner(grammar: Grammar, engine: str | None = None,
                  warn: Callable[[str], None] = log.warning) -> BufferScanner:
    """The best scanner for the grammar's rules; ``engine`` (or $JOURNALBAN_SCANNER)
    forces one: hyperscan, literal or lines."""
    wanted = engine or os.environ.get(ENGINE_ENV) or ""
    if wanted and wanted not in ENGINES:
        raise ValueError(f"unknown scanner {wanted!r}; expected one of {', '.join(ENGINES)}")
    return _build(grammar, wanted, warn)


def _build(grammar: Grammar, wanted: str, warn: Callable[[str], None]) -> BufferScanner:
    if wanted in ("", "hyperscan") and hyperscan_available():
        scanner = _hyperscan_scanner(grammar, warn)
        if scanner is not None:
            return scanner
    elif wanted == "hyperscan":
        warn("scanner: hyperscan is not available here; using the portable literal scanner")
    literals = [rule.prefilter for rule in grammar.rules]
    if wanted != "lines" and literals and all(literals):
        return LiteralScanner(literals)
    return AllLines()


def _hyperscan_scanner(grammar: Grammar, warn: Callable[[str], None]) -> HyperscanScanner | None:
    """Every rule at once; if hyperscan refuses that, each rule alone finds the culprits."""
    import hyperscan

    said: list[str] = []
    for check_each in (False, True):
        said.clear()
        expressions = hyperscan_expressions(grammar.rules, said.append, check_each)
        try:
            scanner = HyperscanScanner(expressions) if expressions is not None else None
        except hyperscan.error as error:
            said.append(f"scanner: hyperscan refuses the rules together ({error})")
            continue
        break
    else:
        scanner = None
    for text in said:
        warn(f"grammar {grammar.name!r}: {text}")
    return scanner
