"""The literal prefilters say False only where no fail rule can match: exactly where no
fail rule has all its required literals in the message."""

import itertools
from pathlib import Path

import pytest

from journalban.grammar import Grammar, load_grammar
from journalban.match import _needs, prefilter_bytes, prefilter_text
from tests.corpora import mixed

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [load_grammar(path) for path in sorted((ROOT / "grammars").glob("*.grammar"))]


def holds_a_rules_literals(grammars: list[Grammar], message: str) -> bool:
    needs = _needs(grammars)
    assert needs is not None
    return any(all(literal in message for literal in literals) for literals in needs)


@pytest.fixture(scope="module")
def messages() -> list[str]:
    """Corpus lines, every example, examples cut and spliced, and runs of literals that
    overlap one another (a key found inside another key's match)."""
    out: list[str] = []
    out += mixed().decode().splitlines()
    examples = [example.text for grammar in SHIPPED for example in grammar.examples]
    literals = sorted({literal for grammar in SHIPPED for rule in grammar.rules for literal in rule.required})
    out += examples
    out += [a[: len(a) // 2] + b[len(b) // 2:] for a, b in itertools.pairwise(examples)]
    out += ["".join(pair) for pair in itertools.product(literals, repeat=2)]
    out += [a[:-1] + b for a, b in itertools.product(literals, repeat=2)]
    return out


@pytest.mark.parametrize("grammar", [g for g in SHIPPED if _needs([g]) is not None], ids=lambda g: g.name)
def test_the_keyed_prefilter_says_true_exactly_where_a_rules_literals_all_are(
        grammar: Grammar, messages: list[str]) -> None:
    on_text, on_bytes = prefilter_text([grammar]), prefilter_bytes([grammar])
    assert on_text is not None and on_bytes is not None
    for message in messages:
        expected = holds_a_rules_literals([grammar], message)
        assert on_text(message) is expected, message
        assert on_bytes(message.encode()) is expected, message


def test_grammars_together_are_keyed_together(messages: list[str]) -> None:
    grammars = [g for g in SHIPPED if _needs([g]) is not None]
    may_match = prefilter_bytes(grammars)
    assert may_match is not None
    assert [may_match(m.encode()) for m in messages] == [holds_a_rules_literals(grammars, m) for m in messages]
