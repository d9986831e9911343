"""The nftables backend against real netfilter, each test in its own network namespace."""

import json
import shutil
import sys
import time
from collections.abc import Iterator, Sequence

import pytest

from journalban.firewall.base import Diff, Entry, JailLayout, PortSpec
from journalban.firewall.nftables import NftablesFirewall
from journalban.reconcile import diff
from tests.netns import Namespace, link, namespace, require_netns

SSHD = JailLayout("sshd")
MIXED = frozenset({("sshd", "203.0.113.9"), ("sshd", "203.0.113.0/24"), ("sshd", "198.51.100.7"),
                   ("sshd", "2001:db8::1"), ("sshd", "2001:db8:1::/64"), ("sshd", "2001:db8:1::5")})
OPERATOR_TABLE = """table inet filter {
    chain input { type filter hook input priority filter; policy accept; tcp dport 22 accept; }
}
"""


@pytest.fixture
def ns() -> Iterator[Namespace]:
    require_netns()
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed")
    with namespace() as ns:
        yield ns


@pytest.fixture
def fw(ns: Namespace) -> NftablesFirewall:
    return NftablesFirewall(command_prefix=ns.argv([]))


def reconcile(fw: NftablesFirewall, jails: Sequence[JailLayout], desired: frozenset[Entry]) -> Diff:
    """One reconciler pass: read, diff, apply if needed."""
    change = diff(desired, fw.read(jails))
    if change:
        fw.apply(jails, change)
    return change


def listing(ns: Namespace) -> list[dict[str, object]]:
    return [next(iter(o.values())) for o in
            json.loads(ns.run(["nft", "-j", "list", "table", "inet", "journalban"]).stdout)["nftables"]]


def nft(ns: Namespace, *statements: str) -> None:
    ns.run(["nft", "-f", "-"], input="\n".join(statements) + "\n")


def assert_converged(fw: NftablesFirewall, jails: Sequence[JailLayout], desired: frozenset[Entry]) -> None:
    actual = fw.read(jails)
    assert actual.layout_ok and actual.entries == desired
    assert not reconcile(fw, jails, desired)


def elements(ns: Namespace) -> dict[str, list[object]]:
    """Each set's elements, hosts sorted (a hash set lists them in no fixed order)."""
    objects = json.loads(ns.run(["nft", "-j", "list", "table", "inet", "journalban"]).stdout)["nftables"]
    return {o["set"]["name"]: sorted(o["set"].get("elem", []), key=str) for o in objects if "set" in o}


def test_hosts_and_networks_of_both_families(ns: Namespace, fw: NftablesFirewall) -> None:
    assert fw.read([SSHD]).entries == frozenset() and not fw.read([SSHD]).layout_ok
    reconcile(fw, [SSHD], MIXED)
    sets = elements(ns)
    # a host inside a banned network is its own element all the same
    assert sets["sshd-4"] == ["198.51.100.7", "203.0.113.9"]
    assert sets["sshd-net4"] == [{"prefix": {"addr": "203.0.113.0", "len": 24}}]
    assert sets["sshd-6"] == ["2001:db8:1::5", "2001:db8::1"]
    assert sets["sshd-net6"] == [{"prefix": {"addr": "2001:db8:1::", "len": 64}}]
    assert sets["sshd-net4-covered"] == sets["sshd-net6-covered"] == []
    assert {str(o["type"]) for o in listing(ns) if str(o.get("name", "")).startswith("sshd-net")} >= {
        "ipv4_addr", "ipv6_addr"}
    assert_converged(fw, [SSHD], MIXED)  # the second pass applies nothing

    # lift the networks, then put them back
    fewer = MIXED - {("sshd", "203.0.113.0/24"), ("sshd", "2001:db8:1::/64")}
    reconcile(fw, [SSHD], fewer)
    assert_converged(fw, [SSHD], fewer)
    assert elements(ns)["sshd-net4"] == [] and elements(ns)["sshd-4"] == ["198.51.100.7", "203.0.113.9"]
    reconcile(fw, [SSHD], MIXED)
    assert_converged(fw, [SSHD], MIXED)
    reconcile(fw, [SSHD], frozenset())
    assert_converged(fw, [SSHD], frozenset())


def test_networks_inside_networks(ns: Namespace, fw: NftablesFirewall) -> None:
    """An interval set refuses overlapping elements: the inner network waits aside, read back all the same."""
    nested = frozenset({("sshd", "203.0.0.0/16"), ("sshd", "203.0.113.0/24"), ("sshd", "203.0.113.9"),
                        ("sshd", "2001:db8::/32"), ("sshd", "2001:db8:1::/64")})
    reconcile(fw, [SSHD], nested)
    sets = elements(ns)
    assert sets["sshd-net4"] == [{"prefix": {"addr": "203.0.0.0", "len": 16}}]
    assert sets["sshd-net4-covered"] == [{"concat": ["203.0.113.0", "203.0.113.255"]}]
    assert_converged(fw, [SSHD], nested)
    # the outer lifted: the inner takes its place
    inner = nested - {("sshd", "203.0.0.0/16"), ("sshd", "2001:db8::/32")}
    reconcile(fw, [SSHD], inner)
    assert elements(ns)["sshd-net4"] == [{"prefix": {"addr": "203.0.113.0", "len": 24}}]
    assert_converged(fw, [SSHD], inner)
    reconcile(fw, [SSHD], nested)  # and back: the inner steps aside again
    assert_converged(fw, [SSHD], nested)


def test_the_old_layout_is_repaired(ns: Namespace, fw: NftablesFirewall) -> None:
    """The table as the layout before the host/network split left it: interval host sets, ``-covered`` sets."""
    nft(ns, "add table inet journalban",
        "add chain inet journalban input { type filter hook input priority filter - 1; policy accept; }",
        "add set inet journalban sshd-4 { type ipv4_addr; flags interval; }",
        "add set inet journalban sshd-4-covered { type ipv4_addr . ipv4_addr; }",
        "add set inet journalban sshd-6 { type ipv6_addr; flags interval; }",
        "add set inet journalban sshd-6-covered { type ipv6_addr . ipv6_addr; }",
        'add rule inet journalban input ip saddr @sshd-4 drop comment "sshd"',
        'add rule inet journalban input ip6 saddr @sshd-6 drop comment "sshd"',
        "add element inet journalban sshd-4 { 198.51.100.7, 203.0.113.0/24 }",
        "add element inet journalban sshd-4-covered { 203.0.113.9 . 203.0.113.9 }",
        "add element inet journalban sshd-6 { 2001:db8::1, 2001:db8:1::/64 }",
        "add element inet journalban sshd-6-covered { 2001:db8:1::5 . 2001:db8:1::5 }")
    assert not fw.read([SSHD]).layout_ok
    reconcile(fw, [SSHD], MIXED)
    assert_converged(fw, [SSHD], MIXED)
    sets = elements(ns)
    assert sorted(sets) == ["sshd-4", "sshd-6", "sshd-net4", "sshd-net4-covered", "sshd-net6", "sshd-net6-covered"]
    assert sets["sshd-4"] == ["198.51.100.7", "203.0.113.9"]
    assert "flags" not in next(o for o in listing(ns) if o.get("name") == "sshd-4")


def test_a_change_between_read_and_apply_is_planned_again(ns: Namespace, fw: NftablesFirewall) -> None:
    reconcile(fw, [SSHD], MIXED)
    change = diff(frozenset(), fw.read([SSHD]))
    nft(ns, "flush set inet journalban sshd-4")  # the snapshot of that read is now wrong
    fw.apply([SSHD], change)  # refused against it, then planned against a fresh listing
    assert_converged(fw, [SSHD], frozenset())


def test_reject_ports_and_log(ns: Namespace, fw: NftablesFirewall) -> None:
    web = JailLayout("web", blocktype="reject", ports=(PortSpec("tcp", ("80", "443", "8000:8100")),
                                                       PortSpec("udp", ("53",))), log=True, chain="FORWARD")
    reconcile(fw, [web, SSHD], MIXED | {("web", "192.0.2.1")})
    text = ns.run(["nft", "list", "chain", "inet", "journalban", "forward"]).stdout
    assert "type filter hook forward priority filter - 1; policy accept;" in text
    assert ('ip saddr @web-4 tcp dport { 80, 443, 8000-8100 } limit rate 6/minute '
            'log prefix "journalban web: " comment "web"') in text
    assert 'ip saddr @web-4 tcp dport { 80, 443, 8000-8100 } reject with tcp reset comment "web"' in text
    assert 'ip6 saddr @web-6 udp dport 53 reject comment "web"' in text  # icmpx port-unreachable, abbreviated
    assert 'ip6 saddr @web-net6 udp dport 53 reject comment "web"' in text
    assert 'ip saddr @web-net4 tcp dport { 80, 443, 8000-8100 } reject with tcp reset comment "web"' in text
    assert_converged(fw, [web, SSHD], MIXED | {("web", "192.0.2.1")})
    # the same jail switched to drop on all ports: a layout fault until repaired
    assert not fw.read([JailLayout("web", chain="FORWARD"), SSHD]).layout_ok
    assert_converged(fw, [web, SSHD], MIXED | {("web", "192.0.2.1")})
    reconcile(fw, [JailLayout("web"), SSHD], MIXED | {("web", "192.0.2.1")})
    assert_converged(fw, [JailLayout("web"), SSHD], MIXED | {("web", "192.0.2.1")})
    assert "web" not in ns.run(["nft", "list", "chain", "inet", "journalban", "forward"]).stdout


@pytest.mark.parametrize("damage", [
    "delete table inet journalban",
    "flush set inet journalban sshd-4",
    "flush set inet journalban sshd-net6",
    "flush chain inet journalban input",
    "add element inet journalban sshd-4 { 192.0.2.66 }",
    "add element inet journalban sshd-net4 { 192.0.2.0/24 }",
    "add element inet journalban sshd-net4 { 10.0.0.1-10.0.0.5 }",  # a range: lifted, it is not one entry
    "add rule inet journalban input ip saddr 203.0.113.9 accept",
    "delete set inet journalban sshd-net4-covered",  # no rule uses it, so it can go alone
    "add set inet journalban sshd-4-covered { type ipv4_addr . ipv4_addr; }",  # left by the old layout
])
def test_heals(ns: Namespace, fw: NftablesFirewall, damage: str) -> None:
    reconcile(fw, [SSHD], MIXED)
    nft(ns, damage)
    actual = fw.read([SSHD])
    assert actual.entries != MIXED or not actual.layout_ok
    assert reconcile(fw, [SSHD], MIXED)
    assert_converged(fw, [SSHD], MIXED)


def test_heals_a_deleted_rule(ns: Namespace, fw: NftablesFirewall) -> None:
    reconcile(fw, [SSHD], MIXED)
    handle = next(o["handle"] for o in listing(ns) if "expr" in o)
    nft(ns, f"delete rule inet journalban input handle {handle}")
    assert not fw.read([SSHD]).layout_ok and fw.read([SSHD]).entries == MIXED
    assert reconcile(fw, [SSHD], MIXED) == Diff(repair_layout=True)
    assert_converged(fw, [SSHD], MIXED)


def test_operator_table_survives_apply_and_remove(ns: Namespace, fw: NftablesFirewall) -> None:
    nft(ns, OPERATOR_TABLE)
    before = ns.run(["nft", "list", "table", "inet", "filter"]).stdout
    other = JailLayout("other")
    reconcile(fw, [SSHD, other], MIXED | {("other", "192.0.2.1")})
    fw.remove([SSHD])
    assert fw.read([other]).entries == {("other", "192.0.2.1")} and fw.read([other]).layout_ok
    assert "sshd" not in ns.run(["nft", "list", "table", "inet", "journalban"]).stdout
    fw.remove([other])
    tables = ns.run(["nft", "list", "tables"]).stdout.split("\n")
    assert "table inet journalban" not in tables and "table inet filter" in tables
    assert ns.run(["nft", "list", "table", "inet", "filter"]).stdout == before
    fw.remove([SSHD])  # nothing left to remove: no error


# --- traffic -----------------------------------------------------------------------

LISTENER = """
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 8080)); s.listen(16)
while True:
    s.accept()[0].close()
"""

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 8080), timeout=1.0, source_address=(sys.argv[2], 0)).close()
except OSError:
    sys.exit(1)
"""


def connects(client: Namespace, server: str, source: str) -> bool:
    return client.run([sys.executable, "-c", CONNECT, server, source], check=False).returncode == 0


@pytest.fixture
def pair(ns: Namespace) -> Iterator[tuple[Namespace, Namespace]]:
    """``ns`` the server (listening on 8080, v4 and v6), a fresh attacker namespace linked to it."""
    with namespace() as attacker:
        attacker_if, _ = link(attacker, "203.0.113.9/24", ns, "203.0.113.1/24")
        attacker.run(["ip", "addr", "add", "203.0.113.10/24", "dev", attacker_if])
        link(attacker, "2001:db8:1::9/64", ns, "2001:db8:1::1/64")
        listener = ns.popen([sys.executable, "-c", LISTENER])
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (connects(attacker, "203.0.113.1", "203.0.113.10")
                                                       and connects(attacker, "2001:db8:1::1", "2001:db8:1::9")):
                time.sleep(0.1)
            yield ns, attacker
        finally:
            listener.kill()
            listener.wait()


def test_traffic(pair: tuple[Namespace, Namespace], fw: NftablesFirewall) -> None:
    _, attacker = pair
    assert connects(attacker, "203.0.113.1", "203.0.113.9")
    assert connects(attacker, "2001:db8:1::1", "2001:db8:1::9")
    reconcile(fw, [SSHD], frozenset({("sshd", "203.0.113.9"), ("sshd", "2001:db8:1::9")}))
    assert not connects(attacker, "203.0.113.1", "203.0.113.9")
    assert connects(attacker, "203.0.113.1", "203.0.113.10")
    assert not connects(attacker, "2001:db8:1::1", "2001:db8:1::9")
    reconcile(fw, [SSHD], frozenset({("sshd", "203.0.113.9"), ("sshd", "203.0.113.0/24")}))
    assert not connects(attacker, "203.0.113.1", "203.0.113.10")
    assert connects(attacker, "2001:db8:1::1", "2001:db8:1::9")
    reconcile(fw, [SSHD], frozenset())
    assert connects(attacker, "203.0.113.1", "203.0.113.9")
    assert connects(attacker, "203.0.113.1", "203.0.113.10")
