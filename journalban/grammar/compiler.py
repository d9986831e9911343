"""One parsed rule to one anchored Python regex, with the checks that keep it safe.

Typed tokens compile to possessive or atomic patterns so they never give back
characters; only ``<any>`` is lazy, and the injection check below limits where
it may appear relative to the address.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from . import stamps
from .model import Alternatives, Element, Literal, OptionalGroup, Placeholder, RuleSpec

_OCTETS = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
_HEX = r"[0-9A-Fa-f]"
# IPv6 with a dotted tail first, then plain IPv6, then IPv4; ipaddress has the last word.
ADDRESS = (
    rf"(?>(?:{_HEX}{{0,4}}:){{2,6}}{_OCTETS}(?![0-9])"
    rf"|(?:{_HEX}{{1,4}}|:)(?::{_HEX}{{0,4}}){{1,7}}"
    rf"|{_OCTETS}(?![0-9]))"
)

TOKENS: dict[str, str] = {
    "address": ADDRESS,
    "word": r"\S++",
    "int": r"[0-9]++",
    "any": r".*?",
    "quoted": r'[^"\\]*+(?:\\.[^"\\]*+)*+',
    **{f"stamp:{name}": f"(?>{pattern})" for name, pattern in stamps.PATTERNS.items()},
}
FREE_TEXT = frozenset({"any"})  # placeholders whose extent attacker text can stretch
RESERVED_NAMES = frozenset({"address", "stamp"})


class RuleError(Exception):
    """A semantic error in a rule, at a file offset; the loader adds path and line."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to match: prefilter literal, anchored regex, group-to-capture map."""

    action: str  # "fail" or "ignore"
    name: str
    pattern: re.Pattern[str]
    prefilter: str  # the longest literal every match must contain
    captures: tuple[tuple[str, str], ...]  # (regex group, capture name)
    has_address: bool
    stamp_format: str | None

    def search(self, message: str) -> re.Match[str] | None:
        """The regex match for the whole message, after the cheap literal test."""
        if self.prefilter not in message:
            return None
        return self.pattern.fullmatch(message)


def _walk(
    elements: tuple[Element, ...], nested: bool = False
) -> Iterator[tuple[Placeholder, bool]]:
    """Every placeholder in order, with whether it sits inside [ ] or ( )."""
    for element in elements:
        if isinstance(element, Placeholder):
            yield element, nested
        elif isinstance(element, OptionalGroup):
            yield from _walk(element.elements, True)
        elif isinstance(element, Alternatives):
            for branch in element.branches:
                yield from _walk(branch, True)


def _check_placeholders(rule: RuleSpec) -> None:
    names: set[str] = set()
    addresses = 0
    for placeholder, nested in _walk(rule.elements):
        kind = placeholder.kind
        if kind not in TOKENS:
            if kind.startswith("stamp:"):
                known = ", ".join(sorted(stamps.PATTERNS))
                message = f"unknown stamp format {kind[6:]!r}; expected one of {known}"
            else:
                known = ", ".join(sorted(k for k in TOKENS if not k.startswith("stamp:")))
                message = (
                    f"unknown placeholder type {kind!r}; expected one of {known}, stamp:FORMAT"
                )
            raise RuleError(placeholder.kind_offset, message)
        is_special = kind == "address" or kind.startswith("stamp:")
        if is_special and nested:
            raise RuleError(placeholder.offset, f"<{kind}> must not be inside [ ] or ( )")
        if is_special and placeholder.name is not None and placeholder.name != "address":
            raise RuleError(placeholder.offset, f"<{kind}> takes no capture name")
        if not is_special and placeholder.name in RESERVED_NAMES:
            raise RuleError(placeholder.offset, f"the name {placeholder.name!r} is reserved")
        name = _capture_name(placeholder)
        if name == "address" and addresses:
            raise RuleError(placeholder.offset, "a rule has exactly one <address>")
        if name is not None:
            if name in names:
                raise RuleError(placeholder.offset, f"capture {name!r} appears twice in the rule")
            names.add(name)
        addresses += kind == "address"
    if rule.action.text == "fail" and addresses == 0:
        raise RuleError(rule.name.offset, f"fail rule {rule.name.text!r} has no <address>")


def _check_injection(rule: RuleSpec) -> None:
    """Refuse free text on both sides of the address, where attacker text could move it."""
    before = True
    free_before = False
    for index, element in enumerate(rule.elements):
        if isinstance(element, Placeholder) and element.kind == "address":
            before = False
            continue
        for placeholder, _ in _walk(rule.elements[index : index + 1]):
            if placeholder.kind not in FREE_TEXT:
                continue
            if before:
                free_before = True
            elif free_before:
                raise RuleError(
                    placeholder.offset,
                    f"<{placeholder.kind}> after the <address> when free text comes before it: "
                    "text an attacker controls could move which address matches",
                )


def _capture_name(placeholder: Placeholder) -> str | None:
    if placeholder.kind == "address":
        return "address"
    if placeholder.kind.startswith("stamp:"):
        return "stamp"
    return placeholder.name


class _Builder:
    """Accumulates regex text and the group names it hands out."""

    def __init__(self) -> None:
        self.captures: list[tuple[str, str]] = []

    def sequence(self, elements: tuple[Element, ...]) -> str:
        return "".join(self.element(element) for element in elements)

    def element(self, element: Element) -> str:
        return self._HANDLERS[type(element)](self, element)

    def literal(self, element: Literal) -> str:
        return re.escape(element.text)

    def placeholder(self, element: Placeholder) -> str:
        token = TOKENS[element.kind]
        name = _capture_name(element)
        if name is None:
            return f"(?:{token})"
        group = f"g{len(self.captures)}"
        self.captures.append((group, name))
        return f"(?P<{group}>{token})"

    def optional(self, element: OptionalGroup) -> str:
        return f"(?:{self.sequence(element.elements)})?"

    def alternatives(self, element: Alternatives) -> str:
        return "(?:" + "|".join(self.sequence(branch) for branch in element.branches) + ")"

    _HANDLERS: ClassVar[dict[type, Callable[[_Builder, Any], str]]] = {
        Literal: literal,
        Placeholder: placeholder,
        OptionalGroup: optional,
        Alternatives: alternatives,
    }


def compile_rule(rule: RuleSpec) -> CompiledRule:
    """Check a rule and compile it; raises RuleError at the offending token."""
    _check_placeholders(rule)
    _check_injection(rule)
    builder = _Builder()
    body = builder.sequence(rule.elements)
    literals = [element.text for element in rule.elements if isinstance(element, Literal)]
    stamp_formats = [p.kind[6:] for p, _ in _walk(rule.elements) if p.kind.startswith("stamp:")]
    return CompiledRule(
        action=rule.action.text,
        name=rule.name.text,
        pattern=re.compile(body, re.DOTALL),
        prefilter=max(literals, key=len, default=""),
        captures=tuple(builder.captures),
        has_address=any(name == "address" for _, name in builder.captures),
        stamp_format=stamp_formats[0] if stamp_formats else None,
    )
