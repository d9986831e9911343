"""Grammar files to ``Grammar`` objects: header checks, rule compilation, example checks.

Everything that can be checked without reading a log is checked here, so a bad
grammar fails at load with ``file:line:column`` instead of misbehaving later.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from .applies import Selector, build_selector
from .compiler import CompiledRule, RuleError, compile_rule
from .errors import GrammarError
from .grammar import Grammar
from .model import Example, ExampleSpec, RuleSpec, Setting, Statement
from .syntax import parse_statements, position

TIME_MODES = {"stamp": True, "read": False}
RESERVED_RULE_NAMES = frozenset({"no", "rejected"})

Fail = Callable[[int, str], GrammarError]


def _time(setting: Setting | None, fail: Fail) -> bool:
    if setting is None:
        return False  # counting lines when read is the safe default
    mode = setting.values[0]
    if mode.text not in TIME_MODES:
        raise fail(mode.offset, f"unknown time mode {mode.text!r}; expected stamp or read")
    return TIME_MODES[mode.text]


def _stamp_format(
    specs: Sequence[RuleSpec],
    rules: Sequence[CompiledRule],
    trusts_stamp: bool,
    file_format: str,
    fail: Fail,
) -> str | None:
    formats: dict[str, RuleSpec] = {}
    for spec, rule in zip(specs, rules, strict=True):
        if rule.action != "fail":
            continue
        if rule.stamp_format is None:
            if trusts_stamp and file_format == "raw":
                raise fail(
                    spec.name.offset, f"'time stamp' but rule {rule.name!r} has no <stamp:...>"
                )
            continue
        if trusts_stamp and file_format != "raw":
            raise fail(
                spec.name.offset,
                f"rule {rule.name!r} has a <stamp:...>, but with 'time stamp' a syslog or journal "
                "grammar takes the event time from the source's header (format=fail2ban: from the date it cuts out)",
            )
        if formats and rule.stamp_format not in formats:
            raise fail(spec.name.offset, "all fail rules must use the same stamp format")
        formats[rule.stamp_format] = spec
    if formats:
        return next(iter(formats))
    return "syslog" if file_format == "syslog" else None  # the syslog header's stamp


def _datepattern(setting: Setting | None, selector: Selector, fail: Fail) -> Selector:
    """The selector with the ``datepattern`` lines, each checked as the file source will use it."""
    if setting is None:
        return selector
    if selector.file_format != "fail2ban":
        raise fail(setting.keyword.offset, "'datepattern' needs 'applies file format=fail2ban': "
                                           "only that format cuts a date out of the line")
    from .fail2ban.dates import date_regexes  # here: that package imports this module

    for written in setting.values:
        if not written.text.strip() or "\n" in written.text:
            raise fail(written.offset, "a datepattern is one non-empty line; write several strings "
                                       "for several formats")
        try:
            date_regexes(written.text.strip())
        except re.error as error:
            raise fail(written.offset, f"datepattern does not compile: {error.msg}") from None
    return dataclasses.replace(selector, datepattern="\n".join(w.text.strip() for w in setting.values))


def _example(spec: ExampleSpec, rules: dict[str, CompiledRule], text: str, fail: Fail) -> Example:
    line, column = position(text, spec.keyword.offset)
    rule = None
    if spec.rule is not None:
        compiled = rules.get(spec.rule.text)
        if compiled is None:
            raise fail(spec.rule.offset, f"unknown rule {spec.rule.text!r}")
        if spec.outcome == "rejected" and compiled.action != "fail":
            raise fail(spec.rule.offset, f"only a fail rule can reject; {compiled.name!r} ignores")
        names = {name for _, name in compiled.captures}
        for key, _ in spec.fields:
            if compiled.action == "ignore":
                raise fail(key.offset, "an example of an ignore rule takes no key=value")
            if key.text not in names:
                raise fail(key.offset, f"rule {compiled.name!r} has no capture {key.text!r}")
        rule = compiled.name
    fields = tuple((key.text, value.text) for key, value in spec.fields)
    return Example(spec.text.text, spec.outcome, rule, fields, line, column)


def build_grammar(text: str, path: Path) -> Grammar:
    """Parse, check and compile the text of one grammar file."""

    def fail(offset: int, message: str) -> GrammarError:
        return GrammarError(path, *position(text, offset), message)

    settings: dict[str, Setting] = {}
    applies: list[Setting] = []  # the one statement that may repeat: journal lines are ORed
    specs: list[RuleSpec] = []
    compiled: dict[str, CompiledRule] = {}
    example_specs: list[ExampleSpec] = []
    statements: list[Statement] = parse_statements(text, path)
    for statement in statements:
        if isinstance(statement, Setting):
            keyword = statement.keyword
            if keyword.text == "applies":
                applies.append(statement)
            elif keyword.text in settings:
                raise fail(keyword.offset, f"a second {keyword.text!r} statement")
            settings.setdefault(keyword.text, statement)
        elif isinstance(statement, RuleSpec):
            name = statement.name
            if name.text in RESERVED_RULE_NAMES:
                raise fail(name.offset, f"{name.text!r} is reserved and cannot name a rule")
            if name.text in compiled:
                raise fail(name.offset, f"duplicate rule name {name.text!r}")
            try:
                compiled[name.text] = compile_rule(statement)
            except RuleError as error:
                raise fail(error.offset, error.message) from None
            specs.append(statement)
        else:
            example_specs.append(statement)
    for required in ("grammar", "applies"):
        if required not in settings:
            raise fail(0, f"missing {required!r} statement")
    selector = _datepattern(settings.get("datepattern"), build_selector(applies, fail), fail)
    trusts_stamp = _time(settings.get("time"), fail)
    rules = tuple(compiled.values())
    stamp_format = _stamp_format(specs, rules, trusts_stamp, selector.file_format, fail)
    if not any(rule.action == "fail" for rule in rules):
        raise fail(len(text), "a grammar needs at least one fail rule")
    description = settings.get("description")
    name = settings["grammar"].values[0]
    return Grammar(
        name=name.text,
        description=description.values[0].text if description else "",
        path=path,
        selector=selector,
        trusts_stamp=trusts_stamp,
        stamp_format=stamp_format,
        examples=tuple(_example(spec, compiled, text, fail) for spec in example_specs),
        rules=rules,
        name_position=position(text, name.offset),
    )


def load_grammar(path: Path) -> Grammar:
    """Load one grammar file; every problem raises GrammarError with line and column."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise GrammarError(path, 1, 1, f"cannot read: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise GrammarError(path, line, column, "not valid UTF-8") from None
    return build_grammar(text, path)


def load_grammars(directories: Sequence[Path]) -> tuple[dict[str, Grammar], list[GrammarError]]:
    """Every ``*.grammar`` in the directories; a name in an earlier directory wins.

    Errors are collected, not raised, so one broken file does not disable the rest.
    """
    grammars: dict[str, Grammar] = {}
    errors: list[GrammarError] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        seen_here: dict[str, Grammar] = {}
        for path in sorted(directory.glob("*.grammar")):
            try:
                grammar = load_grammar(path)
            except GrammarError as error:
                errors.append(error)
                continue
            if grammar.name in seen_here:
                other = seen_here[grammar.name].path
                errors.append(
                    GrammarError(
                        path,
                        *grammar.name_position,
                        f"grammar {grammar.name!r} is already defined in {other}",
                    )
                )
                continue
            seen_here[grammar.name] = grammar
            grammars.setdefault(grammar.name, grammar)
    return grammars, errors
