"""All of a grammar's rules as one regex, so one C-level match decides a message.

``Grammar.decide`` asks the ignore rules, then the fail rules, in order, and the first
that matches the whole message decides. An alternation of the same patterns, ignore
rules first, tried with ``fullmatch`` does exactly that in one call: a branch is left
only when it cannot match the whole message, and the first that can is taken. Each
rule's groups are renamed with the rule's place as a prefix (references and
conditionals too), so the branches' groups stay apart and the outer group of each
branch names the rule that matched (``Match.lastgroup``: the outermost group closes
last).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .compiler import _REGEX_TOKEN, CompiledRule


@dataclass(frozen=True, slots=True)
class Branch:
    """A rule in the combined regex, with its captures under their renamed groups."""

    rule: CompiledRule
    captures: tuple[tuple[str, str], ...]  # (renamed regex group, capture name)
    # the groups of the address and of the stamp, as ``captures`` has them: of two
    # spellings of one capture, the last that took part in the match is the one kept
    address_groups: tuple[str, ...] = ()
    stamp_groups: tuple[str, ...] = ()
    ignore: bool = False

    @classmethod
    def of(cls, rule: CompiledRule, prefix: str) -> Branch:
        captures = tuple((prefix + group, name) for group, name in rule.captures)
        return cls(rule, captures, tuple(group for group, name in captures if name == "address"),
                   tuple(group for group, name in captures if name == "stamp"), rule.action == "ignore")


class Dispatch:
    """The combined regex and what each of its branches stands for."""

    def __init__(self, pattern: re.Pattern[str], branches: dict[str, Branch]) -> None:
        self.fullmatch = pattern.fullmatch
        self.branches = branches

    @classmethod
    def build(cls, rules: tuple[CompiledRule, ...]) -> Dispatch | None:
        """None where the rules cannot be combined (a flag one rule lacks, a regex the
        combination would change); ``Grammar.decide`` then asks them one by one."""
        ordered = [rule for rule in rules if rule.action == "ignore"] + [r for r in rules if r.action != "ignore"]
        if not ordered or any(rule.pattern.flags != ordered[0].pattern.flags for rule in ordered):
            return None
        parts: list[str] = []
        branches: dict[str, Branch] = {}
        for index, rule in enumerate(ordered):
            prefix = f"r{index}_"
            text = renamed(rule.pattern.pattern, prefix)
            if text is None or not _same_groups(rule.pattern, text, prefix):
                return None
            parts.append(f"(?P<r{index}>{text})")
            branches[f"r{index}"] = Branch.of(rule, prefix)
        try:
            pattern = re.compile("|".join(parts), ordered[0].pattern.flags)
        except re.error:
            return None
        return cls(pattern, branches)


def renamed(pattern: str, prefix: str) -> str | None:
    """``pattern`` with every named group, back-reference and conditional renamed with
    ``prefix``; None if it holds numbered ones, whose numbers the combination shifts."""
    out: list[str] = []
    for token in _REGEX_TOKEN.finditer(pattern):
        if token["group"]:
            out.append(f"(?P<{prefix}{token['group']}>")
        elif token["backref"]:
            out.append(f"(?P={prefix}{token['backref']})")
        elif token["cond"]:
            if token["cond"].isdigit():
                return None
            out.append(f"(?({prefix}{token['cond']})")
        elif token.group()[0] == "\\" and token.group()[1:].isdigit() and token.group() != "\\0":
            return None
        else:
            out.append(token.group())
    return "".join(out)


def _same_groups(original: re.Pattern[str], text: str, prefix: str) -> bool:
    """Whether ``text`` compiles to the same groups as ``original``, each name prefixed."""
    try:
        compiled = re.compile(text, original.flags)
    except re.error:
        return False
    return compiled.groupindex == {prefix + name: index for name, index in original.groupindex.items()}
