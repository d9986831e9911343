"""The daemon's adapter: the handlers drive a real (not running) Daemon through it."""

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from journalban import pipeline as pipeline_module
from journalban.control.context import DaemonContext
from journalban.control.handlers import dispatch
from journalban.control.hooks import Hooks
from journalban.daemon import Daemon
from journalban.detector import Verdict
from journalban.events import Event, Failure
from journalban.loading import load


def test_a_manual_ban_and_unban_reach_the_daemons_parts(tmp_path: Path) -> None:
    config = tmp_path / "journalban.toml"
    config.write_text(f'[control]\nsocket = "{tmp_path}/control.sock"\n[ledger]\nurl = "sqlite:///{tmp_path}/ledger.db"\n[jails.wplogin]\n'
                      f'grammar = "wp-limit-login"\nfiles = ["{tmp_path}/wp.log"]\nfirewall = "dry-run"\n')
    loaded = load(config)
    daemon = Daemon(loaded.config, loaded.grammars)
    daemon.ledger.upgrade()

    async def reload() -> Sequence[str]:
        return ["bad"]

    context = DaemonContext(daemon, Hooks({}), reload)
    try:
        ban = asyncio.run(dispatch(context, {"command": "ban", "address": "203.0.113.9"}))
        assert ban["ok"] and ban["ban"]["jail"] == "wplogin", ban
        now = daemon.clock()
        failure = Failure("wplogin", "203.0.113.9", now, "g/r", "t", "test")
        assert daemon.detector.observe(failure, now)[0] is Verdict.ALREADY_BANNED
        assert daemon.schedule.scheduler.get_job("reconcile-now") is not None
        status = asyncio.run(dispatch(context, {"command": "status"}))
        assert status["jails"] == [{"name": "wplogin", "failures_in_window": 0, "active_bans": 1}]
        assert status["last_reconcile"] is None
        assert asyncio.run(dispatch(context, {"command": "unban", "address": "203.0.113.9"}))["unbanned"] == 1
        assert daemon.detector.observe(failure, now)[0] is Verdict.COUNTED
        assert asyncio.run(dispatch(context, {"command": "reload"}))["problems"] == ["bad"]
    finally:
        daemon.ledger.close()


def test_an_unban_comes_after_the_bans_a_burst_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst's bans wait in the pipeline to be recorded together; a command that reaches
    the ledger records them first, so the operator sees them and an unban is not undone."""
    monkeypatch.setattr(pipeline_module, "HOLD_DENSE", 1)
    config = tmp_path / "journalban.toml"
    config.write_text(f'[control]\nsocket = "{tmp_path}/control.sock"\n[ledger]\nurl = "sqlite:///{tmp_path}/ledger.db"\n'
                      f'[jails.wplogin]\ngrammar = "wp-limit-login"\nfiles = ["{tmp_path}/wp.log"]\nmaxretry = 1\n'
                      'firewall = "dry-run"\n')
    loaded = load(config)
    daemon = Daemon(loaded.config, loaded.grammars)
    daemon.ledger.upgrade()

    async def reload() -> Sequence[str]:
        return []

    context = DaemonContext(daemon, Hooks({}), reload)
    try:
        source = f"file:{tmp_path}/wp.log"
        lockout = Event(daemon.clock(), source, "Apr 3 01:11:12 IP locked out by wp-limit-login: 203.0.113.9")
        decided = daemon.pipeline.process(source, [lockout], None, daemon.clock(), more=True)
        assert [b.address for b in decided] == ["203.0.113.9"]
        assert daemon.ledger.active_bans() == [], "held"
        listed = asyncio.run(dispatch(context, {"command": "list"}))
        assert [b["address"] for b in listed["bans"]] == ["203.0.113.9"], listed
        assert asyncio.run(dispatch(context, {"command": "unban", "address": "203.0.113.9"}))["unbanned"] == 1
        daemon.pipeline.commit_positions(daemon.clock())
        assert daemon.ledger.active_bans() == []
    finally:
        daemon.ledger.close()
