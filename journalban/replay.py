"""Replaying a log through one grammar, as ``fail2ban-regex`` does, and what it would ban.

The clock is the log's own: each line counts at its stamp (the grammar's, even one
the daemon would not trust, since nothing better exists for old lines; else the
syslog header's; else the moment it was read), and the detector's "now" is that
time, so windows and bans come out as they would have live.
"""

import io
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from journalban.detector import Detector, JailPolicy, Verdict
from journalban.events import BanDecision, Event, Failure
from journalban.grammar import Grammar, Match, Rejected
from journalban.grammar.scan import ENGINE_ENV, AllLines, BufferScanner, build_scanner
from journalban.match import prefilter
from journalban.replay_blocks import BlockDecider, collector_paused, cpu_count, decided_shares
from journalban.replay_fail2ban import datepattern_of, fail2ban_event
from journalban.sources.lines import BLOCK, FlaggedLines, line_event, read_whole_lines
from journalban.windows import DictWindows

if TYPE_CHECKING:  # imported where used: a replay of a file needs neither SQLAlchemy nor systemd
    from journalban.ledger.store import Ledger

JAIL = "replay"
FAIL2BAN = "fail2ban"  # the file format that reads lines as fail2ban does (see replay_fail2ban)
LEDGER_BATCH = 10_000
STAMP_MEMORY = 100_000  # stamp texts whose time is remembered, then forgotten all at once
_UNREAD = datetime.min  # not yet in the stamp memory (None there means "unreadable")


@dataclass(frozen=True, slots=True)
class MatchedLine:
    """One line a fail rule matched: what ``--matches`` prints."""

    line: int
    rule: str
    address: str
    captures: dict[str, str]
    time: datetime

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "rule": self.rule, "address": self.address,
                "captures": self.captures, "time": self.time.isoformat()}


@dataclass
class ReplaySummary:
    grammar: str
    maxretry: int
    findtime: int
    lines: int = 0
    matched: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    missed: int = 0
    missed_lines: list[tuple[int, str]] = field(default_factory=list)
    bans: list[BanDecision] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "grammar": self.grammar, "lines": self.lines, "matched": sum(self.matched.values()),
            "matched_per_rule": dict(self.matched), "ignored": sum(self.ignored.values()),
            "ignored_per_rule": dict(self.ignored), "rejected": self.rejected, "missed": self.missed,
            "maxretry": self.maxretry, "findtime": self.findtime,
            "bans": [{"address": b.address, "start": b.start.isoformat(), "failures": b.failure_count}
                     for b in self.bans],
            "banned_addresses": len({b.address for b in self.bans}),
            "seconds": round(self.seconds, 3), "lines_per_second": round(self.lines_per_second),
        }


@dataclass(frozen=True)
class ReplayOptions:
    maxretry: int = 5
    findtime: int = 600
    bantime: int = 600
    show_missed: int = 0
    on_match: Callable[[MatchedLine], None] | None = None
    ledger: "Ledger | None" = None  # where failures and would-be bans are written, if anywhere
    read_time: datetime | None = None  # the time of lines without a readable stamp (default: now)
    workers: int = 0  # processes reading shares of a big file (see replay_blocks); 0: one per CPU


def replay_lines(lines: Iterable[str], grammar: Grammar, file_format: str, source: str,
                 options: ReplayOptions) -> ReplaySummary:
    """Replay a log file's lines, read in ``file_format``."""
    return replay(_events(enumerate(lines, start=1), grammar, file_format, source, options.read_time),
                  grammar, options)


def replay_file(stream: BinaryIO, grammar: Grammar, file_format: str, source: str, options: ReplayOptions,
                scanner: BufferScanner | None = None, block: int = BLOCK) -> ReplaySummary:
    """Replay a log file read a block at a time: only the lines the grammar's scanner
    flags (see ``journalban.grammar.scan``) reach the per-line path, the rest are missed.
    ``fail2ban`` format cuts each line's date out first, so every line takes that path.
    A regular file replayed for its summary alone takes the fast path of
    ``journalban.replay_blocks``, which gives the same summary."""
    if scanner is None and file_format != FAIL2BAN:
        summary = _replay_blocks(stream, grammar, file_format, source, options)
        if summary is not None:
            return summary
    if file_format == FAIL2BAN:
        scanner = AllLines()
    elif scanner is None:
        scanner = build_scanner(grammar)
    flagged = FlaggedLines(read_whole_lines(stream, block), scanner.flagged, options.show_missed)
    return replay(_events(flagged, grammar, file_format, source, options.read_time), grammar, options,
                  lambda: flagged.lines, every_source=file_format == FAIL2BAN)


def _replay_blocks(stream: BinaryIO, grammar: Grammar, file_format: str, source: str,
                   options: ReplayOptions) -> ReplaySummary | None:
    """The fast path, or None where it does not apply: the summary needs each line's
    number (``--matches``, ``--show-missed``) or every failure (``--ledger``), the
    stream is not a regular file, a scanner is forced (``$JOURNALBAN_SCANNER``), or the
    grammar's rules do not allow it."""
    if options.on_match is not None or options.ledger is not None or options.show_missed:
        return None
    if os.environ.get(ENGINE_ENV, "hyperscan") != "hyperscan":
        return None  # a scanner forced, e.g. to compare them
    try:
        fd, begin = stream.fileno(), stream.tell()
        status = os.fstat(fd)
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    size = status.st_size
    read_time = options.read_time or datetime.now(UTC)
    decider = BlockDecider.build(grammar, file_format, source, read_time)
    if decider is None:
        return None
    run = _Replay(grammar, options)
    may_match = prefilter([grammar])
    rules = [rule.name for rule in grammar.rules]

    def failure_at(start: int, end: int) -> Failure:
        """The failure on the file's line at these offsets, decided by the exact path."""
        event = line_event(source, os.pread(fd, end - start, start).decode("utf-8", "replace"), file_format,
                           read_time)
        assert event is not None
        found = grammar.decide(event.message)[1]
        assert isinstance(found, Match), "the fast path and the exact path disagree"
        return run.failure_of(found, event)

    lines = seen = 0
    matched = [0] * len(rules)
    count_each, line, ban = run.detector.count_each, run.line, run.ban
    with collector_paused():
        for share in decided_shares(decider, fd, begin, size, options.workers or cpu_count()):
            lines += share.lines
            seen += len(share)
            run.summary.ignored.update(share.ignored)
            for rule, n in share.matched.items():
                matched[rule] += n
            for run_or_line in share.in_order():
                if isinstance(run_or_line, str):
                    line(0, run_or_line,
                         line_event(source, run_or_line, file_format, read_time) if may_match(run_or_line) else None)
                    continue
                low, high = run_or_line
                for index, reached in count_each(JAIL, share.times[low:high], share.addresses[low:high],
                                                 share.keys[low:high]):
                    ban(failure_at(share.starts[low + index], share.ends[low + index]), reached)
    run.summary.matched.update({rule: n for rule, n in zip(rules, matched, strict=True) if n})
    stream.seek(size)
    return run.finish(lines, seen)


def _events(lines: Iterable[tuple[int, str]], grammar: Grammar, file_format: str, source: str,
            read_time: datetime | None) -> Iterator[tuple[int, str, Event | None]]:
    """Each line with its event, or None where no rule's literal is in it."""
    read_time = read_time or datetime.now(UTC)
    may_match = prefilter([grammar])
    if file_format == FAIL2BAN:
        datepattern = datepattern_of(grammar)
        for number, line in lines:
            event = fail2ban_event(source, line, datepattern, read_time)
            yield number, line, event if may_match(event.message) else None
        return
    for number, line in lines:
        yield number, line, line_event(source, line, file_format, read_time) if may_match(line) else None


def journal_events(directory: str, grammar: Grammar) -> Iterator[tuple[int, str, Event]]:
    """Every entry of a journal directory that the grammar's ``applies journal`` lines select, numbered."""
    from journalban.sources.journal import JournalSource

    number = 0
    with JournalSource(grammar.journal_matches, directory=directory, since="all") as source:
        source.open()
        while True:
            events, _ = source.read()
            for event in events:
                number += 1
                yield number, event.message, event
            if not source.more_pending:
                return


def replay(records: Iterable[tuple[int, str, Event | None]], grammar: Grammar, options: ReplayOptions,
           lines: Callable[[], int] | None = None, every_source: bool = False) -> ReplaySummary:
    """``records`` give each line's number and text with its event, or None for a line
    that cannot be a failure (no rule's literal in it, or no syslog prefix): counted as
    missed. ``lines``, if given, counts the lines read once ``records`` is exhausted:
    those not in ``records`` are missed too. ``every_source``: the grammar's ``applies``
    lines are not asked (fail2ban-regex applies a filter to every line it is given)."""
    run = _Replay(grammar, options, every_source)
    seen = 0
    for number, text, event in records:
        seen += 1
        run.line(number, text, event)
    return run.finish(lines() if lines is not None else seen, seen)


class _Replay:
    """The detector and the tallies of one replay, fed a line at a time."""

    def __init__(self, grammar: Grammar, options: ReplayOptions, every_source: bool = False) -> None:
        self.summary = ReplaySummary(grammar.name, options.maxretry, options.findtime)
        self.detector = Detector({JAIL: JailPolicy(JAIL, options.maxretry, options.findtime, options.bantime)},
                                 DictWindows)  # faster to count into; a replay ends, and its memory with it
        self.grammar = grammar
        self.options = options
        self.every_source = every_source
        self.failure_of = _Failures(grammar)
        self.pending_failures: list[Failure] = []  # for the ledger, if any
        self.pending_bans: list[BanDecision] = []
        self.started = time.perf_counter()

    def line(self, number: int, text: str, event: Event | None) -> None:
        """One line: its event, or None for a line that cannot be a failure."""
        summary, options = self.summary, self.options
        if event is None or not (self.every_source or self.grammar.applies_to(event)):
            rule, found = None, None
        else:
            rule, found = self.grammar.decide(event.message)
        if isinstance(found, Match):
            assert event is not None
            failure = self.failure_of(found, event)
            summary.matched[found.rule] += 1
            if options.on_match is not None:
                options.on_match(MatchedLine(number, found.rule, found.address, dict(found.captures), failure.time))
            verdict, decision = self.detector.observe(failure, failure.time)
            if decision is not None:
                summary.bans.append(decision)
            if options.ledger is not None:
                if verdict is not Verdict.IGNORED:
                    self.pending_failures.append(failure)
                if decision is not None:
                    self.pending_bans.append(decision)
                if len(self.pending_failures) >= LEDGER_BATCH:
                    self._write()
        elif isinstance(found, Rejected):
            summary.rejected += 1
        elif rule is not None:
            summary.ignored[rule] += 1
        else:
            summary.missed += 1
            if len(summary.missed_lines) < options.show_missed:
                summary.missed_lines.append((number, text))

    def ban(self, last: Failure, reached: tuple[int, float]) -> None:
        """The ban that ``Detector.count`` said ``last`` opens (the fast path counts alone)."""
        self.summary.bans.append(self.detector.ban(last, *reached, last.time))

    def finish(self, lines: int, seen: int) -> ReplaySummary:
        """The summary, ``lines`` read in all of which ``seen`` were passed to ``line``."""
        summary = self.summary
        summary.missed += lines - seen
        summary.lines = lines
        if self.options.ledger is not None and (self.pending_failures or self.pending_bans):
            self._write()
        summary.seconds = time.perf_counter() - self.started
        return summary

    def _write(self) -> None:
        assert self.options.ledger is not None
        self.options.ledger.record(self.pending_failures, self.pending_bans, {}, datetime.now(UTC))
        self.pending_failures, self.pending_bans = [], []


class _Failures:
    """A match and its event as the replay jail's failure. The time of a stamp the rule
    captured is remembered per stamp text: a log repeats its stamps many times over."""

    def __init__(self, grammar: Grammar) -> None:
        self._grammar = grammar
        self._rules: dict[str, str] = {}
        self._stamps: dict[tuple[str, datetime], datetime | None] = {}

    def __call__(self, found: Match, event: Event) -> Failure:
        when = event.time
        if found.stamp is not None:
            key = (found.stamp, event.time)
            stamped = self._stamps.get(key, _UNREAD)
            if stamped is _UNREAD:
                if len(self._stamps) >= STAMP_MEMORY:
                    self._stamps.clear()
                stamped = self._stamps[key] = self._grammar.stamp_time(found.stamp, event.time)
            when = stamped or when
        rule = self._rules.get(found.rule)
        if rule is None:
            rule = self._rules[found.rule] = f"{self._grammar.name}/{found.rule}"
        return Failure(jail=JAIL, address=found.address, time=when, rule=rule, text=event.message,
                       source=event.source, captures=found.captures)
