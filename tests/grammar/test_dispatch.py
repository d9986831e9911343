"""One combined regex decides every message as the rules asked one by one do."""

import itertools
import re
from pathlib import Path

import pytest

from journalban.grammar import Grammar, Match, Rejected, load_grammar
from journalban.grammar.applies import Selector
from journalban.grammar.compiler import CompiledRule
from journalban.grammar.dispatch import Dispatch, renamed
from tests.corpora import mixed

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "grammars").glob("*.grammar"))
FAIL2BAN_LOGS = Path("/usr/lib/python3/dist-packages/fail2ban/tests/files/logs")
HEADER = re.compile(r"^[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d \S+ [^\s\[\]:]+(?:\[\d+\])?: ")


@pytest.fixture(scope="module")
def messages() -> list[str]:
    """Corpus lines with and without their syslog header, fail2ban's sample logs, and
    every shipped grammar's examples cut and spliced."""
    out: list[str] = []
    for line in mixed().decode().splitlines():
        out += [line, HEADER.sub("", line)]
    if FAIL2BAN_LOGS.is_dir():
        for log in sorted(FAIL2BAN_LOGS.iterdir()):
            if log.is_file():
                lines = log.read_text(errors="replace").splitlines()
                out += lines + [HEADER.sub("", line) for line in lines]
    examples = [example.text for path in SHIPPED for example in load_grammar(path).examples]
    out += examples
    out += [a[: len(a) // 2] + b[len(b) // 2:] for a, b in itertools.pairwise(examples)]
    out += [a + " " + b for a, b in zip(examples, examples[7:], strict=False)]
    return out


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_grammar_is_combined_and_decides_as_its_rules_one_by_one(
        path: Path, messages: list[str]) -> None:
    grammar = load_grammar(path)
    assert grammar._dispatch is not None
    decided = [grammar.decide(message) for message in messages]
    assert decided == [grammar.decide_one_by_one(message) for message in messages]
    assert any(found is not None for _, found in decided) or grammar.source_kind in ("journal", "ledger")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_address_of_gives_the_rule_address_and_stamp_that_match_gives(path: Path, messages: list[str]) -> None:
    """The daemon's ``address_of`` leaves the other captures out and nothing else."""
    grammar = load_grammar(path)
    for message in messages:
        found = grammar.match(message)
        expected = (found.rule, found.address, found.stamp) if isinstance(found, Match) else found
        assert grammar.address_of(message) == expected, message


def test_of_two_spellings_of_the_address_the_one_that_matched_is_taken() -> None:
    """A capture written twice (two alternatives) is taken from the group that took part,
    by ``address_of`` as by ``match``; so is the stamp; an invalid address is rejected."""
    spelled = rule("fail", "two", r"(?:from (?P<g0>\S+)|by (?P<g1>\S+)) at (?P<g2>\d+)",
                   (("g0", "address"), ("g1", "address"), ("g2", "stamp")))
    grammar = Grammar("g", "", Path("g.grammar"), Selector("file", "raw"), False, None, (), (spelled,))
    assert grammar._dispatch is not None
    for message, expected in (("from 203.0.113.9 at 5", ("two", "203.0.113.9", "5")),
                              ("by ::ffff:198.51.100.7 at 6", ("two", "198.51.100.7", "6")),
                              ("by nowhere at 7", Rejected("two", "invalid address 'nowhere'")),
                              ("from 203.0.113.9", None)):
        found = grammar.match(message)
        assert (found.rule, found.address, found.stamp) == expected if isinstance(found, Match) else found == expected
        assert grammar.address_of(message) == expected


def test_groups_references_and_conditionals_are_renamed_and_escapes_are_not() -> None:
    pattern = r"\(?P<g9>x\) (?P<g0>a+)(?P=g0)(?(g0)b|c)[(?P<g1>)]"
    assert renamed(pattern, "r3_") == r"\(?P<g9>x\) (?P<r3_g0>a+)(?P=r3_g0)(?(r3_g0)b|c)[(?P<g1>)]"
    assert renamed(r"(a)\1", "r0_") is None  # a numbered back-reference shifts in the combination


def rule(action: str, name: str, pattern: str, captures: tuple[tuple[str, str], ...] = ()) -> CompiledRule:
    return CompiledRule(action, name, re.compile(pattern, re.DOTALL), "", captures, bool(captures), None)


def test_ignore_rules_come_first_and_the_first_fail_rule_that_matches_wins() -> None:
    rules = (rule("fail", "wide", r"(?P<g0>\S+) .*", (("g0", "address"),)),
             rule("fail", "narrow", r"(?P<g0>\S+) x", (("g0", "address"),)),
             rule("ignore", "quiet", r".* quiet"))
    dispatch = Dispatch.build(rules)
    assert dispatch is not None
    for message, expected in (("1.2.3.4 x", "wide"), ("1.2.3.4 is quiet", "quiet"), ("nothing", None)):
        found = dispatch.fullmatch(message)
        assert (dispatch.branches[found.lastgroup or ""].rule.name if found else None) == expected


def test_rules_with_other_flags_are_not_combined() -> None:
    plain = rule("fail", "a", r"(?P<g0>\S+)", (("g0", "address"),))
    other = CompiledRule("fail", "b", re.compile(r"(?P<g0>\S+) b", re.IGNORECASE), "", (("g0", "address"),), True,
                         None)
    assert Dispatch.build((plain, other)) is None
    assert Dispatch.build((plain,)) is not None
