"""The iptables backend against real netfilter, each test in its own network namespace."""

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from journalban.firewall.base import (
    Actual,
    Diff,
    Entry,
    FirewallBackend,
    FirewallError,
    JailLayout,
    PortSpec,
)
from journalban.firewall.iptables import IptablesFirewall, log_chain_name
from journalban.reconcile import diff
from tests.netns import Namespace, link, namespace, require_netns

SSHD = JailLayout("sshd")
V4_BAN: Entry = ("sshd", "203.0.113.9")
V6_BAN: Entry = ("sshd", "2001:db8::9")


@pytest.fixture
def ns() -> Iterator[Namespace]:
    require_netns()
    with namespace() as ns:
        yield ns


@pytest.fixture
def fw(ns: Namespace) -> IptablesFirewall:
    return IptablesFirewall(command_prefix=ns.argv([]))


def rules(ns: Namespace, version: int = 4, chain: str | None = None) -> list[str]:
    """The filter table's ``-A`` lines as iptables-save prints them, optionally one chain's."""
    out = ns.run([f"ip{'6' if version == 6 else ''}tables-save", "-t", "filter"]).stdout
    lines = [line for line in out.splitlines() if line.startswith("-A ")]
    return [line for line in lines if chain is None or line.split()[1] == chain]


def ban(fw: IptablesFirewall, jails: list[JailLayout], *entries: Entry) -> None:
    fw.apply(jails, Diff(add=frozenset(entries), repair_layout=True))


def test_fresh_namespace_reads_empty_and_broken(fw: IptablesFirewall) -> None:
    actual = fw.read([SSHD])
    assert actual.entries == frozenset() and not actual.layout_ok


def test_ban_v4_and_v6(ns: Namespace, fw: IptablesFirewall) -> None:
    ban(fw, [SSHD], V4_BAN, V6_BAN, ("sshd", "203.0.113.10"))
    v4 = rules(ns, 4)
    assert v4[0] == "-A INPUT -j jb-sshd" and v4[-1] == "-A jb-sshd -j RETURN"
    assert sorted(v4[1:-1]) == ["-A jb-sshd -s 203.0.113.10/32 -j DROP",
                                "-A jb-sshd -s 203.0.113.9/32 -j DROP"]
    assert rules(ns, 6) == ["-A INPUT -j jb-sshd",
                            "-A jb-sshd -s 2001:db8::9/128 -j DROP",
                            "-A jb-sshd -j RETURN"]
    actual = fw.read([SSHD])
    assert actual.layout_ok
    assert actual.entries == {V4_BAN, V6_BAN, ("sshd", "203.0.113.10")}

    # a second batch on existing chains keeps what is there
    fw.apply([SSHD], Diff(add=frozenset({("sshd", "2001:db8::10")}),
                          remove=frozenset({V4_BAN, V6_BAN})))
    actual = fw.read([SSHD])
    assert actual.layout_ok
    assert actual.entries == {("sshd", "203.0.113.10"), ("sshd", "2001:db8::10")}
    assert rules(ns, 6, "jb-sshd")[-1] == "-A jb-sshd -j RETURN"


def test_reject_blocktype(ns: Namespace, fw: IptablesFirewall) -> None:
    jail = JailLayout("sshd", blocktype="reject")
    ban(fw, [jail], V4_BAN, V6_BAN)
    assert ("-A jb-sshd -s 203.0.113.9/32 -j REJECT --reject-with icmp-port-unreachable"
            in rules(ns, 4))
    assert ("-A jb-sshd -s 2001:db8::9/128 -j REJECT --reject-with icmp6-port-unreachable"
            in rules(ns, 6))
    assert fw.read([jail]).layout_ok
    # the same jail switched back to drop: its bans are a layout fault until repaired
    assert not fw.read([SSHD]).layout_ok
    fw.apply([SSHD], Diff(repair_layout=True))
    assert fw.read([SSHD]).layout_ok
    assert "-A jb-sshd -s 203.0.113.9/32 -j DROP" in rules(ns, 4)


def test_port_list_jumps_use_multiport(ns: Namespace, fw: IptablesFirewall) -> None:
    web = JailLayout("web", ports=(PortSpec("tcp", ("80", "443", "8000:8100")),
                                   PortSpec("udp", ("443",))))
    ban(fw, [SSHD, web], ("web", "203.0.113.9"))
    assert rules(ns, 4, "INPUT") == [
        "-A INPUT -j jb-sshd",
        "-A INPUT -p tcp -m multiport --dports 80,443,8000:8100 -j jb-web",
        "-A INPUT -p udp -m multiport --dports 443 -j jb-web"]
    assert fw.read([SSHD, web]).layout_ok
    assert fw.read([web]).entries == {("web", "203.0.113.9")}


def test_repair_puts_jump_above_an_operator_accept(ns: Namespace, fw: IptablesFirewall) -> None:
    ban(fw, [SSHD], V4_BAN)
    ns.run(["iptables", "-I", "INPUT", "1", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
    operator = "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"
    assert rules(ns, 4, "INPUT") == [operator, "-A INPUT -j jb-sshd"]
    actual = fw.read([SSHD])
    assert not actual.layout_ok and actual.entries == {V4_BAN}
    fw.apply([SSHD], Diff(repair_layout=True))
    assert rules(ns, 4, "INPUT") == ["-A INPUT -j jb-sshd", operator]
    assert fw.read([SSHD]).layout_ok


def test_duplicate_jump_is_repaired(ns: Namespace, fw: IptablesFirewall) -> None:
    ban(fw, [SSHD], V6_BAN)
    ns.run(["ip6tables", "-I", "INPUT", "1", "-j", "jb-sshd"])
    assert not fw.read([SSHD]).layout_ok
    fw.apply([SSHD], Diff(repair_layout=True))
    assert rules(ns, 6, "INPUT") == ["-A INPUT -j jb-sshd"]
    assert fw.read([SSHD]).layout_ok


def test_flushed_firewall_is_rebuilt(ns: Namespace, fw: IptablesFirewall) -> None:
    ban(fw, [SSHD], V4_BAN, V6_BAN)
    for tool in ("iptables", "ip6tables"):  # what a reboot leaves behind
        ns.run([tool, "-F"])
        ns.run([tool, "-X"])
    actual = fw.read([SSHD])
    assert not actual.layout_ok and actual.entries == frozenset()
    ban(fw, [SSHD], V4_BAN, V6_BAN)
    actual = fw.read([SSHD])
    assert actual.layout_ok and actual.entries == {V4_BAN, V6_BAN}


def test_hand_deleted_ban_reads_missing(ns: Namespace, fw: IptablesFirewall) -> None:
    ban(fw, [SSHD], V4_BAN, ("sshd", "203.0.113.10"))
    ns.run(["iptables", "-D", "jb-sshd", "-s", "203.0.113.9", "-j", "DROP"])
    actual = fw.read([SSHD])
    assert actual.layout_ok and actual.entries == {("sshd", "203.0.113.10")}


def test_remove_cleans_up_only_its_jails(ns: Namespace, fw: IptablesFirewall) -> None:
    other = JailLayout("other")
    ban(fw, [other], ("other", "198.51.100.7"), ("other", "2001:db8::7"))
    for tool in ("iptables", "ip6tables"):  # the operator's own chain, hooked in first
        ns.run([tool, "-N", "mine"])
        ns.run([tool, "-A", "mine", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
        ns.run([tool, "-I", "INPUT", "1", "-j", "mine"])
    before = {v: [r for r in rules(ns, v) if "jb-sshd" not in r] for v in (4, 6)}

    ban(fw, [SSHD], V4_BAN, V6_BAN)
    assert rules(ns, 4, "INPUT")[0] == "-A INPUT -j jb-sshd"
    fw.apply([SSHD], Diff(remove=frozenset({V4_BAN}), repair_layout=True))
    fw.remove([SSHD])
    fw.remove([SSHD])  # nothing left to remove is fine
    for version in (4, 6):
        assert rules(ns, version) == before[version]
        out = ns.run([f"ip{'6' if version == 6 else ''}tables-save"]).stdout
        assert "jb-sshd" not in out
    assert fw.read([other]).entries == {("other", "198.51.100.7"), ("other", "2001:db8::7")}


SERVER = """
import socket
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 8080))
server.listen()
while True:
    server.accept()[0].close()
"""
CLIENT = "import socket; socket.create_connection(('203.0.113.1', 8080), timeout=2).close()"


def connects(attacker: Namespace) -> bool:
    return attacker.run([sys.executable, "-c", CLIENT], check=False, timeout=10).returncode == 0


def test_ban_stops_traffic() -> None:
    require_netns()
    with namespace("jb-attacker") as attacker, namespace("jb-server") as server:
        link(attacker, "203.0.113.9/24", server, "203.0.113.1/24")
        listener = server.popen([sys.executable, "-c", SERVER],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not connects(attacker):
                assert time.monotonic() < deadline, "the listener never came up"
                time.sleep(0.1)
            fw = IptablesFirewall(command_prefix=server.argv([]))
            ban(fw, [SSHD], V4_BAN)
            assert not connects(attacker)
            fw.apply([SSHD], Diff(remove=frozenset({V4_BAN})))
            assert connects(attacker)
        finally:
            listener.kill()
            listener.wait(timeout=10)


def reconcile(fw: FirewallBackend, jails: list[JailLayout], *desired: Entry) -> Diff:
    """One reconcile pass as ``reconcile.py`` makes it: read, diff, apply if not empty."""
    change = diff(frozenset(desired), fw.read(jails))
    if change:
        fw.apply(jails, change)
    return change


def test_network_entries_round_trip(ns: Namespace, fw: IptablesFirewall) -> None:
    nets: list[Entry] = [("sshd", "203.0.113.0/24"), ("sshd", "2001:db8:1::/64")]
    assert reconcile(fw, [SSHD], V4_BAN, V6_BAN, *nets)
    assert "-A jb-sshd -s 203.0.113.0/24 -j DROP" in rules(ns, 4)
    assert "-A jb-sshd -s 2001:db8:1::/64 -j DROP" in rules(ns, 6)
    assert fw.read([SSHD]) == Actual(frozenset({V4_BAN, V6_BAN, *nets}), layout_ok=True)
    assert not reconcile(fw, [SSHD], V4_BAN, V6_BAN, *nets)
    assert reconcile(fw, [SSHD], V4_BAN, V6_BAN)
    assert fw.read([SSHD]).entries == {V4_BAN, V6_BAN}


def test_hook_in_forward_and_move_back(ns: Namespace, fw: IptablesFirewall) -> None:
    routed = JailLayout("routed", chain="FORWARD")
    reconcile(fw, [SSHD, routed], V4_BAN, ("routed", "198.51.100.7"))
    assert rules(ns, 4, "FORWARD") == ["-A FORWARD -j jb-routed"]
    assert rules(ns, 6, "FORWARD") == ["-A FORWARD -j jb-routed"]
    assert rules(ns, 4, "INPUT") == ["-A INPUT -j jb-sshd"]
    ns.run(["iptables", "-I", "FORWARD", "1", "-p", "tcp", "-j", "ACCEPT"])
    assert reconcile(fw, [SSHD, routed], V4_BAN, ("routed", "198.51.100.7")) == Diff(
        repair_layout=True)
    assert rules(ns, 4, "FORWARD") == ["-A FORWARD -j jb-routed", "-A FORWARD -p tcp -j ACCEPT"]
    # the same jail hooked in INPUT now: its FORWARD jump is stale
    moved = JailLayout("routed")
    assert reconcile(fw, [SSHD, moved], V4_BAN, ("routed", "198.51.100.7")) == Diff(
        repair_layout=True)
    assert rules(ns, 4, "FORWARD") == ["-A FORWARD -p tcp -j ACCEPT"]
    assert sorted(rules(ns, 4, "INPUT")) == ["-A INPUT -j jb-routed", "-A INPUT -j jb-sshd"]
    assert fw.read([SSHD, moved]).layout_ok


def test_missing_docker_user_chain(ns: Namespace, fw: IptablesFirewall) -> None:
    docker = JailLayout("web", chain="DOCKER-USER")
    jails = [SSHD, docker]
    assert not fw.read(jails).layout_ok
    with pytest.raises(FirewallError, match="DOCKER-USER does not exist"):
        ban(fw, jails, V4_BAN, ("web", "203.0.113.7"))
    assert "DOCKER-USER" not in ns.run(["iptables-save"]).stdout  # never created by us
    assert fw.read([SSHD]).layout_ok  # the other jail is enforced all the same
    actual = fw.read(jails)
    assert actual.entries == {V4_BAN, ("web", "203.0.113.7")} and not actual.layout_ok
    for tool in ("iptables", "ip6tables"):  # Docker starts
        ns.run([tool, "-N", "DOCKER-USER"])
        ns.run([tool, "-A", "DOCKER-USER", "-j", "RETURN"])
    assert reconcile(fw, jails, V4_BAN, ("web", "203.0.113.7")) == Diff(repair_layout=True)
    assert rules(ns, 4, "DOCKER-USER") == ["-A DOCKER-USER -j jb-web", "-A DOCKER-USER -j RETURN"]
    assert not reconcile(fw, jails, V4_BAN, ("web", "203.0.113.7"))


LOG_V4 = '-A jbl-sshd -m limit --limit 6/min --limit-burst 10 -j LOG --log-prefix "journalban sshd: "'


def test_log_chain_and_idempotent_reconcile(ns: Namespace, fw: IptablesFirewall) -> None:
    logged = JailLayout("sshd", log=True)
    net: Entry = ("sshd", "203.0.113.0/24")
    assert reconcile(fw, [logged], V4_BAN, V6_BAN, net)
    assert rules(ns, 4, "jbl-sshd") == [LOG_V4, "-A jbl-sshd -j DROP"]
    assert rules(ns, 6, "jbl-sshd") == [LOG_V4, "-A jbl-sshd -j DROP"]
    assert sorted(rules(ns, 4, "jb-sshd")) == [
        "-A jb-sshd -j RETURN", "-A jb-sshd -s 203.0.113.0/24 -j jbl-sshd",
        "-A jb-sshd -s 203.0.113.9/32 -j jbl-sshd"]
    assert fw.read([logged]) == Actual(frozenset({V4_BAN, V6_BAN, net}), layout_ok=True)
    assert not reconcile(fw, [logged], V4_BAN, V6_BAN, net)  # nothing left to do
    assert reconcile(fw, [logged], V4_BAN)
    assert not reconcile(fw, [logged], V4_BAN)

    # as reject, then not logging at all: rules rewritten, the helper chain gone
    rejecting = JailLayout("sshd", log=True, blocktype="reject")
    assert reconcile(fw, [rejecting], V4_BAN) == Diff(repair_layout=True)
    assert rules(ns, 4, "jbl-sshd")[1] == (
        "-A jbl-sshd -j REJECT --reject-with icmp-port-unreachable")
    assert reconcile(fw, [SSHD], V4_BAN) == Diff(repair_layout=True)
    assert "jbl-sshd" not in ns.run(["iptables-save"]).stdout
    assert rules(ns, 4, "jb-sshd") == ["-A jb-sshd -s 203.0.113.9/32 -j DROP", "-A jb-sshd -j RETURN"]
    fw.remove([logged])
    assert "jb" not in ns.run(["iptables-save"]).stdout


def test_log_chain_of_the_longest_jail_name(ns: Namespace, fw: IptablesFirewall) -> None:
    jail = JailLayout("a-very-long-jail-name-25c", log=True)
    assert reconcile(fw, [jail], (jail.name, "203.0.113.9"))
    helper = log_chain_name(jail.name)
    assert helper.startswith("jbl-a-very-long-jail-") and len(helper) == 28
    assert rules(ns, 4, helper)[0].endswith('--log-prefix "journalban a-very-long-jail: "')
    assert not reconcile(fw, [jail], (jail.name, "203.0.113.9"))
    fw.remove([jail])
    assert "jb" not in ns.run(["iptables-save"]).stdout


def test_apply_plans_on_the_reads_table_and_again_if_it_changed_since(ns: Namespace, fw: IptablesFirewall) -> None:
    """No second save of 100,000 rules per pass; and a rule deleted by hand between the read and
    the apply (whose ``-D`` then fails the whole batch) only costs a fresh save."""
    ban(fw, [SSHD], V4_BAN, ("sshd", "203.0.113.10"))
    desired = frozenset({("sshd", "198.51.100.1")})
    change = diff(desired, fw.read([SSHD]))
    assert change.remove == {V4_BAN, ("sshd", "203.0.113.10")}
    ns.run(["iptables", "-D", "jb-sshd", "-s", "203.0.113.9/32", "-j", "DROP"])  # behind the read's back
    fw.apply([SSHD], change)
    assert fw.read([SSHD]) == Actual(desired, layout_ok=True)
    assert rules(ns, 4, "jb-sshd") == ["-A jb-sshd -s 198.51.100.1/32 -j DROP", "-A jb-sshd -j RETURN"]


def test_a_large_batch_is_appended_to_a_rebuilt_chain(ns: Namespace, fw: IptablesFirewall) -> None:
    """Thousands of new bans go in by appends (as a bare restore loads them), ahead of those there."""
    ban(fw, [SSHD], V4_BAN)
    many = frozenset(("sshd", f"10.1.{n // 256}.{n % 256}") for n in range(1000))
    fw.read([SSHD])
    fw.apply([SSHD], Diff(add=many))
    chain = rules(ns, 4, "jb-sshd")
    assert len(chain) == 1002 and chain[-2:] == ["-A jb-sshd -s 203.0.113.9/32 -j DROP", "-A jb-sshd -j RETURN"]
    assert fw.read([SSHD]) == Actual(many | {V4_BAN}, layout_ok=True)
