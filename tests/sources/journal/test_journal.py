"""JournalSource against a real journald namespace and journals built by journal-remote."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from journalban.sources.journal import JournalCursor, JournalError, JournalSource
from tests.sources.journal.journald import NOBODY, Journald, build_journal, export_record

SSHD_ROOT = [(("SYSLOG_IDENTIFIER", "sshd"), ("_UID", "0"))]
SSH_UNIT = [(("_SYSTEMD_UNIT", "ssh.service"),)]
FAILED = "Failed password for root from 203.0.113.9 port 22 ssh2"
BOOT = "6b1f2e0d9c8a4b7e8f00112233445566"


def sshd(message: str) -> dict[str, str]:
    return {"MESSAGE": message, "SYSLOG_IDENTIFIER": "sshd"}


def read_all(source: JournalSource) -> tuple[list[str], JournalCursor | None]:
    events, cursor = source.read()
    return [event.message for event in events], cursor


def opened(matches: Sequence[Sequence[tuple[str, str]]], **kwargs: object) -> JournalSource:
    source = JournalSource(matches, **kwargs)  # type: ignore[arg-type]
    source.open()
    return source


def remote_entry(seq: int, unit: str, message: str | None, *, usec: int, boot: str = BOOT) -> bytes:
    comm = unit.split(".")[0]
    fields = {"__REALTIME_TIMESTAMP": str(usec), "__MONOTONIC_TIMESTAMP": str(seq + 1), "_BOOT_ID": boot,
              "_HOSTNAME": "web1", "_TRANSPORT": "syslog", "PRIORITY": "6", "SYSLOG_IDENTIFIER": comm,
              "_UID": "0", "_PID": str(1000 + seq), "_SYSTEMD_UNIT": unit, "_COMM": comm, "_EXE": f"/usr/sbin/{comm}"}
    if message is not None:
        fields["MESSAGE"] = message
    return export_record(fields)


# --- configuration, checked without I/O ----------------------------------------


@pytest.mark.parametrize("matches", [[], [()], [(("_UID", "0"), ("_UID", "1"))], [(("bad name", "x"),)]])
def test_bad_matches_are_refused(matches: list[tuple[tuple[str, str], ...]]) -> None:
    with pytest.raises(ValueError):
        JournalSource(matches)


@pytest.mark.parametrize("since", ["yesterday", "", "-5m", "0"])
def test_bad_since_is_refused(since: str) -> None:
    with pytest.raises(ValueError, match="since"):
        JournalSource(SSH_UNIT, since=since)


def test_directory_and_files_are_exclusive() -> None:
    with pytest.raises(ValueError):
        JournalSource(SSH_UNIT, directory="/var/log/journal", files=["/x.journal"])


def test_open_refuses_a_missing_directory(tmp_path: Path) -> None:
    source = JournalSource(SSH_UNIT, directory=str(tmp_path / "absent"))
    with pytest.raises(JournalError, match="not a directory"):
        source.open()
    with pytest.raises(JournalError, match="not open"):
        source.read()


# --- selection on trusted fields -------------------------------------------------


def test_uid_match_keeps_root_and_drops_an_unprivileged_writer(journald: Journald) -> None:
    journald.send_as(NOBODY, sshd(FAILED))
    journald.send(sshd(FAILED))
    journald.send({"MESSAGE": FAILED, "SYSLOG_IDENTIFIER": "cron"})
    journald.sync()
    with opened(SSHD_ROOT, directory=str(journald.directory), since="all") as source:
        events, cursor = source.read()
    assert [(e.message, e.fields["_UID"], e.app) for e in events] == [(FAILED, "0", "sshd")]
    event = events[0]
    assert event.source == "journal" and event.host and event.pid and event.fields["_COMM"]
    assert event.time.tzinfo is not None and abs(event.time - datetime.now(UTC)).total_seconds() < 60
    assert cursor is not None


def test_groups_are_ored(journald: Journald) -> None:
    for app in ("sshd", "cron", "nginx"):
        journald.send({"MESSAGE": f"from {app}", "SYSLOG_IDENTIFIER": app})
    journald.sync()
    matches = [(("SYSLOG_IDENTIFIER", "sshd"),), (("SYSLOG_IDENTIFIER", "nginx"), ("_UID", "0"))]
    with opened(matches, directory=str(journald.directory), since="all") as source:
        assert read_all(source)[0] == ["from sshd", "from nginx"]


def test_fields_named_by_matches_travel_with_the_event(journald: Journald) -> None:
    journald.send(sshd(FAILED))
    journald.sync()
    with opened([(("_TRANSPORT", "journal"), ("_UID", "0"))], directory=str(journald.directory), since="all") as source:
        events, _ = source.read()
    assert [e.fields["_TRANSPORT"] for e in events if e.message == FAILED] == ["journal"]


def test_remote_journal_files_keep_unit_time_and_fields(tmp_path: Path) -> None:
    base = 1_700_000_000_000_000
    export = b"".join([
        remote_entry(0, "cron.service", "pam_unix(cron:session): session opened", usec=base),
        remote_entry(1, "ssh.service", FAILED, usec=base + 1_000_001),
        remote_entry(2, "ssh.service", None, usec=base + 2_000_000),
        remote_entry(3, "ssh.service", "two\nlines \xe9", usec=base + 3_000_000),
        remote_entry(4, "cron.service", "(root) CMD (run-parts)", usec=base + 4_000_000),
    ])
    path = build_journal(export, tmp_path / "x.journal")
    with opened(SSH_UNIT, files=[str(path)], since="all") as source:
        events, cursor = source.read()
        assert [e.message for e in events] == [FAILED, "two\nlines \xe9"]
        first = events[0]
        assert first.time == datetime(2023, 11, 14, 22, 13, 21, 1, tzinfo=UTC)
        assert (first.host, first.app, first.pid, first.source) == ("web1", "ssh", 1001, "journal")
        assert dict(first.fields) == {"_SYSTEMD_UNIT": "ssh.service", "_EXE": "/usr/sbin/ssh", "_UID": "0",
                                      "_COMM": "ssh", "SYSLOG_IDENTIFIER": "ssh"}
        assert source.counters == {"read": 3, "converted": 2, "ruled_out": 0, "skipped_no_message": 1,
                                   "unreadable": 0, "own": 0, "invalidated": 0}
        assert cursor is not None and source.read() == ([], None)


# --- where reading starts ----------------------------------------------------------


def test_cursor_resumes_after_the_last_entry_read(journald: Journald) -> None:
    for n in range(3):
        journald.send(sshd(f"old {n}"))
    journald.sync()
    with opened(SSHD_ROOT, directory=str(journald.directory), since="all") as source:
        messages, cursor = read_all(source)
    assert messages == ["old 0", "old 1", "old 2"] and cursor is not None
    for n in range(2):
        journald.send(sshd(f"new {n}"))
    journald.sync()
    with opened(SSHD_ROOT, directory=str(journald.directory), cursor=cursor) as source:
        messages, after = read_all(source)
        assert messages == ["new 0", "new 1"]
        assert read_all(source) == ([], None)
    with opened(SSHD_ROOT, directory=str(journald.directory), cursor=after) as source:
        assert read_all(source) == ([], None)


def test_cursor_whose_entry_is_no_longer_selected_resumes_after_it(journald: Journald) -> None:
    journald.send({"MESSAGE": "cron entry", "SYSLOG_IDENTIFIER": "cron"})
    journald.send(sshd("later sshd"))
    journald.sync()
    with opened([(("SYSLOG_IDENTIFIER", "cron"),)], directory=str(journald.directory), since="all") as source:
        messages, cursor = read_all(source)
    assert messages == ["cron entry"]
    with opened(SSHD_ROOT, directory=str(journald.directory), cursor=cursor) as source:
        assert read_all(source)[0] == ["later sshd"]


@pytest.mark.parametrize("cursor", [
    "garbage",
    "s=0123456789abcdef0123456789abcdef;i=99;b=" + BOOT + ";m=1;t=5f0000000000;x=0123456789abcdef",
])
def test_vanished_cursor_warns_and_starts_at_the_head(
    journald: Journald, caplog: pytest.LogCaptureFixture, cursor: str
) -> None:
    for n in range(2):
        journald.send(sshd(f"kept {n}"))
    journald.sync()
    with caplog.at_level(logging.WARNING, "journalban.sources.journal"):
        with opened(SSHD_ROOT, directory=str(journald.directory), cursor=JournalCursor(cursor)) as source:
            assert read_all(source)[0] == ["kept 0", "kept 1"]
    assert "no longer in the journal" in caplog.text


def test_since_now_skips_what_is_there_and_all_reads_it(journald: Journald) -> None:
    journald.send(sshd("before"))
    journald.sync()
    with opened(SSHD_ROOT, directory=str(journald.directory), since="now") as now, \
            opened(SSHD_ROOT, directory=str(journald.directory), since="all") as everything:
        assert read_all(now) == ([], None)
        journald.send(sshd("after"))
        journald.sync()
        assert read_all(now)[0] == ["after"]
        assert read_all(everything)[0] == ["before", "after"]


def test_since_now_on_a_journal_with_nothing_selected_yet(journald: Journald) -> None:
    journald.send({"MESSAGE": "other", "SYSLOG_IDENTIFIER": "cron"})
    journald.sync()
    with opened(SSHD_ROOT, directory=str(journald.directory), since="now") as source:
        assert read_all(source) == ([], None)
        journald.send(sshd("first sshd"))
        journald.send(sshd("second sshd"))  # an unresolved tail seek would land on this one alone
        journald.sync()
        assert read_all(source)[0] == ["first sshd", "second sshd"]


def test_since_duration_reads_from_that_long_ago(tmp_path: Path) -> None:
    now = int(time.time() * 1_000_000)
    export = b"".join([
        remote_entry(0, "ssh.service", "an hour ago", usec=now - 3600 * 1_000_000),
        remote_entry(1, "ssh.service", "five minutes ago", usec=now - 300 * 1_000_000),
    ])
    path = build_journal(export, tmp_path / "x.journal")
    with opened(SSH_UNIT, files=[str(path)], since="10m") as source:
        assert read_all(source)[0] == ["five minutes ago"]
    with opened(SSH_UNIT, files=[str(path)], since="2h") as source:
        assert read_all(source)[0] == ["an hour ago", "five minutes ago"]


def test_since_boot_is_anded_with_the_matches(journald: Journald, tmp_path: Path) -> None:
    journald.send(sshd("this boot"))
    journald.send({"MESSAGE": "cron this boot", "SYSLOG_IDENTIFIER": "cron"})
    journald.sync()
    with opened(SSHD_ROOT, directory=str(journald.directory), since="boot") as source:
        assert read_all(source)[0] == ["this boot"]
    # A journal from another boot (another machine) holds nothing of this boot.
    path = build_journal(remote_entry(0, "ssh.service", FAILED, usec=1_700_000_000_000_000), tmp_path / "x.journal")
    with opened(SSH_UNIT, files=[str(path)], since="boot") as source:
        assert read_all(source) == ([], None)


# --- following ----------------------------------------------------------------------


def test_descriptor_becomes_readable_when_an_entry_arrives(journald: Journald) -> None:
    async def follow() -> list[str]:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        with opened(SSHD_ROOT, directory=str(journald.directory), since="now") as source:
            assert read_all(source) == ([], None)  # the first read, right after open()
            loop.add_reader(source.fileno(), readable.set)
            try:
                journald.send(sshd(FAILED))
                messages: list[str] = []
                for _ in range(20):  # bounded: a wakeup may bring only journald's own bookkeeping
                    await asyncio.wait_for(readable.wait(), timeout=10)
                    readable.clear()
                    messages += read_all(source)[0]
                    if messages:
                        return messages
            finally:
                loop.remove_reader(source.fileno())
        raise AssertionError("no entry after 20 wakeups")

    assert asyncio.run(follow()) == [FAILED]


def test_batches_stop_at_max_batch_and_say_more_is_pending(journald: Journald) -> None:
    for n in range(5):
        journald.send(sshd(f"entry {n}"))
    journald.sync()
    with opened(SSHD_ROOT, directory=str(journald.directory), since="all", max_batch=2) as source:
        batches = []
        for _ in range(10):
            batches.append(read_all(source)[0])
            if not source.more_pending:
                break
    assert batches == [["entry 0", "entry 1"], ["entry 2", "entry 3"], ["entry 4"]]


def test_rotation_and_vacuum_underneath_keep_reading(journald: Journald) -> None:
    def journalctl(*args: str) -> None:
        subprocess.run(["journalctl", f"--namespace={journald.namespace}", *args], check=True, timeout=30,
                       capture_output=True)

    journald.send(sshd("before rotation"))
    journald.sync()
    with opened(SSHD_ROOT, directory=str(journald.directory), since="all") as source:
        assert read_all(source)[0] == ["before rotation"]
        journalctl("--rotate")
        journald.send(sshd("after rotation"))
        journald.sync()
        assert read_all(source)[0] == ["after rotation"]
        journalctl("--rotate")
        journalctl("--vacuum-files=1")
        assert len(list(journald.directory.glob("*.journal"))) == 1
        journald.send(sshd("after vacuum"))
        journald.sync()
        assert read_all(source)[0] == ["after vacuum"]
        assert source.counters["invalidated"] >= 1
