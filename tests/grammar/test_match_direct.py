"""``Grammar.match`` reads the combined regex itself (without ``decide``'s tuple) and
gives exactly ``decide``'s result."""

import itertools
from pathlib import Path

import pytest

from journalban.grammar import load_grammar
from journalban.grammar.grammar import MAX_MESSAGE
from tests.corpora import mixed

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "grammars").glob("*.grammar"))


@pytest.fixture(scope="module")
def messages() -> list[str]:
    """Corpus lines, every shipped example, examples spliced, and one message too long to read."""
    examples = [example.text for path in SHIPPED for example in load_grammar(path).examples]
    out = mixed().decode().splitlines() + examples
    out += [a[: len(a) // 2] + b[len(b) // 2:] for a, b in itertools.pairwise(examples)]
    out.append("Failed password for root from 203.0.113.9 port 22 ssh2" + " " * MAX_MESSAGE)
    return out


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_match_is_what_decide_decides(path: Path, messages: list[str]) -> None:
    grammar = load_grammar(path)
    found = [grammar.match(message) for message in messages]
    assert found == [grammar.decide(message)[1] for message in messages]
    assert any(result is not None for result in found)  # the long message, rejected, at least
