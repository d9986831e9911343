"""Running a grammar's own examples: the data that proves each rule does what it says."""

from __future__ import annotations

from .errors import GrammarError
from .grammar import Grammar, Match, Rejected
from .model import Example


def _actual(rule: str | None, result: Match | Rejected | None) -> str:
    if result is None:
        return f"ignored by {rule}" if rule is not None else "no match"
    if isinstance(result, Rejected):
        return str(result)
    stamp = f" stamp={result.stamp!r}" if result.stamp is not None else ""
    return f"{result}{stamp}"


def _holds(
    grammar: Grammar, example: Example, rule: str | None, result: Match | Rejected | None
) -> bool:
    if example.outcome == "no match":
        return result is None
    if example.outcome == "rejected":
        return isinstance(result, Rejected) and result.rule == example.rule
    if result is None:  # an example naming an ignore rule expects that rule to decide
        return rule == example.rule and rule is not None and not _is_fail_rule(grammar, rule)
    if not isinstance(result, Match) or result.rule != example.rule:
        return False
    values = {**result.captures, "address": result.address}
    if result.stamp is not None:
        values["stamp"] = result.stamp
    return all(values.get(key) == value for key, value in example.fields)


def _is_fail_rule(grammar: Grammar, name: str) -> bool:
    return any(rule.name == name and rule.action == "fail" for rule in grammar.rules)


def check_example(grammar: Grammar, example: Example) -> GrammarError | None:
    """An error at the example's line if the grammar gives another outcome, else None."""
    rule, result = grammar.decide(example.text)
    if _holds(grammar, example, rule, result):
        return None
    message = f"example expected {example}, got {_actual(rule, result)}"
    return GrammarError(grammar.path, example.line, example.column, message)


def check_examples(grammar: Grammar) -> list[GrammarError]:
    """One error per example whose outcome differs from what the grammar gives."""
    errors = (check_example(grammar, example) for example in grammar.examples)
    return [error for error in errors if error is not None]
