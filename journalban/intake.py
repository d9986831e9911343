"""Opening the sources the enabled jails need, and handing their batches to the pipeline.

Files are polled, journald wakes the loop through its reader's descriptor, the
syslog listener calls back. Each batch goes to the pipeline with the position
it reached (file offset, journal cursor; syslog has none), which the pipeline
commits together with what the batch produced. Supervision lives here too: a
source that fails to open is logged and retried, never fatal to the others.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from journalban.config import Config, JailConfig
from journalban.events import Event
from journalban.grammar import Grammar
from journalban.ledger.store import Ledger
from journalban.match import JailMatcher, prefilter, prefilter_bytes, syslog_keep
from journalban.pipeline import Pipeline
from journalban.sources.files import FileFollower
from journalban.sources.journal import JournalCursor, JournalError, JournalSource
from journalban.sources.journal_follow import JournalFollower
from journalban.sources.ledger_bans import LEDGER
from journalban.sources.lines import line_event
from journalban.sources.syslog import SyslogListener

log = logging.getLogger(__name__)

JOURNAL = "journal"
RETRY_OPEN = 30.0  # seconds between attempts to open a source that failed


def file_source(path: str) -> str:
    return f"file:{path}"


def syslog_source(url: str) -> str:
    return f"syslog:{url}"


def matchers(config: Config, jails: Sequence[JailConfig], grammars: dict[str, Grammar]) -> dict[str, list[JailMatcher]]:
    """Which jails read which source."""
    out: dict[str, list[JailMatcher]] = {}
    for jail in jails:
        matcher = JailMatcher(jail.name, grammars[jail.grammar])
        names = [file_source(p) for p in jail.files]
        names += [JOURNAL] if jail.journal else []
        names += [syslog_source(url) for url in config.syslog.listen] if jail.syslog else []
        names += [LEDGER] if jail.ledger_bans else []
        for name in names:
            out.setdefault(name, []).append(matcher)
    return out


class FollowedFile:
    """One followed file, read in the format its jails' grammars expect."""

    def __init__(self, path: str, follower: FileFollower, grammars: Sequence[Grammar]) -> None:
        self.source = file_source(path)
        self.follower = follower
        self.file_format = grammars[0].file_format
        self.trust_stamp = any(g.trusts_stamp for g in grammars)
        self.may_match = prefilter(grammars)
        self.lines = 0
        self.unparsed = 0

    def events(self, lines: Sequence[str], now: datetime) -> list[Event]:
        """Events of the lines any rule could match; the rest cannot be failures and are
        not even parsed."""
        self.lines += len(lines)
        events = []
        for line in lines:
            if not self.may_match(line):
                continue
            event = line_event(self.source, line, self.file_format, now, self.trust_stamp)
            if event is None:
                self.unparsed += 1
            else:
                events.append(event)
        return events


class Intake:
    def __init__(self, config: Config, jails: Sequence[JailConfig], grammars: dict[str, Grammar],
                 ledger: Ledger, pipeline: Pipeline, clock: Callable[[], datetime],
                 on_fatal: Callable[[BaseException], None] = lambda exc: None) -> None:
        self.config = config
        self.on_fatal = on_fatal  # a batch that cannot be recorded: the daemon must stop
        self.jails = list(jails)
        self.grammars = grammars
        self.ledger = ledger
        self.pipeline = pipeline
        self.clock = clock
        self.files: list[FollowedFile] = []
        self.journal: JournalSource | None = None
        self.journal_follower: JournalFollower | None = None
        self.syslog: SyslogListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._open_files()
        self._open_journal()
        await self._open_syslog()

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self.syslog is not None:
            await self.syslog.stop()  # stops accepting, drains what was received into the pipeline
        if self.journal_follower is not None:
            self.journal_follower.stop()
        if self.journal is not None:
            self.journal.close()
        for followed in self.files:
            followed.follower.close()

    @property
    def counters(self) -> dict[str, object]:
        out: dict[str, object] = {f.source: {"lines": f.lines, "unparsed": f.unparsed,
                                             "cut": f.follower.dropped_lines} for f in self.files}
        if self.journal is not None:
            out[JOURNAL] = dict(self.journal.counters)
        if self.syslog is not None:
            out["syslog"] = self.syslog.counters
        return out

    # --- files

    def _open_files(self) -> None:
        positions = self.ledger.positions()
        first_start = not positions and self.ledger.cursor(JOURNAL) is None
        by_path: dict[str, list[Grammar]] = {}
        for jail in self.jails:
            for path in jail.files:
                by_path.setdefault(path, []).append(self.grammars[jail.grammar])
        for path, grammars in sorted(by_path.items()):
            follower = FileFollower(path, positions.get(file_source(path)), first_start=first_start,
                                    max_line=self.config.file_max_line)
            followed = FollowedFile(path, follower, grammars)
            if any(g.file_format != followed.file_format for g in grammars):
                log.warning("%s is read by grammars expecting different formats; reading it as %s",
                            path, followed.file_format)
            self.files.append(followed)
            log.info("following %s (%s)", path, followed.file_format)

    def poll_files(self) -> None:
        for followed in self.files:
            for chunk in followed.follower.poll():
                now = self.clock()
                self.pipeline.process(followed.source, followed.events(chunk.lines, now), chunk.position, now)

    # --- journald

    def _open_journal(self) -> None:
        readers = [j for j in self.jails if j.journal]
        if not readers or not self.config.journal.enabled:
            return
        groups = list(dict.fromkeys(group for jail in readers
                                    for group in self.grammars[jail.grammar].journal_matches))
        cursor = self.ledger.cursor(JOURNAL)
        settings = self.config.journal
        source = JournalSource(groups, directory=settings.directory or None, files=settings.files,
                               cursor=cursor, since=settings.since,
                               may_match=prefilter_bytes(self.grammars[jail.grammar] for jail in readers))
        try:
            source.open()
        except JournalError as exc:
            log.error("journald: %s; retrying in %.0fs", exc, RETRY_OPEN)
            assert self._loop is not None
            self._retry = self._loop.call_later(RETRY_OPEN, self._open_journal)
            return
        self.journal = source
        assert self._loop is not None
        log.info("reading journald with %d match group(s)%s%s", len(groups),
                 f" after cursor {cursor.cursor[:40]}…" if cursor else f", since {settings.since}",
                 f", polling every {source.poll_interval}s" if source.poll_interval else "")
        # A batch that cannot be recorded stops the daemon: the reader has moved past
        # its entries, and only a restart, resuming at the committed cursor, keeps them.
        self.journal_follower = JournalFollower(source, self._journal_batch, self.on_fatal)
        self.journal_follower.start(self._loop)

    def _journal_batch(self, events: list[Event], cursor: JournalCursor | None) -> None:
        self.pipeline.process(JOURNAL, events, cursor, self.clock())

    # --- syslog

    async def _open_syslog(self) -> None:
        settings = self.config.syslog
        if not settings.listen or not any(j.syslog for j in self.jails):
            return
        listener = SyslogListener(
            settings.listen, self._syslog_batch, allow=settings.allow, max_message=settings.max_message,
            max_connections=settings.max_connections, idle_timeout=float(settings.idle_timeout),
            cert=settings.cert or None, key=settings.key or None, ca=settings.ca or None,
            keep=syslog_keep(self.grammars[jail.grammar] for jail in self.jails if jail.syslog),
            keep_raw=prefilter_bytes(self.grammars[jail.grammar] for jail in self.jails if jail.syslog))
        await listener.start()
        self.syslog = listener
        log.info("syslog listening on %s", ", ".join(listener.addresses.values()))

    def _syslog_batch(self, source: str, events: list[Event]) -> None:
        self.pipeline.process(source, events, None, self.clock())
