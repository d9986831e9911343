"""Text of a grammar file to statements (pyparsing), with exact error positions.

The file is first cut into logical statements (a line at column 1 plus the
indented lines after it); each statement is then parsed on its own, so a
syntax error names what that statement expected rather than "end of text".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyparsing as pp

from .errors import GrammarError
from .model import (
    Alternatives,
    Element,
    ExampleSpec,
    Literal,
    OptionalGroup,
    Placeholder,
    RawRegex,
    RuleSpec,
    Setting,
    Statement,
    Word,
)

_ESCAPES = {'"': '"', "\\": "\\"}


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` in ``text``."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def _string(s: str, loc: int, toks: pp.ParseResults) -> Word:
    raw: str = toks[0]
    if raw[0] == "'":
        return Word(raw[1:-1], loc)
    out: list[str] = []
    chars = iter(enumerate(raw[1:-1], start=loc + 1))
    for at, char in chars:
        if char == "\\":
            _, escaped = next(chars)
            if escaped not in _ESCAPES:
                raise pp.ParseSyntaxException(
                    s,
                    at,
                    f'unknown escape \'\\{escaped}\' (only \\" and \\\\ in "..."; '
                    "use '...' for raw text)",
                )
            out.append(_ESCAPES[escaped])
            continue
        out.append(char)
    return Word("".join(out), loc)


def _unterminated(s: str, loc: int, toks: pp.ParseResults) -> None:
    raise pp.ParseSyntaxException(s, loc, "unterminated string")


def _raise(s: str, loc: int, message: str) -> None:
    raise pp.ParseSyntaxException(s, loc, message)


def _word(s: str, loc: int, toks: pp.ParseResults) -> Word:
    return Word(toks[0], loc)


def _placeholder(s: str, loc: int, toks: pp.ParseResults) -> Placeholder:
    parts: list[Word] = list(toks)
    if len(parts) == 1:
        return Placeholder(None, parts[0].text, loc, parts[0].offset)
    first, second = parts
    if first.text == "stamp":  # <stamp:clf> is the stamp type, not a capture named "stamp"
        return Placeholder(None, f"stamp:{second.text}", loc, first.offset)
    return Placeholder(first.text, second.text, loc, second.offset)


def _elements(toks: pp.ParseResults) -> tuple[Element, ...]:
    return tuple(toks)


def _named(name: str, expr: pp.ParserElement) -> pp.ParserElement:
    return expr.set_name(name)


_STRING = _named("string", pp.Regex(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'')).add_parse_action(_string)
_UNTERMINATED = pp.Regex(r"[\"']").add_parse_action(_unterminated)
_TEXT = _STRING | _UNTERMINATED
_IDENT = _named("name", pp.Regex(r"[A-Za-z_][A-Za-z0-9_]*")).add_parse_action(_word)
_RULE_NAME = _named("rule name", pp.Regex(r"[A-Za-z_][A-Za-z0-9_-]*")).add_parse_action(_word)
_GRAMMAR_NAME = _named("grammar name", pp.Regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")).add_parse_action(
    _word
)
_BARE_VALUE = _named("value", pp.Regex(r"[^\s\"'#]+")).add_parse_action(_word)


def _keyword(word: str) -> pp.ParserElement:
    return pp.Keyword(word).add_parse_action(_word)


_element = pp.Forward()
_sequence = pp.Group(pp.OneOrMore(_element)).set_name("element")
_sequence.add_parse_action(lambda toks: _elements(toks[0]))
_placeholder_expr = (
    pp.Suppress("<") - _IDENT - pp.Optional(pp.Suppress(":") - _IDENT) - pp.Suppress(">")
).add_parse_action(_placeholder)
_optional = (pp.Suppress("[") - _sequence - pp.Suppress("]")).add_parse_action(
    lambda s, loc, toks: OptionalGroup(toks[0], loc)
)
_alternatives = (
    pp.Suppress("(") - pp.DelimitedList(_sequence, "|") - pp.Suppress(")")
).add_parse_action(lambda s, loc, toks: Alternatives(tuple(toks), loc))
_regex = _named("regex", pp.Regex(r"/(?:[^/\\\n]|\\.)+/")).add_parse_action(
    lambda s, loc, toks: RawRegex(toks[0][1:-1], loc)
)
_UNTERMINATED_REGEX = pp.Regex(r"/").add_parse_action(
    lambda s, loc, toks: _raise(s, loc, "unterminated or empty /regex/")
)
_literal = _TEXT.copy().add_parse_action(lambda toks: Literal(toks[0].text, toks[0].offset))


def _nocase_literal(s: str, loc: int, toks: pp.ParseResults) -> Literal:
    word = _string(s, loc + 1, pp.ParseResults([toks[0][1:]]))
    return Literal(word.text, loc, nocase=True)


_nocase = _named("i-string", pp.Regex(r'i(?:"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\')')).add_parse_action(
    _nocase_literal
)
_element <<= _nocase | _literal | _regex | _UNTERMINATED_REGEX | _placeholder_expr | _optional | _alternatives
_element.set_name("element (string, i\"string\", /regex/, <type>, [ or ()")


def _setting(toks: pp.ParseResults) -> Setting:
    keyword, *rest = toks
    values = tuple(item for item in rest if isinstance(item, Word))
    options = tuple((item[0], item[1]) for item in rest if not isinstance(item, Word))
    return Setting(keyword, values, options)


def _option() -> pp.ParserElement:
    return pp.Group(_IDENT + pp.Suppress("=") + (_TEXT | _BARE_VALUE))


def _rule(toks: pp.ParseResults) -> RuleSpec:
    return RuleSpec(toks[0], toks[1], toks[2])


def _example(toks: pp.ParseResults) -> ExampleSpec:
    keyword, text, outcome, *rest = toks
    if outcome.text == "no":
        return ExampleSpec(keyword, text, "no match", None, ())
    if outcome.text == "rejected":
        return ExampleSpec(keyword, text, "rejected", rest[0], ())
    fields = tuple((item[0], item[1]) for item in rest)
    return ExampleSpec(keyword, text, "match", outcome, fields)


_OUTCOME = (
    (_keyword("no") + pp.Suppress(pp.Keyword("match")))
    | (_keyword("rejected") + _RULE_NAME)
    | (_RULE_NAME + pp.ZeroOrMore(_option()))
).set_name("outcome (RULE key=value ..., rejected RULE, or no match)")

_STATEMENTS: dict[str, pp.ParserElement] = {
    "grammar": (_keyword("grammar") + _GRAMMAR_NAME).add_parse_action(_setting),
    "description": (_keyword("description") + _TEXT).add_parse_action(_setting),
    "applies": (_keyword("applies") + _IDENT + pp.ZeroOrMore(_option())).add_parse_action(_setting),
    "time": (_keyword("time") + _IDENT).add_parse_action(_setting),
    "datepattern": (_keyword("datepattern") + pp.OneOrMore(_TEXT.copy().set_name("quoted datepattern"))
                    ).add_parse_action(_setting),
    "fail": (_keyword("fail") + _RULE_NAME + pp.Suppress(":") + _sequence).add_parse_action(_rule),
    "ignore": (_keyword("ignore") + _RULE_NAME + pp.Suppress(":") + _sequence).add_parse_action(
        _rule
    ),
    "example": (_keyword("example") + _TEXT + pp.Suppress("=>") + _OUTCOME).add_parse_action(
        _example
    ),
}
for _expr in _STATEMENTS.values():
    _expr.ignore(pp.python_style_comment)
    _expr.parse_with_tabs()  # tabs must not shift offsets


def _logical_statements(text: str, path: Path) -> Iterator[tuple[int, int]]:
    """(start, end) offsets of each statement: a line at column 1 plus its indented lines."""
    current: list[int] | None = None
    offset = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            if line[0] in " \t":
                if current is None:
                    first = offset + len(line) - len(line.lstrip())
                    line_no, column = position(text, first)
                    raise GrammarError(path, line_no, column, "indented line continues nothing")
                current[1] = offset + len(line)
            else:
                if current is not None:
                    yield current[0], current[1]
                current = [offset, offset + len(line)]
        offset += len(line) + 1
    if current is not None:
        yield current[0], current[1]


def _error(text: str, path: Path, offset: int, message: str) -> GrammarError:
    line, column = position(text, offset)
    return GrammarError(path, line, column, message)


def _describe(exc: pp.ParseBaseException) -> str:
    message = str(exc.msg)
    if not message.startswith("Expected "):
        return message
    return f"expected {message[len('Expected ') :]}, found {exc.found}"


def parse_statements(text: str, path: Path) -> list[Statement]:
    """All statements of a grammar file, in order; the first syntax error raises."""
    statements: list[Statement] = []
    for start, end in _logical_statements(text, path):
        keyword = re.match(r"[^\s#]*", text[start:end])
        word = keyword.group() if keyword else ""
        expr = _STATEMENTS.get(word)
        if expr is None:
            known = ", ".join(_STATEMENTS)
            raise _error(text, path, start, f"unknown statement {word!r}; expected one of {known}")
        padded = " " * start + text[start:end]  # offsets stay those of the whole file
        try:
            result: Any = expr.parse_string(padded, parse_all=True)[0]
        except pp.ParseBaseException as exc:
            raise _error(text, path, min(exc.loc, end), _describe(exc)) from None
        statements.append(result)
    return statements
