"""Loading directories of grammars and checking their examples."""

from pathlib import Path

from journalban.grammar import check_examples, load_grammar, load_grammars

RULES = 'fail r: "from " <address>\n'


def _write(directory: Path, file: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file
    path.write_text(text, encoding="utf-8")
    return path


def _grammar(name: str, description: str = "") -> str:
    return f'grammar {name}\ndescription "{description}"\napplies file format=raw\n{RULES}'


def test_earlier_directory_wins_and_missing_directories_are_skipped(tmp_path: Path) -> None:
    local, shipped = tmp_path / "etc", tmp_path / "usr"
    _write(local, "mine.grammar", _grammar("sshd", "local"))
    _write(shipped, "sshd.grammar", _grammar("sshd", "shipped"))
    _write(shipped, "nginx.grammar", _grammar("nginx", "shipped"))
    _write(shipped, "notes.txt", "not a grammar")
    grammars, errors = load_grammars([tmp_path / "absent", local, shipped])
    assert errors == []
    assert sorted(grammars) == ["nginx", "sshd"]
    assert grammars["sshd"].description == "local"
    assert grammars["sshd"].path == local / "mine.grammar"


def test_errors_are_collected_not_raised(tmp_path: Path) -> None:
    _write(tmp_path, "a.grammar", "grammar a\napplies file format=raw\nfail r: <nope>\n")
    _write(tmp_path, "b.grammar", _grammar("b"))
    _write(tmp_path, "c.grammar", "grammar c\n")
    _write(tmp_path, "d.grammar", _grammar("b"))
    grammars, errors = load_grammars([tmp_path])
    assert list(grammars) == ["b"]
    assert [(e.path.name, e.line, e.column) for e in errors] == [
        ("a.grammar", 3, 10),
        ("c.grammar", 1, 1),
        ("d.grammar", 1, 9),
    ]
    assert "already defined" in errors[2].message


def test_check_examples_points_at_each_failing_example(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.grammar",
        _grammar("t")
        + 'ignore local: "from 127.0.0.1"\n'
        + 'example "from 203.0.113.9" => r address=203.0.113.9\n'
        + 'example "from 203.0.113.9" => r address=198.51.100.1\n'
        + 'example "from 999.1.1.1" => rejected r\n'
        + 'example "from 999.1.1.1" => no match\n'
        + 'example "from 127.0.0.1" => local\n'
        + 'example "from 127.0.0.1" => r\n'
        + "example 'from 8.8.8.8' =>\n    no match\n",
    )
    grammar = load_grammar(path)
    errors = check_examples(grammar)
    assert [(e.line, e.column) for e in errors] == [(7, 1), (9, 1), (11, 1), (12, 1)]
    assert errors[0].message == (
        "example expected r address=198.51.100.1, got r address=203.0.113.9"
    )
    assert errors[1].message == (
        "example expected no match, got rejected r: invalid address '999.1.1.1'"
    )
    assert errors[2].message == "example expected r, got ignored by local"
    assert errors[3].message == "example expected no match, got r address=8.8.8.8"
