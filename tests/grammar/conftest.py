"""Helpers shared by the grammar tests: write a grammar into tmp_path and load it."""

from collections.abc import Callable
from pathlib import Path

import pytest

from journalban.grammar import Grammar, load_grammar

HEADER = "grammar test\napplies file format=raw\n"


@pytest.fixture
def write_grammar(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(text: str, name: str = "test") -> Path:
        path = tmp_path / f"{name}.grammar"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def grammar_from(write_grammar: Callable[[str, str], Path]) -> Callable[[str], Grammar]:
    """A grammar from rule lines, with a minimal header in front."""

    def build(rules: str) -> Grammar:
        return load_grammar(write_grammar(HEADER + rules, "test"))

    return build
