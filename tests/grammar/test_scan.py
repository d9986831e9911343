"""The buffer scanners: every line a rule can match is flagged, by every engine.

The exact per-line path decides the flagged lines, so a scanner may flag too much but
never too little; these tests hold each engine to that on the shipped grammars, on
strings generated to match each rule, and on the lines a translation cannot speak for.
"""

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journalban.grammar import Grammar, load_grammar
from journalban.grammar.grammar import MAX_MESSAGE
from journalban.grammar.scan import ENGINES, BufferScanner, build_scanner, hyperscan_available, long_line_ends
from journalban.grammar.scan_translate import translate

GRAMMARS = Path(__file__).resolve().parents[2] / "grammars"
SHIPPED = sorted(GRAMMARS.glob("*.grammar"))
HEADER = "Nov 14 22:13:20 web1 app[42]: "
ASCII_LINE = st.characters(min_codepoint=0, max_codepoint=127, exclude_characters="\n")


def test_hyperscan_is_here() -> None:
    """CI's machine is x86 with the wheel installed: the fast engine must be the one tested."""
    assert hyperscan_available()


def flagged_lines(scanner: BufferScanner, lines: list[str]) -> set[int]:
    """0-based indexes of the lines the scanner flags in a buffer holding them."""
    buffer = "\n".join(lines).encode("utf-8") + b"\n"
    ends = scanner.flagged(buffer)
    newlines = [i for i, byte in enumerate(buffer) if byte == 10]
    return {newlines.index(end) for end in ends}


def deciding_lines(grammar: Grammar, messages: list[str]) -> set[int]:
    """Lines a rule (fail or ignore) decides, or that are rejected: what must be flagged."""
    return {i for i, message in enumerate(messages) if grammar.decide(message) != (None, None)}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_example_a_rule_decides_is_flagged(path: Path, engine: str) -> None:
    grammar = load_grammar(path)
    scanner = build_scanner(grammar, engine)
    assert scanner.engine == engine
    messages = [example.text for example in grammar.examples]
    must = deciding_lines(grammar, messages)
    assert must, "every shipped grammar has examples that match"
    assert must <= flagged_lines(scanner, messages)
    behind_a_header = [HEADER + message for message in messages]  # a syslog file's lines
    assert must <= flagged_lines(scanner, behind_a_header)
    with_crlf = [message + "\r" for message in messages]
    assert must <= flagged_lines(scanner, with_crlf)


def _rules() -> list[object]:
    cases = []
    for path in SHIPPED:
        grammar = load_grammar(path)
        cases += [pytest.param(grammar, rule.name, id=f"{path.stem}:{rule.name}") for rule in grammar.rules]
    return cases


@pytest.mark.parametrize(("grammar", "rule_name"), _rules())
def test_generated_matches_of_each_rule_are_flagged_by_hyperscan(grammar: Grammar, rule_name: str) -> None:
    """Strings drawn from the rule's own regex (hypothesis keeps only real matches)."""
    rule = next(r for r in grammar.rules if r.name == rule_name)
    scanner = build_scanner(grammar, "hyperscan")

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.from_regex(rule.pattern, fullmatch=True, alphabet=ASCII_LINE))
    def check(message: str) -> None:
        assert 0 in flagged_lines(scanner, [message])
        assert 0 in flagged_lines(scanner, [HEADER + message])

    check()


TRICKY = [
    r"a[a-z]++ (?P<address>[0-9]*+)\\.",  # possessive
    r"(?>ab|a)c(?P<address>x)",  # atomic group
    r"(?P<u>[a-z]+) (?P=u) (?P<address>\d+)",  # back-reference
    r"(?P<q>\")?(?P<address>\w+)(?(q)\"|!)",  # conditional
    r"(?=[a-z])\w+(?<!z) (?P<address>\d+)(?!\d)",  # look-arounds
    r"\s+[\x1c-\x1f]?(?P<address>\W\D)\b",  # Python's \s holds \x1c-\x1f
    r"x{0,400}(?P<address>(?:ab{2,300}){2,50})y{20}",  # counted repeats past the cap
    r"(?x) a \  b (?P<address> [#] )  # verbose",
]


@pytest.mark.parametrize("source", TRICKY)
def test_the_translation_only_widens(source: str) -> None:
    """Whatever Python's regex matches on an ASCII line, the translated pattern matches."""
    pattern = re.compile(source, re.DOTALL)
    body = translate(pattern)
    assert body is not None
    widened = re.compile(body.encode("ascii"))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.from_regex(pattern, fullmatch=True, alphabet=ASCII_LINE))
    def check(text: str) -> None:
        assert widened.fullmatch(text.encode("ascii")), (text, body)

    check()


@pytest.mark.parametrize(("source", "text"), [
    (r"(?i:user \u212a+) (?P<address>\S+)", "USER kKk 203.0.113.9"),  # the Kelvin sign folds to k
    (r"(?i)\u017f+(?P<address>[^\s]+)", "sSs203.0.113.9"),  # so does the long s to s
    (r"\u212a+ (?P<address>\S+)", None),  # but only where case is ignored
])
def test_case_folding_from_beyond_ascii(source: str, text: str | None) -> None:
    pattern = re.compile(source, re.DOTALL)
    body = translate(pattern)
    if text is None:
        assert body is None
        return
    assert pattern.fullmatch(text)
    assert body is not None and re.fullmatch(body.encode("ascii"), text.encode("ascii"))


def test_a_rule_only_non_ascii_text_can_match_adds_no_pattern(grammar_from: Callable[[str], Grammar]) -> None:
    grammar = grammar_from('fail accent: "connexion refusée de " <address>\n')
    assert translate(grammar.rules[0].pattern) is None
    scanner = build_scanner(grammar, "hyperscan")
    lines = ["connexion refusée de 203.0.113.9", "connexion refusee de 203.0.113.9", "noise"]
    assert flagged_lines(scanner, lines) == {0}  # by its non-ASCII byte alone


@pytest.mark.parametrize("engine", ["hyperscan"])
def test_non_ascii_and_overlong_lines_always_go_to_the_exact_path(engine: str) -> None:
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    scanner = build_scanner(grammar, engine)
    lines = [
        "Failed password for root from 203.0.113.9 port 22 ssh2",  # matches
        "Failed password for röot from 203.0.113.9 port 22 ssh2",  # non-ASCII: Unicode semantics
        "Failed password for root from 203.0.113.9 port 22 ssh2" + " " * MAX_MESSAGE,  # rejected unread
        "x" * (MAX_MESSAGE + 1),  # too long to be a message: the exact path counts it
        "x" * MAX_MESSAGE,  # not too long, matches nothing
        "Invalid user \x1c from 203.0.113.9",  # an ASCII control Python's \s holds
        "",
    ]
    assert flagged_lines(scanner, lines) == {0, 1, 2, 3, 5}


def naive_long_line_ends(buffer: bytes, longer_than: int) -> list[int]:
    ends, start = [], 0
    for line in buffer.split(b"\n"):
        if len(line) > longer_than:
            ends.append(start + len(line))
        start += len(line) + 1
    return ends


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(lengths=st.lists(st.integers(min_value=0, max_value=40), max_size=30), longer_than=st.integers(0, 12),
       trailing_newline=st.booleans())
def test_long_line_ends_finds_every_long_line_and_no_other(lengths: list[int], longer_than: int,
                                                           trailing_newline: bool) -> None:
    buffer = b"\n".join(b"x" * length for length in lengths) + (b"\n" if trailing_newline else b"")
    assert long_line_ends(buffer, longer_than) == naive_long_line_ends(buffer, longer_than)


def test_long_line_ends_at_the_message_limit() -> None:
    lines = [b"a" * MAX_MESSAGE, b"b" * (MAX_MESSAGE + 1), b"", b"c" * (3 * MAX_MESSAGE), b"d" * 5]
    for buffer in (b"\n".join(lines), b"\n".join(lines) + b"\n", b"\n".join(lines[:4])):
        assert long_line_ends(buffer) == naive_long_line_ends(buffer, MAX_MESSAGE)
    assert len(long_line_ends(b"\n".join(lines))) == 2


def test_an_untranslatable_rule_narrows_to_its_literal_with_a_warning(
    grammar_from: Callable[[str], Grammar],
) -> None:
    """Hyperscan refuses some shapes; that rule falls back to its required literal."""
    grammar = grammar_from(
        'fail nested: "host " /(?P<address>(?:(?:(?:[0-9]{16}){16}){16}){16})/\n'
        'fail plain: "from " <address>\n'
    )
    warnings: list[str] = []
    scanner = build_scanner(grammar, "hyperscan", warn=warnings.append)
    assert scanner.engine == "hyperscan"
    assert warnings == [], "counted repeats inside counted repeats are widened, never refused"
    assert flagged_lines(scanner, ["host " + "1" * 4096, "from 203.0.113.9", "noise"]) == {0, 1}


def test_a_rule_without_literal_whose_translation_matches_anything_takes_every_line(
    grammar_from: Callable[[str], Grammar],
) -> None:
    grammar = grammar_from("fail bare: /(?P<address>[0-9a-f.:]*)/\n")
    warnings: list[str] = []
    scanner = build_scanner(grammar, "hyperscan", warn=warnings.append)
    assert flagged_lines(scanner, ["", "a b", "203.0.113.9"]) == {0, 1, 2}
    literal = build_scanner(grammar, "literal")
    assert literal.engine == "lines"  # no literal to look for: every line
    assert flagged_lines(literal, ["", "a b", "203.0.113.9"]) == {0, 1, 2}


def test_the_literal_engine_flags_lines_holding_a_rules_literal() -> None:
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    scanner = build_scanner(grammar, "literal")
    lines = ["Invalid user x from 203.0.113.9", "nothing here", "xx Invalid user ", "Failed "]
    assert flagged_lines(scanner, lines) == {0, 2, 3}


def test_an_unknown_engine_is_refused() -> None:
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    with pytest.raises(ValueError, match="unknown scanner 'fast'"):
        build_scanner(grammar, "fast")


def test_the_environment_chooses_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    monkeypatch.setenv("JOURNALBAN_SCANNER", "literal")
    assert build_scanner(grammar).engine == "literal"
    monkeypatch.delenv("JOURNALBAN_SCANNER")
    assert build_scanner(grammar).engine == "hyperscan"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_last_line_without_newline_and_an_empty_buffer(engine: str) -> None:
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    scanner = build_scanner(grammar, engine)
    buffer = b"noise\nInvalid user x from 203.0.113.9"
    assert len(buffer) in scanner.flagged(buffer)
    assert scanner.flagged(b"") == []
