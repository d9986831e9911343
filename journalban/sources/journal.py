"""Read systemd's journal: entries selected inside libsystemd, delivered as ``Event``.

The source only moves entries: libsystemd filters them by the grammars' ``applies
journal`` matches, the source fetches each entry's MESSAGE as bytes, drops those no
fail rule can match (the grammars' literal prefilter), converts the rest into events
and returns them with the cursor of the last entry read. The daemon stores that
cursor in the ledger in the same transaction as the failures the entries produced and
hands it back at restart, so a crash neither loses nor double-counts an entry.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import Self

from systemd import journal

from journalban.durations import parse_duration
from journalban.events import Event, new_event

__all__ = ["SINCE_KEYWORDS", "JournalCursor", "JournalError", "JournalSource", "Record"]

log = logging.getLogger(__name__)

SINCE_KEYWORDS = ("now", "boot", "all")
SOURCE_NAME = "journal"
POLL_INTERVAL = 0.25  # seconds; libsystemd's own advice (sd_journal_get_timeout) without reliable inotify
# journald coalesces its change notifications: the descriptor fires up to 250 ms after an
# entry is written (measured here: 370-490 ms on an idle journal), while a read sees the
# entry within 3 ms, since the files are shared memory. A ban waiting on the descriptor
# alone waits that long, so the daemon also reads on a short timer (``poll_interval``).

# Copied into Event.fields when present, with every field the matches name: what
# grammars select on. The trusted ones (_SYSTEMD_*, _EXE, _UID) are set by journald
# from the sender's credentials; SYSLOG_IDENTIFIER and _COMM any writer can forge.
SELECTOR_FIELDS = ("_SYSTEMD_UNIT", "_SYSTEMD_USER_UNIT", "_EXE", "_UID", "_COMM", "SYSLOG_IDENTIFIER")

# Fields that most entries share (root writes much of the journal). libsystemd tests the
# fields of a match group in the reverse order they were added, and an AND is cheapest
# when the rarest field proposes the candidates: these are added first, tested last.
# (1M-entry sshd corpus, ``U | (_EXE and _UID=0)``: the walk 0.48s -> 0.44s.)
BROAD_FIELDS = frozenset({"_UID", "_GID", "_BOOT_ID", "_MACHINE_ID", "_HOSTNAME", "_TRANSPORT", "PRIORITY"})

# What is_own reads; part of the memo key of _EventMaker.
OWN_FIELDS = ("_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "_UID")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_fromtimestamp = datetime.fromtimestamp


class JournalError(RuntimeError):
    """The journal cannot be opened or read; the message says why."""


@dataclass(frozen=True, slots=True)
class JournalCursor:
    """journald's opaque position of one entry; reading resumes after it."""

    cursor: str

    def __str__(self) -> str:
        return self.cursor


def _text(raw: bytes | list[bytes]) -> str:
    if isinstance(raw, list):  # a field an entry holds more than once: the first value
        raw = raw[0]
    return raw.decode("utf-8", errors="replace")


# Below this many microseconds since the epoch (the year 2106) a double holds the stamp to
# within half a microsecond, so the fast float conversion rounds to the exact value.
_FLOAT_EXACT_USEC = 2**32 * 1_000_000
_MAX_USEC = 253402300799999999  # 9999-12-31T23:59:59.999999Z, the last moment a datetime holds


def _time(usec: int) -> datetime:
    """The entry's realtime stamp; a corrupt one outside datetime's range counts as the epoch."""
    if 0 <= usec < _FLOAT_EXACT_USEC:
        return _fromtimestamp(usec / 1e6, UTC)
    return _EPOCH + timedelta(microseconds=usec) if 0 <= usec <= _MAX_USEC else _EPOCH


def _pid(raw: _Raw | None) -> int | None:
    try:
        return int(raw[0] if isinstance(raw, list) else raw) if raw is not None else None
    except ValueError:
        return None


_Raw = bytes | list[bytes]  # a field's value; a list when the entry holds the field more than once
_Entry = dict[str, _Raw]
_Key = tuple[_Raw | None, ...]  # _EventMaker.key_of
# An entry that may match, as a reader sends it: key_of, raw _PID, MESSAGE, realtime usec.
Record = tuple[_Key, _Raw | None, bytes, int]


def is_own(entry: _Entry) -> bool:
    """journalban's own log lines: never fed back into its grammars (a ban line repeats the
    attacker's text). Told by fields journald sets itself: the unit, or root's identifier."""
    get = entry.get
    return (get("_SYSTEMD_UNIT") == b"journalban.service"
            or (get("SYSLOG_IDENTIFIER") == b"journalban" and get("_UID") == b"0"))


_Origin = tuple[Mapping[str, str], str | None, str | None]  # fields, app, host; None: journalban's own line


class _EventMaker:
    """Events from raw entries; what a run of entries from one sender shares is decoded once.

    The kept fields, app and host of an entry, and whether it is journalban's own
    line, repeat for every entry of the same service, so they are worked out once
    per distinct set of raw values and the read-only mapping is shared. The memo is
    bounded: cleared past ``MEMO``.
    """

    MEMO = 1024

    def __init__(self, keep: Sequence[str]) -> None:
        self.keep = tuple(keep)
        # The memo key: every raw value the origin (and is_own) depends on.
        self.key_fields = tuple(dict.fromkeys((*self.keep, *OWN_FIELDS, "_HOSTNAME")))
        self._memo: dict[tuple[object, ...], _Origin | None] = {}
        # The last entry's key and origin: the next entry is most often the same sender's,
        # and comparing the raw values costs less than hashing them (each is a new bytes).
        self._last: tuple[tuple[object, ...], _Origin | None] = ((), None)

    def __call__(self, entry: _Entry, message: bytes, usec: int) -> Event | None:
        """The entry's event; None when it is journalban's own line."""
        return self.from_record(self.key_of(entry), entry.get("_PID"), message, usec)

    def events(self, records: Sequence[Record], counters: dict[str, int]) -> list[Event]:
        """The records' events; journalban's own lines dropped. Counts both in ``counters``
        (``converted``, ``own``)."""
        make = self.from_record
        events = [event for event in (make(*record) for record in records) if event is not None]
        counters["converted"] += len(events)
        counters["own"] += len(records) - len(events)
        return events

    def key_of(self, entry: _Entry) -> _Key:
        """The raw values the entry's origin depends on: a record's key (see ``from_record``)."""
        return tuple(map(entry.get, self.key_fields))

    def from_record(self, key: _Key, raw_pid: _Raw | None, message: bytes, usec: int) -> Event | None:
        """The event of an entry known by its ``key_of``, ``_PID``, ``MESSAGE`` and realtime
        stamp (what a journal reader process sends); None when it is journalban's own line."""
        last_key, origin = self._last
        if key != last_key:
            try:
                origin = self._memo[key]
            except KeyError:
                origin = self._origin(key)
                if len(self._memo) >= self.MEMO:
                    self._memo.clear()
                self._memo[key] = origin
            except TypeError:  # a field the entry holds more than once (a list): not memoised
                origin = self._origin(key)
            self._last = key, origin
        if origin is None:
            return None
        fields, app, host = origin
        try:
            pid: int | None = int(raw_pid)  # type: ignore[arg-type]  # None or a list: _pid's slow path
        except (TypeError, ValueError):
            pid = _pid(raw_pid)
        stamp = _fromtimestamp(usec / 1e6, UTC) if 0 <= usec < _FLOAT_EXACT_USEC else _time(usec)
        return new_event(stamp, SOURCE_NAME, message.decode("utf-8", "replace"), host, app, pid, fields)

    def _origin(self, key: _Key) -> _Origin | None:
        entry = {name: value for name, value in zip(self.key_fields, key, strict=True) if value is not None}
        if is_own(entry):
            return None
        fields = {name: _text(entry[name]) for name in self.keep if name in entry}
        host = entry.get("_HOSTNAME")
        return (MappingProxyType(fields), fields.get("SYSLOG_IDENTIFIER", fields.get("_COMM")),
                _text(host) if host is not None else None)


def kept_fields(groups: Sequence[Sequence[tuple[str, str]]]) -> tuple[str, ...]:
    """The fields an event carries: ``SELECTOR_FIELDS`` and every field the matches name, so
    the matcher can re-check the grammar's selector."""
    return tuple(dict.fromkeys([*SELECTOR_FIELDS, *(name for group in groups for name, _ in group)]))


def new_counters() -> dict[str, int]:
    """A reader's counters, all 0 (see docs/sources/journald.md)."""
    return {"read": 0, "converted": 0, "ruled_out": 0, "skipped_no_message": 0, "unreadable": 0, "own": 0,
            "invalidated": 0}


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


def merge_groups(groups: Sequence[Sequence[tuple[str, str]]]) -> list[tuple[tuple[str, tuple[str, ...]], ...]]:
    """The same selection in fewer groups, for libsystemd: groups naming the same fields
    that differ in one field's value become one group with those values (libsystemd ORs
    matches on one field inside a group). ``(A and x=1) or (A and x=2)`` is
    ``A and x in (1, 2)``; walking fewer groups makes each ``_next`` cheaper."""
    merged: list[dict[str, tuple[str, ...]]] = []
    for group in groups:
        current: dict[str, tuple[str, ...]] = {name: (value,) for name, value in group}
        for other in merged:
            if other.keys() != current.keys():
                continue
            differ = [name for name in current if set(other[name]) != set(current[name])]
            if len(differ) <= 1:
                for name in differ:
                    other[name] = tuple(dict.fromkeys(other[name] + current[name]))
                break
        else:
            merged.append(current)
    return [tuple(group.items()) for group in merged]


def add_matches(reader: journal.Reader, groups: Sequence[Sequence[tuple[str, str]]]) -> None:
    """Install the groups (ORed; each an AND of fields) on the reader, merged, broad fields first."""
    for number, group in enumerate(merge_groups(groups)):
        if number:
            reader.add_disjunction()
        for name, values in sorted(group, key=lambda field: field[0] not in BROAD_FIELDS):
            for value in values:
                reader.add_match(f"{name}={value}")


def check_since(since: str) -> str:
    """``since`` must be a keyword or a duration; ``ValueError`` otherwise."""
    if since not in SINCE_KEYWORDS:
        try:
            parse_duration(since)
        except ValueError:
            raise ValueError(f"since must be one of {', '.join(SINCE_KEYWORDS)} or a duration like '10m', "
                             f"got {since!r}") from None
    return since


BATCH_SECONDS = 0.005  # a read's time limit: a failure line in a file or on syslog waits no longer
_CLOCK_EVERY = 31  # entries between looks at the clock (a mask: every 32nd)


class JournalSource:
    """Follow the journal through one descriptor the caller polls.

    Use: ``open()``; call ``read()`` once, then each time ``fileno()`` is readable,
    and again at once while ``more_pending`` is true (a batch stopped at
    ``max_batch`` entries or ``max_seconds``: the descriptor does not become
    readable again for entries already written; the time limit hands the event
    loop back to files and syslog during a flood). ``read()`` calls ``process()`` itself, so a descriptor that
    signalled rotation or vacuuming (INVALIDATE) is handled by reading on. When
    the ``poll_interval`` property is not None the caller calls ``read()`` on that
    timer too: the one asked for (journald signals late), or ``POLL_INTERVAL`` at
    most where the descriptor may miss changes (a journal on a network file system).

    ``may_match(message_bytes)`` is the grammars' literal prefilter: entries it
    rules out are read past without building an ``Event``. ``poll`` forces (True)
    or forbids (False) the safety timer of an unreliable descriptor; None asks
    ``Reader.reliable_fd()``. ``poll_interval`` asks for a timer whatever the
    descriptor (None: none beyond the safety timer).

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
        max_seconds: float = BATCH_SECONDS,
        may_match: Callable[[bytes], bool] | None = None,
        poll: bool | None = None,
        poll_interval: float | None = None,
    ) -> None:
        if directory is not None and files:
            raise ValueError("give a journal directory or journal files, not both")
        if max_batch < 1:
            raise ValueError("max_batch must be positive")
        if poll_interval is not None and poll_interval <= 0:
            raise ValueError("poll_interval must be positive (None: no timer)")
        self._groups = check_matches(matches)
        # Every field a match names travels too, so the matcher can re-check the grammar's selector.
        self._make_event = _EventMaker(kept_fields(self._groups))
        self._since = check_since(since)
        # libsystemd watches journal files by absolute path only (a relative one fails in
        # fileno() with EDESTADDRREQ): made absolute against the current directory here.
        self._directory = os.path.abspath(directory) if directory is not None else None
        self._files = tuple(os.path.abspath(path) for path in files)
        self._cursor = cursor
        self._max_batch = max_batch
        self._max_seconds = max_seconds
        self._may_match = may_match
        self._poll = poll
        self._poll_interval = poll_interval
        self._reader: journal.Reader | None = None
        self._more_pending = False
        self._on_unread = False  # the reader stands on an entry not yet delivered
        self.counters = new_counters()

    @property
    def more_pending(self) -> bool:
        """The last ``read()`` stopped at ``max_batch`` or ``max_seconds``: call it again without waiting."""
        return self._more_pending

    @property
    def behind(self) -> bool:
        """The last read stopped short of the journal's end (``more_pending``): a flood is on."""
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
            if self._poll is None:
                self._poll = not reader.reliable_fd()
                if self._poll:
                    log.warning("%s: journal change notification is unreliable here (network file system?); "
                                "polling every %.2fs as well", self, POLL_INTERVAL)
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
        add_matches(reader, self._groups)
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
            if not reader._previous():  # stand on the last entry present: read() starts after it
                # None is selected yet. A tail seek would stay unresolved, and the first read
                # would land on the last entry written by then, skipping those before it.
                reader.seek_head()
        else:
            reader.seek_realtime(time.time() - parse_duration(self._since))

    # --- reading -------------------------------------------------------------

    def fileno(self) -> int:
        """The descriptor that becomes readable when the journal changes."""
        return int(self._open_reader().fileno())

    @property
    def poll_interval(self) -> float | None:
        """Seconds between reads the caller must also schedule: the interval asked for, and
        at most ``POLL_INTERVAL`` where the descriptor may miss changes (``Reader.reliable_fd()``
        false, or ``poll=True``); None when neither asks for a timer."""
        if self._poll:
            return min(self._poll_interval or POLL_INTERVAL, POLL_INTERVAL)
        return self._poll_interval

    def read(self) -> tuple[list[Event], JournalCursor | None]:
        """Drain up to ``max_batch`` entries; the cursor is the last entry's (``None`` if none).

        ``read_records``, each record made an event here; journalban's own lines are counted
        (``own``) and dropped.
        """
        records, cursor = self.read_records()
        return self._make_event.events(records, self.counters), cursor

    def read_records(self) -> tuple[list[Record], JournalCursor | None]:
        """Drain up to ``max_batch`` entries as records, each an entry that may match;
        the cursor is the last entry's (``None`` if none were read).

        Every entry costs one ``MESSAGE`` fetch as bytes; one that ``may_match`` rules
        out ends there (it is read all the same: the cursor moves past it). Only an
        entry that may match has its other fields fetched. Consecutive records of
        one sender share their key object (a reader process's message repeats it by
        reference).
        """
        reader = self._open_reader()
        if reader.process() == journal.INVALIDATE:
            self.counters["invalidated"] += 1  # files rotated or vacuumed: libsystemd has re-scanned
        records: list[Record] = []
        append = records.append
        advance, get, fetch, realtime = reader._next, reader._get, reader._get_all, reader._get_realtime
        may_match, key_of, limit = self._may_match, self._make_event.key_of, self._max_batch
        unread, self._on_unread = self._on_unread, False
        count = no_message = unreadable = ruled_out = 0
        last_key: _Key = ()
        deadline, timed_out = time.monotonic() + self._max_seconds, False
        while count < limit:
            if not count & _CLOCK_EVERY and count and time.monotonic() >= deadline:
                timed_out = True
                break
            if not (unread or advance()):
                break
            unread = False
            count += 1
            try:
                message = get("MESSAGE")
            except KeyError:
                no_message += 1
                continue
            except OSError:  # a corrupt or unsupported (compression) data object: skip the entry
                unreadable += 1
                continue
            if may_match is not None and not may_match(message):
                ruled_out += 1
                continue
            try:
                entry = fetch()
                usec = realtime()
            except OSError:
                unreadable += 1
                continue
            key = key_of(entry)
            if key == last_key:
                key = last_key
            last_key = key
            append((key, entry.get("_PID"), message, usec))
        self._more_pending = count == limit or timed_out
        counters = self.counters
        counters["read"] += count
        counters["ruled_out"] += ruled_out
        counters["skipped_no_message"] += no_message
        counters["unreadable"] += unreadable
        cursor = JournalCursor(reader._get_cursor()) if count else None
        return records, cursor

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
