"""The operator's commands through click's runner, against a live control server and a stopped one."""

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from journalban.events import FOREVER, BanDecision, Failure
from journalban.ledger.store import Ledger
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
    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, [*args, "-c", str(config), "--socket", str(socket_dir / "control.sock")],
                                  env=env)
    invoke.socket = socket_dir / "control.sock"  # type: ignore[attr-defined]
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
    assert header.split() == ["JAIL", "ADDRESS", "HOST", "SINCE", "UNTIL", "REASON"]
    assert row.split()[:3] == ["sshd", "192.0.2.1", served.ledger.node] and row.endswith("manual: port scan")
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
    assert lines[0].split() == ["TIME", "WHAT", "JAIL", "HOST", "RULE", "/", "STATE", "DETAIL"]
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


def _record_on(ledger: Ledger, address: str, jail: str = "wplogin") -> None:
    """Three failures and the ban they open, as the host ``ledger.node`` records them."""
    failures = [Failure(jail, address, T0 + timedelta(minutes=m), "wp/lockout",
                        f"IP locked out by wp-limit-login: {address}", "file:/var/log/wp.log") for m in range(3)]
    decision = BanDecision(jail, address, failures[-1].time, FOREVER, "3 failures in 600s", tuple(failures))
    ledger.record(failures, [decision], {}, failures[-1].time)


@pytest.fixture
def two_hosts(daemon: FakeDaemon) -> Iterator[FakeDaemon]:
    """The daemon's ledger with what two hosts recorded: web1 banned 203.0.113.1, web2 203.0.113.2,
    and both saw 203.0.113.3 (web1 in wplogin, web2 in sshd)."""
    url = str(daemon.ledger.engine.url)
    web1, web2 = Ledger(url, node="web1"), Ledger(url, node="web2")
    try:
        for ledger, address in ((web1, "203.0.113.1"), (web2, "203.0.113.2"), (web1, "203.0.113.3")):
            _record_on(ledger, address)
        _record_on(web2, "203.0.113.3", "sshd")
    finally:
        web1.close()
        web2.close()
    yield daemon


def _hosts_and_addresses(reply: dict[str, object]) -> list[tuple[str, str]]:
    return [(b["node"], b["address"]) for b in reply["bans"]]  # type: ignore[attr-defined, index]


def test_list_and_history_show_and_filter_by_host_running_and_stopped(two_hosts: FakeDaemon, run) -> None:  # type: ignore[no-untyped-def]
    every = [("web1", "203.0.113.1"), ("web2", "203.0.113.2"), ("web1", "203.0.113.3"), ("web2", "203.0.113.3")]
    for state in ("running", "stopped"):
        if state == "running":
            server = ServerThread(run.socket, two_hosts)
            server.__enter__()
        try:
            listed = json.loads(run("list", "--json").stdout)
            assert listed["from"] == ("daemon" if state == "running" else "ledger")
            assert sorted(_hosts_and_addresses(listed)) == sorted(every)
            only = json.loads(run("list", "--json", "--host", "web2").stdout)
            assert sorted(_hosts_and_addresses(only)) == [("web2", "203.0.113.2"), ("web2", "203.0.113.3")]
            table = run("list", "--host", "web1").stdout.splitlines()
            assert [line.split()[:3] for line in table[1:]] == [["wplogin", "203.0.113.1", "web1"],
                                                                ["wplogin", "203.0.113.3", "web1"]]
            seen = json.loads(run("history", "203.0.113.3", "--json").stdout)
            assert {f["node"] for f in seen["failures"]} == {"web1", "web2"} and len(seen["bans"]) == 2
            mine = json.loads(run("history", "203.0.113.3", "--json", "--host", "web2").stdout)
            assert {(f["node"], f["jail"]) for f in mine["failures"]} == {("web2", "sshd")}
            assert [(b["node"], b["jail"]) for b in mine["bans"]] == [("web2", "sshd")] and mine["failures_total"] == 3
            timeline = run("history", "203.0.113.3", "--host", "web1").stdout.splitlines()
            assert len(timeline) == 5 and all(" web1 " in line and "web2" not in line for line in timeline[1:])
        finally:
            if state == "running":
                server.__exit__()


def test_status_shows_each_host_and_filters_by_one(two_hosts: FakeDaemon, run) -> None:  # type: ignore[no-untyped-def]
    two_hosts.clock.now = T0 + timedelta(minutes=5)
    with ServerThread(run.socket, two_hosts):
        reply = json.loads(run("status", "--json").stdout)
        assert [(h["host"], h["active_bans"]) for h in reply["hosts"]] == [("web1", 2), ("web2", 2)]
        assert [(j["name"], j["active_bans"]) for j in reply["jails"]] == [("wplogin", 3), ("sshd", 1)]
        web2 = json.loads(run("status", "--json", "--host", "web2").stdout)
        assert [(j["name"], j["active_bans"]) for j in web2["jails"]] == [("wplogin", 1), ("sshd", 1)]
        assert [h["host"] for h in web2["hosts"]] == ["web2"]
        text = run("status").stdout
        assert re.search(r"^web1 +0 +2$", text, re.MULTILINE) and re.search(r"^web2 +0 +2$", text, re.MULTILINE)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_a_terminal_gets_rich_tables_and_a_pipe_plain_text(served: FakeDaemon, run) -> None:  # type: ignore[no-untyped-def]
    record_ban(served)
    for command in (["list"], ["history", "203.0.113.9"], ["status"]):
        piped = run(*command)
        drawn = run(*command, env={"FORCE_COLOR": "1", "COLUMNS": "160"})
        assert piped.exit_code == drawn.exit_code == 0, (piped.output, drawn.output)
        assert "─" not in piped.stdout and "\x1b[" not in piped.stdout, command
        assert "─" in drawn.stdout and "\x1b[" in drawn.stdout, command  # rich's rule under bold headers
        plain = ANSI.sub("", drawn.stdout)
        assert "203.0.113.9" in plain or command == ["status"]
        header = next(line for line in plain.splitlines() if "JAIL" in line)
        assert header.split()[:2] in (["JAIL", "ADDRESS"], ["TIME", "WHAT"], ["JAIL", "FAILURES"]), header
    listed = ANSI.sub("", run("list", env={"FORCE_COLOR": "1", "COLUMNS": "160"}).stdout)
    row = next(line for line in listed.splitlines() if "203.0.113.9" in line)
    assert row.split()[:3] == ["wplogin", "203.0.113.9", served.ledger.node] and "3 failures in 600s" in row


def test_a_clients_escape_sequence_is_shown_never_sent_to_the_terminal(served: FakeDaemon, run) -> None:  # type: ignore[no-untyped-def]
    reason = "scanner \x1b[2J\x1b[31mgotcha"  # clear the screen, turn red
    assert run("ban", "192.0.2.7", "--jail", "sshd", "--reason", reason).exit_code == 0
    for env in (None, {"FORCE_COLOR": "1", "COLUMNS": "200"}):
        shown = run("list", env=env).stdout
        assert "\x1b[2J" not in shown and "\x1b[31m" not in shown
        assert "scanner \\x1b[2J\\x1b[31mgotcha" in ANSI.sub("", shown)
