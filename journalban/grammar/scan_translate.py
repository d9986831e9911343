"""A compiled rule's Python regex as a hyperscan pattern that matches at least as much.

Read from Python's own parse of the pattern (``re._parser``), so every spelling means
what ``re`` says it means. The translation only ever widens: possessive, atomic and
lazy forms become plain repeats, look-arounds and anchors are dropped, a
back-reference becomes "any text", a conditional either branch. It speaks for ASCII
lines only (the scanner sends every line holding another byte to the exact path), so
each single character becomes the explicit set of ASCII bytes ``re`` itself accepts
for it under the flags in force: ``\\s``, case folding and the like cannot differ.
"""

from __future__ import annotations

import re
import re._constants as sre  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
from functools import lru_cache
from typing import Any

# Flags that change what one character matches; the rest (VERBOSE, MULTILINE, ...) do not.
_CHARACTER_FLAGS = re.IGNORECASE | re.DOTALL | re.ASCII | re.UNICODE
_ASCII = tuple(chr(code) for code in range(128) if code != 10)  # a line holds no newline
_ANY_TEXT = r"[\x00-\x09\x0b-\x7f]*"
# Larger bounds are widened, and so is a counted repeat around another: hyperscan takes
# seconds to build (?:[0-9]{255}){255}, and refuses a few levels more.
_REPEAT_CAP = 16
_CATEGORY = {
    sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s", sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w", sre.CATEGORY_NOT_WORD: r"\W",
}


class Untranslatable(Exception):
    """A construct the translation does not know; the scanner widens that rule further."""


def translate(pattern: re.Pattern[str]) -> str | None:
    """The hyperscan pattern (ASCII text) for ``pattern``, unanchored at both ends;
    None when it can match no line made of ASCII characters only."""
    try:
        parsed = sre_parse.parse(pattern.pattern, pattern.flags)
    except Exception as error:  # a private module: any surprise means "cannot translate"
        raise Untranslatable(f"cannot read the regex: {error}") from None
    return _sequence(parsed.data, parsed.state.flags)


def _sequence(items: Any, flags: int) -> str | None:
    parts = []
    for op, argument in items:
        part = _item(op, argument, flags)
        if part is None:
            return None
        parts.append(part)
    return "".join(parts)


def _item(op: Any, argument: Any, flags: int) -> str | None:
    if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
        return _character(op, argument, flags)
    if op is sre.SUBPATTERN:
        _group, add, remove, body = argument
        return _group_of(_sequence(body.data, (flags | add) & ~remove))
    if op is sre.ATOMIC_GROUP:
        return _group_of(_sequence(argument.data, flags))
    if op is sre.BRANCH:
        branches = [_sequence(branch.data, flags) for branch in argument[1]]
        taken = [branch for branch in branches if branch is not None]
        return "(?:" + "|".join(taken) + ")" if taken else None
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, high, body = argument
        return _repeat(low, high, body, flags)
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
        return ""  # dropping a condition only widens
    if op is sre.GROUPREF:
        return _ANY_TEXT
    if op is sre.GROUPREF_EXISTS:
        _group, yes, no = argument
        branches = [_sequence(yes.data, flags), _sequence(no.data, flags) if no is not None else ""]
        taken = [branch for branch in branches if branch is not None]
        return "(?:" + "|".join(taken) + ")" if taken else None
    raise Untranslatable(f"no translation for {op}")


def _group_of(body: str | None) -> str | None:
    return None if body is None else f"(?:{body})" if body else ""


def _repeat(low: int, high: int, item: Any, flags: int) -> str | None:
    body = _sequence(item.data, flags)
    if body is None:
        return "" if low == 0 else None
    if not body:
        return ""
    low = min(low, _REPEAT_CAP)
    if "{" in body:  # a counted repeat inside a counted repeat: sizes would multiply
        low, high = min(low, 1), sre.MAXREPEAT
    if high is sre.MAXREPEAT or high > _REPEAT_CAP:
        bounds = "*" if low == 0 else "+" if low == 1 else f"{{{low},}}"
    elif (low, high) == (0, 1):
        bounds = "?"
    else:
        bounds = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
    return f"(?:{body}){bounds}"


def _character(op: Any, argument: Any, flags: int) -> str | None:
    """One character's set of ASCII bytes, as a hyperscan class; None when empty."""
    if op is sre.ANY:
        source = "."
    elif op is sre.LITERAL:
        source = _escaped(argument)
    elif op is sre.NOT_LITERAL:
        source = f"[^{_escaped(argument)}]"
    else:
        source = _class(argument)
    return _byte_class(_ascii_members(source, flags & _CHARACTER_FLAGS))


def _escaped(code: int) -> str:
    return f"\\U{code:08x}"


def _class(items: Any) -> str:
    parts = []
    negate = ""
    for op, argument in items:
        if op is sre.NEGATE:
            negate = "^"
        elif op is sre.LITERAL:
            parts.append(_escaped(argument))
        elif op is sre.RANGE:
            parts.append(f"{_escaped(argument[0])}-{_escaped(argument[1])}")
        elif op is sre.CATEGORY and argument in _CATEGORY:
            parts.append(_CATEGORY[argument])
        else:
            raise Untranslatable(f"no translation for {op} {argument} in a character class")
    return f"[{negate}{''.join(parts)}]"


@lru_cache(maxsize=4096)
def _ascii_members(source: str, flags: int) -> tuple[int, ...]:
    """The ASCII characters (newline aside) that ``re`` matches with this one-character regex."""
    compiled = re.compile(source, flags)
    return tuple(ord(character) for character in _ASCII if compiled.fullmatch(character))


def _byte_class(members: tuple[int, ...]) -> str | None:
    if not members:
        return None
    if len(members) == 1 and chr(members[0]).isalnum():
        return chr(members[0])
    ranges: list[list[int]] = []
    for code in members:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    inside = "".join(f"\\x{low:02x}" if low == high else f"\\x{low:02x}-\\x{high:02x}" for low, high in ranges)
    return f"[{inside}]"
