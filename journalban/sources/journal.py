"""Read systemd's journal: entries selected inside libsystemd, delivered as ``Event``.

The source only moves entries: libsystemd filters them by the grammars' ``applies
journal`` matches, the source fetches the few fields a grammar can use and returns
them with the cursor of the last one. The daemon stores that cursor in the ledger in
the same transaction as the failures the entries produced and hands it back at
restart, so a crash neither loses nor double-counts an entry.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from systemd import journal

from journalban.durations import parse_duration
from journalban.events import Event

__all__ = ["SINCE_KEYWORDS", "JournalCursor", "JournalError", "JournalSource"]

log = logging.getLogger(__name__)

SINCE_KEYWORDS = ("now", "boot", "all")
SOURCE_NAME = "journal"

# Copied into Event.fields when present, with every field the matches name: what
# grammars select on. The trusted ones (_SYSTEMD_*, _EXE, _UID) are set by journald
# from the sender's credentials; SYSLOG_IDENTIFIER and _COMM any writer can forge.
SELECTOR_FIELDS = ("_SYSTEMD_UNIT", "_SYSTEMD_USER_UNIT", "_EXE", "_UID", "_COMM", "SYSLOG_IDENTIFIER")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class JournalError(RuntimeError):
    """The journal cannot be opened or read; the message says why."""


@dataclass(frozen=True, slots=True)
class JournalCursor:
    """journald's opaque position of one entry; reading resumes after it."""

    cursor: str

    def __str__(self) -> str:
        return self.cursor


def _decode(raw: bytes | list[bytes]) -> str:
    if isinstance(raw, list):  # a field an entry holds more than once: the first value
        raw = raw[0]
    return raw.decode("utf-8", errors="replace")


_Entry = dict[str, bytes | list[bytes]]


def _event(entry: _Entry, message: bytes | list[bytes], usec: int, keep: Sequence[str]) -> Event:
    """Build an ``Event`` from the raw fields of one entry."""
    fields = {name: _decode(entry[name]) for name in keep if name in entry}
    host = entry.get("_HOSTNAME")
    pid = entry.get("_PID")
    return Event(
        _EPOCH + timedelta(microseconds=usec),
        SOURCE_NAME,
        _decode(message),
        _decode(host) if host is not None else None,
        fields.get("SYSLOG_IDENTIFIER", fields.get("_COMM")),
        _pid(pid),
        fields,
    )


def _pid(raw: bytes | list[bytes] | None) -> int | None:
    try:
        return int(raw[0] if isinstance(raw, list) else raw) if raw is not None else None
    except ValueError:
        return None


def check_matches(matches: Sequence[Sequence[tuple[str, str]]]) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Validate ORed groups of ANDed ``(FIELD, VALUE)`` pairs without any I/O."""
    groups = tuple(tuple(group) for group in matches)
    if not groups or any(not group for group in groups):
        raise ValueError("journal matches must be one or more non-empty groups of (FIELD, VALUE) pairs")
    for group in groups:
        fields = [name for name, _ in group]
        for name in fields:
            if not name or not all(c.isupper() or c.isdigit() or c == "_" for c in name) or name[0].isdigit():
                raise ValueError(f"invalid journal field name {name!r}")
        if len(set(fields)) != len(fields):
            # libsystemd ORs matches on the same field, so an AND group could not say it.
            raise ValueError(f"journal match group names a field twice: {group!r}")
    return groups


def check_since(since: str) -> str:
    """``since`` must be a keyword or a duration; ``ValueError`` otherwise."""
    if since not in SINCE_KEYWORDS:
        try:
            parse_duration(since)
        except ValueError:
            raise ValueError(f"since must be one of {', '.join(SINCE_KEYWORDS)} or a duration like '10m', "
                             f"got {since!r}") from None
    return since


class JournalSource:
    """Follow the journal through one descriptor the caller polls.

    Use: ``open()``; call ``read()`` once, then each time ``fileno()`` is readable,
    and again at once while ``more_pending`` is true (a batch stopped at
    ``max_batch``: the descriptor does not become readable again for entries
    already written). ``read()`` calls ``process()`` itself, so a descriptor that
    signalled rotation or vacuuming (INVALIDATE) is handled by reading on.

    Where reading starts:

    * ``cursor`` given: just after that entry, so nothing is delivered twice. If
      the journal no longer holds it (vacuumed, or another journal), a warning is
      logged and reading starts at the oldest entry available.
    * otherwise ``since``: ``"now"`` after the last entry present (history is not
      replayed), ``"boot"`` this boot's entries (matched on the local boot id, so a
      ``directory`` copied from another machine yields nothing), ``"all"``
      everything, or a duration such as ``"10m"``: entries from that long ago on.
    """

    def __init__(
        self,
        matches: Sequence[Sequence[tuple[str, str]]],
        *,
        directory: str | None = None,
        files: Sequence[str] = (),
        cursor: JournalCursor | None = None,
        since: str = "now",
        max_batch: int = 10000,
    ) -> None:
        if directory is not None and files:
            raise ValueError("give a journal directory or journal files, not both")
        if max_batch < 1:
            raise ValueError("max_batch must be positive")
        self._groups = check_matches(matches)
        # Every field a match names travels too, so the matcher can re-check the grammar's selector.
        self._keep = tuple(dict.fromkeys([*SELECTOR_FIELDS, *(name for group in self._groups for name, _ in group)]))
        self._since = check_since(since)
        self._directory = directory
        self._files = tuple(files)
        self._cursor = cursor
        self._max_batch = max_batch
        self._reader: journal.Reader | None = None
        self._more_pending = False
        self._on_unread = False  # the reader stands on an entry not yet delivered
        self.counters: dict[str, int] = {"read": 0, "converted": 0, "skipped_no_message": 0, "invalidated": 0}

    @property
    def more_pending(self) -> bool:
        """The last ``read()`` stopped at ``max_batch``: call it again without waiting."""
        return self._more_pending

    def __str__(self) -> str:
        where = self._directory or ",".join(self._files) or "system journal"
        return f"journal({where})"

    # --- opening -------------------------------------------------------------

    def open(self) -> None:
        """Open the journal, install the matches and seek to the start position."""
        if self._reader is not None:
            raise JournalError(f"{self}: already open")
        self._check_paths()
        try:
            if self._directory is not None:
                reader = journal.Reader(path=self._directory)
            elif self._files:
                reader = journal.Reader(files=list(self._files))
            else:
                reader = journal.Reader()
        except OSError as exc:
            raise JournalError(f"{self}: cannot open: {exc.strerror or exc}") from exc
        try:
            if not self._directory and not self._files and not (
                reader.has_persistent_files() or reader.has_runtime_files()
            ):
                raise JournalError(f"{self}: no journal files found or readable in /var/log/journal or "
                                   "/run/log/journal (reading needs root or the systemd-journal group)")
            if not reader.reliable_fd():
                log.warning("%s: journal change notification is unreliable here (network file system?); "
                            "new entries may be seen late", self)
            resume = self._cursor is not None and self._cursor_exists(reader, self._cursor.cursor)
            self._add_matches(reader)
            if resume:
                assert self._cursor is not None
                self._seek_after(reader, self._cursor.cursor)
            else:
                self._seek_start(reader)
            reader.fileno()  # create the inotify descriptor now, so no change is missed before read()
        except BaseException:
            reader.close()
            raise
        self._reader = reader

    def _check_paths(self) -> None:
        if self._directory is not None and not os.path.isdir(self._directory):
            raise JournalError(f"{self}: {self._directory} is not a directory")
        if self._directory is not None and not os.access(self._directory, os.R_OK | os.X_OK):
            raise JournalError(f"{self}: {self._directory} is not readable")
        for path in self._files:
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise JournalError(f"{self}: {path} is not a readable file")

    def _cursor_exists(self, reader: journal.Reader, cursor: str) -> bool:
        """Whether the journal still holds the entry, tested before any match applies.

        Tested unfiltered so that a cursor whose entry the current matches no longer
        select (a grammar was changed) still resumes right after it.
        """
        try:
            reader.seek_cursor(cursor)
            found = bool(reader._next()) and bool(reader.test_cursor(cursor))
        except (OSError, ValueError):
            found = False
        if not found:
            log.warning("%s: cursor %s is no longer in the journal (vacuumed or rotated away?); "
                        "reading from the oldest entry available", self, cursor)
        return found

    def _add_matches(self, reader: journal.Reader) -> None:
        for number, group in enumerate(self._groups):
            if number:
                reader.add_disjunction()
            for name, value in group:
                reader.add_match(f"{name}={value}")
        if self._cursor is None and self._since == "boot":
            reader.add_conjunction()  # (group OR group ...) AND this boot
            reader.this_boot()

    def _seek_after(self, reader: journal.Reader, cursor: str) -> None:
        reader.seek_cursor(cursor)
        if reader._next() and not reader.test_cursor(cursor):
            # The entry itself is no longer selected: we stand on the first later
            # entry that is, and read() must deliver it before moving on.
            self._on_unread = True

    def _seek_start(self, reader: journal.Reader) -> None:
        if self._cursor is not None or self._since in ("all", "boot"):
            reader.seek_head()
        elif self._since == "now":
            reader.seek_tail()
            reader._previous()  # stand on the last entry present: read() starts after it
        else:
            reader.seek_realtime(time.time() - parse_duration(self._since))

    # --- reading -------------------------------------------------------------

    def fileno(self) -> int:
        """The descriptor that becomes readable when the journal changes."""
        return int(self._open_reader().fileno())

    def read(self) -> tuple[list[Event], JournalCursor | None]:
        """Drain up to ``max_batch`` entries; the cursor is the last entry's (``None`` if none)."""
        reader = self._open_reader()
        if reader.process() == journal.INVALIDATE:
            self.counters["invalidated"] += 1  # files rotated or vacuumed: libsystemd has re-scanned
        events: list[Event] = []
        fetch = reader._get_all  # one pass over the entry's fields, unlike one _get per field
        advance = reader._next
        realtime = reader._get_realtime
        count = 0
        while count < self._max_batch and (self._on_unread or advance()):
            self._on_unread = False
            count += 1
            entry = fetch()
            message = entry.get("MESSAGE")
            if message is None:
                self.counters["skipped_no_message"] += 1
                continue
            events.append(_event(entry, message, realtime(), self._keep))
        self._more_pending = count == self._max_batch
        self.counters["read"] += count
        self.counters["converted"] += len(events)
        cursor = JournalCursor(reader._get_cursor()) if count else None
        return events, cursor

    def _open_reader(self) -> journal.Reader:
        if self._reader is None:
            raise JournalError(f"{self}: not open")
        return self._reader

    # --- closing -------------------------------------------------------------

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
