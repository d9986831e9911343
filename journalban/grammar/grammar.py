"""A loaded grammar and what matching a message against it yields.

Matching is pure: no I/O and no wall clock, so the same message always gives
the same answer and tests need nothing but strings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from journalban.addresses import CANONICAL_IPV4
from journalban.events import Event, slot_setters

from . import stamps
from .applies import JournalMatches, Selector
from .compiler import CompiledRule
from .dispatch import Dispatch
from .model import Example

MAX_MESSAGE = 16384  # characters a rule is ever run against
ADDRESS_MEMORY = 16384


@dataclass(frozen=True, slots=True)
class Match:
    """A failure: which rule, the offending (normalised) address, the other captures."""

    rule: str
    address: str
    captures: Mapping[str, str]
    stamp: str | None = None

    def __str__(self) -> str:
        fields = "".join(f" {key}={value}" for key, value in self.captures.items())
        return f"{self.rule} address={self.address}{fields}"


_new = object.__new__
_MATCH_SLOTS = slot_setters(Match)


def _new_match(rule: str, address: str, captures: Mapping[str, str], stamp: str | None) -> Match:
    """``Match(...)`` for the per-message path, at half the cost (see ``events.new_event``)."""
    match = _new(Match)
    set_rule, set_address, set_captures, set_stamp = _MATCH_SLOTS
    set_rule(match, rule)
    set_address(match, address)
    set_captures(match, captures)
    set_stamp(match, stamp)
    return match


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line shaped like a failure whose address is not an address: logged, never banned."""

    rule: str
    reason: str

    def __str__(self) -> str:
        return f"rejected {self.rule}: {self.reason}"


@lru_cache(maxsize=ADDRESS_MEMORY)
def normalise_address(text: str) -> str | None:
    """Canonical text of an address (IPv4-mapped IPv6 folded to IPv4), None if invalid.
    Remembered for the last ``ADDRESS_MEMORY`` texts: attackers repeat themselves, and
    an IPv6 address costs ten times a check of canonical IPv4."""
    if CANONICAL_IPV4.fullmatch(text):
        return text  # the common case, without building an ipaddress object
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(frozen=True, slots=True)
class Grammar:
    """Compiled rules of one grammar file plus the header that says how to read its lines."""

    name: str
    description: str
    path: Path
    selector: Selector  # which events the grammar reads, from its ``applies`` lines
    trusts_stamp: bool
    stamp_format: str | None
    examples: tuple[Example, ...]
    rules: tuple[CompiledRule, ...] = field(default=(), repr=False)
    name_position: tuple[int, int] = (1, 1)  # line, column of the name, for duplicate errors
    _dispatch: Dispatch | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_dispatch", Dispatch.build(self.rules))

    @property
    def source_kind(self) -> str:
        """Where events come from: file (raw lines), syslog, journal or syslog+journal."""
        return self.selector.source_kind

    @property
    def file_format(self) -> str:
        """How file lines reach it: raw, syslog (after their syslog header) or none (never)."""
        return self.selector.file_format

    @property
    def journal_matches(self) -> JournalMatches:
        """ORed groups of ANDed (field, value) pairs, for the journal reader's add_match."""
        return self.selector.journal_matches

    @property
    def syslog_apps(self) -> frozenset[str]:
        """App names (syslog tag without ``[pid]``) whose messages this grammar reads."""
        return self.selector.syslog_apps

    @property
    def reads_ledger(self) -> bool:
        """Whether it has ``applies ledger``: it reads the bans the ledger records."""
        return self.selector.reads_ledger

    def applies_to(self, event: Event) -> bool:
        """Whether the event comes from where this grammar's ``applies`` lines point; pure."""
        return self.selector.selects(event.source, event.app, event.fields)

    def match(self, message: str) -> Match | Rejected | None:
        """The failure a message reports; None when no fail rule (or an ignore rule) matches."""
        dispatch = self._dispatch
        if dispatch is None or len(message) > MAX_MESSAGE:
            return self.decide(message)[1]
        found = dispatch.fullmatch(message)  # as ``decide`` does, without its tuple: once per event
        if found is None:
            return None
        branch = dispatch.branches[found.lastgroup]  # type: ignore[index]
        return None if branch.rule.action == "ignore" else _result(branch.rule, found, branch.captures)

    def address_of(self, message: str) -> tuple[str, str, str | None] | Rejected | None:
        """``match`` as (rule, address, stamp), the other captures never gathered: the
        daemon's per-event path, which keeps nothing else (about a third of ``match``'s cost)."""
        dispatch = self._dispatch
        if dispatch is None or len(message) > MAX_MESSAGE:
            found_match = self.decide(message)[1]
            if isinstance(found_match, Match):
                return found_match.rule, found_match.address, found_match.stamp
            return found_match
        found = dispatch.fullmatch(message)
        if found is None:
            return None
        branch = dispatch.branches[found.lastgroup]  # type: ignore[index]
        if branch.ignore:
            return None
        raw = _last_taking_part(found, branch.address_groups)
        address = normalise_address(raw)
        if address is None:
            return Rejected(branch.rule.name, f"invalid address {raw!r}")
        return branch.rule.name, address, _last_taking_part(found, branch.stamp_groups) if branch.stamp_groups else None

    def decide(self, message: str) -> tuple[str | None, Match | Rejected | None]:
        """Like ``match`` but also names the deciding rule, ignore rules included.

        A message longer than ``MAX_MESSAGE`` is rejected unread: rules with two free
        text slots can take quadratic time, and no real failure line is that long."""
        if len(message) > MAX_MESSAGE:
            return None, Rejected("", f"message of {len(message)} characters, longer than {MAX_MESSAGE}")
        if self._dispatch is not None:
            found = self._dispatch.fullmatch(message)
            if found is None:
                return None, None
            branch = self._dispatch.branches[found.lastgroup]  # type: ignore[index]
            if branch.rule.action == "ignore":
                return branch.rule.name, None
            return branch.rule.name, _result(branch.rule, found, branch.captures)
        return self.decide_one_by_one(message)

    def decide_one_by_one(self, message: str) -> tuple[str | None, Match | Rejected | None]:
        """``decide`` without the combined regex (``journalban.grammar.dispatch``): the
        reference it is tested against, and the way where the rules cannot be combined."""
        for rule in self.rules:
            if rule.action == "ignore" and rule.search(message) is not None:
                return rule.name, None
        for rule in self.rules:
            if rule.action == "fail":
                found = rule.search(message)
                if found is not None:
                    return rule.name, _result(rule, found, rule.captures)
        return None, None

    def stamp_time(self, stamp: str, reference: datetime) -> datetime | None:
        """UTC time of a stamp captured by this grammar's rules; None if unparseable."""
        if self.stamp_format is None:
            return None
        return stamps.parse_stamp(self.stamp_format, stamp, reference)


def _result(rule: CompiledRule, found: re.Match[str], groups: tuple[tuple[str, str], ...]) -> Match | Rejected:
    """``groups``: (regex group, capture name); a group that took no part in the match is
    left out, so of two spellings of one capture the one that matched is kept."""
    captures: dict[str, str] = {}
    for group, name in groups:
        value = found[group]
        if value is not None:
            captures[name] = value
    raw = captures.pop("address")
    stamp = captures.pop("stamp", None)
    address = normalise_address(raw)
    if address is None:
        return Rejected(rule.name, f"invalid address {raw!r}")
    return _new_match(rule.name, address, captures, stamp)


def _last_taking_part(found: re.Match[str], groups: tuple[str, ...]) -> str:
    """The value of the last of ``groups`` that took part in the match, as ``_result``
    keeps it (one group, the usual case, in one lookup)."""
    if len(groups) == 1:
        return found[groups[0]]
    value = None
    for group in groups:
        value = found[group] if found[group] is not None else value
    return value  # type: ignore[return-value]
