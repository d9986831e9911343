"""The bytes prefilter checks a key's rules on the decoded text: it must say what the
raw bytes say, broken UTF-8 included; and keys avoid the grammar's everyday lines."""

from pathlib import Path

import pytest

from journalban.grammar import Grammar, load_grammar
from journalban.match import _benign, _key, _needs, prefilter_bytes

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [load_grammar(path) for path in sorted((ROOT / "grammars").glob("*.grammar"))]
BROKEN = [b"\xf0\x9f", b"\xe2", b"\xc3", b"\x80", b"\xff", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc3\xa9"]


def raw_holds_a_rules_literals(grammar: Grammar, message: bytes) -> bool:
    needs = _needs([grammar])
    assert needs is not None
    return any(all(literal.encode() in message for literal in literals) for literals in needs)


def spoiled(text: str) -> list[bytes]:
    """``text`` with broken (and one valid) UTF-8 sequences before, inside and after each word."""
    words = text.encode().split(b" ")
    out = []
    for bad in BROKEN:
        out.append(bad + text.encode() + bad)
        for at in range(len(words)):
            out.append(b" ".join([*words[:at], bad + words[at] + bad, *words[at + 1:]]))
    return out


@pytest.mark.parametrize("grammar", [g for g in SHIPPED if prefilter_bytes([g]) is not None], ids=lambda g: g.name)
def test_broken_utf8_next_to_the_literals_changes_nothing(grammar: Grammar) -> None:
    may_match = prefilter_bytes([grammar])
    assert may_match is not None
    messages = [m for example in grammar.examples for m in spoiled(example.text)]
    assert any(raw_holds_a_rules_literals(grammar, m) for m in messages)
    for message in messages:
        assert may_match(message) is raw_holds_a_rules_literals(grammar, message), message


def test_a_key_is_a_piece_the_everyday_lines_lack_when_there_is_one() -> None:
    benign = ["Received disconnect from 10.0.0.5 port 51514:11: disconnected by user"]
    assert _key(("Received disconnect from ", ": Auth fail"), benign) == "Auth fail"
    assert _key(("Received disconnect from ", ": Auth fail")) == "Received disconnect from"
    sshd = next(g for g in SHIPPED if g.name == "sshd")
    needs, everyday = _needs([sshd]), _benign([sshd])
    assert needs is not None and any("Received disconnect from" in line for line in everyday)
    auth_fail = next(literals for literals in needs if ": Auth fail" in literals)
    assert not any(_key(auth_fail, everyday) in line for line in everyday)
