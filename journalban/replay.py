"""Replaying a log through one grammar, as ``fail2ban-regex`` does, and what it would ban.

The clock is the log's own: each line counts at its stamp (the grammar's, even one
the daemon would not trust, since nothing better exists for old lines; else the
syslog header's; else the moment it was read), and the detector's "now" is that
time, so windows and bans come out as they would have live.
"""

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from journalban.detector import Detector, JailPolicy, Verdict
from journalban.events import BanDecision, Event, Failure
from journalban.grammar import Grammar, Match, Rejected
from journalban.ledger.store import Ledger
from journalban.match import prefilter
from journalban.sources.journal import JournalSource
from journalban.sources.lines import line_event

JAIL = "replay"
LEDGER_BATCH = 10_000


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
            "bans": [{"address": b.address, "start": b.start.isoformat(), "failures": len(b.failures)}
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
    ledger: Ledger | None = None  # where failures and would-be bans are written, if anywhere


def replay_lines(lines: Iterable[str], grammar: Grammar, file_format: str, source: str,
                 options: ReplayOptions) -> ReplaySummary:
    """Replay a log file's lines, read in ``file_format``."""
    read_time = datetime.now(UTC)
    may_match = prefilter([grammar])
    return replay(((line, line_event(source, line, file_format, read_time) if may_match(line) else None)
                   for line in lines), grammar, options)


def journal_events(directory: str, grammar: Grammar) -> Iterator[tuple[str, Event]]:
    """Every entry of a journal directory that the grammar's ``applies journal`` lines select."""
    with JournalSource(grammar.journal_matches, directory=directory, since="all") as source:
        source.open()
        while True:
            events, _ = source.read()
            yield from ((event.message, event) for event in events)
            if not source.more_pending:
                return


def replay(records: Iterable[tuple[str, Event | None]], grammar: Grammar, options: ReplayOptions) -> ReplaySummary:
    """``records`` pair each line's text with its event, or None for a line that cannot
    be a failure (no rule's literal in it, or no syslog prefix): counted as missed."""
    summary = ReplaySummary(grammar.name, options.maxretry, options.findtime)
    detector = Detector({JAIL: JailPolicy(JAIL, options.maxretry, options.findtime, options.bantime)})
    on_match, ledger, show_missed = options.on_match, options.ledger, options.show_missed
    pending_failures: list[Failure] = []
    pending_bans: list[BanDecision] = []
    started = time.perf_counter()
    for number, (text, event) in enumerate(records, start=1):
        summary.lines += 1
        applies = event is not None and grammar.applies_to(event)
        rule, found = grammar.decide(event.message) if applies and event is not None else (None, None)
        if isinstance(found, Match):
            assert event is not None
            failure = _failure(grammar, found, event)
            summary.matched[found.rule] += 1
            if on_match is not None:
                on_match(MatchedLine(number, found.rule, found.address, dict(found.captures), failure.time))
            verdict, decision = detector.observe(failure, failure.time)
            if verdict is not Verdict.IGNORED:
                pending_failures.append(failure)
            if decision is not None:
                summary.bans.append(decision)
                pending_bans.append(decision)
            if ledger is not None and len(pending_failures) >= LEDGER_BATCH:
                ledger.record(pending_failures, pending_bans, {}, datetime.now(UTC))
                pending_failures, pending_bans = [], []
        elif isinstance(found, Rejected):
            summary.rejected += 1
        elif rule is not None:
            summary.ignored[rule] += 1
        else:
            summary.missed += 1
            if len(summary.missed_lines) < show_missed:
                summary.missed_lines.append((number, text))
    if ledger is not None and (pending_failures or pending_bans):
        ledger.record(pending_failures, pending_bans, {}, datetime.now(UTC))
    summary.seconds = time.perf_counter() - started
    return summary


def _failure(grammar: Grammar, found: Match, event: Event) -> Failure:
    when = event.time
    if found.stamp is not None:
        when = grammar.stamp_time(found.stamp, event.time) or when
    return Failure(jail=JAIL, address=found.address, time=when, rule=f"{grammar.name}/{found.rule}",
                   text=event.message, source=event.source, captures=found.captures)
