"""The operator's commands through click's runner, against a live control server and a stopped one."""

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from journalban.events import FOREVER, BanDecision, Failure
from journalban.operator_cli import COMMANDS

from .conftest import T0, FakeDaemon, ServerThread


@click.group()
def cli() -> None:
    """Stands in for ``journalban.cli.main``, which the lead extends with COMMANDS."""


for command in COMMANDS:
    cli.add_command(command)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "journalban.toml"
    path.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path}/ledger.db"\n\n'
                    '[jails.wplogin]\ngrammar = "wp-limit-login"\nfiles = ["/var/log/wp.log"]\n\n'
                    '[jails.sshd]\ngrammar = "sshd"\nfiles = ["/var/log/auth.log"]\n')
    return path


@pytest.fixture
def run(config: Path, socket_dir: Path):  # type: ignore[no-untyped-def]
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, [*args, "-c", str(config), "--socket", str(socket_dir / "control.sock")])
    return invoke


@pytest.fixture
def served(daemon: FakeDaemon, socket_dir: Path) -> Iterator[FakeDaemon]:
    with ServerThread(socket_dir / "control.sock", daemon):
        yield daemon


def record_ban(daemon: FakeDaemon) -> None:
    failures = [Failure("wplogin", "203.0.113.9", T0 + timedelta(minutes=m), "wp/lockout",
                        "IP locked out by wp-limit-login: 203.0.113.9", "file:/var/log/wp.log") for m in range(3)]
    decision = BanDecision("wplogin", "203.0.113.9", failures[-1].time, FOREVER, "3 failures in 600s",
                           tuple(failures))
    daemon.ledger.record(failures, [decision], {}, failures[-1].time)


def test_ban_list_history_unban_with_the_daemon_running(served: FakeDaemon, run) -> None:  # type: ignore[no-untyped-def]
    banned = run("ban", "::ffff:192.0.2.1", "--jail", "sshd", "--for", "2h", "--reason", "port scan")
    assert banned.exit_code == 0, banned.output
    assert banned.stdout.startswith("banned 192.0.2.1 in sshd until ")
    assert served.firewall.entries == {("sshd", "192.0.2.1")}

    table = run("list")
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split() == ["JAIL", "ADDRESS", "SINCE", "UNTIL", "REASON"]
    assert row.split()[:2] == ["sshd", "192.0.2.1"] and row.endswith("manual: port scan")
    assert header.index("ADDRESS") == row.index("192.0.2.1")  # aligned
    listed = json.loads(run("list", "--json", "--jail", "sshd").stdout)
    assert listed["from"] == "daemon" and [b["address"] for b in listed["bans"]] == ["192.0.2.1"]

    unbanned = run("unban", "192.0.2.1")
    assert unbanned.exit_code == 0 and unbanned.stdout.strip() == "unbanned 192.0.2.1 in 1 jail(s): sshd"
    assert served.firewall.entries == set()
    seen = json.loads(run("history", "192.0.2.1", "--json").stdout)
    assert [(b["reason"], b["end_reason"]) for b in seen["bans"]] == [("manual: port scan", "unbanned")]


def test_history_reads_as_a_timeline(served: FakeDaemon, run) -> None:  # type: ignore[no-untyped-def]
    record_ban(served)
    result = run("history", "203.0.113.9")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TIME", "WHAT", "JAIL", "RULE", "/", "STATE", "DETAIL"]
    assert [line.split()[2] for line in lines[1:]] == ["failure", "failure", "failure", "ban"]
    assert lines[1].endswith("203.0.113.9 → ban #1") and "in force, forever" in lines[4]


def test_refusals_and_usage_errors(served: FakeDaemon, run) -> None:  # type: ignore[no-untyped-def]
    refused = run("ban", "127.0.0.1", "--jail", "sshd")
    assert refused.exit_code == 1 and "add force" in refused.stderr
    assert run("ban", "127.0.0.1", "--jail", "sshd", "--force").exit_code == 0
    assert run("ban", "192.0.2.1").exit_code == 1  # two jails: name one
    for usage in (["ban", "not-an-ip"], ["ban", "192.0.2.1", "--for", "soon"],
                  ["ban", "192.0.2.1", "--for", "1h", "--forever"], ["history"]):
        assert run(*usage).exit_code == 2, usage


def test_status_and_reload(served: FakeDaemon, run) -> None:  # type: ignore[no-untyped-def]
    result = run("status")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["JAIL", "FAILURES", "IN", "WINDOW", "ACTIVE", "BANS"]
    assert "file:/var/log/wp.log: unparsed 0, cut 0" in result.stdout
    assert json.loads(run("status", "--json").stdout)["jails"][0]["name"] == "wplogin"
    assert run("reload").stdout.strip() == "reloaded"
    served.problems = ["journalban.toml:4:1: unknown key 'bantim' in [defaults]"]
    bad = run("reload")
    assert bad.exit_code == 1 and "journalban.toml:4:1: unknown key" in bad.stderr


def test_with_the_daemon_stopped_list_and_history_read_the_ledger(daemon: FakeDaemon, run) -> None:  # type: ignore[no-untyped-def]
    record_ban(daemon)
    daemon.ledger.close()
    listed = run("list", "--json")
    assert listed.exit_code == 0, listed.output
    assert "not running: reading the ledger" in listed.stderr and "read-only" in listed.stderr
    reply = json.loads(listed.stdout)
    assert reply["from"] == "ledger"
    assert [b["address"] for b in reply["bans"]] == ["203.0.113.9"]
    assert "203.0.113.9" in run("list").stdout
    seen = json.loads(run("history", "203.0.113.9", "--json").stdout)
    assert seen["from"] == "ledger" and seen["failures_total"] == 3 and seen["bans"][0]["end_reason"] is None
    for needs_daemon in (["status"], ["ban", "192.0.2.1", "--jail", "sshd"], ["unban", "192.0.2.1"], ["reload"]):
        result = run(*needs_daemon)
        assert result.exit_code == 3 and "journalban is not running" in result.stderr, needs_daemon


def test_the_read_only_ledger_creates_and_writes_nothing(tmp_path: Path, socket_dir: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path}/absent/ledger.db"\n')
    result = CliRunner().invoke(cli, ["list", "-c", str(config), "--socket", str(socket_dir / "none.sock")])
    assert result.exit_code == 1 and "cannot read the ledger" in result.stderr
    assert not (tmp_path / "absent").exists()
