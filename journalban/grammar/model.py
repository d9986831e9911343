"""The parsed form of a grammar file, before compilation.

Every node keeps the offset of its first character in the file, so semantic
checks made after parsing can still report ``line:column``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Literal:
    """Text that must appear verbatim (``i"..."``: in any letter case)."""

    text: str
    offset: int
    nocase: bool = False


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A typed token such as ``<address>`` or ``<user:word>``; ``name`` None = not captured."""

    name: str | None
    kind: str
    offset: int
    kind_offset: int


@dataclass(frozen=True, slots=True)
class OptionalGroup:
    """``[ ... ]``: elements that may be absent."""

    elements: tuple[Element, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class Alternatives:
    """``( A | B )``: exactly one branch, tried in order."""

    branches: tuple[tuple[Element, ...], ...]
    offset: int


@dataclass(frozen=True, slots=True)
class RawRegex:
    """``/.../``: a Python regex fragment; its named groups become captures."""

    text: str  # the regex as written between the slashes (``\\/`` kept as is)
    offset: int


Element = Literal | Placeholder | OptionalGroup | Alternatives | RawRegex


@dataclass(frozen=True, slots=True)
class Word:
    """A bare word or quoted value together with where it was written."""

    text: str
    offset: int


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """``fail NAME: ...`` or ``ignore NAME: ...`` as written."""

    action: Word  # "fail" or "ignore"
    name: Word
    elements: tuple[Element, ...]


@dataclass(frozen=True, slots=True)
class Example:
    """A sample message and the outcome the grammar must give for it.

    ``outcome`` is "match", "rejected" or "no match"; ``rule`` names the rule for
    the first two; ``fields`` are the captures (plus ``address``/``stamp``) to compare.
    """

    text: str
    outcome: str
    rule: str | None
    fields: tuple[tuple[str, str], ...]
    line: int
    column: int

    def __str__(self) -> str:
        if self.outcome == "no match":
            return "no match"
        if self.outcome == "rejected":
            return f"rejected {self.rule}"
        fields = "".join(f" {key}={value}" for key, value in self.fields)
        return f"{self.rule}{fields}"


@dataclass(frozen=True, slots=True)
class Setting:
    """A header statement: ``grammar``, ``description``, ``applies`` or ``time``."""

    keyword: Word
    values: tuple[Word, ...]
    options: tuple[tuple[Word, Word], ...] = ()


@dataclass(frozen=True, slots=True)
class ExampleSpec:
    """``example "LINE" => ...`` as written; checked against the rules at load."""

    keyword: Word
    text: Word
    outcome: str  # "match", "rejected" or "no match"
    rule: Word | None
    fields: tuple[tuple[Word, Word], ...]


Statement = Setting | RuleSpec | ExampleSpec
