"""Turning an event into a jail's failure: its grammar, and the rule for event time."""

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from journalban.events import Event, Failure, new_failure
from journalban.grammar import Grammar, Rejected
from journalban.grammar.scan import (
    ENGINE_ENV,
    AllLines,
    BufferScanner,
    LiteralScanner,
    build_scanner,
    hyperscan_available,
)

log = logging.getLogger(__name__)
FAIL2BAN = "fail2ban"  # the file format whose lines reach the rules with their date cut out
NO_CAPTURES: Mapping[str, str] = MappingProxyType({})  # a jail's failures: see JailMatcher.match



class JailMatcher:
    """One jail's grammar applied to events.

    Event time is the event's own time (for file lines, the moment they were read)
    unless the grammar declares its stamp trustworthy; a stamp in the future
    counts as now, so a skewed clock can neither hide nor postpone a failure.
    """

    def __init__(self, jail: str, grammar: Grammar) -> None:
        self.jail = jail
        self.grammar = grammar
        self._rules: dict[str, str] = {}  # rule → "grammar/rule", one string per rule, not per failure
        # The journal source hands every entry of one sender the same fields mapping, and a
        # journal event is selected by its fields alone: the last answer holds while they do.
        self._last_fields: object = None
        self._last_selected = False

    def match(self, event: Event) -> Failure | Rejected | None:
        """The failure one event reports, or why it was rejected, or None."""
        failures, rejected = self.match_batch((event,))
        return failures[0] if failures else rejected[0][1] if rejected else None

    def match_batch(self, events: Iterable[Event]) -> tuple[list[Failure], list[tuple[Event, Rejected]]]:
        """``match`` of each event, the failures in order and the rejected apart: a batch's
        loop with its lookups made once (``Grammar.address_of``; a file source's events
        selected by app, the same answer while it stays the same)."""
        jail, grammar, rules = self.jail, self.grammar, self._rules
        address_of, applies_to, trusts_stamp = grammar.address_of, grammar.applies_to, grammar.trusts_stamp
        failures: list[Failure] = []
        rejected: list[tuple[Event, Rejected]] = []
        last_source: str | None = None
        last_app: str | None = None
        selected = False
        for event in events:
            source = event.source
            if source == "journal":
                if event.fields is self._last_fields:
                    selected = self._last_selected
                else:
                    selected = applies_to(event)
                    self._last_fields, self._last_selected = event.fields, selected
                last_source = None
            elif source != last_source or event.app != last_app:
                selected = applies_to(event)  # by source and app alone off the journal
                last_source, last_app = source, event.app
            if not selected:
                continue
            message = event.message
            found = address_of(message)
            if found is None:
                continue
            if isinstance(found, Rejected):
                rejected.append((event, found))
                continue
            name, address, stamp = found
            time = event.time
            if trusts_stamp and stamp is not None:
                stamped = grammar.stamp_time(stamp, time)
                if stamped is not None:
                    time = min(stamped, time)
            rule = rules.get(name)
            if rule is None:
                rule = rules[name] = f"{grammar.name}/{name}"
            failures.append(new_failure(jail, address, time, rule, message, source, NO_CAPTURES))
        return failures, rejected


def prefilter(grammars: Iterable[Grammar]) -> Callable[[str], bool]:
    """A cheap test on a raw line: False only when no rule of these grammars can match it,
    because the line lacks every rule's required literal. Lets noise skip parsing."""
    literals = sorted({rule.prefilter for g in grammars for rule in g.rules}, key=len)
    if not literals or literals[0] == "":
        return lambda line: True
    search = re.compile("|".join(map(re.escape, literals))).search  # one C-level scan per line
    return lambda line: search(line) is not None


def flagged_lines(grammars: Iterable[Grammar], warn: Callable[[str], None] = log.info) -> Callable[[bytes], list[int]]:
    """Which lines of a block of whole lines any rule of these grammars might match, as
    the end offsets ``BufferScanner.flagged`` gives: each grammar's best scanner (see
    ``journalban.grammar.scan``), their flags merged. A ``fail2ban``-format grammar
    matches lines with their date cut out, which the translated patterns do not know:
    there, the lines holding some rule's literal (every line if a rule has none)."""
    grammars = list(dict.fromkeys(grammars))
    if any(g.file_format == FAIL2BAN for g in grammars):
        literals = [rule.prefilter for g in grammars for rule in g.rules]
        scanners: list[BufferScanner] = [LiteralScanner(literals) if literals and all(literals) else AllLines()]
    else:
        scanners = [_scanner(g, warn) for g in grammars]
    if any(s.engine == "lines" for s in scanners) or not scanners:
        return AllLines().flagged
    if len(scanners) == 1:
        return scanners[0].flagged

    def merged(block: bytes) -> list[int]:
        return sorted({end for scanner in scanners for end in scanner.flagged(block)})

    return merged


_SCANNERS: dict[int, tuple[Grammar, BufferScanner]] = {}  # id(grammar) → its scanner: files share it


def _scanner(grammar: Grammar, warn: Callable[[str], None]) -> BufferScanner:
    known = _SCANNERS.get(id(grammar))
    if known is None or known[0] is not grammar:
        if len(_SCANNERS) >= 256:  # grammars of earlier reloads: forget them all at once
            _SCANNERS.clear()
        known = _SCANNERS[id(grammar)] = (grammar, build_scanner(grammar, warn=warn))
    return known[1]


def _needs(grammars: Iterable[Grammar]) -> list[tuple[str, ...]] | None:
    """Per fail rule, the literals a match must contain, longest (rarest) first; None
    when some fail rule has no case-sensitive literal, so nothing can be ruled out."""
    rules = [rule for grammar in grammars for rule in grammar.rules if rule.action == "fail"]
    if not rules or any(not rule.required for rule in rules):
        return None
    return list(dict.fromkeys(tuple(sorted(set(rule.required), key=len, reverse=True)) for rule in rules))


# Bytes that begin many words of log text: a search key starting with one is tried at
# every word, one starting with another byte is skipped to by ``re``'s first-byte scan.
_COMMON = frozenset(" abcdefghilmnoprstu.,:;=-_/0123456789")


def _benign(grammars: Iterable[Grammar]) -> list[str]:
    """The grammars' examples of lines that are no failure ("no match", or an ignore
    rule's): the everyday lines of what they read, where a search key should not be."""
    out: list[str] = []
    for grammar in grammars:
        ignored = {rule.name for rule in grammar.rules if rule.action == "ignore"}
        out += [example.text for example in grammar.examples
                if example.outcome == "no match" or (example.outcome == "match" and example.rule in ignored)]
    return out


def _key(literals: tuple[str, ...], benign: Sequence[str] = ()) -> str:
    """The piece of one of ``literals`` to search for: in the fewest of the ``benign``
    lines (a key found there is found in everyday lines, and costs a look at the rule's
    other literals each time), then starting with an uncommon character, at least 6
    long, else as long as can be (trailing spaces trimmed)."""
    best: tuple[tuple[int, bool, bool, int], str] | None = None
    for text in literals:
        for at in range(len(text)):
            piece = text[at:].rstrip(" ")
            if len(piece) < 3:
                break
            score = (-sum(piece in line for line in benign), piece[0] not in _COMMON, len(piece) >= 6, len(piece))
            if best is None or score > best[0]:
                best = (score, piece)
    return best[1] if best is not None else max(literals, key=len)


def _keyed(needs: list[tuple[str, ...]], benign: Sequence[str], on_bytes: bool) -> Callable[[Any], bool]:
    """True when some rule's literals are all in the message (text, or with ``on_bytes``
    UTF-8 bytes). One C-level search for a key per rule (a piece of one of its literals,
    see ``_key``) rules out most messages; at each key found, only the rules keyed there
    (or by a prefix of it: the search takes the longest key at a place) are checked, and
    the search goes on one character further. No groups: they would cost ``re`` its
    first-character scan. Bytes are decoded for the check (``in`` on bytes costs four
    times ``in`` on text), which finds the same literals; see ``prefilter_bytes``."""
    keyed: dict[str, list[tuple[str, ...]]] = {}
    for literals in needs:
        keyed.setdefault(_key(literals, benign), []).append(literals)
    keys = sorted(keyed, key=len, reverse=True)
    rules: dict[Any, list[tuple[str, ...]]] = {
        key.encode() if on_bytes else key: [literals for other in keys if key.startswith(other)
                                            for literals in keyed[other]]
        for key in keys}
    pattern = "|".join(map(re.escape, keys))
    search = re.compile(pattern.encode() if on_bytes else pattern).search

    def may_match(message: Any) -> bool:
        found = search(message)
        if found is None:
            return False
        text = message.decode("utf-8", "replace") if on_bytes else message
        while found is not None:
            for literals in rules[found.group()]:
                for literal in literals:
                    if literal not in text:
                        break
                else:
                    return True
            found = search(message, found.start() + 1)
        return False

    return may_match


def prefilter_text(grammars: Iterable[Grammar]) -> Callable[[str], bool] | None:
    """A test on a decoded message, False only when no fail rule of these grammars can
    match it (it lacks some literal of every fail rule); None when nothing can be ruled
    out. Lets a source skip building an ``Event`` for it."""
    grammars = list(grammars)
    needs = _needs(grammars)
    return None if needs is None else _keyed(needs, _benign(grammars), on_bytes=False)


# prefilter_spec: per fail rule its literals, and the grammars' benign lines.
PrefilterSpec = tuple[list[tuple[str, ...]], list[str]]


def prefilter_bytes(grammars: Iterable[Grammar]) -> Callable[[bytes], bool] | None:
    """``prefilter_text`` on raw UTF-8 bytes, so a source can drop a message before even
    decoding it. A literal (valid UTF-8, without U+FFFD) is in the bytes exactly when it
    is in their decoded text: undecodable bytes become U+FFFD, and a literal's first
    byte, never a continuation byte, is never taken into a broken sequence before it."""
    return prefilter_of_spec(prefilter_spec(grammars))


def prefilter_spec(grammars: Iterable[Grammar]) -> PrefilterSpec | None:
    """What ``prefilter_bytes`` is built from, as plain data a reader process is sent:
    per fail rule its literals, and the grammars' benign lines; None: nothing to rule out."""
    grammars = list(grammars)
    needs = _byte_needs(grammars)
    return None if needs is None else (needs, _benign(grammars))


def prefilter_of_spec(spec: PrefilterSpec | None) -> Callable[[bytes], bool] | None:
    """``prefilter_bytes`` from its ``prefilter_spec``."""
    return None if spec is None else _keyed(spec[0], spec[1], on_bytes=True)


def _byte_needs(grammars: Sequence[Grammar]) -> list[tuple[str, ...]] | None:
    """``_needs``, if its literals can be looked for in bytes (see ``prefilter_bytes``)."""
    needs = _needs(grammars)
    if needs is None or any("\ufffd" in text for literals in needs for text in literals):
        return None
    return needs


def prefilter_marks(grammars: Iterable[Grammar]) -> Callable[[bytes], list[int]] | None:
    """``prefilter_bytes`` for a block of many messages at once: the ascending offsets in
    the block where a search key of some fail rule ends (``_key``, one per rule), found
    by one hyperscan scan, overlapping ones too. A message with no such end inside it
    holds no rule's key, so ``prefilter_bytes`` would say no to it (a key running across
    two messages marks the second, which the exact test then weighs, no more). None
    where hyperscan is missing or not wanted (``$JOURNALBAN_SCANNER``), or nothing can
    be ruled out: each message is then tested on its own."""
    grammars = list(grammars)
    needs = _byte_needs(grammars)
    if needs is None or (os.environ.get(ENGINE_ENV) or "hyperscan") != "hyperscan" or not hyperscan_available():
        return None
    import hyperscan

    benign = _benign(grammars)
    keys = sorted({_key(literals, benign).encode() for literals in needs})
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=keys, ids=list(range(len(keys))), flags=0, literal=True)

    def marks(block: bytes) -> list[int]:
        ends: list[int] = []
        append = ends.append

        def on_match(_id: int, _start: int, end: int, _flags: int, _context: object) -> None:
            append(end)

        database.scan(block, match_event_handler=on_match)
        ends.sort()  # already in order, as hyperscan reports them: a linear check
        return ends

    return marks


def syslog_keep(grammars: Iterable[Grammar]) -> Callable[[str | None, str], bool]:
    """Whether a syslog message (app name, text) can be a failure for one of these
    grammars: an app some grammar reads, and the literals of one of their fail rules."""
    grammars = list(grammars)
    apps = frozenset(app for grammar in grammars for app in grammar.syslog_apps)
    may_match = prefilter_text(grammars)
    if may_match is None:
        return lambda app, message: app in apps
    return lambda app, message: app in apps and may_match(message)
