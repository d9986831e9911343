"""The daemon's own log in a real journal (a journald namespace instance): structured
fields on ban, unban and heal lines, and its own lines never counted as failures."""

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from systemd import journal

from journalban import logs
from journalban.control.client import request
from journalban.daemon import Daemon
from journalban.loading import load
from tests.sources.journal.journald import Journald, journald
from tests.test_daemon import LOCKOUT, loaded, started, until

__all__ = ["journald"]  # the fixture, imported for pytest

ROOT = Path(__file__).parents[1]
ATTACKER = "203.0.113.9"


def test_the_journal_is_chosen_only_when_stderr_is_its_stream(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w") as err:
        stat = os.fstat(err.fileno())
        assert logs.under_systemd({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}, err.fileno())
        assert not logs.under_systemd({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + 1}"}, err.fileno())
        # inherited by whatever a service starts, so not a sign by itself
        assert not logs.under_systemd({"INVOCATION_ID": "0123456789abcdef"}, err.fileno())
        assert not logs.under_systemd({"JOURNAL_STREAM": "garbage"}, err.fileno())


@pytest.fixture
def journal_log(journald: Journald) -> Iterator[Journald]:
    """The process's log sent to the namespace journal for the test, then put back."""
    root = logging.getLogger()
    handler, level = logs.journal_handler(Path(journald.socket_path)), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield journald
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def own_entries(instance: Journald) -> list[dict[str, object]]:
    instance.sync()
    reader = journal.Reader(path=str(instance.directory))
    try:
        reader.add_match(SYSLOG_IDENTIFIER=logs.IDENTIFIER)
        return [dict(entry) for entry in reader]
    finally:
        reader.close()


def events(entries: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(e.get(logs.EVENT), e.get(logs.JAIL), e.get(logs.ADDRESS)) for e in entries if logs.EVENT in e]


def test_ban_heal_and_unban_reach_the_journal_with_their_fields(journal_log: Journald, tmp_path: Path) -> None:
    async def scenario() -> None:
        daemon, task, firewall = await started(loaded(tmp_path))
        try:
            with (tmp_path / "wp.log").open("a") as f:
                f.write(LOCKOUT.format(ATTACKER) * 2)
            await until(lambda: ("wplogin", ATTACKER) in firewall.entries)
            firewall.entries.clear()  # someone flushed the chain by hand
            daemon.reconciler.run()
            assert ("wplogin", ATTACKER) in firewall.entries
            reply = await asyncio.to_thread(request, tmp_path / "control.sock",
                                            {"command": "unban", "address": ATTACKER})
            assert reply["ok"] and reply["unbanned"] == 1
        finally:
            daemon.stop()
            await task

    asyncio.run(scenario())
    entries = own_entries(journal_log)
    assert events(entries) == [("ban", "wplogin", ATTACKER), ("heal", None, None), ("heal", "wplogin", ATTACKER),
                               ("unban", "wplogin", ATTACKER)]
    by_event = {e[logs.EVENT]: e for e in entries if logs.ADDRESS in e}
    assert re.fullmatch(rf"ban wplogin {ATTACKER} until \S+: 2 failures in 600s: .*", str(by_event["ban"]["MESSAGE"]))
    assert by_event["heal"]["MESSAGE"] == f"healed: restored {ATTACKER} in wplogin"
    assert by_event["unban"]["MESSAGE"].startswith(f"unbanned by hand: {ATTACKER} in wplogin")  # type: ignore[union-attr]
    summary = next(e for e in entries if e.get(logs.EVENT) == "heal" and logs.ADDRESS not in e)
    assert summary["PRIORITY"] == 4 and "drifted" in str(summary["MESSAGE"])  # a warning
    ready = [e for e in entries if str(e["MESSAGE"]).startswith("journalban ready")]
    assert len(ready) == 1 and logs.EVENT not in ready[0]  # other lines carry no event fields
    assert ready[0]["PRIORITY"] == 6 and ready[0]["LOGGER"] == "journalban.daemon"


def test_the_daemons_own_ban_lines_are_not_counted_by_its_journal_source(journal_log: Journald,
                                                                          tmp_path: Path) -> None:
    """A jail reading every root-written entry (``_UID=0``) sees the daemon's own lines too:
    its ban line repeats the attacker's log text, address included, yet counts nothing."""
    text = (ROOT / "grammars" / "sshd.grammar").read_text()
    text = re.sub(r"^grammar sshd$", "grammar sshd-root", text, count=1, flags=re.M)
    text = re.sub(r"^applies .*\n", "", text, flags=re.M)
    text = text.replace("time stamp\n", "applies journal _UID=0\ntime stamp\n", 1)
    (tmp_path / "grammars").mkdir()
    (tmp_path / "grammars" / "sshd-root.grammar").write_text(text)
    config = tmp_path / "journalban.toml"
    config.write_text(f"""
[control]
socket = "{tmp_path}/control.sock"
[ledger]
url = "sqlite:///{tmp_path}/ledger.db"
[grammars]
directories = ["{tmp_path / 'grammars'}"]
[sources.journal]
directory = "{journal_log.directory}"
since = "all"
[jails.sshd]
grammar = "sshd-root"
journal = true
maxretry = 2
findtime = "1d"
firewall = "dry-run"
ignoreself = false
""")
    attack = f"Failed password for root from {ATTACKER} port 22 ssh2"
    manual = "198.51.100.7"

    async def scenario() -> None:
        setup = load(config)
        daemon = Daemon(setup.config, setup.grammars)
        task = asyncio.create_task(daemon.run())
        try:
            await until(lambda: daemon.intake.journal is not None)
            for _ in range(2):
                journal_log.send({"MESSAGE": attack, "SYSLOG_IDENTIFIER": "sshd"})
            await until(lambda: daemon.pipeline.counters["banned"] == 1)
            reply = await asyncio.to_thread(request, tmp_path / "control.sock", {
                "command": "ban", "address": manual, "reason": f"Failed password for root from {manual} port 22 ssh2"})
            assert reply["ok"], reply
            journal_log.sync()
            written = len(own_entries(journal_log)) + 2  # the daemon's lines and the two sshd entries
            assert written >= 5
            await until(lambda: daemon.intake.journal is not None
                        and daemon.intake.journal.counters["read"] >= written)
            assert daemon.pipeline.counters["counted"] + daemon.pipeline.counters["banned"] == 2
        finally:
            daemon.stop()
            await task

    asyncio.run(scenario())
    banned = [e for e in own_entries(journal_log) if e.get(logs.EVENT) == "ban"]
    assert [str(e["MESSAGE"]).split()[:3] for e in banned] == [["ban", "sshd", ATTACKER], ["ban", "#2", "sshd"]]
    assert attack in str(banned[0]["MESSAGE"])  # the attacker's line, inside the daemon's own
    ledger = sqlite3.connect(tmp_path / "ledger.db")
    try:
        assert ledger.execute("SELECT address, count(*) FROM failures GROUP BY address").fetchall() == [(ATTACKER, 2)]
    finally:
        ledger.close()
