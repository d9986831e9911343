"""Parsing and planning of the nftables backend, without a kernel."""

import json

import pytest

from journalban.firewall.base import Diff, JailLayout, PortSpec
from journalban.firewall.nftables import (
    V4,
    V6,
    covered_name,
    describe,
    element_host,
    element_span,
    entries_in,
    find_faults,
    jail_rules,
    net_name,
    parse_listing,
    plan_apply,
    plan_remove,
    set_name,
    split_outermost,
)

SSHD = JailLayout("sshd")
WEB = JailLayout("web", blocktype="reject", ports=(PortSpec("tcp", ("443", "80", "8000:8100")),), log=True)
CHAIN = {"chain": {"family": "inet", "table": "journalban", "name": "input", "handle": 1, "type": "filter",
                   "hook": "input", "prio": -1, "policy": "accept"}}


def listing(*objects: object) -> str:
    return json.dumps({"nftables": [{"metainfo": {"version": "1.0.6"}}, *objects]})


def nft_set(name: str, kind: str | list[str], elems: list[object], flags: tuple[str, ...] = ()) -> object:
    body: dict[str, object] = {"family": "inet", "name": name, "table": "journalban", "type": kind, "elem": elems}
    if flags:  # nft leaves "flags" out for a plain set
        body["flags"] = list(flags)
    return {"set": body}


def sshd_sets(hosts4: list[object] = [], nets4: list[object] = [], covered4: list[object] = [],  # noqa: B006
              hosts6: list[object] = [], nets6: list[object] = []) -> list[object]:  # noqa: B006
    return [nft_set("sshd-4", "ipv4_addr", hosts4), nft_set("sshd-net4", "ipv4_addr", nets4, ("interval",)),
            nft_set("sshd-net4-covered", ["ipv4_addr", "ipv4_addr"], covered4),
            nft_set("sshd-6", "ipv6_addr", hosts6), nft_set("sshd-net6", "ipv6_addr", nets6, ("interval",)),
            nft_set("sshd-net6-covered", ["ipv6_addr", "ipv6_addr"], [])]


def rules(jail: JailLayout, first_handle: int = 10) -> list[object]:
    """The jail's rules as nft would list them (expressions left out: only the form matters here)."""
    return [{"rule": {"family": "inet", "table": "journalban", "chain": "input", "handle": first_handle + i,
                      "comment": jail.name, "expr": []}} for i, _ in enumerate(jail_rules(jail))]


def test_element_forms() -> None:
    assert element_span("203.0.113.9") == (3405803785, 3405803785)
    assert element_span({"prefix": {"addr": "203.0.113.0", "len": 24}}) == (3405803776, 3405804031)
    assert element_span({"range": ["10.0.0.1", "10.0.0.5"]}) == (167772161, 167772165)
    assert element_span({"concat": ["2001:db8::", "2001:db8::ff"]}) == (
        0x20010DB8 << 96, (0x20010DB8 << 96) + 0xFF)
    assert element_span({"elem": {"val": "10.0.0.1", "comment": "x"}}) == (167772161, 167772161)
    assert element_span({"set": []}) is None
    # host set elements are taken as they are printed, only a dotted-quad IPv6 is rewritten
    assert element_host("2001:db8::1") == "2001:db8::1"
    assert element_host({"elem": {"val": "10.0.0.1", "timeout": 60}}) == "10.0.0.1"
    assert element_host("::ffff:1.2.3.4") == "::ffff:102:304"
    assert element_host({"prefix": {"addr": "10.0.0.0", "len": 8}}) is None


def test_read_reports_hosts_networks_ranges_and_covered_entries() -> None:
    snapshot = parse_listing(listing(*sshd_sets(
        hosts4=["198.51.100.7", "203.0.113.9"],  # the second inside the /24: its own element all the same
        nets4=[{"prefix": {"addr": "203.0.113.0", "len": 24}}, {"range": ["10.0.0.1", "10.0.0.3"]}],
        covered4=[{"concat": ["203.0.113.128", "203.0.113.255"]},  # inside the /24: held
                  {"concat": ["192.0.2.0", "192.0.2.255"]}],  # inside nothing: not enforced, not held
        nets6=[{"prefix": {"addr": "2001:db8:1::", "len": 64}}], hosts6=["2001:db8:1::5"])))
    assert entries_in(snapshot, [SSHD]) == {
        ("sshd", "198.51.100.7"), ("sshd", "203.0.113.9"), ("sshd", "203.0.113.0/24"), ("sshd", "203.0.113.128/25"),
        ("sshd", "10.0.0.1"), ("sshd", "10.0.0.2/31"), ("sshd", "2001:db8:1::/64"), ("sshd", "2001:db8:1::5")}
    assert not find_faults(parse_listing(listing(CHAIN, *sshd_sets(), *rules(SSHD))), [SSHD]).sets
    assert entries_in(None, [SSHD]) == set()


def test_a_set_of_the_old_layout_reads_as_nothing_and_is_a_fault() -> None:
    """Before the split, ``<jail>-4`` was an interval set of hosts and networks, beside ``<jail>-4-covered``."""
    old = parse_listing(listing(
        CHAIN, nft_set("sshd-4", "ipv4_addr", ["198.51.100.7", {"prefix": {"addr": "203.0.113.0", "len": 24}}],
                       ("interval",)),
        nft_set("sshd-4-covered", ["ipv4_addr", "ipv4_addr"], [{"concat": ["203.0.113.9", "203.0.113.9"]}]),
        nft_set("sshd-6", "ipv6_addr", ["2001:db8::1"], ("interval",)),
        nft_set("sshd-6-covered", ["ipv6_addr", "ipv6_addr"], []),
        {"rule": {"family": "inet", "table": "journalban", "chain": "input", "handle": 3, "comment": "sshd",
                  "expr": []}}))
    assert entries_in(old, [SSHD]) == set()
    faults = find_faults(old, [SSHD])
    assert {"sshd-4", "sshd-6", "sshd-net4", "sshd-net6"} <= faults.sets and faults.jails == {"sshd"}
    assert faults.obsolete == {"sshd-4-covered", "sshd-6-covered"}
    text = plan_apply(old, [SSHD], Diff(add=frozenset({("sshd", "198.51.100.7"), ("sshd", "203.0.113.0/24")}),
                                        repair_layout=True))
    assert text is not None
    lines = text.splitlines()
    # the rule goes before the set it reads, the sets before they are made again
    assert lines[:6] == ["delete rule inet journalban input handle 3",
                         "delete set inet journalban sshd-4-covered",
                         "delete set inet journalban sshd-6-covered",
                         "delete set inet journalban sshd-4",
                         "delete set inet journalban sshd-6",
                         "add set inet journalban sshd-4 { type ipv4_addr; }"]
    assert "add set inet journalban sshd-net4 { type ipv4_addr; flags interval; }" in lines
    assert "add set inet journalban sshd-net4-covered { type ipv4_addr . ipv4_addr; }" in lines
    assert 'add rule inet journalban input ip saddr @sshd-net4 drop comment "sshd"' in lines
    assert lines[-2:] == ["add element inet journalban sshd-4 { 198.51.100.7 }",
                          "add element inet journalban sshd-net4 { 203.0.113.0/24 }"]
    assert plan_remove(old, [SSHD]) == "delete table inet journalban\n"


def test_rules_read_back_in_the_form_they_are_written() -> None:
    expr = [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@web-4"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": {"set": [80, 443, {"range": [8000, 8100]}]}}},
            {"limit": {"rate": 6, "burst": 5, "per": "minute"}},
            {"log": {"prefix": "journalban web: "}}]
    assert describe(expr) == jail_rules(WEB)[0]
    assert jail_rules(WEB)[:4] == [
        'ip saddr @web-4 tcp dport { 80, 443, 8000-8100 } limit rate 6/minute log prefix "journalban web: "',
        "ip saddr @web-4 tcp dport { 80, 443, 8000-8100 } reject with tcp reset",
        'ip saddr @web-net4 tcp dport { 80, 443, 8000-8100 } limit rate 6/minute log prefix "journalban web: "',
        "ip saddr @web-net4 tcp dport { 80, 443, 8000-8100 } reject with tcp reset"]
    assert describe([expr[0], {"drop": None}]) == "ip saddr @web-4 drop"
    assert describe([expr[0], {"accept": None}]) is None
    assert describe([expr[0], {"reject": {"type": "icmpx", "expr": "port-unreachable"}}]) == (
        "ip saddr @web-4 reject with icmpx type port-unreachable")
    single = {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}
    assert describe([single]) == "udp dport { 53 }"


def test_jail_rules_per_family_and_set() -> None:
    assert jail_rules(SSHD) == ["ip saddr @sshd-4 drop", "ip saddr @sshd-net4 drop",
                                "ip6 saddr @sshd-6 drop", "ip6 saddr @sshd-net6 drop"]
    assert jail_rules(JailLayout("x", blocktype="reject", ports=(PortSpec("udp", ("53",)),)))[:2] == [
        "ip saddr @x-4 udp dport { 53 } reject with icmpx type port-unreachable",
        "ip saddr @x-net4 udp dport { 53 } reject with icmpx type port-unreachable"]


def test_names_nft_cannot_parse_are_refused() -> None:
    for name in (set_name, net_name, covered_name):
        with pytest.raises(ValueError):
            name("1abc", V4)
    assert (set_name("_a-b", V6), net_name("_a-b", V6), covered_name("_a-b", V4)) == (
        "_a-b-6", "_a-b-net6", "_a-b-net4-covered")


def test_split_outermost() -> None:
    host, net, wide, other = (9, 9), (0, 255), (0, 65535), (70000, 70000)
    assert split_outermost([host, net, other]) == ({net, other}, {host})
    assert split_outermost([host, net, wide]) == ({wide}, {host, net})


def test_plan_from_nothing_builds_everything_hosts_apart_nested_networks_aside() -> None:
    diff = Diff(add=frozenset({("sshd", "203.0.113.9"), ("sshd", "203.0.113.0/24"), ("sshd", "203.0.0.0/16"),
                               ("sshd", "2001:db8::1"), ("sshd", "2001:db8:1::/64")}), repair_layout=True)
    text = plan_apply(None, [SSHD], diff)
    assert text is not None
    lines = text.splitlines()
    assert lines[:2] == ["add table inet journalban",
                         "add chain inet journalban input { type filter hook input priority filter - 1; "
                         "policy accept; }"]
    assert "add set inet journalban sshd-4 { type ipv4_addr; }" in lines
    assert 'add rule inet journalban input ip saddr @sshd-4 drop comment "sshd"' in lines
    assert 'add rule inet journalban input ip6 saddr @sshd-net6 drop comment "sshd"' in lines
    assert lines[-5:] == ["add element inet journalban sshd-4 { 203.0.113.9 }",  # a host inside a network
                          "add element inet journalban sshd-net4 { 203.0.0.0/16 }",
                          "add element inet journalban sshd-net4-covered { 203.0.113.0 . 203.0.113.255 }",
                          "add element inet journalban sshd-6 { 2001:db8::1 }",
                          "add element inet journalban sshd-net6 { 2001:db8:1::/64 }"]


def test_plan_deletes_only_what_is_there() -> None:
    snapshot = parse_listing(listing(CHAIN, *rules(SSHD), *sshd_sets(
        hosts4=["203.0.113.9", "192.0.2.66"], nets4=[{"prefix": {"addr": "203.0.0.0", "len": 16}}],
        covered4=[{"concat": ["203.0.113.0", "203.0.113.255"]}], hosts6=["2001:db8::1"])))
    # lifting the outer network puts the one it covered in its place; the host inside stays alone
    diff = Diff(remove=frozenset({("sshd", "203.0.0.0/16"), ("sshd", "198.51.100.1"), ("sshd", "2001:db8::1"),
                                  ("sshd", "192.0.2.66")}))
    assert plan_apply(snapshot, [SSHD], diff) == (
        "delete element inet journalban sshd-4 { 192.0.2.66 }\n"
        "delete element inet journalban sshd-net4 { 203.0.0.0/16 }\n"
        "delete element inet journalban sshd-net4-covered { 203.0.113.0 . 203.0.113.255 }\n"
        "add element inet journalban sshd-net4 { 203.0.113.0/24 }\n"
        "delete element inet journalban sshd-6 { 2001:db8::1 }\n")
    # removing what is not there plans nothing
    assert plan_apply(snapshot, [SSHD], Diff(remove=frozenset({("sshd", "198.51.100.1"),
                                                               ("sshd", "10.0.0.0/8")}))) is None
    with pytest.raises(ValueError, match="not among the jails"):
        plan_apply(snapshot, [SSHD], Diff(add=frozenset({("web", "198.51.100.1")})))


def test_plan_splits_a_range_set_by_hand() -> None:
    snapshot = parse_listing(listing(CHAIN, *rules(SSHD), *sshd_sets(nets4=[{"range": ["10.0.0.1", "10.0.0.3"]},
                                                                            "10.0.0.9"])))
    assert plan_apply(snapshot, [SSHD], Diff(remove=frozenset({("sshd", "10.0.0.1"), ("sshd", "10.0.0.9")}))) == (
        "delete element inet journalban sshd-net4 { 10.0.0.1-10.0.0.3, 10.0.0.9 }\n"
        "add element inet journalban sshd-net4 { 10.0.0.2/31 }\n")


def test_plan_of_100k_hosts_is_one_statement_per_chunk() -> None:
    hosts = [f"10.{i >> 14}.{(i >> 6) & 0xFF}.{(i & 0x3F) * 4}" for i in range(100_000)]
    snapshot = parse_listing(listing(CHAIN, *rules(SSHD), *sshd_sets(hosts4=list(hosts[:50_000]))))
    diff = Diff(add=frozenset(("sshd", h) for h in hosts[50_000:]),
                remove=frozenset(("sshd", h) for h in hosts[:30_000]))
    text = plan_apply(snapshot, [SSHD], diff)
    assert text is not None
    lines = text.splitlines()
    assert len(lines) == 6 + 10 and all(line.startswith("delete element") for line in lines[:6])
    assert sum(line.count(",") + 1 for line in lines) == 80_000


def test_faults_name_what_is_wrong() -> None:
    assert find_faults(None, [SSHD]).missing_table
    rule = {"rule": {"family": "inet", "table": "journalban", "chain": "input", "handle": 7,
                     "expr": [{"accept": None}]}}
    chain = {"chain": {**CHAIN["chain"], "prio": 0}}
    faults = find_faults(parse_listing(listing(chain, rule)), [SSHD])
    assert faults.chains == {"input"} and faults.jails == {"sshd"}
    assert [r.handle for r in faults.foreign] == [7]
    assert {"sshd-4", "sshd-net4", "sshd-net4-covered"} <= faults.sets
    plain_net = [*sshd_sets()[:4], nft_set("sshd-net6", "ipv6_addr", []), sshd_sets()[5]]  # no interval flag
    assert find_faults(parse_listing(listing(CHAIN, *rules(SSHD), *plain_net)), [SSHD]).sets == {"sshd-net6"}


def test_plan_remove_keeps_other_jails_and_drops_the_table_last() -> None:
    sets = [nft_set(name, f"ipv{v}_addr", []) for j in ("sshd", "web") for v in (4, 6)
            for name in (f"{j}-{v}", f"{j}-net{v}")]
    sets.append(nft_set("sshd-4-covered", ["ipv4_addr", "ipv4_addr"], []))  # left by the old layout
    rules = [{"rule": {"family": "inet", "table": "journalban", "chain": "input", "handle": h, "comment": j,
                       "expr": [{"drop": None}]}} for h, j in ((3, "sshd"), (4, "web"))]
    snapshot = parse_listing(listing(*sets, *rules))
    assert plan_remove(snapshot, [SSHD]) == ("delete rule inet journalban input handle 3\n"
                                             "delete set inet journalban sshd-4\n"
                                             "delete set inet journalban sshd-4-covered\n"
                                             "delete set inet journalban sshd-6\n"
                                             "delete set inet journalban sshd-net4\n"
                                             "delete set inet journalban sshd-net6\n")
    assert plan_remove(snapshot, [SSHD, WEB]) == "delete table inet journalban\n"
    assert plan_remove(None, [SSHD]) is None
