"""The journal read in a process of its own: the same events and cursors as reading it in
place, errors and warnings brought back, and a child that never outlives its use.
Against journals built by journal-remote and a real journald namespace."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import select
import signal
import sys
import termios
import time
from pathlib import Path

import pytest

from journalban.events import Event
from journalban.grammar import load_grammar
from journalban.match import prefilter_bytes, prefilter_spec
from journalban.sources.journal import JournalCursor, JournalError, JournalSource
from journalban.sources.journal_follow import JournalFollower
from journalban.sources.journal_process import JournalProcess
from tests.sources.journal.journald import Journald, build_journal, export_record

ROOT = Path(__file__).resolve().parents[3]
SSH_UNIT = [(("_SYSTEMD_UNIT", "ssh.service"),), (("_SYSTEMD_UNIT", "journalban.service"),)]
BASE_USEC = 1_700_000_000_000_000
SSHD = [load_grammar(ROOT / "grammars" / "sshd.grammar")]


def entry(seq: int, message: str, unit: str = "ssh.service", host: str = "web1") -> bytes:
    comm = unit.split(".")[0]
    return export_record({
        "__REALTIME_TIMESTAMP": str(BASE_USEC + seq * 1_000_001), "__MONOTONIC_TIMESTAMP": str(seq + 1),
        "_BOOT_ID": "6b1f2e0d9c8a4b7e8f00112233445566", "_HOSTNAME": host, "_TRANSPORT": "syslog",
        "SYSLOG_IDENTIFIER": comm, "_UID": "0", "_PID": str(1000 + seq), "_SYSTEMD_UNIT": unit, "_COMM": comm,
        "_EXE": f"/usr/sbin/{comm}", "MESSAGE": message})


def corpus(count: int) -> bytes:
    """Failures among everyday lines, from two hosts, with journalban's own lines among them."""
    records = []
    for seq in range(count):
        if seq % 7 == 0:
            message = f"Failed password for root from 203.0.{seq % 250}.{seq % 200 + 1} port {seq} ssh2"
        elif seq % 11 == 0:
            message = f"Invalid user u{seq} from 198.51.100.{seq % 250} port 22"
        else:
            message = f"Accepted publickey for deploy from 10.0.0.5 port {seq} ssh2: RSA SHA256:x"
        unit = "journalban.service" if seq % 13 == 0 else "ssh.service"
        records.append(entry(seq, message, unit, host="web1" if seq % 3 else "web2"))
    return b"".join(records)


def in_place(path: Path, cursor: JournalCursor | None = None,
             ) -> tuple[list[Event], JournalCursor | None, dict[str, int]]:
    """Every event of the journal read in this process, and the last cursor."""
    events: list[Event] = []
    last = None
    with JournalSource(SSH_UNIT, files=[str(path)], since="all", cursor=cursor,
                       may_match=prefilter_bytes(SSHD)) as source:
        source.open()
        while True:
            batch, got = source.read()
            events += batch
            last = got or last
            if got is None:
                return events, last, source.counters


def drain(source: JournalProcess, until: JournalCursor | None, timeout: float = 30.0) -> tuple[list[Event], int]:
    """Read the process's batches until it delivers ``until`` (and nothing after it arrives)."""
    events: list[Event] = []
    reads, deadline = 0, time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        select.select([source.fileno()], [], [], 0.2)
        batch, cursor = source.read()
        reads += 1
        events += batch
        last = cursor or last
        if last == until and not source.behind:
            select.select([source.fileno()], [], [], 0.2)
            events += source.read()[0]
            return events, reads
    raise AssertionError(f"the reader process did not reach {until} within {timeout}s")


def waiting(source: JournalProcess, timeout: float = 10.0) -> int:
    """The bytes in the child's pipe once they stop growing: it has sent all it had."""
    deadline, before = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        held = int.from_bytes(fcntl.ioctl(source.fileno(), termios.FIONREAD, b"\0" * 4), sys.byteorder)
        if held and held == before:
            return held
        before = held
        time.sleep(0.3)
    raise AssertionError("the reader process sent nothing")


def child_of(source: JournalProcess) -> int:
    assert source._child is not None
    return source._child.pid


@pytest.mark.parametrize("resume", [False, True], ids=["since-all", "after-a-cursor"])
def test_the_reader_process_delivers_what_reading_in_place_does(tmp_path: Path, resume: bool) -> None:
    path = build_journal(corpus(30000), tmp_path / "x.journal")
    cursor = None
    if resume:
        with JournalSource(SSH_UNIT, files=[str(path)], since="all", max_batch=12345) as first:
            first.open()
            cursor = first.read()[1]
    expected, last, counters = in_place(path, cursor)
    assert len(expected) > 3000 and last is not None
    with JournalProcess(SSH_UNIT, files=[str(path)], since="all", cursor=cursor,
                        prefilter=prefilter_spec(SSHD)) as source:
        source.open()
        got, reads = drain(source, last)
        assert got == expected
        assert reads > 1, "a journal of this size comes in several batches"
        assert source.counters == counters
        assert source.counters["own"] > 0 and source.counters["ruled_out"] > 0


def test_a_journal_that_cannot_be_opened_is_an_error_at_open_and_no_child_is_left(tmp_path: Path) -> None:
    source = JournalProcess(SSH_UNIT, directory=str(tmp_path / "absent"))
    with pytest.raises(JournalError, match="not a directory"):
        source.open()
    assert source._child is None
    with pytest.raises(JournalError, match="not open"):
        source.read()


def test_the_child_ends_on_its_own_when_closed(tmp_path: Path) -> None:
    path = build_journal(corpus(50), tmp_path / "x.journal")
    source = JournalProcess(SSH_UNIT, files=[str(path)], since="all")
    source.open()
    child = source._child
    assert child is not None and child.poll() is None
    source.close()
    assert child.returncode == 0, "it ended when its input closed, not killed"


def test_the_child_ignores_the_service_wide_sigterm(tmp_path: Path) -> None:
    """systemd stops a service by signalling every process in it; the reader waits for the parent."""
    path = build_journal(corpus(50), tmp_path / "x.journal")
    with JournalProcess(SSH_UNIT, files=[str(path)], since="all") as source:
        source.open()
        os.kill(child_of(source), signal.SIGTERM)
        events, _ = drain(source, in_place(path)[1])
        assert events and source._child is not None and source._child.poll() is None


def test_a_child_that_dies_is_an_error_once_what_it_sent_is_delivered(tmp_path: Path) -> None:
    path = build_journal(corpus(700), tmp_path / "x.journal")
    expected, last, _ = in_place(path)
    with JournalProcess(SSH_UNIT, files=[str(path)], since="all", prefilter=prefilter_spec(SSHD)) as source:
        source.open()
        waiting(source)  # it has sent the whole journal
        os.kill(child_of(source), signal.SIGKILL)
        assert source._child is not None
        source._child.wait(10)
        events, cursor = source.read()
        assert events == expected and cursor == last
        with pytest.raises(JournalError, match=r"journal reader exited \(signal 9\)"):
            source.read()


def test_the_readers_warnings_reach_the_daemons_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cursor from another journal: the child's warning is logged by the parent, and it reads from the start."""
    other = build_journal(corpus(20), tmp_path / "other.journal")
    with JournalSource(SSH_UNIT, files=[str(other)], since="all") as first:
        first.open()
        foreign = first.read()[1]
    path = build_journal(b"".join(entry(n, f"Failed password for root from 203.0.113.{n} port 22 ssh2")
                                  for n in range(1, 4)), tmp_path / "x.journal")
    with caplog.at_level(logging.WARNING), \
            JournalProcess(SSH_UNIT, files=[str(path)], cursor=foreign) as source:
        source.open()
        events, _ = drain(source, in_place(path)[1])
    assert "no longer in the journal" in caplog.text
    assert [event.message.split()[5] for event in events] == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]


def test_a_live_journal_is_followed_through_the_reader_process(journald: Journald) -> None:
    """The follower on the child's pipe: entries written after start arrive, each batch with its cursor."""
    failed = [f"Failed password for root from 203.0.113.{n} port 22 ssh2" for n in range(1, 6)]

    async def follow() -> list[tuple[list[str], JournalCursor | None]]:
        batches: list[tuple[list[str], JournalCursor | None]] = []
        source = JournalProcess([(("SYSLOG_IDENTIFIER", "sshd"),)], directory=str(journald.directory),
                                since="now", poll_interval=0.01, prefilter=prefilter_spec(SSHD))
        source.open()
        follower = JournalFollower(source, lambda events, cursor: batches.append(
            ([event.message for event in events], cursor)), lambda exc: batches.append(([repr(exc)], None)))
        follower.start(asyncio.get_running_loop())
        try:
            for message in failed:
                journald.send({"MESSAGE": message, "SYSLOG_IDENTIFIER": "sshd"})
                journald.send({"MESSAGE": "Accepted publickey for deploy", "SYSLOG_IDENTIFIER": "sshd"})
            deadline = time.monotonic() + 15
            while sum(len(messages) for messages, _ in batches) < len(failed) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            follower.stop()
            source.close()
        return batches

    batches = asyncio.run(follow())
    assert [message for messages, _ in batches for message in messages] == failed
    assert all(cursor is not None for _, cursor in batches)


def test_relative_journal_paths_mean_what_they_mean_to_the_daemon(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """libsystemd takes absolute paths only, and the child runs elsewhere (beside the code it
    imports): relative ones are made absolute against the daemon's directory, in place too."""
    path = build_journal(corpus(40), tmp_path / "x.journal")
    expected, last, _ = in_place(path)
    monkeypatch.chdir(tmp_path)
    with JournalProcess(SSH_UNIT, files=["x.journal"], since="all", prefilter=prefilter_spec(SSHD)) as source:
        source.open()
        assert drain(source, last)[0] == expected
    with JournalSource(SSH_UNIT, files=["x.journal"], since="all", may_match=prefilter_bytes(SSHD)) as place:
        place.open()
        assert place.read()[0] == expected
    with JournalSource(SSH_UNIT, directory=".", since="all", may_match=prefilter_bytes(SSHD)) as place:
        place.open()
        assert place.read()[0] == expected
