"""The journal source's fast path: the literal prefilter on MESSAGE bytes, merged matches,
stamps converted exactly, and the timer that follows a journal whose descriptor is
unreliable. Against real journald and journals built by journal-remote."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from journalban.events import Event
from journalban.grammar import load_grammar
from journalban.match import JailMatcher, prefilter_bytes
from journalban.sources import journal as journal_module
from journalban.sources import journal_follow as journal_follow_module
from journalban.sources.journal import POLL_INTERVAL, JournalCursor, JournalSource, _time, merge_groups
from journalban.sources.journal_follow import JournalFollower
from tests.sources.journal.journald import Journald, build_journal, export_record

ROOT = Path(__file__).resolve().parents[3]
SSH_UNIT = [(("_SYSTEMD_UNIT", "ssh.service"),)]
FAILED = "Failed password for root from 203.0.113.9 port 22 ssh2"
BASE_USEC = 1_700_000_000_000_000


def entry(seq: int, message: str, unit: str = "ssh.service", uid: str = "0") -> bytes:
    return export_record({
        "__REALTIME_TIMESTAMP": str(BASE_USEC + seq * 1_000_001), "__MONOTONIC_TIMESTAMP": str(seq + 1),
        "_BOOT_ID": "6b1f2e0d9c8a4b7e8f00112233445566", "_HOSTNAME": "web1", "_TRANSPORT": "syslog",
        "SYSLOG_IDENTIFIER": "sshd", "_UID": uid, "_PID": str(1000 + seq), "_SYSTEMD_UNIT": unit, "_COMM": "sshd",
        "_EXE": "/usr/sbin/sshd", "MESSAGE": message})


def sshd_prefilter() -> Callable[[bytes], bool] | None:
    return prefilter_bytes([load_grammar(ROOT / "grammars" / "sshd.grammar")])


def test_entries_the_prefilter_rules_out_are_read_past_and_the_cursor_moves(tmp_path: Path) -> None:
    noise = ["Accepted publickey for deploy from 10.0.0.5 port 51514 ssh2: RSA SHA256:x",
             "Received disconnect from 10.0.0.5 port 51514:11: disconnected by user",  # one literal, not all
             "pam_unix(sshd:session): session opened for user deploy"]
    path = build_journal(b"".join([entry(0, noise[0]), entry(1, FAILED), entry(2, noise[1]), entry(3, noise[2])]),
                         tmp_path / "x.journal")
    with JournalSource(SSH_UNIT, files=[str(path)], since="all", may_match=sshd_prefilter()) as source:
        source.open()
        events, cursor = source.read()
        assert [e.message for e in events] == [FAILED]
        assert source.counters["read"] == 4 and source.counters["ruled_out"] == 3
        assert cursor is not None
    # the cursor is the last entry read, a ruled-out one: resuming after it reads nothing again
    with JournalSource(SSH_UNIT, files=[str(path)], cursor=cursor, may_match=sshd_prefilter()) as source:
        source.open()
        assert source.read() == ([], None)


def test_events_past_the_prefilter_are_built_as_before(tmp_path: Path) -> None:
    messages = [FAILED, "Invalid user admin from 198.51.100.7 port 4242", "two\nlines \xe9 [preauth] user x"]
    path = build_journal(b"".join(entry(n, m) for n, m in enumerate(messages)), tmp_path / "x.journal")
    with JournalSource(SSH_UNIT, files=[str(path)], since="all") as plain, \
            JournalSource(SSH_UNIT, files=[str(path)], since="all", may_match=sshd_prefilter()) as fast:
        plain.open()
        fast.open()
        expected, _ = plain.read()
        got, _ = fast.read()
    assert got == expected[:2]  # the third lacks the literals of every sshd rule
    assert got[0].time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert got[1].time == datetime(2023, 11, 14, 22, 13, 21, 1, tzinfo=UTC)
    assert (got[1].host, got[1].app, got[1].pid) == ("web1", "sshd", 1001)


def test_the_prefilter_never_rules_out_a_failure_of_a_shipped_grammar() -> None:
    """Every example a shipped grammar's fail rule matches passes its bytes prefilter."""
    checked = 0
    for path in sorted((ROOT / "grammars").glob("*.grammar")):
        grammar = load_grammar(path)
        may_match = prefilter_bytes([grammar])
        for example in grammar.examples:
            found = grammar.match(example.text)
            if found is not None and may_match is not None:
                assert may_match(example.text.encode()), (path.name, example.text)
                checked += 1
    assert checked > 100


def test_merged_match_groups_select_the_same_entries(tmp_path: Path) -> None:
    groups = [(("_SYSTEMD_UNIT", "ssh.service"),), (("_SYSTEMD_UNIT", "sshd.service"),),
              (("_EXE", "/usr/sbin/sshd"), ("_UID", "0")), (("_EXE", "/usr/sbin/other"), ("_UID", "0"))]
    assert merge_groups(groups) == [(("_SYSTEMD_UNIT", ("ssh.service", "sshd.service")),),
                                    (("_EXE", ("/usr/sbin/sshd", "/usr/sbin/other")), ("_UID", ("0",)))]
    # groups differing in two fields stay apart: (a and x) or (b and y) is no product
    assert len(merge_groups([(("_EXE", "a"), ("_UID", "0")), (("_EXE", "b"), ("_UID", "1"))])) == 2
    records = [entry(0, "unit ssh"), entry(1, "unit sshd", unit="sshd.service"),
               entry(2, "exe root", unit="cron.service"), entry(3, "exe nobody", unit="cron.service", uid="65534")]
    path = build_journal(b"".join(records), tmp_path / "x.journal")
    with JournalSource(groups, files=[str(path)], since="all") as source:
        source.open()
        assert [e.message for e in source.read()[0]] == ["unit ssh", "unit sshd", "exe root"]


def test_stamps_convert_exactly() -> None:
    generator = random.Random(5)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    samples = [0, 1, 999_999, 1_000_000, BASE_USEC, 2**32 * 1_000_000 - 1, 2**32 * 1_000_000, 253402300799999999]
    samples += [generator.randrange(0, 2**32 * 1_000_000) for _ in range(100_000)]
    for usec in samples:
        assert _time(usec) == epoch + timedelta(microseconds=usec), usec
    assert _time(-1) == epoch and _time(2**63) == epoch  # corrupt stamps do not raise


@pytest.mark.parametrize(("poll", "interval", "expected"), [(True, None, POLL_INTERVAL), (None, 0.01, 0.01)],
                         ids=["unreliable-descriptor", "poll-interval"])
def test_the_timer_reads_when_the_descriptor_stays_silent(journald: Journald, poll: bool | None,
                                                          interval: float | None, expected: float) -> None:
    """poll=True is what an unreliable descriptor (a journal on NFS) turns on; poll_interval
    is the daemon's short timer, since journald's notice comes up to 250 ms late. The test
    silences the descriptor (as NFS would) and the entry still arrives, by the timer."""
    async def follow() -> tuple[list[str], dict[str, int]]:
        loop = asyncio.get_running_loop()
        batches: list[tuple[list[Event], JournalCursor | None]] = []
        errors: list[BaseException] = []
        with JournalSource([(("SYSLOG_IDENTIFIER", "sshd"), ("_UID", "0"))], directory=str(journald.directory),
                           since="now", poll=poll, poll_interval=interval) as source:
            source.open()
            assert source.poll_interval == expected
            follower = JournalFollower(source, lambda events, cursor: batches.append((events, cursor)), errors.append)
            follower.start(loop)
            loop.remove_reader(source.fileno())  # the descriptor never fires from here on
            try:
                journald.send({"MESSAGE": FAILED, "SYSLOG_IDENTIFIER": "sshd"})
                journald.sync()
                for _ in range(100):  # bounded: 100 times POLL_INTERVAL at most
                    if any(events for events, _ in batches):
                        break
                    await asyncio.sleep(POLL_INTERVAL)
            finally:
                follower.stop()
        assert not errors
        return [e.message for events, _ in batches for e in events], dict(follower.counters)

    messages, counters = asyncio.run(follow())
    assert messages == [FAILED]
    assert counters["polls"] >= 1


def test_a_reliable_descriptor_arms_no_timer(journald: Journald) -> None:
    with JournalSource(SSH_UNIT, directory=str(journald.directory)) as source:
        source.open()
        assert source.poll_interval is None  # a local directory: inotify is reliable


def test_an_unreliable_descriptor_is_read_at_least_every_quarter_second(journald: Journald) -> None:
    with JournalSource(SSH_UNIT, directory=str(journald.directory), poll=True, poll_interval=5) as source:
        source.open()
        assert source.poll_interval == POLL_INTERVAL
    with pytest.raises(ValueError, match="poll_interval"):
        JournalSource(SSH_UNIT, directory=str(journald.directory), poll_interval=0)


def test_a_batch_that_cannot_be_delivered_stops_the_follower(journald: Journald) -> None:
    async def follow() -> list[BaseException]:
        errors: list[BaseException] = []

        def refuse(events: list[Event], cursor: JournalCursor | None) -> None:
            raise RuntimeError("ledger refused")

        with JournalSource([(("SYSLOG_IDENTIFIER", "sshd"), ("_UID", "0"))], directory=str(journald.directory),
                           since="all", poll=True) as source:
            source.open()
            follower = JournalFollower(source, refuse, errors.append)
            follower.start(asyncio.get_running_loop())
            await asyncio.sleep(POLL_INTERVAL * 3)
            follower.stop()
        assert follower.counters["reads"] == 1  # no read after the failure, timer or not
        return errors

    journald.send({"MESSAGE": FAILED, "SYSLOG_IDENTIFIER": "sshd"})
    journald.sync()
    errors = asyncio.run(follow())
    assert [str(e) for e in errors] == ["ledger refused"]


def test_matcher_sees_the_same_failures_with_and_without_the_prefilter(tmp_path: Path) -> None:
    grammar = load_grammar(ROOT / "grammars" / "sshd.grammar")
    matcher = JailMatcher("sshd", grammar)
    lines = [example.text for example in grammar.examples] * 3
    path = build_journal(b"".join(entry(n, text) for n, text in enumerate(lines)), tmp_path / "x.journal")

    def failures(prefiltered: bool) -> list[str]:
        with JournalSource(grammar.journal_matches, files=[str(path)], since="all",
                           may_match=prefilter_bytes([grammar]) if prefiltered else None) as source:
            source.open()
            found = [matcher.match(event) for event in source.read()[0]]
        return [str(f) for f in found if f is not None]

    plain = failures(False)
    assert plain and failures(True) == plain


def own_entry(seq: int, message: str, unit: str, identifier: str, uid: str) -> bytes:
    return export_record({
        "__REALTIME_TIMESTAMP": str(BASE_USEC + seq * 1_000_001), "__MONOTONIC_TIMESTAMP": str(seq + 1),
        "_BOOT_ID": "6b1f2e0d9c8a4b7e8f00112233445566", "_HOSTNAME": "web1", "_TRANSPORT": "journal",
        "SYSLOG_IDENTIFIER": identifier, "_UID": uid, "_PID": str(2000 + seq), "_SYSTEMD_UNIT": unit,
        "MESSAGE": message})


def test_the_daemons_own_lines_are_never_turned_into_events(tmp_path: Path) -> None:
    """journalban's ban line repeats the attacker's text: read from its own unit, or written by
    root as ``journalban``, it is read past; a look-alike identifier from another user is not."""
    own_line = f"ban sshd 203.0.113.9 until 2026-11-26 10:00: 1 failure in 600s: {FAILED}"
    path = build_journal(b"".join([
        own_entry(0, own_line, "journalban.service", "journalban", "0"),
        own_entry(1, own_line, "session-1.scope", "journalban", "0"),  # `journalban run` by hand, as root
        own_entry(2, FAILED, "session-2.scope", "journalban", "1000"),  # a user calling itself journalban
        own_entry(3, FAILED, "cron.service", "sshd", "0")]), tmp_path / "x.journal")
    with JournalSource([(("_HOSTNAME", "web1"),)], files=[str(path)], since="all") as source:
        source.open()
        events, _ = source.read()
    assert [(e.app, e.message) for e in events] == [("journalban", FAILED), ("sshd", FAILED)]
    assert source.counters["own"] == 2 and source.counters["read"] == 4


def test_own_lines_are_told_apart_when_senders_repeat(tmp_path: Path) -> None:
    """Whether an entry is journalban's own is remembered per sender, with the sender's other
    fields: a look-alike that differs from an own line only in its uid is never taken for it,
    however often the two alternate."""
    own_line = f"ban sshd 203.0.113.9: {FAILED}"
    records = []
    for n in range(0, 60, 3):
        records += [own_entry(n, own_line, "session-1.scope", "journalban", "0"),
                    own_entry(n + 1, FAILED, "session-1.scope", "journalban", "1000"),
                    own_entry(n + 2, FAILED, "journalban.service", "sshd", "0")]
    path = build_journal(b"".join(records), tmp_path / "x.journal")
    with JournalSource([(("_HOSTNAME", "web1"),)], files=[str(path)], since="all") as source:
        source.open()
        events, _ = source.read()
    assert [(e.app, e.fields["_UID"], e.pid) for e in events] == [("journalban", "1000", 2000 + n + 1)
                                                                  for n in range(0, 60, 3)]
    assert source.counters["own"] == 40 and source.counters["read"] == 60


def test_a_read_past_its_time_limit_stops_and_the_next_reads_deliver_the_rest_once(tmp_path: Path) -> None:
    """The time limit hands the loop back during a flood: a read of a journal bigger than
    one look at the clock stops there, says more is pending, and nothing is lost or doubled."""
    total = 1000
    path = build_journal(b"".join(entry(n, f"{FAILED} #{n}") for n in range(total)), tmp_path / "x.journal")
    with JournalSource(SSH_UNIT, files=[str(path)], since="all", max_seconds=0.0) as source:
        source.open()
        batches = []
        while True:
            events, _ = source.read()
            batches.append(len(events))
            if not source.more_pending:
                break
    assert batches[0] == journal_module._CLOCK_EVERY + 1 and len(batches) >= 4
    assert sum(batches) == total and source.counters["read"] == total


@pytest.mark.parametrize("dense", [True, False])
def test_a_backlog_is_read_in_short_reads_and_delivered_in_merged_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dense: bool) -> None:
    """Each read stops at one look at the clock, handing the loop back; their events go to
    ``deliver`` together, MERGE_EVENTS at a time, each batch with its last entry's cursor,
    and the rest as soon as the journal has no more: nothing lost, nothing twice. Reads
    sparser than MERGE_DENSE (a failure among everyday entries) are delivered at once."""
    monkeypatch.setattr(journal_follow_module, "MERGE_EVENTS", 100)
    if not dense:
        monkeypatch.setattr(journal_follow_module, "MERGE_DENSE", journal_module._CLOCK_EVERY + 2)
    monkeypatch.setattr(journal_follow_module, "MERGE_SECONDS", 3600.0)
    total = 1000
    path = build_journal(b"".join(entry(n, f"{FAILED} #{n}") for n in range(total)), tmp_path / "x.journal")

    async def follow() -> tuple[list[tuple[list[Event], JournalCursor | None]], dict[str, int]]:
        batches: list[tuple[list[Event], JournalCursor | None]] = []
        errors: list[BaseException] = []
        with JournalSource(SSH_UNIT, files=[str(path)], since="all", max_seconds=0.0) as source:
            source.open()
            follower = JournalFollower(source, lambda events, cursor: batches.append((events, cursor)), errors.append)
            follower.start(asyncio.get_running_loop())
            for _ in range(200):  # bounded
                if sum(len(events) for events, _ in batches) == total:
                    break
                await asyncio.sleep(0.01)
            follower.stop()
        assert not errors
        return batches, dict(follower.counters)

    batches, counters = asyncio.run(follow())
    assert [e.message for events, _ in batches for e in events] == [f"{FAILED} #{n}" for n in range(total)]
    sizes = [len(events) for events, _ in batches]
    step = journal_module._CLOCK_EVERY + 1
    assert counters["reads"] >= total // step and sum(sizes) == total
    if dense:
        assert all(100 <= size < 100 + step for size in sizes[:-1]) and len(batches) < counters["reads"]
    else:
        assert all(size <= step for size in sizes), "each read delivered at once"
    with JournalSource(SSH_UNIT, files=[str(path)], cursor=batches[-1][1]) as source:
        source.open()
        assert source.read()[0] == [], "the last batch's cursor is the last entry's"
