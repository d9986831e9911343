"""A jail imported from a fail2ban tree, run by the real daemon, bans at the firewall.

fail2ban's grafana filter finds the date with its ``datepattern`` (``^t=%Y-%m-%dT...``)
and its failregex starts right after it, so it only matches once the date is cut out:
the imported grammar says ``applies file format=fail2ban`` and declares the
datepattern, and the daemon's file source cuts it. The jail's ``logpath`` is a glob:
the two files it matches at start and a third created later are each followed, with
its own position in the ledger.
"""

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.daemon import LISTEN, DaemonProcess, connect, count, query, wait_for
from tests.netns import Namespace, link, namespace, require_netns

SERVER, ATTACKER, OTHER = "203.0.113.1", "203.0.113.9", "198.51.100.4"
PORT = 80  # grafana's jail closes http and https
JAIL_LOCAL = """\
[sshd]
enabled = false

[grafana]
enabled = true
logpath = {logs}/grafana/*.log
maxretry = 3
"""


def grafana_line(address: str) -> str:
    """A failed login as grafana logs it, stamped now."""
    return (f"t={datetime.now().astimezone():%Y-%m-%dT%H:%M:%S%z} lvl=eror msg=\"Invalid username or password\" "
            f"logger=context userId=0 orgId=0 uname=admin error=\"Invalid Username or Password\" "
            f"remote_addr={address}\n")


@dataclass
class Site:
    server: Namespace
    attacker: Namespace
    tmp: Path

    @property
    def logs(self) -> Path:
        return self.tmp / "log" / "grafana"

    @property
    def ledger(self) -> Path:
        return self.tmp / "ledger.db"

    def imported_daemon(self) -> DaemonProcess:
        """``import-fail2ban --tree`` on a copy of the system's tree with the grafana jail enabled,
        plus where this test keeps its socket and ledger."""
        tree = self.tmp / "fail2ban"
        shutil.copytree("/etc/fail2ban", tree)
        (tree / "jail.local").write_text(JAIL_LOCAL.format(logs=self.tmp / "log"), encoding="utf-8")
        out = self.tmp / "journalban"
        done = subprocess.run([sys.executable, "-m", "journalban", "grammar", "import-fail2ban", "--tree", str(tree),
                               "-o", str(out)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        grammar = (out / "grammars" / "f2b-grafana.grammar").read_text(encoding="utf-8")
        assert "\napplies file format=fail2ban\ndatepattern '^t=%Y-%m-%dT%H:%M:%S%z'\n" in grammar
        config = out / "journalban.toml"
        text = config.read_text(encoding="utf-8")
        assert f'files = ["{self.logs}/*.log"]' in text
        config.write_text(text + f"""
[control]
socket = "{self.tmp / 'control.sock'}"

[ledger]
url = "sqlite:///{self.ledger}"

[reconcile]
interval = "2s"

[sources.files]
poll_interval = 0.05
rescan_interval = 0.2
""", encoding="utf-8")
        return DaemonProcess(self.server, config, self.tmp / "daemon.log")

    def append(self, name: str, address: str) -> None:
        with (self.logs / name).open("a", encoding="utf-8") as log:
            log.write(grafana_line(address))

    def failures(self) -> list[tuple[object, ...]]:
        return query(self.ledger, "SELECT address, rule, source, text FROM failures ORDER BY id")

    def rules(self) -> str:
        return self.server.run(["iptables-save", "-t", "filter"]).stdout


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    require_netns()
    with namespace("jb-srv") as server, namespace("jb-atk") as attacker:
        link(attacker, f"{ATTACKER}/24", server, f"{SERVER}/24")
        listener = server.popen([sys.executable, "-c", LISTEN, str(PORT)])
        try:
            site = Site(server, attacker, tmp_path)
            wait_for("the listener", lambda: connect(attacker, SERVER, PORT, ATTACKER) == "connected")
            yield site
        finally:
            listener.kill()
            listener.wait()


def test_an_imported_datepattern_jail_follows_its_glob_and_bans(site: Site) -> None:
    site.logs.mkdir(parents=True)
    for name in ("a.log", "b.log"):
        site.append(name, OTHER)  # before the first start: history, not an attack
    (site.logs / "notes.txt").write_text(grafana_line(OTHER), encoding="utf-8")  # not *.log
    daemon = site.imported_daemon()
    daemon.start()
    try:
        site.append("a.log", ATTACKER)
        site.append("b.log", ATTACKER)
        wait_for("two failures", lambda: len(site.failures()) == 2)
        assert connect(site.attacker, SERVER, PORT, ATTACKER) == "connected"  # maxretry = 3
        site.append("c.log", ATTACKER)  # a file the glob matches from now on: read from its start

        wait_for("the ban in the ledger", lambda: count(site.ledger, "SELECT count(*) FROM bans"))
        wait_for("the firewall rule", lambda: f"-A jb-grafana -s {ATTACKER}/32" in site.rules())
        assert connect(site.attacker, SERVER, PORT, ATTACKER) != "connected"
        failures = site.failures()
        assert [(a, r, s) for a, r, s, _ in failures] == [
            (ATTACKER, "f2b-grafana/fail-1", f"file:{site.logs / name}") for name in ("a.log", "b.log", "c.log")]
        assert all(str(text).startswith(' lvl=eror msg="Invalid username') for *_, text in failures)  # date cut
        positions = query(site.ledger, "SELECT source, \"offset\" FROM source_positions ORDER BY source")
        assert positions == [(f"file:{site.logs / name}", (site.logs / name).stat().st_size)
                             for name in ("a.log", "b.log", "c.log")]
        assert count(site.ledger, "SELECT count(*) FROM failures WHERE address = ?", OTHER) == 0
    finally:
        assert daemon.stop() == 0
