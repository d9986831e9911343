"""The walking skeleton's scenario, with real parts end to end.

A WordPress lockout line appended to the plugin's log → the grammar → the
detector → a ban in a real SQLite ledger → the reconciler → a DROP rule in a real
iptables chain inside a network namespace → the attacker's TCP connect times out.
"""

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.daemon import LISTEN, DaemonProcess, connect, query, wait_for
from tests.netns import Namespace, link, namespace, require_netns

SERVER, ATTACKER, FRIEND = "203.0.113.1", "203.0.113.9", "203.0.113.10"
PORT = 8080
LOCKOUT = "Apr 3 01:11:12 IP locked out by wp-limit-login: {}\n"  # PHP date('M j h:i:s ')


@dataclass
class Site:
    server: Namespace
    attacker: Namespace
    tmp: Path

    @property
    def ledger(self) -> Path:
        return self.tmp / "ledger.db"

    @property
    def logfile(self) -> Path:
        return self.tmp / "wp-limit-login.log"

    def daemon(self, bantime: int) -> DaemonProcess:
        config = self.tmp / "journalban.toml"
        config.write_text(f"""
[control]
socket = "{self.tmp / 'control.sock'}"

[ledger]
url = "sqlite:///{self.ledger}"

[reconcile]
interval = "2s"

[sources.files]
poll_interval = 0.05

[jails.wplogin]
grammar = "wp-limit-login"
files = ["{self.logfile}"]
maxretry = 1
bantime = {bantime}
ports = "all"
ignoreip = ["127.0.0.0/8", "::1", "{FRIEND}/32"]
""")
        return DaemonProcess(self.server, config, self.tmp / "daemon.log")

    def append(self, address: str) -> None:
        with self.logfile.open("a") as log:
            log.write(LOCKOUT.format(address))

    def connect(self, source: str) -> str:
        return connect(self.attacker, SERVER, PORT, source)

    def rules(self) -> str:
        return self.server.run(["iptables-save", "-t", "filter"]).stdout

    def bans(self) -> list[tuple[object, ...]]:
        return query(self.ledger, "SELECT address, reason, end_reason FROM bans ORDER BY id")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    require_netns()
    with namespace("jb-srv") as server, namespace("jb-atk") as attacker:
        attacker_if, _ = link(attacker, f"{ATTACKER}/24", server, f"{SERVER}/24")
        attacker.run(["ip", "addr", "add", f"{FRIEND}/24", "dev", attacker_if])
        listener = server.popen([sys.executable, "-c", LISTEN, str(PORT)])
        try:
            site = Site(server, attacker, tmp_path)
            wait_for("the listener", lambda: site.connect(ATTACKER) == "connected")
            yield site
        finally:
            listener.kill()
            listener.wait()


DROP_RULE = f"-A jb-wplogin -s {ATTACKER}/32 -j DROP"


def test_lockout_line_drops_the_attacker_until_bantime_ends(site: Site) -> None:
    site.append("198.51.100.77")  # written before journalban's first start: history, not an attack
    daemon = site.daemon(bantime=5)
    daemon.start()
    try:
        assert "-A INPUT -j jb-wplogin" in site.rules()
        site.append(FRIEND)
        site.append(ATTACKER)

        bans = wait_for("the ban in the ledger", site.bans)
        assert bans == [(ATTACKER, f"1 failure in 600s: {LOCKOUT.format(ATTACKER).strip()}", None)]
        wait_for("the DROP rule", lambda: DROP_RULE in site.rules())
        assert site.connect(ATTACKER) == "timed out"
        assert site.connect(FRIEND) == "connected"  # ignoreip: the same file, never banned

        wait_for("the rule to go after bantime", lambda: DROP_RULE not in site.rules(), timeout=20)
        assert site.bans() == [(ATTACKER, bans[0][1], "expired")]
        assert site.connect(ATTACKER) == "connected"
        failures = query(site.ledger, "SELECT address, rule, ban_id FROM failures")
        assert failures == [(ATTACKER, "wp-limit-login/lockout", 1)]
    finally:
        assert daemon.stop() == 0


def test_a_restart_restores_active_bans_and_resumes_reading(site: Site) -> None:
    daemon = site.daemon(bantime=600)
    daemon.start()
    site.append(ATTACKER)
    wait_for("the DROP rule", lambda: DROP_RULE in site.rules())
    assert daemon.stop() == 0
    assert DROP_RULE in site.rules()  # stopping keeps bans in force

    # A reboot: the firewall comes back empty.
    for command in (["-F", "INPUT"], ["-F", "jb-wplogin"], ["-X", "jb-wplogin"]):
        site.server.run(["iptables", *command])
    assert site.connect(ATTACKER) == "connected"
    site.append("198.51.100.5")  # written while journalban was down: read at restart

    daemon.start()
    try:
        assert DROP_RULE in site.rules()  # restored before "ready"
        assert "-A INPUT -j jb-wplogin" in site.rules()
        assert site.connect(ATTACKER) == "timed out"
        wait_for("the ban of the line written while down",
                 lambda: "-A jb-wplogin -s 198.51.100.5/32 -j DROP" in site.rules())
        assert [b[0] for b in site.bans()] == [ATTACKER, "198.51.100.5"]  # nothing counted twice
    finally:
        assert daemon.stop() == 0
