"""One parsed rule to one anchored Python regex, with the checks that keep it safe.

Typed tokens compile to possessive or atomic patterns so they never give back
characters; only ``<any>`` is lazy, and the injection check below limits where
it may appear relative to the address.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, ClassVar

from . import stamps
from .model import Alternatives, Element, Literal, OptionalGroup, Placeholder, RawRegex, RuleSpec

_OCTETS = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
_HEX = r"[0-9A-Fa-f]"
# IPv4, then IPv6 with a dotted tail, then plain IPv6 (never ending in a lone ':' or in
# ':::', so "2001:db8::1: msg" leaves ": msg"); ipaddress has the last word. Where IPv4
# matches (digits, then '.') neither IPv6 form can, as both need a ':' before any '.',
# so its place changes no match; first, it spares the common address two failed tries.
ADDRESS = (
    rf"(?>{_OCTETS}(?![0-9])"
    rf"|(?:{_HEX}{{0,4}}:){{2,6}}{_OCTETS}(?![0-9])"
    rf"|(?:{_HEX}{{1,4}}|:)(?::{_HEX}{{0,4}}){{1,7}}(?<![^:]:)(?<!:::))"
)
# ADDR:PORT with the port required. Bracketed IPv6, or an address run split at its
# last ':' followed by digits and then no address character: with a port always
# there, the last ':'-group is the port, never part of the address.
ENDPOINT = (
    r"(?>\[(?P<{a}>[0-9A-Fa-f:.]++)\]:(?P<{p}>[0-9]++)"
    r"|(?P<{a2}>[0-9A-Fa-f:.]*?):(?P<{p2}>[0-9]++)(?![0-9A-Fa-f:.]))"
)

TOKENS: dict[str, str] = {
    "address": ADDRESS,
    "word": r"\S++",
    "hostname": r"[^\s\[\]]++",
    "endpoint": ENDPOINT,
    "int": r"[0-9]++",
    "any": r".*?",
    "quoted": r'[^"\\]*+(?:\\.[^"\\]*+)*+',
    **{f"stamp:{name}": f"(?>{pattern})" for name, pattern in stamps.PATTERNS.items()},
}
REST_OF_LINE = r".*+"  # an <any> at the end of a rule: possessive, nothing after it to give back to
FREE_TEXT = frozenset({"any"})  # placeholders whose extent attacker text can stretch
RESERVED_NAMES = frozenset({"address", "stamp"})
SPECIAL = frozenset({"address", "endpoint"})  # the address, captured under its own name


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
    backtracking: bool = False  # a /regex/ uses look-arounds, back-references or conditionals
    required: tuple[str, ...] = ()  # every literal a match must contain (top level, case-sensitive)

    def search(self, message: str) -> re.Match[str] | None:
        """The regex match for the whole message, after the cheap literal test."""
        if self.prefilter not in message:
            return None
        return self.pattern.fullmatch(message)


@dataclass(frozen=True, slots=True)
class Fragment:
    """What a ``/regex/`` holds: its named groups in order and how it may behave."""

    groups: tuple[str, ...]  # capture names, ``name__2`` spellings folded into ``name``
    backtracking: bool  # look-around, back-reference or conditional: needs backtracking
    free_text: bool  # an unbounded ``.*`` / ``.+``: attacker text can stretch it


# One token of a regex, as far as the scan below cares: an escape, a character class,
# a group opener, or any other single character.
_REGEX_TOKEN = re.compile(
    r"\\(?:[0-9]+|.)"
    r"|\[\^?\]?(?:\\.|[^\]\\])*\]"
    r"|\(\?P<(?P<group>[A-Za-z_][A-Za-z0-9_]*)>"
    r"|\(\?P=(?P<backref>[A-Za-z_][A-Za-z0-9_]*)\)"
    r"|\(\?\((?P<cond>[A-Za-z_0-9]+)\)"
    r"|\(\?<?[=!]"
    r"|\(\?[aiLmsux]+\)"
    r"|\.[*+]"
    r"|.",
    re.DOTALL,
)


_ALTERNATE = re.compile(r"__[0-9]+$")


def capture_of(group: str) -> str:
    """The capture a /regex/ group fills: ``user__2`` is another spelling of ``user``."""
    return _ALTERNATE.sub("", group)


def scan_fragment(text: str, offset: int) -> Fragment:
    """Check a ``/regex/`` on its own; raises RuleError at the fragment for what cannot work."""
    try:
        re.compile(text)
    except re.error as error:
        at = offset + 1 + (error.pos or 0)
        raise RuleError(at, f"invalid regex: {error.msg}") from None
    groups: list[str] = []
    backtracking = free_text = False
    for token in _REGEX_TOKEN.finditer(text):
        value = token.group()
        at = offset + 1 + token.start()
        if token.group("group"):
            name = capture_of(token.group("group"))
            if name not in groups:
                groups.append(name)
        elif token.group("backref") or token.group("cond"):
            if token.group("cond") and token.group("cond").isdigit():
                raise RuleError(at, "numbered groups shift in a rule; name the group")
            backtracking = True
        elif value.startswith("(?") and value[-1] in "=!":
            backtracking = True
        elif value.startswith("(?") and value.endswith(")"):
            raise RuleError(at, f"global flags {value} apply to the whole rule; write {value[:-1]}:...)")
        elif value[0] == "\\" and value[1:].isdigit() and value[1] != "0":
            raise RuleError(at, "numbered back-references shift in a rule; use (?P=name)")
        elif value in (".*", ".+"):
            free_text = True
    return Fragment(tuple(groups), backtracking, free_text)


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


def _fragments(
    elements: tuple[Element, ...], nested: bool = False
) -> Iterator[tuple[Fragment, RawRegex, bool]]:
    """Every ``/regex/`` in order, scanned, with whether it sits inside [ ] or ( )."""
    for element in elements:
        if isinstance(element, RawRegex):
            yield scan_fragment(element.text, element.offset), element, nested
        elif isinstance(element, OptionalGroup):
            yield from _fragments(element.elements, True)
        elif isinstance(element, Alternatives):
            for branch in element.branches:
                yield from _fragments(branch, True)


def _free_text(elements: tuple[Element, ...]) -> Iterator[tuple[int, str]]:
    """Offset and description of each element whose extent attacker text can stretch."""
    for placeholder, _ in _walk(elements):
        if placeholder.kind in FREE_TEXT:
            yield placeholder.offset, f"<{placeholder.kind}>"
    for fragment, element, _ in _fragments(elements):
        if fragment.free_text and "address" not in fragment.groups:
            yield element.offset, "a /regex/ with .* or .+"


def _is_address(element: Element) -> bool:
    if isinstance(element, Placeholder):
        return element.kind in SPECIAL
    return isinstance(element, RawRegex) and "(?P<address>" in element.text


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
        is_special = kind in SPECIAL or kind.startswith("stamp:")
        if is_special and nested:
            raise RuleError(placeholder.offset, f"<{kind}> must not be inside [ ] or ( )")
        if is_special and placeholder.name is not None and placeholder.name != "address":
            raise RuleError(placeholder.offset, f"<{kind}> takes no capture name")
        if not is_special and placeholder.name in RESERVED_NAMES:
            raise RuleError(placeholder.offset, f"the name {placeholder.name!r} is reserved")
        name = _capture_name(placeholder)
        if name == "address" and addresses:
            raise RuleError(placeholder.offset, "a rule has exactly one <address> or <endpoint>")
        for captured in (name, "port") if kind == "endpoint" else (name,):
            if captured is not None:
                if captured in names:
                    raise RuleError(placeholder.offset, f"capture {captured!r} appears twice in the rule")
                names.add(captured)
        addresses += kind in SPECIAL
    for fragment, element, nested in _fragments(rule.elements):
        for name in fragment.groups:
            if name == "stamp":
                raise RuleError(element.offset, "a /regex/ cannot capture the stamp")
            if name == "address":
                if nested:
                    raise RuleError(element.offset, "(?P<address>...) must not be inside [ ] or ( )")
                if addresses:
                    raise RuleError(element.offset, "a rule has exactly one address")
                addresses += 1
            if name in names:
                raise RuleError(element.offset, f"capture {name!r} appears twice in the rule")
            names.add(name)
    if rule.action.text == "fail" and addresses == 0:
        raise RuleError(rule.name.offset, f"fail rule {rule.name.text!r} has no <address>")


def _check_injection(rule: RuleSpec) -> None:
    """Refuse free text on both sides of the address, where attacker text could move it."""
    before = True
    free_before = False
    for index, element in enumerate(rule.elements):
        if _is_address(element):
            before = False
            continue
        for offset, what in _free_text(rule.elements[index : index + 1]):
            if before:
                free_before = True
            elif free_before:
                raise RuleError(
                    offset,
                    f"{what} after the address when free text comes before it: "
                    "text an attacker controls could move which address matches",
                )


def _tail_anys(elements: tuple[Element, ...]) -> Iterator[Placeholder]:
    """``<any>`` placeholders nothing can follow: the last element of the rule, or of the
    last optional group or alternative branch at its end. They take the rest of the line."""
    if not elements:
        return
    last = elements[-1]
    if isinstance(last, Placeholder) and last.kind == "any":
        yield last
    elif isinstance(last, OptionalGroup):
        yield from _tail_anys(last.elements)
    elif isinstance(last, Alternatives):
        for branch in last.branches:
            yield from _tail_anys(branch)


def _rest_of_line_anys(rule: RuleSpec) -> frozenset[int]:
    """id() of the <any>s compiled as "the rest of the line". Not when a /regex/ holds the
    address: the guard after the rule, that its address group took part, could then fail
    after the last <any> and send the match back into an earlier one."""
    if any("address" in fragment.groups for fragment, _, _ in _fragments(rule.elements)):
        return frozenset()
    return frozenset(id(p) for p in _tail_anys(rule.elements))


def _check_free_text_slots(rule: RuleSpec, tails: frozenset[int]) -> None:
    """Refuse a second free-text slot: two can make a crafted line cost quadratic time.

    The slot at the end of the rule does not count: compiled possessive (``.*+``), it
    takes the rest of the line once and never gives any of it back."""
    slots = [(p.offset, f"<{p.kind}>") for p, _ in _walk(rule.elements)
             if p.kind in FREE_TEXT and id(p) not in tails]
    slots += [(element.offset, "a /regex/ with .* or .+") for fragment, element, _ in _fragments(rule.elements)
              if fragment.free_text]
    slots.sort()
    if len(slots) > 1:
        (_, first_what), (offset, what) = slots[:2]
        raise RuleError(
            offset,
            f"{what} is a second free-text slot in this rule (after an earlier {first_what}): a crafted line "
            "would take time quadratic in its length; make one of them a <word>, <int>, <quoted>, "
            "<hostname> or fixed text, or put it at the end of the rule",
        )


def _starts_with_colon(element: Element) -> Iterator[int]:
    """Offsets where ``element`` may begin with ':' and a hex digit (or end there)."""
    if isinstance(element, Literal):
        if element.text[:1] == ":" and (len(element.text) == 1 or element.text[1] in string.hexdigits):
            yield element.offset
    elif isinstance(element, OptionalGroup) and element.elements:
        yield from _starts_with_colon(element.elements[0])
    elif isinstance(element, Alternatives):
        for branch in element.branches:
            if branch:
                yield from _starts_with_colon(branch[0])


def _check_address_port(rule: RuleSpec) -> None:
    """Refuse ``<address> ":" <port>``: "2001:db8::1:22" is an IPv6 address by itself, or
    2001:db8::1 and port 22; only <endpoint>, whose port is required, can tell."""
    for element, following in pairwise(rule.elements):
        if isinstance(element, Placeholder) and element.kind == "address":
            for offset in _starts_with_colon(following):
                raise RuleError(
                    offset,
                    "':' after <address> is ambiguous for IPv6 (2001:db8::1:22 is an address, "
                    "or 2001:db8::1 and port 22): write <endpoint> for ADDR:PORT with the port always there",
                )


def _first_elements(element: Element) -> Iterator[Element]:
    """The elements a match of ``element`` can begin with (through [ ] and ( | ))."""
    if isinstance(element, OptionalGroup):
        if element.elements:
            yield from _first_elements(element.elements[0])
    elif isinstance(element, Alternatives):
        for branch in element.branches:
            if branch:
                yield from _first_elements(branch[0])
    else:
        yield element


def _check_text_after_any(elements: tuple[Element, ...]) -> None:
    """Refuse an <any> directly followed by a token: for each place the <any> could stop,
    the token would scan on (``<any> <int>`` on a line of digits is quadratic)."""
    for element, following in pairwise(elements):
        if isinstance(element, Placeholder) and element.kind in FREE_TEXT:
            for first in _first_elements(following):
                if not isinstance(first, Literal):
                    raise RuleError(
                        first.offset,
                        f"<{element.kind}> must be followed by literal text, not a token: for each place "
                        "it could stop, the token would scan on, and a crafted line would take quadratic time",
                    )
    for element in elements:
        if isinstance(element, OptionalGroup):
            _check_text_after_any(element.elements)
        elif isinstance(element, Alternatives):
            for branch in element.branches:
                _check_text_after_any(branch)


def _capture_name(placeholder: Placeholder) -> str | None:
    if placeholder.kind in SPECIAL:
        return "address"
    if placeholder.kind.startswith("stamp:"):
        return "stamp"
    return placeholder.name


class _Builder:
    """Accumulates regex text and the group names it hands out."""

    captures: list[tuple[str, str]]

    def __init__(self, tails: frozenset[int] = frozenset()) -> None:
        self.captures = []
        self.tails = tails  # id() of the <any> placeholders at the end of the rule

    def sequence(self, elements: tuple[Element, ...]) -> str:
        return "".join(self.element(element) for element in elements)

    def element(self, element: Element) -> str:
        return self._HANDLERS[type(element)](self, element)

    def literal(self, element: Literal) -> str:
        text = re.escape(element.text)
        return f"(?i:{text})" if element.nocase else text

    def endpoint(self) -> str:
        """ADDR:PORT: two groups each for the address and the port, one per form."""
        groups: dict[str, str] = {}
        for key, name in (("a", "address"), ("p", "port"), ("a2", "address"), ("p2", "port")):
            groups[key] = f"g{len(self.captures)}"
            self.captures.append((groups[key], name))
        return ENDPOINT.format(**groups)

    def placeholder(self, element: Placeholder) -> str:
        if element.kind == "endpoint":
            return self.endpoint()
        token = REST_OF_LINE if id(element) in self.tails else TOKENS[element.kind]
        name = _capture_name(element)
        if name is None:
            return f"(?:{token})"
        group = f"g{len(self.captures)}"
        self.captures.append((group, name))
        return f"(?P<{group}>{token})"

    def raw(self, element: RawRegex) -> str:
        """The fragment with its groups renamed to the rule's own, ``.`` not matching newline."""
        renamed: dict[str, str] = {}

        def rename(found: re.Match[str]) -> str:
            text = found.group()
            if found.group("group"):
                group = f"g{len(self.captures)}"
                self.captures.append((group, capture_of(found.group("group"))))
                renamed[found.group("group")] = group
                return f"(?P<{group}>"
            if found.group("backref"):
                return f"(?P={renamed.get(found.group('backref'), found.group('backref'))})"
            if found.group("cond"):
                return f"(?({renamed.get(found.group('cond'), found.group('cond'))})"
            return text

        body = _REGEX_TOKEN.sub(rename, element.text)
        return f"(?-s:{body})"

    def optional(self, element: OptionalGroup) -> str:
        return f"(?:{self.sequence(element.elements)})?"

    def alternatives(self, element: Alternatives) -> str:
        return "(?:" + "|".join(self.sequence(branch) for branch in element.branches) + ")"

    _HANDLERS: ClassVar[dict[type, Callable[[_Builder, Any], str]]] = {
        Literal: literal,
        Placeholder: placeholder,
        OptionalGroup: optional,
        Alternatives: alternatives,
        RawRegex: raw,
    }


def compile_rule(rule: RuleSpec) -> CompiledRule:
    """Check a rule and compile it; raises RuleError at the offending token."""
    _check_placeholders(rule)
    _check_injection(rule)
    tails = _rest_of_line_anys(rule)
    _check_free_text_slots(rule, tails)
    _check_text_after_any(rule.elements)
    _check_address_port(rule)
    fragments = list(_fragments(rule.elements))
    builder = _Builder(tails)
    body = builder.sequence(rule.elements)
    addresses = [group for group, name in builder.captures if name == "address"]
    if fragments and addresses:  # a /regex/ group may sit in an alternative not taken
        guard = "(?!)"
        for group, name in reversed(builder.captures):
            if name == "address":
                guard = f"(?({group})|{guard})"
        body += guard
    literals = [e.text for e in rule.elements if isinstance(e, Literal) and not e.nocase]
    stamp_formats = [p.kind[6:] for p, _ in _walk(rule.elements) if p.kind.startswith("stamp:")]
    return CompiledRule(
        action=rule.action.text,
        name=rule.name.text,
        pattern=re.compile(body, re.DOTALL),
        prefilter=max(literals, key=len, default=""),
        captures=tuple(builder.captures),
        has_address=any(name == "address" for _, name in builder.captures),
        stamp_format=stamp_formats[0] if stamp_formats else None,
        backtracking=any(fragment.backtracking for fragment, _, _ in fragments),
        required=tuple(literals),
    )


def backtracking_warnings(rules: tuple[CompiledRule, ...], grammar: str) -> list[str]:
    """One warning per rule whose /regex/ needs the backtracking engine."""
    return [
        f"grammar {grammar!r}: rule {rule.name!r} uses look-arounds, back-references or "
        "conditionals in a /regex/; a crafted line may make it slow"
        for rule in rules
        if rule.backtracking
    ]
