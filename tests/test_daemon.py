"""The daemon wired whole, in-process, with the dry-run firewall (no root needed)."""

import asyncio
import gc
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from journalban import pipeline as pipeline_module
from journalban.daemon import GC_YOUNG, SWITCH_INTERVAL, Daemon, DaemonFailed
from journalban.events import BanDecision, Failure
from journalban.firewall.memory import MemoryFirewall
from journalban.loading import Loaded, load

LOCKOUT = "Apr 3 01:11:12 IP locked out by wp-limit-login: {}\n"


def loaded_text(tmp_path: Path, maxretry: int = 2) -> str:
    return f"""
[control]
socket = "{tmp_path}/control.sock"
[ledger]
url = "sqlite:///{tmp_path}/ledger.db"
[sources.files]
poll_interval = 0.02
[jails.wplogin]
grammar = "wp-limit-login"
files = ["{tmp_path}/wp.log"]
maxretry = {maxretry}
firewall = "dry-run"
"""


def loaded(tmp_path: Path) -> Loaded:
    config = tmp_path / "journalban.toml"
    config.write_text(loaded_text(tmp_path))
    return load(config)


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def started(setup: Loaded) -> tuple[Daemon, "asyncio.Task[None]", MemoryFirewall]:
    """A daemon running in this loop with the dry-run firewall, once its files are open."""
    daemon = Daemon(setup.config, setup.grammars)
    task = asyncio.create_task(daemon.run())
    firewall = daemon.reconciler.enforcements[0].backend
    assert isinstance(firewall, MemoryFirewall)
    await until(lambda: daemon.intake.files)
    return daemon, task, firewall


def test_lines_become_dry_run_bans_and_state_survives_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "wp.log"

    async def first_run() -> None:
        daemon, task, firewall = await started(loaded(tmp_path))
        with log.open("a") as f:
            f.write(LOCKOUT.format("203.0.113.9") * 2 + LOCKOUT.format("198.51.100.4"))
        await until(lambda: ("wplogin", "203.0.113.9") in firewall.entries)
        await until(lambda: daemon.pipeline.counters["counted"] == 2)
        assert firewall.entries == {("wplogin", "203.0.113.9")}
        daemon.stop()
        await task

    async def second_run() -> None:
        daemon, task, firewall = await started(loaded(tmp_path))
        assert firewall.entries == {("wplogin", "203.0.113.9")}  # restored before reading
        with log.open("a") as f:  # the second failure of 198.51.100.4, the first read last time
            f.write(LOCKOUT.format("198.51.100.4"))
        await until(lambda: ("wplogin", "198.51.100.4") in firewall.entries)
        daemon.stop()
        await task

    asyncio.run(first_run())
    asyncio.run(second_run())


def test_ban_times_grow_across_a_restart(tmp_path: Path) -> None:
    """The second ban of an address, decided by a new daemon, is twice as long: the count is the ledger's."""
    config = tmp_path / "journalban.toml"
    config.write_text(loaded_text(tmp_path, maxretry=1) + "bantime = 1\nbantime_increment = true\n")
    log = tmp_path / "wp.log"

    async def run_once() -> list[tuple[datetime, datetime]]:
        daemon, task, _ = await started(load(config))
        with log.open("a") as f:
            f.write(LOCKOUT.format("203.0.113.9"))
        await until(lambda: daemon.pipeline.counters["banned"] == 1)
        bans = [(b.started_at, b.expires_at) for b in daemon.ledger.active_bans()]
        await until(lambda: not daemon.ledger.active_bans(), timeout=10)  # lifted at expiry
        daemon.stop()
        await task
        return bans

    first = asyncio.run(run_once())
    second = asyncio.run(run_once())
    assert [(end - start).total_seconds() for start, end in first + second] == [1.0, 2.0]


def test_the_next_expiry_arms_a_timer(tmp_path: Path) -> None:
    """Bans are lifted at their expiry, not up to an interval later: one timer, re-armed each run."""
    setup = loaded(tmp_path)
    daemon = Daemon(setup.config, setup.grammars)
    daemon.ledger.upgrade()
    now = datetime.now(UTC)
    failure = Failure("wplogin", "203.0.113.9", now, "g/r", "t", "test")
    decision = BanDecision("wplogin", "203.0.113.9", now, now + timedelta(seconds=5), "why", (failure,))
    daemon.ledger.record([failure], [decision], {}, now)
    daemon.schedule.scheduler.start(paused=True)
    try:
        daemon.schedule._run()
        job = daemon.schedule.scheduler.get_job("reconcile-expiry")
        assert job is not None and job.next_run_time == decision.expiry + timedelta(milliseconds=50)
    finally:
        daemon.schedule.scheduler.shutdown(wait=False)
        daemon.ledger.close()


def test_on_stop_remove_takes_the_jails_objects_out_and_keep_leaves_them(tmp_path: Path) -> None:
    log = tmp_path / "wp.log"

    async def run(on_stop: str) -> MemoryFirewall:
        config = tmp_path / f"{on_stop}.toml"
        config.write_text(loaded_text(tmp_path, maxretry=1) + f'on_stop = "{on_stop}"\n')
        daemon, task, firewall = await started(load(config))
        with log.open("a") as f:
            f.write(LOCKOUT.format(f"203.0.113.{len(on_stop)}"))
        await until(lambda: firewall.entries)
        daemon.stop()
        await task
        return firewall

    assert asyncio.run(run("keep")).entries
    removed = asyncio.run(run("remove"))
    assert not removed.entries and not removed.jails


def test_a_journal_batch_the_ledger_refuses_stops_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader has moved past the entries: carrying on would lose them; a restart reads them again."""
    from tests.sources.journal.journald import JOURNAL_REMOTE, build_journal, export_record

    if not Path(JOURNAL_REMOTE).exists():
        pytest.skip(f"{JOURNAL_REMOTE} is not installed")
    monkeypatch.setattr(pipeline_module, "RECORD_ATTEMPTS", 1)
    (tmp_path / "journal").mkdir()
    build_journal(export_record({
        "__CURSOR": "s=0;i=1", "__REALTIME_TIMESTAMP": str(int(datetime.now(UTC).timestamp() * 1e6)),
        "__MONOTONIC_TIMESTAMP": "1", "_BOOT_ID": "0" * 32, "_HOSTNAME": "web1", "_SYSTEMD_UNIT": "ssh.service",
        "_UID": "0", "SYSLOG_IDENTIFIER": "sshd", "MESSAGE": "Failed password for root from 203.0.113.9 port 22 ssh2",
    }), tmp_path / "journal" / "x.journal")
    config = tmp_path / "journal.toml"
    config.write_text(loaded_text(tmp_path).replace('grammar = "wp-limit-login"', 'grammar = "sshd"').replace(
        f'files = ["{tmp_path}/wp.log"]', "journal = true")
        + f'[sources.journal]\ndirectory = "{tmp_path / "journal"}"\nsince = "all"\n')
    setup = load(config)
    daemon = Daemon(setup.config, setup.grammars)
    daemon.ledger.prepare()
    db = sqlite3.connect(tmp_path / "ledger.db")  # the disk is full, say: every insert of a failure fails
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON failures BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    db.commit()
    db.close()
    with pytest.raises(DaemonFailed, match="disk full"):
        asyncio.run(asyncio.wait_for(daemon.run(), 30))
    assert daemon.ledger.cursor("journal") is None  # nothing committed: the entry is read again at restart
    # The CLI turns it into exit status 1 with the reason, not a traceback.
    done = subprocess.run([sys.executable, "-m", "journalban", "run", "-c", str(config)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert any(line.startswith("journalban: ") and "disk full" in line for line in done.stderr.splitlines())


def test_a_written_line_is_read_at_once_not_at_the_next_poll(tmp_path: Path) -> None:
    """inotify wakes the daemon: with the safety poll at a minute, the ban still comes at once."""
    config = tmp_path / "journalban.toml"
    config.write_text(loaded_text(tmp_path, maxretry=1).replace("poll_interval = 0.02", "poll_interval = 60"))
    (tmp_path / "wp.log").touch()

    async def scenario() -> None:
        daemon, task, firewall = await started(load(config))
        await asyncio.sleep(0.5)  # the first poll is behind it: the next is a minute away
        with (tmp_path / "wp.log").open("a") as f:
            f.write(LOCKOUT.format("203.0.113.9"))
        await until(lambda: ("wplogin", "203.0.113.9") in firewall.entries, timeout=30)
        daemon.stop()
        await task

    asyncio.run(scenario())


@pytest.mark.parametrize("delay", [0.05, 3600.0])
def test_the_position_past_lines_that_produced_nothing_is_committed_while_idle_or_at_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay: float) -> None:
    """Such a position waits for the next batch that records something (``Pipeline``), yet
    is never left behind for long: the idle daemon commits it once due, and a stop commits it."""
    monkeypatch.setattr(pipeline_module, "POSITION_DELAY", delay)
    log = tmp_path / "wp.log"
    log.write_text("")

    async def scenario() -> Daemon:
        daemon, task, _ = await started(loaded(tmp_path))
        with log.open("a") as f:
            f.write("Apr 3 01:11:12 nothing to see here\n" * 100)
        await until(lambda: daemon.intake.files[0].follower.position.offset == log.stat().st_size)
        if delay < 1:
            await until(daemon.ledger.positions)
        else:
            await asyncio.sleep(0.2)
            assert daemon.ledger.positions() == {}, "not due: it waits"
        daemon.stop()
        await task
        return daemon

    daemon = asyncio.run(scenario())
    (position,) = daemon.ledger.positions().values()
    assert position.offset == log.stat().st_size


def test_threads_wait_less_for_the_gil_while_the_daemon_runs(tmp_path: Path) -> None:
    """A ban's reconcile runs in another thread: while the daemon runs, a thread that wants the
    GIL waits at most SWITCH_INTERVAL for the busy event loop; the old interval comes back after."""
    before = sys.getswitchinterval()

    async def run() -> float:
        daemon, task, _ = await started(loaded(tmp_path))
        during = sys.getswitchinterval()
        daemon.stop()
        await task
        return during

    assert asyncio.run(run()) == pytest.approx(SWITCH_INTERVAL)
    assert SWITCH_INTERVAL < before
    assert sys.getswitchinterval() == before


def test_what_start_up_built_is_frozen_out_of_collections_while_the_daemon_runs(tmp_path: Path) -> None:
    """At ready, start-up's objects leave the collector's sight and it looks at young objects
    less often (``GC_YOUNG``); after the daemon, both are as they were."""
    before = gc.get_threshold()

    async def run() -> tuple[int, tuple[int, int, int]]:
        daemon, task, _ = await started(loaded(tmp_path))
        during = gc.get_freeze_count(), gc.get_threshold()
        daemon.stop()
        await task
        return during

    frozen, threshold = asyncio.run(run())
    assert frozen > 10_000  # the modules, grammars, ORM and config: tens of thousands of objects
    assert threshold == (GC_YOUNG, *before[1:]) and GC_YOUNG > before[0]
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
