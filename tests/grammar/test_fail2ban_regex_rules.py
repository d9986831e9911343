"""The /regex/ element: raw Python regex fragments in grammar rules."""

from pathlib import Path

import pytest

from journalban.grammar import GrammarError, Match, Rejected, build_grammar
from journalban.grammar.compiler import backtracking_warnings

HEADER = "grammar t\napplies file format=raw\n"


def grammar(rules: str):  # type: ignore[no-untyped-def]
    return build_grammar(HEADER + rules, Path("t.grammar"))


def test_named_groups_become_captures() -> None:
    g = grammar(r"fail f: /Failed (?P<user>\S+) from (?P<address>[0-9.]+)/ ' port ' <port:int>" + "\n")
    result = g.match("Failed root from 203.0.113.9 port 22")
    assert isinstance(result, Match)
    assert result.address == "203.0.113.9"
    assert result.captures == {"user": "root", "port": "22"}
    assert not g.rules[0].backtracking


def test_whole_rule_is_anchored() -> None:
    g = grammar(r"fail f: /from (?P<address>[0-9.]+)/" + "\n")
    assert g.match("from 203.0.113.9 extra") is None
    assert g.match("x from 203.0.113.9") is None


def test_invalid_address_is_rejected() -> None:
    g = grammar(r"fail f: /from (?P<address>[0-9.]+)/" + "\n")
    assert isinstance(g.match("from 999.1.1.1"), Rejected)


def test_address_in_an_untaken_branch_does_not_match() -> None:
    g = grammar(r"fail f: /(?:from (?P<address>[0-9.]+)|local)/" + "\n")
    assert g.match("local") is None
    assert isinstance(g.match("from 203.0.113.9"), Match)


def test_alternate_spellings_fill_one_capture() -> None:
    g = grammar(r"fail f: /(?:v6 (?P<address>[0-9a-f:]+)|v4 (?P<address__2>[0-9.]+))/" + "\n")
    v4 = g.match("v4 203.0.113.9")
    v6 = g.match("v6 2001:db8::1")
    assert isinstance(v4, Match) and v4.address == "203.0.113.9"
    assert isinstance(v6, Match) and v6.address == "2001:db8::1"


def test_slash_is_escaped() -> None:
    g = grammar(r"fail f: /GET \/login (?P<address>[0-9.]+)/" + "\n")
    assert isinstance(g.match("GET /login 203.0.113.9"), Match)


def test_look_around_marks_backtracking() -> None:
    g = grammar(
        r"fail f: /(?!ok)(?P<user>\w+) (?P<address>[0-9.]+)/" + "\n" + r"fail g: /x (?P<address>[0-9.]+)/" + "\n"
    )
    assert [rule.backtracking for rule in g.rules] == [True, False]
    warnings = backtracking_warnings(g.rules, g.name)
    assert len(warnings) == 1 and "'f'" in warnings[0]


def test_back_reference_marks_backtracking() -> None:
    g = grammar(r"fail f: /(?P<u>\w+) (?P=u) (?P<address>[0-9.]+)/" + "\n")
    assert g.rules[0].backtracking
    assert isinstance(g.match("a a 203.0.113.9"), Match)
    assert g.match("a b 203.0.113.9") is None


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (r"fail f: /(?P<user>\w+)/", "has no <address>"),
        (r"fail f: /(?P<address>\S+) (?P<address__2>\S+)/ <address>", "exactly one address"),
        (r"fail f: /(?P<user>\w+)/ <user:word> <address>", "appears twice"),
        (r"fail f: /(unclosed/ <address>", "invalid regex"),
        (r"fail f: /(\w+) \1/ <address>", "numbered back-references"),
        (r"fail f: /(?i)x/ <address>", "global flags"),
        (r"fail f: [ /(?P<address>\S+)/ ]", "must not be inside"),
        (r"fail f: /(?P<stamp>\S+)/ <address>", "cannot capture the stamp"),
        (r"fail f: <any> <address> /.*/", "after the address"),
        ("fail f: /abc <address>", "unterminated"),
    ],
)
def test_errors(rule: str, message: str) -> None:
    with pytest.raises(GrammarError) as error:
        grammar(rule + "\n")
    assert message in str(error.value)


def test_existing_options_with_slashes_still_parse() -> None:
    text = "grammar t\napplies journal _EXE=/usr/sbin/sshd _UID=0\nfail f: 'x ' <address>\n"
    assert build_grammar(text, Path("t.grammar")).journal_matches
