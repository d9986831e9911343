"""The real daemon reading journald: trusted-field selection, and exactly-once across crashes.

Each test runs ``journalban run`` as a process with a dry-run firewall and a
SQLite ledger in tmp; the ledger is the evidence. Journals come from a private
journald namespace instance (entries written over the native socket, so journald
sets ``_UID`` from the writer's credentials) or are built with
``systemd-journal-remote`` from export format (so entries can carry the
``_SYSTEMD_UNIT`` a service would have).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from journalban.pipeline import HOLD_FAILURES
from tests.e2e.daemon import HOST, DaemonProcess, count, query, wait_for
from tests.sources.journal.journald import (
    JOURNAL_REMOTE,
    NOBODY,
    Journald,
    build_journal,
    export_record,
    journald,
)

__all__ = ["journald"]  # the fixture, imported for pytest

ROOT = Path(__file__).parents[2]
ATTACKER = "203.0.113.9"
ATTACK = f"Failed password for root from {ATTACKER} port 22 ssh2"
BOOT_ID = "6b1f2e0d9c8a4b7e8f00112233445566"


def failed(address: str, port: int = 22) -> str:
    return f"Failed password for root from {address} port {port} ssh2"


def write_config(tmp: Path, sources: str, jail: str) -> Path:
    """A config with a tmp ledger, a dry-run firewall, tmp grammars first, and ``sources``/``jail`` tables."""
    (tmp / "grammars").mkdir(exist_ok=True)
    config = tmp / "journalban.toml"
    config.write_text(f"""
[control]
socket = "{tmp / 'control.sock'}"

[ledger]
url = "sqlite:///{tmp / 'ledger.db'}"

[grammars]
directories = ["{tmp / 'grammars'}"]

[sources.files]
poll_interval = 0.05

{sources}

[defaults]
firewall = "dry-run"
ignoreself = false
findtime = "1d"

{jail}
""")
    return config


def daemon(tmp: Path, config: Path) -> DaemonProcess:
    return DaemonProcess(HOST, config, tmp / "daemon.log")


def native_grammar(tmp: Path) -> str:
    """The shipped sshd rules, selecting root-written entries tagged sshd (what the native protocol gives)."""
    text = (ROOT / "grammars" / "sshd.grammar").read_text()
    text = re.sub(r"^grammar sshd$", "grammar sshd-native", text, count=1, flags=re.M)
    text = re.sub(r"^applies .*\n", "", text, flags=re.M)
    text = text.replace("time stamp\n", "applies journal SYSLOG_IDENTIFIER=sshd _UID=0\ntime stamp\n", 1)
    assert "applies journal SYSLOG_IDENTIFIER=sshd _UID=0" in text
    (tmp / "grammars").mkdir(exist_ok=True)
    (tmp / "grammars" / "sshd-native.grammar").write_text(text)
    return "sshd-native"


def namespace_config(tmp: Path, journald: Journald, maxretry: int) -> Path:
    """A config reading the journald namespace from its start with ``native_grammar``."""
    return write_config(tmp, f"""
[sources.journal]
directory = "{journald.directory}"
since = "all"
""", f"""
[jails.sshd]
grammar = "{native_grammar(tmp)}"
journal = true
maxretry = {maxretry}
""")


def export(entries: list[Mapping[str, str]], start_usec: int) -> bytes:
    """Export format for systemd-journal-remote, one microsecond apart, with the fields journald adds."""
    out = bytearray()
    for number, fields in enumerate(entries):
        out += export_record({
            "__REALTIME_TIMESTAMP": str(start_usec + number),
            "__MONOTONIC_TIMESTAMP": str(number + 1),
            "_BOOT_ID": BOOT_ID,
            "_HOSTNAME": "web1",
            "_TRANSPORT": "syslog",
            "PRIORITY": "6",
            **fields,
        })
    return bytes(out)


def sshd_entry(message: str, pid: int = 4242) -> dict[str, str]:
    return {"SYSLOG_IDENTIFIER": "sshd", "_SYSTEMD_UNIT": "ssh.service", "_EXE": "/usr/sbin/sshd",
            "_COMM": "sshd", "_UID": "0", "_PID": str(pid), "MESSAGE": message}


def now_usec(ago: float = 60.0) -> int:
    return int((time.time() - ago) * 1_000_000)


@pytest.fixture
def journal_remote() -> Iterator[None]:
    if not os.access(JOURNAL_REMOTE, os.X_OK):
        pytest.skip(f"{JOURNAL_REMOTE} is not installed")
    yield


def bans(tmp: Path) -> list[tuple[object, ...]]:
    return query(tmp / "ledger.db", "SELECT jail, address, reason FROM bans ORDER BY id")


def failures_of(tmp: Path, address: str) -> int:
    return count(tmp / "ledger.db", "SELECT count(*) FROM failures WHERE address = ?", address)


# --- selection by trusted fields -------------------------------------------------------------


def test_root_sshd_entries_ban_and_the_same_lines_from_nobody_do_not(journald: Journald, tmp_path: Path) -> None:
    config = namespace_config(tmp_path, journald, maxretry=2)
    process = daemon(tmp_path, config)
    process.start()
    try:
        decoy = "198.51.100.66"
        for _ in range(3):
            journald.send_as(NOBODY, {"MESSAGE": failed(decoy), "SYSLOG_IDENTIFIER": "sshd"})
        for _ in range(2):
            journald.send({"MESSAGE": ATTACK, "SYSLOG_IDENTIFIER": "sshd"})
        journald.sync()
        found = wait_for("the ban in the ledger", lambda: bans(tmp_path))
        assert found == [("sshd", ATTACKER, f"2 failures in 86400s: {ATTACK}")]
        # Written before the root lines, so read before them: nothing came of it.
        assert failures_of(tmp_path, decoy) == 0
        rows = query(tmp_path / "ledger.db", "SELECT address, rule, ban_id FROM failures ORDER BY id")
        assert rows == [(ATTACKER, "sshd-native/failed", 1)] * 2
    finally:
        assert process.stop() == 0


@pytest.mark.parametrize("own_process", [True, False], ids=["reader-process", "in-the-daemon"])
def test_shipped_grammar_bans_the_ssh_unit_and_not_its_lookalikes(journal_remote: None, tmp_path: Path,
                                                                   own_process: bool) -> None:
    entries = [
        # Decoys first: cron, a user's process calling itself sshd, a user running /usr/sbin/sshd.
        {"SYSLOG_IDENTIFIER": "CRON", "_SYSTEMD_UNIT": "cron.service", "_EXE": "/usr/sbin/cron", "_COMM": "cron",
         "_UID": "0", "_PID": "77", "MESSAGE": failed("198.51.100.20")},
        {"SYSLOG_IDENTIFIER": "sshd", "_UID": "65534", "_COMM": "python3", "_PID": "78",
         "MESSAGE": failed("198.51.100.21")},
        {"SYSLOG_IDENTIFIER": "sshd", "_EXE": "/usr/sbin/sshd", "_COMM": "sshd", "_UID": "65534", "_PID": "79",
         "MESSAGE": failed("198.51.100.22")},
    ] * 3
    entries += [sshd_entry(ATTACK, pid=4000 + n) for n in range(2)]
    entries.append(sshd_entry("Accepted publickey for deploy from 10.0.0.5 port 51514 ssh2: RSA SHA256:Zm9v"))
    journal = build_journal(export(entries, now_usec()), tmp_path / "remote.journal")
    config = write_config(tmp_path, f"""
[sources.journal]
files = ["{journal}"]
since = "all"
own_process = {str(own_process).lower()}
""", """
[jails.sshd]
grammar = "sshd"
journal = true
maxretry = 2
""")
    process = daemon(tmp_path, config)
    process.start()
    try:
        found = wait_for("the ban in the ledger", lambda: bans(tmp_path))
        assert found == [("sshd", ATTACKER, f"2 failures in 86400s: {ATTACK}")]
        rows = query(tmp_path / "ledger.db", "SELECT address, rule, source FROM failures ORDER BY id")
        assert rows == [(ATTACKER, "sshd/failed", "journal")] * 2
        assert ("in a reader process" in process.log.read_text()) == own_process
    finally:
        assert process.stop() == 0


def reader_of(process: DaemonProcess) -> int | None:
    """The pid of the daemon's journal reader process, None while there is none."""
    assert process.process is not None
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if (f"\nPPid:\t{process.process.pid}\n" in status
                and b"journalban.sources.journal_process" in cmdline):
            return int(entry.name)
    return None


def test_a_journal_reader_that_dies_is_started_again_and_nothing_is_lost_or_counted_twice(
        journald: Journald, tmp_path: Path) -> None:
    config = namespace_config(tmp_path, journald, maxretry=1000)
    ledger = tmp_path / "ledger.db"
    process = daemon(tmp_path, config)
    process.start()
    try:
        for n in range(1, 6):
            journald.send({"MESSAGE": failed(f"198.51.100.{n}"), "SYSLOG_IDENTIFIER": "sshd"})
        wait_for("the first five failures", lambda: past(process, ledger, 4))
        first = reader_of(process)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        for n in range(6, 11):
            journald.send({"MESSAGE": failed(f"198.51.100.{n}"), "SYSLOG_IDENTIFIER": "sshd"})
        wait_for("the next five, read by a new reader", lambda: past(process, ledger, 9))
        time.sleep(0.5)  # a double count would show now
        assert count(ledger, "SELECT count(*) FROM failures") == 10
        assert count(ledger, "SELECT count(DISTINCT address) FROM failures") == 10
        assert reader_of(process) not in (None, first)
        assert "reading again after the last recorded cursor" in process.log.read_text()
        assert process.running
    finally:
        assert process.stop() == 0


# --- exactly once across crashes ---------------------------------------------------------------


def past(process: DaemonProcess, ledger: Path, threshold: int) -> int:
    """The failures count once it is above ``threshold`` (0 before); fails at once if the daemon died."""
    if not process.running:
        raise AssertionError(f"journalban exited:\n{process.log.read_text()[-2000:]}")
    recorded = count(ledger, "SELECT count(*) FROM failures")
    return recorded if recorded > threshold else 0


def crash_at(process: DaemonProcess, ledger: Path, thresholds: list[int], total: int) -> list[int]:
    """Start, SIGKILL once the failures table passes each threshold, restart; the counts killed at."""
    killed_at = []
    for threshold in thresholds:
        process.launch()
        seen = wait_for(f"more than {threshold} failures", lambda t=threshold: past(process, ledger, t),
                        timeout=30, interval=0.01)
        process.kill()
        killed_at.append(seen)
    assert all(n < total for n in killed_at), f"read everything before the kill: {killed_at}"
    return killed_at


# A backlog goes in transactions of up to HOLD_FAILURES failures: three of them and more,
# so each kill falls between two commits, with failures read and held but not recorded.
CRASH_TOTAL = 3 * HOLD_FAILURES + 1_000


def test_journal_entries_count_exactly_once_across_kill_9(journal_remote: None, tmp_path: Path) -> None:
    total_failures = CRASH_TOTAL
    entries: list[Mapping[str, str]] = []
    for n in range(total_failures):
        entries.append(sshd_entry(failed(f"198.51.{(n // 250) % 200}.{n % 250 + 1}", 1024 + n % 60000), pid=n))
        if n % 10 == 0:  # noise from the same unit that matches no rule
            entries.append(sshd_entry("Connection closed by 10.0.0.5 port 51514 [preauth]", pid=n))
    # journal-remote starts a second file past a size: the source reads the directory
    (tmp_path / "journal").mkdir()
    build_journal(export(entries, now_usec(600)), tmp_path / "journal" / "remote.journal")
    ledger = tmp_path / "ledger.db"
    config = write_config(tmp_path, f"""
[sources.journal]
directory = "{tmp_path / "journal"}"
since = "all"
""", """
[jails.sshd]
grammar = "sshd"
journal = true
maxretry = 1000000
""")
    process = daemon(tmp_path, config)
    try:
        killed_at = crash_at(process, ledger, [2_000, HOLD_FAILURES + 8_000], total_failures)
        process.start()
        wait_for("every failure", lambda: past(process, ledger, total_failures - 1), timeout=50)
        time.sleep(0.5)  # a double count would show now
        assert count(ledger, "SELECT count(*) FROM failures") == total_failures, killed_at
        distinct = count(ledger, "SELECT count(DISTINCT address || ' ' || text) FROM failures")
        assert distinct == total_failures  # none twice, so none skipped
        assert bans(tmp_path) == []
    finally:
        if process.running:
            assert process.stop() == 0


def test_file_lines_count_exactly_once_across_kill_9(tmp_path: Path) -> None:
    total = CRASH_TOTAL
    logfile = tmp_path / "auth.log"
    ledger = tmp_path / "ledger.db"
    config = write_config(tmp_path, "", f"""
[jails.sshd]
grammar = "sshd"
files = ["{logfile}"]
journal = false
maxretry = 1000000
""")
    process = daemon(tmp_path, config)
    try:
        process.start()  # no file yet: when it appears it is read from its beginning
        stamp = time.strftime("%b %e %H:%M:%S", time.localtime(time.time() - 60))
        lines = []
        for n in range(total):
            lines.append(f"{stamp} web1 sshd[{n}]: {failed(f'198.51.{(n // 250) % 200}.{n % 250 + 1}', n)}\n")
            if n % 10 == 0:
                lines.append(f"{stamp} web1 sshd[{n}]: Accepted publickey for deploy from 10.0.0.5 port 1 ssh2\n")
        staging = tmp_path / "auth.log.new"
        staging.write_text("".join(lines))
        staging.rename(logfile)
        seen = wait_for("the first failures", lambda: past(process, ledger, 0), timeout=30, interval=0.01)
        process.kill()
        killed_at = [seen, *crash_at(process, ledger, [seen + 8_000, seen + 20_000], total)]
        process.start()
        wait_for("every failure", lambda: past(process, ledger, total - 1), timeout=50)
        time.sleep(0.5)
        assert count(ledger, "SELECT count(*) FROM failures") == total, killed_at
        assert count(ledger, "SELECT count(DISTINCT text) FROM failures") == total
    finally:
        if process.running:
            assert process.stop() == 0
