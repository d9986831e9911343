"""``journalban grammar test``: run grammars' examples and report like a compiler.

One line per failure, ``file:line:column: ...`` so an editor can jump to it, and
a closing count; the exit code says whether everything held.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .errors import GrammarError
from .examples import check_examples
from .grammar import Grammar
from .loader import load_grammar, load_grammars


def _is_path(target: str) -> bool:
    return target.endswith(".grammar") or "/" in target or Path(target).is_file()


def _select(
    targets: Sequence[str], directories: Sequence[Path]
) -> tuple[list[Grammar], list[str]]:
    """The grammars to test and the problems met finding them, in the order given."""
    grammars: list[Grammar] = []
    problems: list[str] = []
    by_name: dict[str, Grammar] | None = None
    load_errors: list[GrammarError] = []
    if not targets or not all(_is_path(target) for target in targets):
        by_name, load_errors = load_grammars(directories)
    if not targets:
        assert by_name is not None
        return list(by_name.values()), [str(error) for error in load_errors]
    for target in targets:
        if _is_path(target):
            try:
                grammars.append(load_grammar(Path(target)))
            except GrammarError as error:
                problems.append(str(error))
            continue
        assert by_name is not None
        if target in by_name:
            grammars.append(by_name[target])
            continue
        # a broken file cannot say its name; its file name is the best guess
        broken = [str(error) for error in load_errors if error.path.stem == target]
        searched = ", ".join(map(str, directories)) or "no directories"
        problems += broken or [f"{target}: no grammar named {target!r} in {searched}"]
    return grammars, problems


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def run_grammar_tests(targets: Sequence[str], directories: Sequence[Path], out: TextIO) -> int:
    """Run every example of the named grammars (all in ``directories`` if none); exit code.

    Targets are grammar names, looked up in ``directories`` (an earlier one wins),
    or paths of grammar files. Returns 0 when every example held and every grammar
    loaded, else 1.
    """
    grammars, problems = _select(targets, directories)
    for problem in problems:
        print(problem, file=out)
    examples = failed = 0
    for grammar in grammars:
        examples += len(grammar.examples)
        for error in check_examples(grammar):
            failed += 1
            print(error, file=out)
    summary = f"{_plural(examples, 'example')}, {failed} failed in {_plural(len(grammars), 'grammar')}"
    if problems:
        summary += f"; {_plural(len(problems), 'grammar')} not loaded"
    print(summary, file=out)
    return 1 if failed or problems else 0
