"""Broken grammars: every error names the file, the line and column, and what was wrong."""

from pathlib import Path

import pytest

from journalban.grammar import GrammarError, load_grammar

from .conftest import HEADER

RULE = 'fail r: "x " <address>\n'

SYNTAX = [
    pytest.param(HEADER + 'fail r "x " <address>\n', 3, 8, "expected ':'", id="missing-colon"),
    pytest.param(
        HEADER + 'fail r: "x " <address\n', 3, 22, "expected '>'", id="unclosed-placeholder"
    ),
    pytest.param(HEADER + 'fail r: "x <address>\n', 3, 9, "unterminated string", id="unterminated"),
    pytest.param(HEADER + 'fail r: "x \\n" <address>\n', 3, 12, "unknown escape", id="bad-escape"),
    pytest.param(
        HEADER + 'fail r: [ "x " <address>\n', 3, 25, "expected ']'", id="unclosed-optional"
    ),
    pytest.param(
        HEADER + 'fail r: <address> ( "a" "b" \n', 3, 29, "expected ')'", id="unclosed-group"
    ),
    pytest.param(
        HEADER + "fail r: <address> ]\n", 3, 19, "expected end of text", id="stray-bracket"
    ),
    pytest.param(HEADER + "fail r:\n", 3, 8, "expected element", id="empty-rule"),
    pytest.param("grammar\napplies file format=raw\n", 1, 8, "expected grammar name", id="no-name"),
    pytest.param(
        HEADER + RULE + "frobnicate x\n", 4, 1, "unknown statement 'frobnicate'", id="keyword"
    ),
    pytest.param("  grammar x\n", 1, 3, "indented line continues nothing", id="indent"),
    pytest.param(
        HEADER + RULE + 'example "x 1.2.3.4" =>\n', 4, 23, "expected outcome", id="outcome"
    ),
    pytest.param(
        HEADER + "# comment\n\nfail r:\n    # between\n    <address> <>\n",
        7,
        16,
        "expected name",
        id="continuation",
    ),
    pytest.param(HEADER + 'fail r:\t"x" <address> "\n', 3, 23, "unterminated", id="tab-column"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), SYNTAX)
def test_syntax_errors(write_grammar, text, line, column, message) -> None:  # type: ignore[no-untyped-def]
    path = write_grammar(text)
    with pytest.raises(GrammarError) as caught:
        load_grammar(path)
    error = caught.value
    assert (error.path, error.line, error.column) == (path, line, column), str(error)
    assert message in error.message
    assert str(error).startswith(f"{path}:{line}:{column}: ")


SEMANTIC = [
    pytest.param(
        HEADER + 'fail r: "x " <host>\n', 3, 15, "unknown placeholder type 'host'", id="type"
    ),
    pytest.param(
        HEADER + "fail r: <stamp:rfc> <address>\n", 3, 10, "unknown stamp format", id="stamp"
    ),
    pytest.param(HEADER + 'fail r: "x " <word>\n', 3, 6, "has no <address>", id="no-address"),
    pytest.param(
        HEADER + 'fail r: <address> " " <address>\n',
        3,
        23,
        "exactly one <address>",
        id="two-addresses",
    ),
    pytest.param(
        HEADER + 'fail r: [<address>] "x"\n', 3, 10, "must not be inside", id="optional-address"
    ),
    pytest.param(
        HEADER + 'fail r: <u:word> " " <u:int> <address>\n',
        3,
        22,
        "appears twice",
        id="dup-capture",
    ),
    pytest.param(
        HEADER + 'fail r: <address:word> " " <address>\n', 3, 9, "reserved", id="reserved-capture"
    ),
    pytest.param(
        HEADER + RULE + 'fail r: "y " <address>\n', 4, 6, "duplicate rule name 'r'", id="dup-rule"
    ),
    pytest.param(HEADER + 'fail no: "y " <address>\n', 3, 6, "reserved", id="reserved-rule"),
    pytest.param(
        HEADER + RULE + 'example "x 1.2.3.4" => s\n', 4, 24, "unknown rule 's'", id="example-rule"
    ),
    pytest.param(
        HEADER + RULE + 'example "x 1.2.3.4" => r port=1\n', 4, 26, "no capture 'port'", id="key"
    ),
    pytest.param(
        "grammar t\napplies file format=csv\n" + RULE, 2, 21, "unknown format 'csv'", id="format"
    ),
    pytest.param("grammar t\napplies file\n" + RULE, 2, 1, "needs format=", id="no-format"),
    pytest.param("grammar t\napplies journal\n" + RULE, 2, 1, "at least one FIELD=VALUE", id="journal"),
    pytest.param(
        "grammar t\napplies pipe format=raw\n" + RULE, 2, 9, "unknown source", id="source"
    ),
    pytest.param(HEADER + "time later\n" + RULE, 3, 6, "unknown time mode 'later'", id="time"),
    pytest.param(HEADER + "time stamp\n" + RULE, 4, 6, "has no <stamp:", id="time-stamp"),
    pytest.param("applies file format=raw\n" + RULE, 1, 1, "missing 'grammar'", id="no-grammar"),
    pytest.param("grammar t\n" + RULE, 1, 1, "missing 'applies'", id="no-applies"),
    pytest.param(HEADER + "grammar again\n" + RULE, 3, 1, "a second 'grammar'", id="two-grammar"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), SEMANTIC)
def test_semantic_errors(write_grammar, text, line, column, message) -> None:  # type: ignore[no-untyped-def]
    path = write_grammar(text)
    with pytest.raises(GrammarError) as caught:
        load_grammar(path)
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert message in error.message


def test_any_on_both_sides_of_the_address_is_refused(write_grammar) -> None:  # type: ignore[no-untyped-def]
    path = write_grammar(HEADER + 'fail r: "for " <user:any> " from " <address> " " <rest:any>\n')
    with pytest.raises(GrammarError) as caught:
        load_grammar(path)
    assert (caught.value.line, caught.value.column) == (3, 50)
    assert "attacker" in caught.value.message


def test_any_after_the_address_alone_is_allowed(grammar_from) -> None:  # type: ignore[no-untyped-def]
    grammar = grammar_from('fail r: "from " <address> " said " <text:any>\n')
    match = grammar.match("from 203.0.113.9 said hello from 8.8.8.8")
    assert match is not None and match.address == "203.0.113.9"


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(GrammarError, match="cannot read"):
        load_grammar(tmp_path / "missing.grammar")
    path = tmp_path / "latin1.grammar"
    path.write_bytes(b'grammar t\ndescription "caf\xe9"\n')
    with pytest.raises(GrammarError) as caught:
        load_grammar(path)
    assert (caught.value.line, caught.value.column) == (2, 17)
