"""The operator's commands as a user runs them: ``journalban ...`` processes against the real
daemon (``journalban run``) inside a network namespace with the iptables backend, then
against its ledger with the daemon stopped."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.daemon import DaemonProcess, wait_for
from tests.netns import Namespace, namespace, require_netns

ADDRESS = "192.0.2.50"
ATTACKER = "203.0.113.9"
REASON = "port scan from the lab"
LOCKOUT = "Apr 3 01:11:12 IP locked out by wp-limit-login: {}\n"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
EXIT_REFUSED, EXIT_NOT_RUNNING = 1, 3

CONFIG = """
[control]
socket = "{dir}/control.sock"

[ledger]
url = "sqlite:///{dir}/ledger.db"

[node]
name = "web1"

[sources.files]
poll_interval = 0.05

[jails.wplogin]
grammar = "wp-limit-login"
files = ["{dir}/wp.log"]
maxretry = 1
bantime = "1h"
firewall = "iptables"
ignoreself = false
"""


@dataclass
class Site:
    """A daemon in its namespace; ``cli`` runs ``journalban ARGS -c CONFIG`` there as a process."""

    ns: Namespace
    dir: Path
    daemon: DaemonProcess

    @property
    def config(self) -> Path:
        return self.dir / "journalban.toml"

    def cli(self, *args: str, user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        argv = [*(user or []), sys.executable, "-m", "journalban", *args]
        return self.ns.run(argv, check=False, env={**os.environ, "COLUMNS": "200"})

    def rules(self) -> list[str]:
        listed = self.ns.run(["iptables", "-S", "jb-wplogin"], check=False).stdout
        return [line for line in listed.splitlines() if line.startswith("-A jb-wplogin")]

    def dropped(self, address: str) -> bool:
        return any(f"-s {address}/32" in rule and rule.endswith("-j DROP") for rule in self.rules())


@pytest.fixture
def site() -> Iterator[Site]:
    require_netns()
    # a directory uid 65534 may traverse (its socket stays 0600, root's): pytest's tmp_path is root's alone
    directory = Path(tempfile.mkdtemp(prefix="jb-cli-"))
    os.chmod(directory, 0o711)
    (directory / "journalban.toml").write_text(CONFIG.format(dir=directory))
    (directory / "wp.log").touch()
    try:
        with namespace("jb-cli") as ns:
            daemon = DaemonProcess(ns, directory / "journalban.toml", directory / "daemon.log")
            daemon.start()
            try:
                yield Site(ns, directory, daemon)
            finally:
                if daemon.running:
                    assert daemon.stop() == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_ban_list_history_status_and_unban_against_the_running_daemon(site: Site) -> None:
    banned = site.cli("ban", ADDRESS, "--for", "2h", "--reason", REASON, "-c", str(site.config))
    assert banned.returncode == 0, banned.stderr
    assert banned.stdout.startswith(f"banned {ADDRESS} in wplogin until ")
    wait_for(f"the DROP rule for {ADDRESS}", lambda: site.dropped(ADDRESS))

    listed = site.cli("list", "-c", str(site.config))
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["JAIL", "ADDRESS", "HOST", "SINCE", "UNTIL", "REASON"] and "─" not in listed.stdout
    assert [row.split()[:3] for row in rows] == [["wplogin", ADDRESS, "web1"]]
    assert rows[0].endswith(f"manual: {REASON}")
    as_json = json.loads(site.cli("list", "--json", "-c", str(site.config)).stdout)
    assert as_json["from"] == "daemon" and [(b["address"], b["reason"], b["node"]) for b in as_json["bans"]] == [
        (ADDRESS, f"manual: {REASON}", "web1")]

    history = site.cli("history", ADDRESS, "-c", str(site.config))
    assert history.returncode == 0, history.stderr
    assert re.search(rf"ban #1 +wplogin +web1 +in force, until .* manual: {REASON}$", history.stdout, re.MULTILINE)

    status = site.cli("status", "-c", str(site.config))
    assert status.returncode == 0, status.stderr
    assert re.search(r"^wplogin +0 +1$", status.stdout, re.MULTILINE)
    assert re.search(r"^web1 +0 +1$", status.stdout, re.MULTILINE)  # the host that decided it

    unbanned = site.cli("unban", ADDRESS, "-c", str(site.config))
    assert unbanned.returncode == 0 and unbanned.stdout.strip() == f"unbanned {ADDRESS} in 1 jail(s): wplogin"
    wait_for(f"the DROP rule for {ADDRESS} to go", lambda: not site.dropped(ADDRESS))
    ended = json.loads(site.cli("history", ADDRESS, "--json", "-c", str(site.config)).stdout)
    assert [(b["reason"], b["end_reason"]) for b in ended["bans"]] == [(f"manual: {REASON}", "unbanned")]
    assert site.cli("list", "-c", str(site.config)).stdout.strip() == "no active bans"


def test_a_broken_config_on_reload_is_refused_and_the_old_one_keeps_running(site: Site) -> None:
    good = site.config.read_text()
    site.config.write_text(good.replace("bantime = \"1h\"", "bantim = \"1h\""))
    line = next(n for n, text in enumerate(site.config.read_text().splitlines(), 1) if text.startswith("bantim "))
    # the client reads the config to find the socket, and refuses it at once; given the socket,
    # it asks the daemon, which loads the file, refuses it and says why
    for where in (["-c", str(site.config)], ["--socket", str(site.dir / "control.sock")]):
        refused = site.cli("reload", *where)
        assert refused.returncode == EXIT_REFUSED, refused.stdout
        assert "the new config has problems; the running one stays" in refused.stderr
        assert re.search(rf"^{re.escape(str(site.config))}:{line}:1: unknown key 'bantim'", refused.stderr,
                         re.MULTILINE), refused.stderr
    assert site.daemon.running
    assert "reload refused; the running config stays" in site.daemon.log.read_text()
    # the old config still runs: a lockout line still bans, for the old bantime
    with (site.dir / "wp.log").open("a") as log:
        log.write(LOCKOUT.format(ATTACKER))
    wait_for(f"the DROP rule for {ATTACKER}", lambda: site.dropped(ATTACKER))
    [ban] = json.loads(site.cli("list", "--json", "--socket", str(site.dir / "control.sock")).stdout)["bans"]
    assert ban["address"] == ATTACKER and ban["reason"].startswith("1 failure in 600s")
    site.config.write_text(good)
    assert site.cli("reload", "-c", str(site.config)).stdout.strip() == "reloaded"


def test_a_non_root_client_is_refused(site: Site) -> None:
    socket = str(site.dir / "control.sock")
    for command in (["status"], ["ban", ADDRESS, "--jail", "wplogin"], ["reload"]):
        denied = site.cli(*command, "--socket", socket, user=NOBODY)
        assert denied.returncode == EXIT_REFUSED, (command, denied.stdout, denied.stderr)
        assert denied.stderr.strip() == f"journalban: {socket}: permission denied (the control socket serves root only)"
    os.chmod(socket, 0o666)  # opened by mistake: the daemon still asks the kernel who is calling
    denied = site.cli("ban", ADDRESS, "--jail", "wplogin", "--socket", socket, user=NOBODY)
    assert denied.returncode == EXIT_REFUSED
    assert denied.stderr.strip() == "journalban: permission denied: the control socket serves root only"
    assert not site.dropped(ADDRESS)
    assert json.loads(site.cli("list", "--json", "-c", str(site.config)).stdout)["bans"] == []


def test_with_the_daemon_stopped_list_history_and_report_read_the_ledger(site: Site) -> None:
    assert site.cli("ban", ADDRESS, "--forever", "--reason", REASON, "-c", str(site.config)).returncode == 0
    with (site.dir / "wp.log").open("a") as log:
        log.write(LOCKOUT.format(ATTACKER))
    wait_for("both DROP rules", lambda: site.dropped(ADDRESS) and site.dropped(ATTACKER))
    assert site.daemon.stop() == 0

    listed = site.cli("list", "--json", "-c", str(site.config))
    assert listed.returncode == 0, listed.stderr
    assert "journalban is not running: reading the ledger" in listed.stderr and "read-only" in listed.stderr
    reply = json.loads(listed.stdout)
    assert reply["from"] == "ledger"
    assert sorted(b["address"] for b in reply["bans"]) == sorted([ADDRESS, ATTACKER])
    table = site.cli("list", "-c", str(site.config)).stdout
    assert re.search(rf"^wplogin +{re.escape(ADDRESS)} +web1 .* forever +manual: {REASON}$", table, re.MULTILINE)

    history = site.cli("history", ATTACKER, "-c", str(site.config))
    assert history.returncode == 0, history.stderr
    assert re.search(rf"failure +wplogin +web1 +wp-limit-login/\S+ +.*{ATTACKER} → ban #2$", history.stdout,
                     re.MULTILINE), history.stdout

    report = site.cli("report", "--since", "7d", "--format", "json", "-c", str(site.config))
    assert report.returncode == 0, report.stderr
    numbers = json.loads(report.stdout)
    assert numbers["summary"]["active_bans"] == 2 and numbers["summary"]["bans"] == 2
    assert numbers["tables"]["hosts"] == [{"host": "web1", "failures": numbers["summary"]["failures"], "bans": 2,
                                           "active_bans": 2}]
    text = site.cli("report", "--since", "7d", "-c", str(site.config)).stdout
    assert "Per host: failures read, bans decided, bans in force" in text and "─" not in text

    for needs_daemon in (["status"], ["unban", ADDRESS], ["reload"]):
        result = site.cli(*needs_daemon, "-c", str(site.config))
        assert result.returncode == EXIT_NOT_RUNNING and "journalban is not running" in result.stderr, needs_daemon
    assert site.dropped(ADDRESS) and site.dropped(ATTACKER)  # a stop keeps the bans in the firewall
