"""Every firewall backend through the real daemon, IPv4 and IPv6, in namespaces.

The attacker's subnet is kept apart from the server's, so that a subnet ban
over the attackers never covers the server's own address (which ignoreself
protects).
"""

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.daemon import LISTEN, DaemonProcess, connect, query, wait_for
from tests.netns import Namespace, link, namespace, require_netns

PORT = 8080
LOCKOUT = "Apr 3 01:11:12 IP locked out by wp-limit-login: {}\n"


@dataclass(frozen=True)
class Family:
    server: str
    prefix: int  # of the veth link, wide enough to hold both subnets
    attacker: str
    neighbour: str  # same subnet as the attacker, never named in a log
    second: str  # another offender of that subnet
    friend: str  # in ignoreip
    subnet: str  # the attackers' subnet, as a subnet ban is written


V4 = Family("198.18.0.1", 15, "198.19.5.9", "198.19.5.10", "198.19.5.11", "198.19.7.7", "198.19.5.0/24")
V6 = Family("2001:db8:1::1", 48, "2001:db8:1:5::9", "2001:db8:1:5::10", "2001:db8:1:5::11",
            "2001:db8:1:7::7", "2001:db8:1:5::/64")
BACKENDS = ["iptables", "ipset", "nftables"]


@dataclass
class Host:
    server: Namespace
    attacker: Namespace
    tmp: Path
    family: Family

    def daemon(self, backend: str, **jail: object) -> DaemonProcess:
        settings = {"grammar": '"wp-limit-login"', "files": f'["{self.tmp / "wp.log"}"]', "maxretry": 1,
                    "firewall": f'"{backend}"', "ignoreip": f'["{self.family.friend}"]',
                    **{k: v for k, v in jail.items()}}
        config = self.tmp / "journalban.toml"
        config.write_text(f'[control]\nsocket = "{self.tmp / "control.sock"}"\n'
                          f'[ledger]\nurl = "sqlite:///{self.tmp / "ledger.db"}"\n'
                          '[reconcile]\ninterval = "2s"\n[sources.files]\npoll_interval = 0.05\n'
                          "[jails.web]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        return DaemonProcess(self.server, config, self.tmp / "daemon.log")

    def lockout(self, *addresses: str) -> None:
        with (self.tmp / "wp.log").open("a") as log:
            log.writelines(LOCKOUT.format(a) for a in addresses)

    def connect(self, source: str) -> str:
        return connect(self.attacker, self.family.server, PORT, source)

    def bans(self) -> list[tuple[object, ...]]:
        return query(self.tmp / "ledger.db", "SELECT address, end_reason FROM bans ORDER BY id")


@pytest.fixture(params=[V4, V6], ids=["v4", "v6"])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    require_netns()
    family: Family = request.param
    with namespace("jb-srv") as server, namespace("jb-atk") as attacker:
        attacker_if, _ = link(attacker, f"{family.attacker}/{family.prefix}", server,
                              f"{family.server}/{family.prefix}")
        for address in (family.neighbour, family.second, family.friend):
            attacker.run(["ip", "addr", "add", f"{address}/{family.prefix}", "dev", attacker_if,
                          *(["nodad"] if ":" in address else [])])
        listener = server.popen([sys.executable, "-c", LISTEN, str(PORT)])
        try:
            site = Host(server, attacker, tmp_path, family)
            wait_for("the listener", lambda: site.connect(family.attacker) == "connected")
            yield site
        finally:
            listener.kill()
            listener.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_attacker_blocked_friend_spared_ban_lifted_on_time(host: Host, backend: str) -> None:
    f = host.family
    daemon = host.daemon(backend, bantime=4)
    daemon.start()
    try:
        host.lockout(f.friend, f.attacker)
        wait_for("the attacker to be dropped", lambda: host.connect(f.attacker) == "timed out", timeout=20)
        assert host.connect(f.friend) == "connected"
        assert host.connect(f.neighbour) == "connected"
        assert host.bans()[0] == (f.attacker, None)
        wait_for("the ban to be lifted", lambda: host.connect(f.attacker) == "connected", timeout=20)
        assert host.bans() == [(f.attacker, "expired")]
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_subnet_ban_blocks_a_neighbour(host: Host, backend: str) -> None:
    f = host.family
    daemon = host.daemon(backend, bantime=600, subnet_threshold=2)
    daemon.start()
    try:
        host.lockout(f.attacker, f.second)
        wait_for("the subnet ban", lambda: (f.subnet, None) in host.bans())
        assert host.bans() == [(f.attacker, "aggregated"), (f.subnet, None)]
        wait_for("the neighbour to be dropped", lambda: host.connect(f.neighbour) == "timed out", timeout=20)
        assert host.connect(f.friend) == "connected"  # another subnet
    finally:
        assert daemon.stop() == 0
