"""The ipset backend against real netfilter and ipset, each test in its own network namespace."""

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from journalban.firewall.base import Actual, Diff, Entry, FirewallError, JailLayout, PortSpec
from journalban.firewall.ipset import IpsetFirewall
from tests.firewall.test_iptables import reconcile, rules
from tests.netns import Namespace, link, namespace, require_netns

SSHD = JailLayout("sshd")
V4_BAN: Entry = ("sshd", "203.0.113.9")
V6_BAN: Entry = ("sshd", "2001:db8::9")
NET4: Entry = ("sshd", "203.0.113.0/24")
NET6: Entry = ("sshd", "2001:db8:1::/64")
HOOKS4 = ["-A INPUT -m set --match-set jb-sshd-4 src -j DROP",
          "-A INPUT -m set --match-set jb-sshd-net4 src -j DROP"]
HOOKS6 = ["-A INPUT -m set --match-set jb-sshd-6 src -j DROP",
          "-A INPUT -m set --match-set jb-sshd-net6 src -j DROP"]
OUR_SETS = ("jb-sshd-4", "jb-sshd-6", "jb-sshd-net4", "jb-sshd-net6")


def require_ipset() -> None:
    require_netns()
    if shutil.which("ipset") is None:
        pytest.skip("ipset is not installed")


@pytest.fixture
def ns() -> Iterator[Namespace]:
    require_ipset()
    with namespace() as ns:
        yield ns


@pytest.fixture
def fw(ns: Namespace) -> IpsetFirewall:
    return IpsetFirewall(command_prefix=ns.argv([]))


def members(ns: Namespace, name: str) -> set[str]:
    out = ns.run(["ipset", "save", name]).stdout
    return {line.split()[2] for line in out.splitlines() if line.startswith("add ")}


def set_names(ns: Namespace) -> set[str]:
    return set(ns.run(["ipset", "list", "-n"]).stdout.split())


def test_bulk_apply_read_and_lift(ns: Namespace, fw: IpsetFirewall) -> None:
    hosts: set[Entry] = {("sshd", f"10.{i // 250}.{i % 250}.1") for i in range(1000)}
    hosts |= {("sshd", f"2001:db8::{i:x}") for i in range(1, 6)}
    wanted = frozenset(hosts | {NET4, NET6})
    assert fw.read([SSHD]) == Actual(frozenset(), layout_ok=False)
    assert reconcile(fw, [SSHD], *wanted) == Diff(add=wanted, repair_layout=True)
    assert len(members(ns, "jb-sshd-4")) == 1000
    assert members(ns, "jb-sshd-net4") == {"203.0.113.0/24"}
    assert members(ns, "jb-sshd-6") == {f"2001:db8::{i:x}" for i in range(1, 6)}
    assert members(ns, "jb-sshd-net6") == {"2001:db8:1::/64"}
    assert rules(ns, 4) == HOOKS4 and rules(ns, 6) == HOOKS6
    assert fw.read([SSHD]) == Actual(wanted, layout_ok=True)
    assert not reconcile(fw, [SSHD], *wanted)  # the second pass finds nothing to do

    kept = frozenset(sorted(hosts)[:10])
    assert reconcile(fw, [SSHD], *kept) == Diff(remove=wanted - kept)
    assert fw.read([SSHD]) == Actual(kept, layout_ok=True)


def test_remove_leaves_the_operators_sets_and_rules(ns: Namespace, fw: IpsetFirewall) -> None:
    ns.run(["ipset", "create", "other", "hash:ip"])
    ns.run(["ipset", "add", "other", "192.0.2.1"])
    ns.run(["iptables", "-A", "INPUT", "-m", "set", "--match-set", "other", "src", "-j", "DROP"])
    ns.run(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
    before = rules(ns, 4)
    reconcile(fw, [SSHD], V4_BAN, V6_BAN, NET4)
    assert rules(ns, 4) == HOOKS4 + before
    assert set_names(ns) == {"other", *OUR_SETS}
    fw.remove([SSHD])
    fw.remove([SSHD])  # nothing left to remove is fine
    assert rules(ns, 4) == before and rules(ns, 6) == []
    assert set_names(ns) == {"other"} and members(ns, "other") == {"192.0.2.1"}


def test_reboot_is_healed(ns: Namespace, fw: IpsetFirewall) -> None:
    reconcile(fw, [SSHD], V4_BAN, V6_BAN, NET4)
    for tool in ("iptables", "ip6tables"):  # what a reboot leaves: no rules, then no sets
        ns.run([tool, "-F"])
    for name in OUR_SETS:
        ns.run(["ipset", "destroy", name])
    assert fw.read([SSHD]) == Actual(frozenset(), layout_ok=False)
    assert reconcile(fw, [SSHD], V4_BAN, V6_BAN, NET4) == Diff(
        add=frozenset({V4_BAN, V6_BAN, NET4}), repair_layout=True)
    assert fw.read([SSHD]) == Actual(frozenset({V4_BAN, V6_BAN, NET4}), layout_ok=True)
    assert rules(ns, 4) == HOOKS4


def test_deleted_hook_and_accept_above_are_repaired(ns: Namespace, fw: IpsetFirewall) -> None:
    reconcile(fw, [SSHD], V4_BAN)
    ns.run(["ip6tables", "-D", "INPUT", "-m", "set", "--match-set", "jb-sshd-net6", "src",
            "-j", "DROP"])
    assert reconcile(fw, [SSHD], V4_BAN) == Diff(repair_layout=True)
    assert rules(ns, 6) == HOOKS6

    ns.run(["iptables", "-I", "INPUT", "2", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
    accept = "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"
    assert not fw.read([SSHD]).layout_ok
    assert reconcile(fw, [SSHD], V4_BAN) == Diff(repair_layout=True)
    assert rules(ns, 4) == [*HOOKS4, accept]

    ns.run(["iptables", "-I", "INPUT", "1", "-m", "set", "--match-set", "jb-sshd-4", "src",
            "-j", "DROP"])  # duplicated
    assert reconcile(fw, [SSHD], V4_BAN) == Diff(repair_layout=True)
    assert rules(ns, 4) == [*HOOKS4, accept]
    assert not reconcile(fw, [SSHD], V4_BAN)


def test_hand_added_entries_are_reported_and_removed(ns: Namespace, fw: IpsetFirewall) -> None:
    reconcile(fw, [SSHD], V4_BAN)
    ns.run(["ipset", "add", "jb-sshd-4", "198.51.100.1"])
    ns.run(["ipset", "add", "jb-sshd-net4", "198.51.100.2"])  # a host in the net set
    ns.run(["ipset", "add", "jb-sshd-net6", "2001:db8:9::/48"])
    extra = frozenset({("sshd", "198.51.100.1"), ("sshd", "198.51.100.2"),
                       ("sshd", "2001:db8:9::/48")})
    assert fw.read([SSHD]) == Actual(extra | {V4_BAN}, layout_ok=True)
    assert reconcile(fw, [SSHD], V4_BAN) == Diff(remove=extra)
    assert fw.read([SSHD]) == Actual(frozenset({V4_BAN}), layout_ok=True)


def test_reject_ports_and_log(ns: Namespace, fw: IpsetFirewall) -> None:
    web = JailLayout("web", blocktype="reject", log=True,
                     ports=(PortSpec("tcp", ("80", "443")), PortSpec("udp", ("443",))))
    entry: Entry = ("web", "203.0.113.9")
    reconcile(fw, [SSHD, web], V4_BAN, entry)
    assert sorted(rules(ns, 4, "INPUT")) == sorted([
        *HOOKS4,
        "-A INPUT -p tcp -m multiport --dports 80,443 -m set --match-set jb-web-4 src -j jbl-web",
        "-A INPUT -p tcp -m multiport --dports 80,443 -m set --match-set jb-web-net4 src -j jbl-web",
        "-A INPUT -p udp -m multiport --dports 443 -m set --match-set jb-web-4 src -j jbl-web",
        "-A INPUT -p udp -m multiport --dports 443 -m set --match-set jb-web-net4 src -j jbl-web"])
    assert rules(ns, 6, "jbl-web") == [
        '-A jbl-web -m limit --limit 6/min --limit-burst 10 -j LOG --log-prefix "journalban web: "',
        "-A jbl-web -j REJECT --reject-with icmp6-port-unreachable"]
    assert not reconcile(fw, [SSHD, web], V4_BAN, entry)

    plain = JailLayout("web", blocktype="reject")  # logging off: hooks rewritten, helper gone
    assert reconcile(fw, [SSHD, plain], V4_BAN, entry) == Diff(repair_layout=True)
    assert ("-A INPUT -m set --match-set jb-web-4 src -j REJECT --reject-with icmp-port-unreachable"
            in rules(ns, 4))
    assert "jbl-web" not in ns.run(["iptables-save"]).stdout
    fw.remove([SSHD, plain])
    assert rules(ns, 4) == [] and set_names(ns) == set()


def test_hook_chain_forward_and_missing_docker_user(ns: Namespace, fw: IpsetFirewall) -> None:
    routed = JailLayout("routed", chain="FORWARD")
    docker = JailLayout("docker", chain="DOCKER-USER")
    jails = [routed, docker]
    with pytest.raises(FirewallError, match="DOCKER-USER does not exist"):
        reconcile(fw, jails, ("routed", "203.0.113.9"), ("docker", "203.0.113.7"))
    assert rules(ns, 4) == ["-A FORWARD -m set --match-set jb-routed-4 src -j DROP",
                            "-A FORWARD -m set --match-set jb-routed-net4 src -j DROP"]
    assert members(ns, "jb-docker-4") == {"203.0.113.7"}  # staged, hooked in once Docker runs
    assert not fw.read(jails).layout_ok
    for tool in ("iptables", "ip6tables"):
        ns.run([tool, "-N", "DOCKER-USER"])
        ns.run([tool, "-A", "DOCKER-USER", "-j", "RETURN"])
    assert reconcile(fw, jails, ("routed", "203.0.113.9"), ("docker", "203.0.113.7")) == Diff(
        repair_layout=True)
    assert rules(ns, 6, "DOCKER-USER") == [
        "-A DOCKER-USER -m set --match-set jb-docker-6 src -j DROP",
        "-A DOCKER-USER -m set --match-set jb-docker-net6 src -j DROP",
        "-A DOCKER-USER -j RETURN"]
    assert fw.read(jails).layout_ok


# --- traffic ---------------------------------------------------------------------------

SERVER = """
import socket
server = socket.socket(socket.AF_INET6)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
server.bind(("::", 8080))
server.listen()
while True:
    server.accept()[0].close()
"""
CLIENT = """
import socket, sys
socket.create_connection((sys.argv[1], 8080), timeout=1, source_address=(sys.argv[2], 0)).close()
"""


def connects(client: Namespace, server: str, source: str) -> bool:
    done = client.run([sys.executable, "-c", CLIENT, server, source], check=False, timeout=10)
    return done.returncode == 0


def serve(server: Namespace) -> "subprocess.Popen[str]":
    return server.popen([sys.executable, "-c", SERVER],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_up(client: Namespace, server: str, source: str) -> None:
    deadline = time.monotonic() + 10
    while not connects(client, server, source):
        assert time.monotonic() < deadline, "the listener never came up"
        time.sleep(0.1)


@pytest.mark.parametrize(("server_cidr", "attacker", "neighbour", "network"), [
    ("203.0.113.1/24", "203.0.113.9", "203.0.113.10", "203.0.113.0/24"),
    ("2001:db8:1::1/64", "2001:db8:1::9", "2001:db8:1::10", "2001:db8:1::/64"),
])
def test_bans_stop_traffic(server_cidr: str, attacker: str, neighbour: str, network: str) -> None:
    require_ipset()
    prefix = server_cidr.split("/")[1]
    server_address = server_cidr.split("/")[0]
    with namespace("jb-attacker") as clients, namespace("jb-server") as server:
        client_if, _ = link(clients, f"{attacker}/{prefix}", server, server_cidr)
        clients.run(["ip", "addr", "add", f"{neighbour}/{prefix}", "dev", client_if,
                     *(["nodad"] if ":" in neighbour else [])])
        listener = serve(server)
        try:
            wait_until_up(clients, server_address, attacker)
            wait_until_up(clients, server_address, neighbour)
            fw = IpsetFirewall(command_prefix=server.argv([]))
            reconcile(fw, [SSHD], ("sshd", attacker))
            assert not connects(clients, server_address, attacker)
            assert connects(clients, server_address, neighbour)
            reconcile(fw, [SSHD], ("sshd", attacker), ("sshd", network))
            assert not connects(clients, server_address, neighbour)
            reconcile(fw, [SSHD])
            assert connects(clients, server_address, attacker)
            assert connects(clients, server_address, neighbour)
        finally:
            listener.kill()
            listener.wait(timeout=10)


def test_a_set_of_ours_with_another_type_is_reported(ns: Namespace, fw: IpsetFirewall) -> None:
    ns.run(["ipset", "create", "jb-sshd-4", "hash:net"])
    assert not fw.read([SSHD]).layout_ok
    with pytest.raises(FirewallError, match="jb-sshd-4 exists with another type"):
        reconcile(fw, [SSHD], ("sshd", "2001:db8::9"))
    assert members(ns, "jb-sshd-6") == {"2001:db8::9"}  # the rest is applied


def test_apply_plans_on_the_reads_sets_and_again_if_they_changed_since(ns: Namespace, fw: IpsetFirewall) -> None:
    """A set destroyed between the read and the apply fails the planned restore; the apply
    lists the sets afresh and creates it again."""
    desired = frozenset({("sshd", "203.0.113.9"), ("sshd", "198.51.100.0/24")})
    reconcile(fw, [SSHD], *desired)
    change = Diff(add=frozenset({("sshd", "198.51.100.77")}))
    assert fw.read([SSHD]) == Actual(desired, layout_ok=True)
    ns.run(["iptables", "-D", "INPUT", "-m", "set", "--match-set", "jb-sshd-4", "src", "-j", "DROP"])
    ns.run(["ipset", "destroy", "jb-sshd-4"])  # behind the read's back
    fw.apply([SSHD], change)
    assert members(ns, "jb-sshd-4") == {"198.51.100.77"}
    assert fw.read([SSHD]).entries == {("sshd", "198.51.100.77"), ("sshd", "198.51.100.0/24")}
