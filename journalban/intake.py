"""Opening the sources the enabled jails need, and handing their batches to the pipeline.

Files are polled (a path written as a glob is expanded again every
``rescan_interval``, each file it matches followed on its own), journald wakes the
loop through its reader's descriptor, the syslog listener calls back. Each batch goes to the pipeline with the position
it reached (file offset, journal cursor; syslog has none), which the pipeline
commits together with what the batch produced. Supervision lives here too: a
source that fails to open is logged and retried, never fatal to the others.
"""

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from journalban.config import Config, JailConfig
from journalban.events import Event
from journalban.grammar import Grammar
from journalban.held_batches import HeldBatches
from journalban.ledger.store import Ledger
from journalban.match import JailMatcher, flagged_lines, prefilter_bytes, prefilter_marks, prefilter_spec, syslog_keep
from journalban.pipeline import Pipeline
from journalban.sources.files import FileFollower, Position
from journalban.sources.globs import expand, glob_matches, is_glob
from journalban.sources.journal import JournalCursor, JournalError, JournalSource
from journalban.sources.journal_follow import JournalFollower
from journalban.sources.journal_process import JournalProcess
from journalban.sources.ledger_bans import LEDGER
from journalban.sources.lines import flagged_events
from journalban.sources.syslog import SyslogListener

log = logging.getLogger(__name__)

JOURNAL = "journal"
RETRY_OPEN = 30.0  # seconds between attempts to open a source that failed
# Seconds before a journal reader process that died is started again; doubled at each death
# in a row, up to RETRY_OPEN (a journal that kills its reader at one entry is not spun on).
READER_RESTART = 1.0
VANISHED_AFTER = 300.0  # seconds a file a glob found may be missing (rotation) before it is let go
FILE_PREFIX = "file:"
MERGE_EVENTS = 4096  # candidate lines of a behind file per batch (a flood of failures: one slice)
MERGE_BYTES = 8 << 20  # bytes of a behind file per batch
MERGE_SECONDS = 0.1  # reading per batch, so the journal, syslog and control wait no longer


def file_source(path: str) -> str:
    return f"{FILE_PREFIX}{path}"


def syslog_source(url: str) -> str:
    return f"syslog:{url}"


class SourceJails(dict[str, list[JailMatcher]]):
    """Which jails read which source. A file that a jail's glob matches, found after this
    was built, is looked up among the globs the first time it is asked for."""

    def __init__(self, named: dict[str, list[JailMatcher]], globs: list[tuple[str, JailMatcher]]) -> None:
        super().__init__(named)
        self._globs = globs
        for source in [s for s in self if s.startswith(FILE_PREFIX)]:
            self[source] = self._with_globs(source, self[source])

    def get(self, source: str, default: Sequence[JailMatcher] = ()) -> Sequence[JailMatcher]:  # type: ignore[override]
        found = super().get(source)
        if found is None and self._globs and source.startswith(FILE_PREFIX):
            found = self[source] = self._with_globs(source, [])
        return default if found is None else found

    def _with_globs(self, source: str, named: list[JailMatcher]) -> list[JailMatcher]:
        path = source[len(FILE_PREFIX):]
        extra = [m for pattern, m in self._globs if m not in named and glob_matches(pattern, path)]
        return named + list(dict.fromkeys(extra))


def matchers(config: Config, jails: Sequence[JailConfig], grammars: dict[str, Grammar]) -> SourceJails:
    """Which jails read which source; a glob in ``files`` stands for every file it matches."""
    out: dict[str, list[JailMatcher]] = {}
    globs: list[tuple[str, JailMatcher]] = []
    for jail in jails:
        matcher = JailMatcher(jail.name, grammars[jail.grammar])
        names = [file_source(p) for p in jail.files if not is_glob(p)]
        globs += [(p, matcher) for p in jail.files if is_glob(p)]
        names += [JOURNAL] if jail.journal else []
        names += [syslog_source(url) for url in config.syslog.listen] if jail.syslog else []
        names += [LEDGER] if jail.ledger_bans else []
        for name in names:
            out.setdefault(name, []).append(matcher)
    return SourceJails(out, globs)


class FollowedFile:
    """One followed file, read in the format its jails' grammars expect."""

    def __init__(self, path: str, follower: FileFollower, grammars: Sequence[Grammar],
                 from_glob: bool = False) -> None:
        self.source = file_source(path)
        self.follower = follower
        self.file_format = grammars[0].file_format
        self.datepattern = grammars[0].selector.datepattern  # where the ``fail2ban`` format finds the date
        self.trust_stamp = any(g.trusts_stamp for g in grammars)
        self.flagged = flagged_lines(grammars)
        self.from_glob = from_glob  # found by a glob: let go once gone for good
        self.missing_since: float | None = None
        self.lines = 0
        self.unparsed = 0

    def events(self, block: bytes, now: datetime) -> list[Event]:
        """Events of the lines any rule could match; the rest cannot be failures and are
        not even decoded. In the ``fail2ban`` format the rules see each line with its date
        cut out (``replay_fail2ban``), where the grammar's ``datepattern`` finds it."""
        self.lines += block.count(b"\n")
        events, unparsed = flagged_events(block, self.flagged, self.source, self.file_format, now,
                                          self.trust_stamp, self.datepattern)
        self.unparsed += unparsed
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
        self.journal: JournalSource | JournalProcess | None = None
        self.journal_follower: JournalFollower | None = None
        self.syslog: SyslogListener | None = None
        self.syslog_batches = HeldBatches(self._syslog_batch)  # a flood's reads, recorded together
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._reader_restart = READER_RESTART
        self._next_rescan = 0.0  # time.monotonic() of the next glob expansion

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
        self.syslog_batches.flush()
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
            out["syslog"] = {**self.syslog.counters, "held_refused": self.syslog_batches.refused}
        return out

    # --- files

    def _wanted(self) -> dict[str, tuple[list[Grammar], bool]]:
        """Each file the jails name, or their globs match now: the grammars reading it, and
        whether only globs name it."""
        out: dict[str, tuple[list[Grammar], bool]] = {}
        for jail in self.jails:
            grammar = self.grammars[jail.grammar]
            for written in jail.files:
                globbed = is_glob(written)
                for path in expand(written) if globbed else [written]:
                    grammars, only_globbed = out.get(path, ([], True))
                    out[path] = ([*grammars, grammar], only_globbed and globbed)
        return out

    def _open_files(self) -> None:
        positions = self.ledger.positions()
        first_start = not positions and self.ledger.cursor(JOURNAL) is None
        for path, (grammars, from_glob) in sorted(self._wanted().items()):
            self._follow(path, grammars, positions.get(file_source(path)), first_start, from_glob)
        self._next_rescan = time.monotonic() + self.config.file_rescan_interval

    def _follow(self, path: str, grammars: list[Grammar], start: Position | None, first_start: bool,
                from_glob: bool) -> None:
        follower = FileFollower(path, start, first_start=first_start, max_line=self.config.file_max_line)
        followed = FollowedFile(path, follower, grammars, from_glob)
        if any((g.file_format, g.selector.datepattern) != (followed.file_format, followed.datepattern)
               for g in grammars):
            log.warning("%s is read by grammars expecting different formats or datepatterns; reading it as "
                        "the first one does (%s)", path, followed.file_format)
        self.files.append(followed)
        log.info("following %s (%s)", path, followed.file_format)

    def rescan_files(self) -> None:
        """Follow the files the globs match that appeared since the last time, from their
        start (they were created while we ran); let go of those gone for ``VANISHED_AFTER``."""
        self._next_rescan = time.monotonic() + self.config.file_rescan_interval
        if not any(is_glob(written) for jail in self.jails for written in jail.files):
            return
        followed = {f.follower.path for f in self.files}
        found = {path: wanted for path, wanted in self._wanted().items() if path not in followed}
        if found:
            positions = self.ledger.positions()
            held = {f.follower.position.inode for f in self.files if f.follower.position is not None}
            for path, (grammars, from_glob) in sorted(found.items()):
                try:
                    inode = os.stat(path).st_ino
                except OSError:
                    continue
                # A followed file renamed to a name the glob matches is still read by its
                # follower: from its end. Else the whole file is new, unless the ledger knows it.
                start = None if inode in held else positions.get(file_source(path), Position(inode, 0))
                self._follow(path, grammars, start, False, from_glob)
        now = time.monotonic()
        for file in [f for f in self.files if f.from_glob]:
            if os.path.exists(file.follower.path):
                file.missing_since = None
            elif file.missing_since is None:
                file.missing_since = now
            elif now - file.missing_since >= VANISHED_AFTER and not file.follower.behind:
                log.info("%s: gone for %.0fs, no longer followed", file.follower.path, VANISHED_AFTER)
                file.follower.close()
                self.files.remove(file)

    def poll_files(self) -> None:
        if time.monotonic() >= self._next_rescan:
            self.rescan_files()
        for followed in self.files:
            self._read(followed)

    def _read(self, followed: FollowedFile) -> None:
        """One batch of a file: a slice, or while the file is behind, slices until the batch
        holds ``MERGE_EVENTS`` candidate lines, ``MERGE_BYTES`` or ``MERGE_SECONDS`` of reading.
        One batch is one ledger transaction: a burst's failures go in a few large ones, each
        with the position after its last line, not one commit per 1 MiB slice."""
        events: list[Event] = []
        position: Position | None = None
        size = 0
        until = time.monotonic() + MERGE_SECONDS
        while True:
            chunks = followed.follower.poll()
            for chunk in chunks:
                events += followed.events(chunk.block, self.clock())
                position, size = chunk.position, size + len(chunk.block)
            if (not chunks or not followed.follower.behind or len(events) >= MERGE_EVENTS or size >= MERGE_BYTES
                    or time.monotonic() >= until):
                break
        if position is not None:
            self.pipeline.process(followed.source, events, position, self.clock(), more=followed.follower.behind)

    # --- journald

    def _open_journal(self) -> None:
        readers = [j for j in self.jails if j.journal]
        if not readers or not self.config.journal.enabled:
            return
        groups = list(dict.fromkeys(group for jail in readers
                                    for group in self.grammars[jail.grammar].journal_matches))
        cursor = self.ledger.cursor(JOURNAL)
        settings = self.config.journal
        grammars = [self.grammars[jail.grammar] for jail in readers]
        source: JournalSource | JournalProcess
        where: dict[str, Any] = {"directory": settings.directory or None, "files": settings.files, "cursor": cursor,
                 "since": settings.since, "poll_interval": settings.poll_interval or None}
        if settings.own_process:
            source = JournalProcess(groups, prefilter=prefilter_spec(grammars), **where)
        else:
            source = JournalSource(groups, may_match=prefilter_bytes(grammars), **where)
        try:
            source.open()
        except JournalError as exc:
            log.error("journald: %s; retrying in %.0fs", exc, RETRY_OPEN)
            assert self._loop is not None
            self._retry = self._loop.call_later(RETRY_OPEN, self._open_journal)
            return
        self.journal = source
        assert self._loop is not None
        log.info("reading journald with %d match group(s)%s%s%s", len(groups),
                 f" after cursor {cursor.cursor[:40]}…" if cursor else f", since {settings.since}",
                 f", polling every {source.poll_interval}s" if source.poll_interval else "",
                 " in a reader process" if isinstance(source, JournalProcess) else "")
        self.journal_follower = JournalFollower(source, self._journal_batch, self._journal_failed)
        self.journal_follower.start(self._loop)

    def _journal_batch(self, events: list[Event], cursor: JournalCursor | None) -> None:
        more = self.journal is not None and self.journal.behind
        self.pipeline.process(JOURNAL, events, cursor, self.clock(), more=more)
        self._reader_restart = READER_RESTART

    def _journal_failed(self, exc: BaseException) -> None:
        """The follower stopped. A batch that cannot be recorded stops the daemon: the reader
        has moved past its entries, and only a restart, resuming at the committed cursor,
        keeps them. A reader that failed (its process died: a crash, the OOM killer, a
        journal that breaks libsystemd) is started again after the cursor last recorded,
        while files, syslog and the firewall go on."""
        if not isinstance(exc, JournalError):
            self.on_fatal(exc)
            return
        if self.journal is not None:
            self.journal.close()
        self.journal, self.journal_follower = None, None
        delay, self._reader_restart = self._reader_restart, min(self._reader_restart * 2, RETRY_OPEN)
        log.error("journald: %s; reading again after the last recorded cursor in %.0fs", exc, delay)
        assert self._loop is not None
        self._retry = self._loop.call_later(delay, self._reopen_journal)

    def _reopen_journal(self) -> None:
        """``_open_journal`` once what was delivered is recorded, so the ledger's cursor is
        the last one delivered: nothing is read twice."""
        try:
            self.pipeline.commit_positions(self.clock())
        except Exception as exc:  # the ledger refuses: as for a batch, the daemon stops
            self.on_fatal(exc)
            return
        self._open_journal()

    # --- syslog

    async def _open_syslog(self) -> None:
        settings = self.config.syslog
        if not settings.listen or not any(j.syslog for j in self.jails):
            return
        grammars = [self.grammars[jail.grammar] for jail in self.jails if jail.syslog]
        listener = SyslogListener(
            settings.listen, self.syslog_batches.add, allow=settings.allow, max_message=settings.max_message,
            max_connections=settings.max_connections, idle_timeout=float(settings.idle_timeout),
            cert=settings.cert or None, key=settings.key or None, ca=settings.ca or None,
            keep=syslog_keep(grammars), keep_raw=prefilter_bytes(grammars), keep_block=prefilter_marks(grammars))
        await listener.start()
        self.syslog = listener
        log.info("syslog listening on %s", ", ".join(listener.addresses.values()))

    def _syslog_batch(self, source: str, events: list[Event]) -> None:
        self.pipeline.process(source, events, None, self.clock())
