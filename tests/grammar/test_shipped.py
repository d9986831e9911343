"""Every example in every shipped grammar, one test each: grammar examples are data."""

from pathlib import Path

import pytest

from journalban.grammar import check_example, load_grammar

GRAMMARS = Path(__file__).resolve().parents[2] / "grammars"


def _cases() -> list[object]:
    cases: list[object] = []
    for path in sorted(GRAMMARS.glob("*.grammar")):
        grammar = load_grammar(path)
        for example in grammar.examples:
            test_id = f"{path.stem}:{example.line}"
            cases.append(pytest.param(grammar, example, id=test_id))
    return cases


@pytest.mark.parametrize(("grammar", "example"), _cases())
def test_example(grammar, example) -> None:  # type: ignore[no-untyped-def]
    error = check_example(grammar, example)
    assert error is None, str(error)


def test_shipped_grammars_exist() -> None:
    names = {load_grammar(path).name for path in GRAMMARS.glob("*.grammar")}
    assert {"wp-limit-login", "nginx-wp-login"} <= names
