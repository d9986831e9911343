"""The nftables backend against real netfilter, each test in its own network namespace."""

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import pytest

from journalban.firewall.base import Diff, Entry, JailLayout, PortSpec
from journalban.firewall.nftables import NftablesFirewall, plan_apply
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


def test_hosts_and_networks_of_both_families(ns: Namespace, fw: NftablesFirewall) -> None:
    assert fw.read([SSHD]).entries == frozenset() and not fw.read([SSHD]).layout_ok
    reconcile(fw, [SSHD], MIXED)
    sets = {o["name"]: o.get("elem", []) for o in listing(ns) if "type" in o and "elem" in o}
    assert sets["sshd-4"] == ["198.51.100.7", {"prefix": {"addr": "203.0.113.0", "len": 24}}]
    assert sets["sshd-6"] == ["2001:db8::1", {"prefix": {"addr": "2001:db8:1::", "len": 64}}]
    assert_converged(fw, [SSHD], MIXED)  # covered hosts read back; the second pass applies nothing

    # lift the networks: the hosts they covered become enforced elements of their own
    fewer = MIXED - {("sshd", "203.0.113.0/24"), ("sshd", "2001:db8:1::/64")}
    reconcile(fw, [SSHD], fewer)
    assert_converged(fw, [SSHD], fewer)
    # and a host first, then its network: the host moves aside, the network goes in
    reconcile(fw, [SSHD], MIXED)
    assert_converged(fw, [SSHD], MIXED)
    reconcile(fw, [SSHD], frozenset())
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
    "flush chain inet journalban input",
    "add element inet journalban sshd-4 { 192.0.2.66 }",
    "add rule inet journalban input ip saddr 203.0.113.9 accept",
    "delete set inet journalban sshd-4-covered",  # no rule uses it, so it can go alone
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


# --- measure -----------------------------------------------------------------------

def test_measure_100k(ns: Namespace, fw: NftablesFirewall, capsys: pytest.CaptureFixture[str]) -> None:
    """Reports (never asserts) apply of 100,000 addresses against ``nft -f`` of the same text."""
    entries = frozenset(("sshd", f"10.{i >> 14}.{(i >> 6) & 0xFF}.{(i & 0x3F) * 4}") for i in range(100_000))
    change = Diff(add=entries, repair_layout=True)
    started = time.perf_counter()
    fw.apply([SSHD], change)
    applied = time.perf_counter() - started
    started = time.perf_counter()
    actual = fw.read([SSHD])
    read = time.perf_counter() - started
    assert actual.entries == entries and actual.layout_ok
    text = plan_apply(None, [SSHD], change)
    nft(ns, "delete table inet journalban")
    started = time.perf_counter()
    subprocess.run(ns.argv(["nft", "-f", "-"]), input=text, text=True, check=True)
    loaded = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n100k: apply {applied:.2f}s, read {read:.2f}s, nft -f of the same text {loaded:.2f}s")
