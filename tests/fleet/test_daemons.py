"""Real daemons sharing one PostgreSQL ledger, each in its own namespace with its own firewall.

Every host follows its own wp-limit-login log and enforces with iptables in its
namespace; all reach the ledger over PostgreSQL's Unix socket.
"""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from journalban.ledger import queries
from journalban.ledger.store import Ledger
from tests.e2e.daemon import DaemonProcess, wait_for
from tests.netns import Namespace, namespace, require_netns
from tests.postgres import PostgresServer

ATTACKER = "203.0.113.9"
LOCKOUT = "Apr 3 01:11:12 IP locked out by wp-limit-login: {}\n"
DROP_RULE = f"-A jb-wplogin -s {ATTACKER}/32 -j DROP"


@dataclass
class Host:
    name: str
    ns: Namespace
    tmp: Path
    daemon: DaemonProcess | None = None

    @property
    def logfile(self) -> Path:
        return self.tmp / "wp.log"

    def configure(self, url: str, scope: str, maxretry: int, reconcile: str) -> None:
        self.logfile.touch()  # present at the first start: read from its end
        config = self.tmp / "journalban.toml"
        config.write_text(f"""
[control]
socket = "{self.tmp / 'control.sock'}"
[ledger]
url = "{url}"
spool = "{self.tmp / 'spool.db'}"
[node]
name = "{self.name}"
[reconcile]
interval = "{reconcile}"
[sources.files]
poll_interval = 0.05
[jails.wplogin]
grammar = "wp-limit-login"
files = ["{self.logfile}"]
maxretry = {maxretry}
findtime = "10m"
bantime = "10m"
firewall = "iptables"
scope = "{scope}"
""")
        self.daemon = DaemonProcess(self.ns, config, self.tmp / "daemon.log")

    def lockout(self, address: str = ATTACKER) -> None:
        with self.logfile.open("a") as log:
            log.write(LOCKOUT.format(address))

    def status(self) -> dict[str, Any]:
        """``journalban status --json``, as an operator runs it."""
        result = subprocess.run([sys.executable, "-m", "journalban", "status", "--json", "--socket",
                                 str(self.tmp / "control.sock")], capture_output=True, text=True, timeout=30,
                                check=False)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def rules(self) -> str:
        return self.ns.run(["iptables-save", "-t", "filter"]).stdout

    def dropped(self) -> bool:
        return DROP_RULE in self.rules()

    def lifted(self) -> bool:
        return not self.dropped()

    def ready(self) -> bool:
        assert self.daemon is not None and self.daemon.process is not None
        if self.daemon.process.poll() is not None:
            raise AssertionError(f"{self.name}: journalban exited:\n{self.daemon.log.read_text()}")
        return "journalban ready" in self.daemon.log.read_text()


@dataclass
class Fleet:
    server: PostgresServer
    database: str
    url: str
    hosts: list[Host]

    def start(self, scope: str, maxretry: int, reconcile: str = "2s") -> None:
        for host in self.hosts:
            host.configure(self.url, scope, maxretry, reconcile)
        for host in self.hosts:  # all at once: each start takes about a second
            assert host.daemon is not None
            host.daemon.launch()
        for host in self.hosts:
            wait_for(f"{host.name} to be ready", host.ready, timeout=30)

    def sql(self, query: str) -> str:
        return self.server.psql(query, self.database)

    def failures(self) -> int:
        return int(self.sql("SELECT count(*) FROM failures"))

    def bans(self) -> list[str]:
        return self.sql("SELECT address || ' ' || node FROM bans ORDER BY id").splitlines()


@pytest.fixture
def fleet(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Fleet]:
    require_netns()
    url = postgres_server.create_database("fleet")
    owner = Ledger(url, node="admin")
    owner.upgrade()  # `journalban db upgrade`: hosts never change a shared schema
    owner.close()
    with ExitStack() as stack:
        hosts = []
        for number in (1, 2, 3):
            ns = stack.enter_context(namespace(f"jb-web{number}"))
            directory = tmp_path / f"web{number}"
            directory.mkdir()
            hosts.append(Host(f"web{number}", ns, directory))
        fleet = Fleet(postgres_server, str(make_url(url).database), url, hosts)
        try:
            yield fleet
        finally:
            for host in hosts:
                if host.daemon is not None and host.daemon.running:
                    assert host.daemon.stop() == 0, host.daemon.log.read_text()


def test_one_attempt_on_each_of_three_hosts_bans_everywhere_in_a_fleet_jail(fleet: Fleet) -> None:
    fleet.start("fleet", maxretry=3)
    for host in fleet.hosts:
        host.lockout()
    for host in fleet.hosts:
        wait_for(f"the DROP rule on {host.name}", host.dropped, timeout=15)
    assert len(fleet.bans()) == 1, fleet.bans()
    # every host's failure is behind the one ban (whose id need not be 1: when two hosts open
    # it at the same moment, the loser's rolled-back INSERT has used a value of the sequence)
    ban = fleet.sql("SELECT id FROM bans")
    assert fleet.sql("SELECT string_agg(node || ':' || coalesce(ban_id::text, '-'), ' ' ORDER BY node) "
                     "FROM failures") == f"web1:{ban} web2:{ban} web3:{ban}"


def test_host_scoped_jails_count_each_host_alone(fleet: Fleet) -> None:
    fleet.start("host", maxretry=3)
    for host in fleet.hosts:
        host.lockout()
    wait_for("three failures recorded", lambda: fleet.failures() == 3)
    time.sleep(3)  # longer than a fleet pull and a reconcile: nothing may come of it
    assert fleet.bans() == []
    assert not any(host.dropped() for host in fleet.hosts)


def test_two_hosts_racing_to_the_same_ban_open_one(fleet: Fleet) -> None:
    racers = fleet.hosts[:2]
    fleet.start("fleet", maxretry=3)
    for host in racers:
        host.lockout()
    wait_for("two failures recorded", lambda: fleet.failures() == 2)
    time.sleep(2.5)  # a fleet pull on each host even without notices: each window holds 2 of the 3
    for host in racers:  # the third failure on both at once
        host.lockout()
    wait_for("four failures recorded", lambda: fleet.failures() == 4)
    for host in fleet.hosts:
        wait_for(f"the DROP rule on {host.name}", host.dropped, timeout=15)
    time.sleep(1)  # the loser, if any, has recorded its ban by now
    assert len(fleet.bans()) == 1, fleet.bans()
    # the winner's window (both hosts' failures) is behind the ban; the loser's third failure
    # joined it, or was counted as already banned if the loser heard of the ban first
    assert int(fleet.sql("SELECT count(*) FROM failures WHERE ban_id IS NOT NULL")) >= 3
    assert fleet.sql("SELECT count(DISTINCT node) FROM failures WHERE ban_id IS NOT NULL") == "2"
    logs = "".join(h.daemon.log.read_text() for h in racers)  # type: ignore[union-attr]
    print(f"\nrace: {logs.count('recording again')} transaction(s) lost the race and joined the winner's ban; "
          f"{logs.count('already in force')} joined it by finding it")


def test_a_ban_reaches_another_host_through_notify(fleet: Fleet) -> None:
    first, second, _ = fleet.hosts
    fleet.start("fleet", maxretry=1, reconcile="5m")  # the periodic reconcile cannot be what delivers it
    first.lockout()
    started = time.monotonic()
    wait_for("the DROP rule on the deciding host", first.dropped, timeout=15, interval=0.01)
    local = time.monotonic() - started
    wait_for("the DROP rule on another host", second.dropped, timeout=15, interval=0.01)
    remote = time.monotonic() - started
    print(f"\npropagation: line appended → DROP on the deciding host {local * 1000:.0f} ms, "
          f"on another host {remote * 1000:.0f} ms (+{(remote - local) * 1000:.0f} ms)")
    assert len(fleet.bans()) == 1

    # lifted by hand elsewhere (an admin host): every host takes the rule out at once
    admin = Ledger(fleet.url, node="admin")
    try:
        started = time.monotonic()
        assert len(queries.unban(admin, ATTACKER, None, datetime.now(UTC))) == 1
    finally:
        admin.close()
    for host in fleet.hosts:
        wait_for(f"the DROP rule to go on {host.name}", host.lifted, timeout=15, interval=0.01)
    print(f"unban by an admin host → DROP gone on all three hosts: {(time.monotonic() - started) * 1000:.0f} ms")


def test_postgresql_stopped_during_an_attack_loses_nothing_and_doubles_nothing(fleet: Fleet) -> None:
    """Each host bans on its own while PostgreSQL is down, records in its spool, and delivers
    it once PostgreSQL is back: the ledger then holds exactly what was fed, each ban once."""
    fleet.start("host", maxretry=2)
    web1, web2, web3 = fleet.hosts
    web1.lockout("198.51.100.50")  # recorded before the server goes away
    wait_for("the first failure recorded", lambda: fleet.failures() == 1)
    fleet.server.stop()
    stopped = time.monotonic()
    fed = {"web1": 1, "web2": 0, "web3": 0}
    try:
        # an address on each host: two failures ban it there (maxretry = 2), one does not
        attacks = [(web1, ["198.51.100.1"] * 2 + ["198.51.100.50"]), (web2, ["198.51.100.2"] * 2),
                   (web3, ["198.51.100.3", "198.51.100.1"])]
        for host, addresses in attacks:
            for address in addresses:
                host.lockout(address)
                fed[host.name] += 1
        for host, address in ((web1, "198.51.100.1"), (web1, "198.51.100.50"), (web2, "198.51.100.2")):
            wait_for(f"{address} dropped on {host.name} with PostgreSQL away",
                     lambda h=host, a=address: f"-A jb-wplogin -s {a}/32 -j DROP" in h.rules(), timeout=20)
        assert "-j DROP" not in web3.rules()  # one failure each: no ban
        for host in fleet.hosts:
            ledger = wait_for(f"{host.name}'s status to show the spool",
                              lambda h=host: h.status()["ledger"] if h.status()["ledger"]["spooled"] else None)
            assert ledger["state"] == "unreachable", ledger
        # a restart while PostgreSQL is down: web2 starts from its spool, enforces, reads on
        assert web2.daemon is not None and web2.daemon.stop() == 0
        web2.lockout("198.51.100.2")  # written while web2 is stopped: read once after the restart
        fed["web2"] += 1
        web2.daemon.start()
        assert "starting from the spool" in web2.daemon.log.read_text()
        assert "-A jb-wplogin -s 198.51.100.2/32 -j DROP" in web2.rules()
        for host in fleet.hosts:  # more lines while away: the spool keeps them in order
            host.lockout("192.0.2.77")
            fed[host.name] += 1
        time.sleep(1)  # read and spooled
        away = time.monotonic() - stopped
    finally:
        fleet.server.start()
    back = time.monotonic()
    expected = sum(fed.values())
    wait_for(f"all {expected} failures delivered", lambda: fleet.failures() == expected, timeout=60)
    print(f"\nPostgreSQL away {away:.1f}s; the spools delivered {time.monotonic() - back:.1f}s after it was back")
    time.sleep(2)  # a late duplicate would show now
    assert fleet.failures() == expected
    per_node = fleet.sql("SELECT string_agg(node || ':' || n, ' ' ORDER BY node) "
                         "FROM (SELECT node, count(*) AS n FROM failures GROUP BY node) c")
    assert per_node == " ".join(f"{name}:{n}" for name, n in sorted(fed.items()))
    assert sorted(fleet.bans()) == ["198.51.100.1 web1", "198.51.100.2 web2", "198.51.100.50 web1"]
    # 2 behind each ban; web2's line read after its restart counts as already banned
    assert int(fleet.sql("SELECT count(*) FROM failures WHERE ban_id IS NOT NULL")) == 6
    for host in fleet.hosts:
        wait_for(f"{host.name}'s spool empty", lambda h=host: h.status()["ledger"] == {
            "state": "reachable", "spooled": 0, "spool": str(h.tmp / "spool.db")})
    assert int(fleet.sql("SELECT count(*) FROM spool_deliveries")) >= 3
    # every host still enforces what it decided, now from the ledger
    assert "-A jb-wplogin -s 198.51.100.2/32 -j DROP" in web2.rules()
