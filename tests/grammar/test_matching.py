"""Matching messages: anchoring, attacker-shaped text, address normalisation, speed bounds."""

import pytest

from journalban import paths
from journalban.grammar import Match, Rejected, load_grammar, normalise_address
from journalban.grammar.grammar import MAX_MESSAGE

SSHD = (
    'fail password: "Failed password for " [ "invalid user " ] <user:any> " from " <address>\n'
    '    " port " <port:int> " ssh2"\n'
    'ignore local: "Failed password for " <user:any> " from 127.0.0.1 port " <int> " ssh2"\n'
)


@pytest.fixture
def sshd(grammar_from):  # type: ignore[no-untyped-def]
    return grammar_from(SSHD)


def test_captures_and_rule(sshd) -> None:  # type: ignore[no-untyped-def]
    match = sshd.match("Failed password for root from 203.0.113.9 port 2222 ssh2")
    assert match == Match("password", "203.0.113.9", {"user": "root", "port": "2222"}, None)
    assert str(match) == "password address=203.0.113.9 user=root port=2222"


def test_injected_address_in_user_name_does_not_move_the_match(sshd) -> None:  # type: ignore[no-untyped-def]
    message = (
        "Failed password for invalid user root from 8.8.8.8 port 22 ssh2 from 8.8.8.8 port 22"
        " from 198.51.100.7 port 4711 ssh2"
    )
    match = sshd.match(message)
    assert isinstance(match, Match)
    assert match.address == "198.51.100.7"
    assert match.captures["port"] == "4711"
    assert match.captures["user"] == "root from 8.8.8.8 port 22 ssh2 from 8.8.8.8 port 22"


def test_anchored_at_both_ends(sshd) -> None:  # type: ignore[no-untyped-def]
    line = "Failed password for root from 203.0.113.9 port 22 ssh2"
    assert sshd.match("x" + line) is None
    assert sshd.match(line + " from 8.8.8.8 port 22") is None
    assert sshd.match(line + "\n") is None


def test_ignore_rules_win(sshd) -> None:  # type: ignore[no-untyped-def]
    message = "Failed password for root from 127.0.0.1 port 22 ssh2"
    assert sshd.match(message) is None
    assert sshd.decide(message) == ("local", None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("::FFFF:cb00:7109", "203.0.113.9"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("203.0.113.9", "203.0.113.9"),
    ],
)
def test_address_normalisation(grammar_from, raw: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    grammar = grammar_from('fail r: "from " <address>\n')
    match = grammar.match(f"from {raw}")
    assert isinstance(match, Match) and match.address == expected


@pytest.mark.parametrize("raw", ["999.1.1.1", "01.2.3.4", "1::2::3"])
def test_invalid_address_is_rejected(grammar_from, raw: str) -> None:  # type: ignore[no-untyped-def]
    grammar = grammar_from('fail r: "from " <address>\n')
    result = grammar.match(f"from {raw}")
    assert result == Rejected("r", f"invalid address {raw!r}")


def test_normalise_address_directly() -> None:
    assert normalise_address("::ffff:10.0.0.1") == "10.0.0.1"
    assert normalise_address("999.1.1.1") is None


def test_optional_and_alternatives(grammar_from) -> None:  # type: ignore[no-untyped-def]
    grammar = grammar_from(
        'fail r: ( "GET" | "POST" ) " " <address> [ " port " <port:int> ] " " <status:int>\n'
    )
    assert grammar.match("POST 203.0.113.9 port 80 200") == Match(
        "r", "203.0.113.9", {"port": "80", "status": "200"}, None
    )
    assert grammar.match("GET 203.0.113.9 404") == Match(
        "r", "203.0.113.9", {"status": "404"}, None
    )
    assert grammar.match("PUT 203.0.113.9 404") is None


def test_quoted_word_and_escapes(grammar_from) -> None:  # type: ignore[no-untyped-def]
    grammar = grammar_from('fail r: <address> " \\"" <agent:quoted> "\\" " <w:word>\n')
    match = grammar.match('203.0.113.9 "a \\" 8.8.8.8" x')
    assert isinstance(match, Match) and match.captures == {"agent": 'a \\" 8.8.8.8', "w": "x"}
    assert grammar.match('203.0.113.9 "a " 8.8.8.8" x') is None


@pytest.mark.parametrize("filler", ["a ", " ", "a", "Failed password for a from "])
def test_pathological_long_lines_return(sshd, filler: str) -> None:  # type: ignore[no-untyped-def]
    body = filler * ((MAX_MESSAGE - 100) // len(filler))  # as long as a rule is ever run against
    assert sshd.match(body) is None
    assert sshd.match("Failed password for " + body + " from 8.8.8.8 port 1 ssh") is None
    match = sshd.match("Failed password for " + body + " from 8.8.8.8 port 1 ssh2")
    assert isinstance(match, Match) and match.address == "8.8.8.8"


def test_prefilter_is_the_longest_literal(sshd) -> None:  # type: ignore[no-untyped-def]
    assert sshd.rules[0].prefilter == "Failed password for "


def test_overlong_messages_are_rejected_unread() -> None:
    grammar = load_grammar(paths.SHIPPED_GRAMMARS / "dovecot.grammar")
    line = ("imap-login: Aborted login (auth failed, 1 attempts): user=<x>, rip=203.0.113.9, lip=10.0.0.1 "
            * (MAX_MESSAGE // 50))
    result = grammar.match(line)
    assert isinstance(result, Rejected) and "longer than" in result.reason
