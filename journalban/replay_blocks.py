"""Replay's fast path: a log file in shares, each share's lines decided as bytes.

The exact path (``journalban.replay``) decodes a line, builds an Event, asks
``Grammar.decide`` and builds a Failure. Here a hyperscan database says, for a whole
block, which lines which rules may match; those lines alone are matched, as bytes,
by the rules' own patterns compiled for bytes, and only a failure's time, address,
rule and place in the file go on. Any line this path cannot decide exactly as the
exact path would (a byte outside printable ASCII, where ``re``'s ``\\s`` means more
for text than for bytes; an unusual header; an address not in canonical IPv4
form; a line over ``MAX_MESSAGE``; a ``\\r`` at its end) goes to the exact path
whole, and a failure that opens a ban is read again from the file and decided
exactly, so the ban carries the same Failure. ``tests/test_replay_blocks.py``
holds both paths to the same results.

Shares of the file are read in worker processes, one per CPU; the parent counts
their failures in file order, since windows and bans depend on that order.
"""

from __future__ import annotations

import gc
import os
import re
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise, repeat
from multiprocessing import get_context
from operator import add, call, itemgetter
from socket import inet_aton
from typing import Any, Literal

from journalban.addresses import CANONICAL_IPV4
from journalban.grammar import Grammar, scan_translate
from journalban.grammar.grammar import normalise_address
from journalban.grammar.scan import LINE_END, compiled_database, hyperscan_available, long_line_ends
from journalban.sources.lines import BLOCK
from journalban.sources.syslog.rfc3164 import SECOND_OF, StampSeconds
from journalban.windows import WindowKey, window_key

# A line holding any of these bytes goes to the exact path: outside ASCII the rules
# speak Unicode, and \x1c-\x1f are whitespace to a text pattern's \s but not to bytes'.
_UNSURE = rb"[\x1c-\x1f\x80-\xff][^\n]*$"
_CR_AT_END = rb"\r$"  # the exact path takes the \r off first: such a line goes there, if a rule may match it
_UNSURE_ID, _LONG_ID, _CR_ID, _FIRST_RULE = 0, 1, 2, 3
_ID_BITS = 10  # a hit is ``end << _ID_BITS | id``: one int, sorted by end then id
_MAX_RULES = (1 << _ID_BITS) - _FIRST_RULE
# ``journalban.sources.lines._COMMON_HEADER`` for bytes, with the stamp as a group, its
# minute and its ":ss" as groups within it, then the host, the app and the pid. A second
# past 59 (no time at all, to the exact path) leaves a line to the exact path whole.
_HEADER_OF_APPS = (
    rb"(([A-Z][a-z]{2} {1,2}[0-9]{1,2} [0-9]{2}:[0-9]{2})(:[0-5][0-9])) "
    rb"(\S{1,255}) (%s)(?:\[([^\s\]]{1,128})\])?: "
)
_ANY_APP = rb"[^\s\[\]:]{1,48}"
_HEADER = re.compile(_HEADER_OF_APPS % _ANY_APP)
_STAMP, _MINUTE, _SECOND, _APP = 1, 2, 3, 5
_HEADER_GROUPS = _HEADER.groups
_NEWLINE = ord("\n")
# Flags under which a rule's pattern can follow _HEADER in one regex and read as it does alone
# (the header has no ``.``, ``^`` or ``$``; case and verbose flags would change it).
_HEADED_FLAGS = re.DOTALL | re.MULTILINE
_ADDRESS_MEMORY = 200_000
_DOTTED_QUAD = re.compile(CANONICAL_IPV4.pattern.encode())  # as inet_ntoa and normalise_address write it
SHARE_MIN = 8 << 20  # bytes: a smaller file is read in one process, without workers

@dataclass
class ShareResult:
    """One share of the file: its failures in order as columns (cheap to send between
    processes), the lines left to the exact path with their place among them, and
    what needs no order."""

    times: array[float] = field(default_factory=lambda: array("d"))
    addresses: list[str] = field(default_factory=list)
    keys: list[WindowKey] = field(default_factory=list)  # the detector's, worked out here
    starts: array[int] = field(default_factory=lambda: array("q"))  # the line's offsets in the file
    ends: array[int] = field(default_factory=lambda: array("q"))
    exact: list[tuple[int, str]] = field(default_factory=list)  # (failures before it, line)
    matched: Counter[int] = field(default_factory=Counter)  # rule index → failures
    ignored: Counter[str] = field(default_factory=Counter)
    lines: int = 0

    def __len__(self) -> int:
        """How many lines it decided, or left to the exact path."""
        return len(self.addresses) + len(self.exact) + sum(self.ignored.values())

    def in_order(self) -> Iterator[tuple[int, int] | str]:
        """Runs of failures (their index range), and each line left to the exact path between
        them, in file order."""
        done = 0
        for before, line in self.exact:
            if before > done:
                yield done, before
            done = before
            yield line
        if len(self.addresses) > done:
            yield done, len(self.addresses)


@dataclass(frozen=True)
class _Rule:
    name: str
    ignore: bool
    pattern: re.Pattern[bytes]
    headed: re.Pattern[bytes] | None  # _HEADER then the pattern: a syslog line in one fullmatch
    address: int  # the regex group that holds the address, or else
    other_addresses: tuple[int, ...]  # those that may hold it instead (an endpoint's forms)
    stamps: tuple[int, ...]  # the regex groups that may hold a captured stamp


class BlockDecider:
    """A grammar's rules as one hyperscan database and as bytes patterns, for one file
    format (``syslog`` or ``raw``); built only where every rule can be (see ``build``)."""

    def __init__(self, grammar: Grammar, file_format: str, source: str, read_time: datetime,
                 rules: list[_Rule], database: Any) -> None:
        self.grammar = grammar
        self.file_format = file_format
        self.source = source
        self.read_time = read_time
        self._rules = rules
        self._database = database
        self._stamp_seconds = StampSeconds(read_time)
        self._whole_minutes = self._stamp_seconds.whole_minutes
        self._captured: dict[tuple[bytes, float], float | None] = {}
        self._apps: dict[bytes, bool] = {}  # syslog app → whether the grammar reads it
        self._reads_raw = grammar.selector.selects(source, None, {})  # raw: every line of this file, or none
        self._addresses: dict[bytes, tuple[str, WindowKey]] = {}  # as written → normalised; a botnet repeats
        # ids of the fail rules that read a syslog line in one fullmatch: a line several of them
        # may match is asked of each in order (an ignore rule among them must be asked first)
        self._headed_fail_rules = frozenset(_FIRST_RULE + index for index, rule in enumerate(rules)
                                            if rule.headed is not None and not rule.ignore)
        # The lane, by hit id: a fail rule whose address has one group and whose time is the
        # header's decides a syslog line it alone may match in one fullmatch of header and rule
        # (``_lane_match``, whose header names only apps the grammar reads), and its minute,
        # second and address (``_lane_address``) are taken from the match; any other id
        # never matches there, so its line is decided one by one.
        on_lane = [file_format == "syslog" and rule.headed is not None and not rule.ignore
                   and not rule.other_addresses and not rule.stamps for rule in rules]
        off: list[Any] = [_off_lane] * _FIRST_RULE
        self._lane_match: list[Any] = off + [
            rule.headed.fullmatch if lane and rule.headed is not None else _off_lane
            for rule, lane in zip(rules, on_lane, strict=True)]
        self._lane_address: list[Any] = [itemgetter(1)] * _FIRST_RULE + [
            itemgetter(rule.address + _HEADER_GROUPS) for rule in rules]

    @classmethod
    def build(cls, grammar: Grammar, file_format: str, source: str, read_time: datetime) -> BlockDecider | None:
        """None where the fast path cannot promise the exact path's results: no hyperscan
        here, another format, a rule whose pattern is not ASCII or not valid for bytes,
        or one hyperscan's translation does not cover."""
        if file_format not in ("syslog", "raw") or not hyperscan_available() or len(grammar.rules) > _MAX_RULES:
            return None
        rules: list[_Rule] = []
        apps = _read_apps(grammar, source)
        expressions: list[bytes] = [_UNSURE, _CR_AT_END]
        ids: list[int] = [_UNSURE_ID, _CR_ID]
        for index, rule in enumerate(grammar.rules):
            flags = rule.pattern.flags & ~re.UNICODE
            try:
                pattern = re.compile(rule.pattern.pattern.encode("ascii"), flags)
                body = scan_translate.translate(rule.pattern)
            except (UnicodeEncodeError, re.error, scan_translate.Untranslatable):
                return None
            headed = None
            if file_format == "syslog" and apps is not None and not flags & ~_HEADED_FLAGS:
                try:
                    headed = re.compile(_HEADER_OF_APPS % apps + b"(?:" + pattern.pattern + b")", flags)
                except re.error:  # a flag written inline at the pattern's start
                    headed = None
            groups = rule.pattern.groupindex
            addresses = [groups[group] for group, name in rule.captures if name == "address"] or [0]  # ignore rules
            rules.append(_Rule(rule.name, rule.action == "ignore", pattern, headed, addresses[0], tuple(addresses[1:]),
                               tuple(groups[group] for group, name in rule.captures if name == "stamp")))
            if body is not None:  # None: it matches no ASCII line, which is all this path decides
                expressions.append(b"(?:" + body.encode("ascii") + b")" + LINE_END)
                ids.append(_FIRST_RULE + index)
        try:
            database = compiled_database(expressions, ids=ids)
        except Exception:  # hyperscan.error: the exact path does without
            return None
        return cls(grammar, file_format, source, read_time, rules, database)

    def share(self, read: Callable[[int, int], bytes], start: int, stop: int, block: int = BLOCK) -> ShareResult:
        """The lines of the file between offsets ``start`` and ``stop`` (both at a line's
        start), read by ``read(offset, size)`` a block of whole lines at a time."""
        with collector_paused():
            return self._share(read, start, stop, block)

    def _share(self, read: Callable[[int, int], bytes], start: int, stop: int, block: int) -> ShareResult:
        result = ShareResult()
        pending = b""  # a line longer than a block, begun in the blocks before
        offset = start  # file offset of the next line to decide
        while offset < stop:
            data = read(offset + len(pending), min(block, stop - offset - len(pending)))
            if not data:
                break
            buffer = pending + data if pending else data
            # Up to its last newline; the line begun after it is read again with the next
            # block, which copies a line, not the block.
            cut = len(buffer) if offset + len(buffer) >= stop else buffer.rfind(b"\n") + 1
            if cut == 0:
                pending = buffer  # no line ends in it yet
                continue
            self._block(buffer, cut, offset, result)
            pending = b""
            offset += cut
        if pending:
            self._block(pending, len(pending), offset, result)
        return result

    def _block(self, block: bytes, cut: int, base: int, result: ShareResult) -> None:
        """Decide the flagged lines of ``block`` up to ``cut`` (whole lines; file offset ``base``);
        what follows ``cut`` is the start of a line decided with the next block."""
        last_newline = block[cut - 1] == _NEWLINE
        result.lines += block.count(b"\n", 0, cut) + (0 if last_newline else 1)
        limit = cut - 1 if last_newline else cut  # where the block's last line ends
        hits: list[int] = []
        add = hits.append

        def on_match(rule_id: int, _start: int, end: int, _flags: int, _context: object) -> None:
            add(end << _ID_BITS | rule_id)

        self._database.scan(block, match_event_handler=on_match)
        hits += [end << _ID_BITS | _LONG_ID for end in long_line_ends(block)]
        hits.sort()
        while hits and hits[-1] >> _ID_BITS > limit:
            hits.pop()  # in the line after ``cut``, or after the last newline (no line there)
        if hits:
            self._decide(block, base, result, hits)

    def _decide(self, block: bytes, base: int, result: ShareResult, hits: list[int]) -> None:
        """The lines ``hits`` flag, in file order: those on the lane a block at a time, in calls
        that loop in C; the rest (a line several expressions hit, an unknown app, an unsure
        line) one by one through ``_line``, and their failures put in their place."""
        mask = (1 << _ID_BITS) - 1
        ends = [hit >> _ID_BITS for hit in hits]
        ids = [hit & mask for hit in hits]
        lane_match = [self._lane_match[rule_id] for rule_id in ids]
        if len(set(ends)) < len(ends):  # a line several expressions hit leaves the lane
            seen = Counter(ends)
            lane_match = [match if seen[end] == 1 else _off_lane for match, end in zip(lane_match, ends, strict=True)]
        starts = [at + 1 for at in map(block.rfind, repeat(b"\n"), repeat(0), ends)]
        found = [m if m is not None else _NO_MATCH for m in map(call, lane_match, repeat(block), starts, ends)]
        minutes = list(map(_MINUTE_OF_MATCH, found))
        seconds = list(map(_SECOND_OF_MATCH, found))
        raws = list(map(call, map(self._lane_address.__getitem__, ids), found))
        # A time is its minute's start plus its second: no stamp is parsed on the lane. A
        # block holds hours of log, so its minutes are worked out once each, then looked up.
        minute_starts = list(map(self._whole_minutes.get, minutes))  # None: a minute not seen yet, or no match
        if None in minute_starts:
            unknown = {m for m, known in zip(minutes, minute_starts, strict=True) if known is None} - {None}
            for hour in {minute[:-3] for minute in unknown}:
                self._stamp_seconds.whole_hour(hour)
            for minute in unknown.difference(self._whole_minutes):
                self._stamp_seconds.whole_minute(minute)  # None: its lines leave the lane
            minute_starts = list(map(self._whole_minutes.get, minutes))
        times = [began + SECOND_OF[second] if began is not None else None
                 for began, second in zip(minute_starts, seconds, strict=True)]
        addresses = list(map(self._addresses.get, raws))  # None: first seen, or no address
        fresh = {raw for raw, address, when in zip(raws, addresses, times, strict=True)
                 if address is None and when is not None} - {None}
        if fresh:
            self._remember(fresh)
            addresses = list(map(self._addresses.get, raws))
        off_lane = [at for at, (when, address) in enumerate(zip(times, addresses, strict=True))
                    if when is None or address is None]
        done = 0
        index = 0
        while index < len(off_lane):
            at = off_lane[index]
            self._take(result, times, addresses, ids, starts, ends, base, done, at)
            last = at  # a line's hits are next to each other
            while last + 1 < len(ends) and ends[last + 1] == ends[at]:
                last += 1
            index += 1
            while index < len(off_lane) and off_lane[index] <= last:
                index += 1
            self._one(block, base, result, starts[at], ends[at], ids[at:last + 1])
            done = last + 1
        self._take(result, times, addresses, ids, starts, ends, base, done, len(ends))

    def _take(self, result: ShareResult, times: list[float | None], addresses: list[Any], ids: list[int],
              starts: list[int], ends: list[int], base: int, begin: int, stop: int) -> None:
        """The lane's failures ``begin`` to ``stop`` into ``result``."""
        if begin >= stop:
            return
        result.times.extend(times[begin:stop])  # type: ignore[arg-type]  # all floats on the lane
        result.addresses += map(itemgetter(0), addresses[begin:stop])
        result.keys += map(itemgetter(1), addresses[begin:stop])
        result.matched.update(map(_RULE_INDEX.__getitem__, ids[begin:stop]))
        result.starts.extend(map(add, starts[begin:stop], repeat(base)))
        result.ends.extend(map(add, ends[begin:stop], repeat(base)))

    def _one(self, block: bytes, base: int, result: ShareResult, start: int, end: int, ids: list[int]) -> None:
        """One line off the lane, decided by ``_line`` or left to the exact path."""
        if ids == [_CR_ID]:
            return  # only its \r flagged it: no rule may match it
        decided = self._line(block, start, end, ids, result.ignored) if ids[0] >= _FIRST_RULE else None
        if decided is None:
            result.exact.append((len(result.addresses), block[start:end].decode("utf-8", "replace").rstrip("\r")))
        elif decided is not False:
            result.times.append(decided[0])
            result.addresses.append(decided[1][0])
            result.keys.append(decided[1][1])
            result.matched[decided[2]] += 1
            result.starts.append(base + start)
            result.ends.append(base + end)

    def _address(self, raw: bytes) -> tuple[str, WindowKey] | None:
        """An address as written, normalised with its window key (None: not an address), remembered."""
        self._remember((raw,))
        return self._addresses.get(raw)

    def _remember(self, raws: Collection[bytes]) -> None:
        """Addresses as written, normalised with their window keys, remembered; one that is no
        address is not (the exact path rejects it, and says why). Each worker meets a botnet's
        addresses anew, so the common case, a dotted quad written as ``normalise_address``
        would write it, is read a block's worth at a time in calls that loop in C."""
        if len(self._addresses) + len(raws) > _ADDRESS_MEMORY:
            self._addresses.clear()
        quads = list(filter(_DOTTED_QUAD.fullmatch, raws))  # normalised already
        texts = list(map(bytes.decode, quads))
        self._addresses.update(zip(quads, zip(texts, map(int.from_bytes, map(inet_aton, texts)), strict=True),
                                   strict=True))
        if len(quads) < len(raws):
            for raw in set(raws).difference(quads):
                normalised = normalise_address(raw.decode("ascii"))
                if normalised is not None:
                    self._addresses[raw] = (normalised, window_key(normalised))

    def _line(self, block: bytes, start: int, end: int, ids: list[int],
              ignored: Counter[str]) -> tuple[float, tuple[str, WindowKey], int] | Literal[False] | None:
        """A failure's (time, (address, window key), rule index); False for a line no rule takes (or
        an ignore rule does: counted in ``ignored``); None: the exact path decides it."""
        rules = self._rules
        when = 0.0
        if self.file_format == "syslog":
            if len(ids) == 1 or self._headed_fail_rules.issuperset(ids):  # header and rule in one fullmatch
                for rule_id in ids:
                    rule = rules[rule_id - _FIRST_RULE]
                    if rule.headed is None:
                        break
                    found = rule.headed.fullmatch(block, start, end)
                    if found is not None:
                        stamped = self._stamp_seconds(found[_STAMP])
                        if stamped is None:
                            return None
                        if not self._selects(found[_APP]):
                            return False
                        if rule.ignore:
                            ignored[rule.name] += 1
                            return False
                        return self._failure(found, rule, rule_id - _FIRST_RULE, stamped, _HEADER_GROUPS)
            header = _HEADER.match(block, start, end)
            if header is None:
                return None
            stamped = self._stamp_seconds(header[_STAMP])
            if stamped is None:
                return None
            when = stamped
            if not self._selects(header[_APP]):
                return False
            start = header.end()
        elif not self._reads_raw:
            return False
        if len(ids) > 1:  # every ignore rule before any fail rule, as Grammar.decide asks them
            for rule_id in ids:
                rule = rules[rule_id - _FIRST_RULE]
                if rule.ignore and rule.pattern.fullmatch(block, start, end) is not None:
                    ignored[rule.name] += 1
                    return False
        for rule_id in ids:
            rule = rules[rule_id - _FIRST_RULE]
            found = rule.pattern.fullmatch(block, start, end)
            if found is None:
                continue
            if rule.ignore:
                ignored[rule.name] += 1
                return False
            return self._failure(found, rule, rule_id - _FIRST_RULE, when, 0)
        return False

    def _selects(self, app: bytes) -> bool:
        """Whether the grammar reads this syslog app's lines."""
        selected = self._apps.get(app)
        if selected is None:
            selected = self._apps[app] = self.grammar.selector.selects(self.source, app.decode("ascii"), {})
        return selected

    def _failure(self, found: re.Match[bytes], rule: _Rule, index: int, when: float,
                 shift: int) -> tuple[float, tuple[str, WindowKey], int] | None:
        """The failure a fail rule's match makes (its groups ``shift`` places on, past a
        header's); None where the exact path must decide."""
        raw = found[rule.address + shift]
        if raw is None:
            raw = next(found[group + shift] for group in rule.other_addresses if found[group + shift] is not None)
        address = self._addresses.get(raw) or self._address(raw)
        if address is None:
            return None
        for group in rule.stamps:
            if found[group + shift] is not None:
                when = self._stamped(found[group + shift], when)
                break
        else:
            if self.file_format == "raw":
                when = self.read_time.timestamp()
        return when, address, index

    def _stamped(self, stamp: bytes, when: float) -> float:
        """A captured stamp's time, as ``replay._Failures`` reads it: relative to the
        event's time (the header's, or the moment of reading for ``raw``), which it
        falls back to if the stamp cannot be read."""
        reference = when if self.file_format == "syslog" else self.read_time.timestamp()
        key = (stamp, reference)
        seconds = self._captured.get(key, -1.0)
        if seconds == -1.0:
            stamped = self.grammar.stamp_time(stamp.decode("ascii"), datetime.fromtimestamp(reference, UTC))
            seconds = self._captured[key] = None if stamped is None else stamped.timestamp()
            if len(self._captured) > 100_000:
                self._captured.clear()
        return reference if seconds is None else seconds


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off meanwhile: a replay makes a tuple or two a failure and no
    cycles, yet the collector, set off by the count of new objects, walked the windows and
    results again and again (6% of a replay's time, 14% of its loop)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_apps(grammar: Grammar, source: str) -> bytes | None:
    """The header's app for the lane's patterns: the apps the grammar reads from this source,
    as alternatives, so a line the lane matches is one the grammar reads (``_ANY_APP`` where
    it reads every app); None where it reads none."""
    selector = grammar.selector
    if selector.selects(source, " ", {}):  # no app is named so: every app is read
        return _ANY_APP
    names = sorted(name.encode("ascii") for name in grammar.syslog_apps
                   if name.isascii() and selector.selects(source, name, {}))
    names = [name for name in names if _ANY_APP_NAME.fullmatch(name)]  # else the header never reads it
    return b"|".join(map(re.escape, names)) if names else None


_ANY_APP_NAME = re.compile(_ANY_APP)
_MINUTE_OF_MATCH, _SECOND_OF_MATCH = itemgetter(_MINUTE), itemgetter(_SECOND)


class _NoMatch:
    """Where the lane's fullmatch found nothing: every group of it is None."""

    def __getitem__(self, group: int) -> None:
        return None


_NO_MATCH = _NoMatch()
_RULE_INDEX = list(range(-_FIRST_RULE, (1 << _ID_BITS) - _FIRST_RULE))  # hit id → rule index


def _off_lane(_block: bytes, _start: int, _end: int) -> None:
    """The lane's fullmatch for an id that is not on it."""
    return None


def shares(fd: int, begin: int, size: int, count: int) -> list[tuple[int, int]]:
    """``count`` spans of about equal size covering bytes ``begin`` to ``size``, each
    starting at a line's start (fewer where lines are long)."""
    cuts = [begin]
    for k in range(1, count):
        at = max(begin + (size - begin) * k // count, cuts[-1])
        while at < size:
            piece = os.pread(fd, 1 << 16, at)
            newline = piece.find(b"\n")
            if newline >= 0:
                at += newline + 1
                break
            at += len(piece)
        if at >= size:
            break
        if at > cuts[-1]:
            cuts.append(at)
    cuts.append(size)
    return list(pairwise(cuts))


_INHERITED: dict[str, tuple[BlockDecider, int]] = {}  # the decider and file, for forked workers


def _read_share(span: tuple[int, int]) -> ShareResult:
    decider, fd = _INHERITED["share"]
    return decider.share(lambda offset, size: os.pread(fd, size, offset), *span)


def decided_shares(decider: BlockDecider, fd: int, begin: int, size: int, workers: int) -> Iterator[ShareResult]:
    """Every share of the file from ``begin`` on, decided, in file order: in ``workers``
    forked processes when that is more than one and the file is big enough, else here."""
    spans = shares(fd, begin, size, max(1, min(workers * 4, (size - begin) // SHARE_MIN)))
    if workers <= 1 or len(spans) == 1:
        for span in spans:
            yield decider.share(lambda offset, length: os.pread(fd, length, offset), *span)
        return
    _INHERITED["share"] = (decider, fd)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            yield from pool.map(_read_share, spans)
    finally:
        _INHERITED.clear()


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
