"""Parsing and planning of the nftables backend, without a kernel."""

import json

import pytest

from journalban.firewall.base import Diff, JailLayout, PortSpec
from journalban.firewall.nftables import (
    V4,
    V6,
    describe,
    element_span,
    entries_in,
    find_faults,
    jail_rules,
    parse_listing,
    plan_apply,
    plan_remove,
    set_name,
    split_outermost,
)

SSHD = JailLayout("sshd")
WEB = JailLayout("web", blocktype="reject", ports=(PortSpec("tcp", ("443", "80", "8000:8100")),), log=True)


def listing(*objects: object) -> str:
    return json.dumps({"nftables": [{"metainfo": {"version": "1.0.6"}}, *objects]})


def nft_set(name: str, kind: str | list[str], elems: list[object], flags: tuple[str, ...] = ("interval",)) -> object:
    return {"set": {"family": "inet", "name": name, "table": "journalban", "type": kind,
                    "flags": list(flags), "elem": elems}}


def test_element_forms() -> None:
    assert element_span("203.0.113.9") == (3405803785, 3405803785)
    assert element_span({"prefix": {"addr": "203.0.113.0", "len": 24}}) == (3405803776, 3405804031)
    assert element_span({"range": ["10.0.0.1", "10.0.0.5"]}) == (167772161, 167772165)
    assert element_span({"concat": ["2001:db8::", "2001:db8::ff"]}) == (
        0x20010DB8 << 96, (0x20010DB8 << 96) + 0xFF)
    assert element_span({"elem": {"val": "10.0.0.1", "comment": "x"}}) == (167772161, 167772161)
    assert element_span({"set": []}) is None


def test_read_reports_hosts_networks_ranges_and_covered_entries() -> None:
    snapshot = parse_listing(listing(
        nft_set("sshd-4", "ipv4_addr", ["198.51.100.7", {"prefix": {"addr": "203.0.113.0", "len": 24}},
                                        {"range": ["10.0.0.1", "10.0.0.3"]}]),
        nft_set("sshd-4-covered", ["ipv4_addr", "ipv4_addr"],
                [{"concat": ["203.0.113.9", "203.0.113.9"]},  # inside the /24: held
                 {"concat": ["192.0.2.1", "192.0.2.1"]}], ()),  # inside nothing: not enforced, not held
        nft_set("sshd-6", "ipv6_addr", [{"prefix": {"addr": "2001:db8:1::", "len": 64}}])))
    assert entries_in(snapshot, [SSHD]) == {
        ("sshd", "198.51.100.7"), ("sshd", "203.0.113.0/24"), ("sshd", "203.0.113.9"),
        ("sshd", "10.0.0.1"), ("sshd", "10.0.0.2/31"), ("sshd", "2001:db8:1::/64")}
    assert entries_in(None, [SSHD]) == set()


def test_rules_read_back_in_the_form_they_are_written() -> None:
    expr = [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@web-4"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": {"set": [80, 443, {"range": [8000, 8100]}]}}},
            {"limit": {"rate": 6, "burst": 5, "per": "minute"}},
            {"log": {"prefix": "journalban web: "}}]
    assert describe(expr) == jail_rules(WEB)[0]
    assert jail_rules(WEB)[:2] == [
        'ip saddr @web-4 tcp dport { 80, 443, 8000-8100 } limit rate 6/minute log prefix "journalban web: "',
        "ip saddr @web-4 tcp dport { 80, 443, 8000-8100 } reject with tcp reset"]
    assert describe([expr[0], {"drop": None}]) == "ip saddr @web-4 drop"
    assert describe([expr[0], {"accept": None}]) is None
    assert describe([expr[0], {"reject": {"type": "icmpx", "expr": "port-unreachable"}}]) == (
        "ip saddr @web-4 reject with icmpx type port-unreachable")
    single = {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}
    assert describe([single]) == "udp dport { 53 }"


def test_jail_rules_per_family() -> None:
    assert jail_rules(SSHD) == ["ip saddr @sshd-4 drop", "ip6 saddr @sshd-6 drop"]
    assert jail_rules(JailLayout("x", blocktype="reject", ports=(PortSpec("udp", ("53",)),)))[0] == (
        "ip saddr @x-4 udp dport { 53 } reject with icmpx type port-unreachable")


def test_names_nft_cannot_parse_are_refused() -> None:
    with pytest.raises(ValueError):
        set_name("1abc", V4)
    assert set_name("_a-b", V6) == "_a-b-6"


def test_split_outermost() -> None:
    host, net, wide, other = (9, 9), (0, 255), (0, 65535), (70000, 70000)
    assert split_outermost([host, net, other]) == ({net, other}, {host})
    assert split_outermost([host, net, wide]) == ({wide}, {host, net})


def test_plan_from_nothing_builds_everything_and_puts_covered_entries_aside() -> None:
    diff = Diff(add=frozenset({("sshd", "203.0.113.9"), ("sshd", "203.0.113.0/24"), ("sshd", "2001:db8::1")}),
                repair_layout=True)
    text = plan_apply(None, [SSHD], diff)
    assert text is not None
    lines = text.splitlines()
    assert lines[:2] == ["add table inet journalban",
                         "add chain inet journalban input { type filter hook input priority filter - 1; "
                         "policy accept; }"]
    assert 'add rule inet journalban input ip saddr @sshd-4 drop comment "sshd"' in lines
    assert lines[-3:] == ["add element inet journalban sshd-4 { 203.0.113.0/24 }",
                          "add element inet journalban sshd-4-covered { 203.0.113.9 . 203.0.113.9 }",
                          "add element inet journalban sshd-6 { 2001:db8::1 }"]


def test_plan_deletes_only_what_is_there() -> None:
    snapshot = parse_listing(listing(
        nft_set("sshd-4", "ipv4_addr", [{"prefix": {"addr": "203.0.113.0", "len": 24}}]),
        nft_set("sshd-4-covered", ["ipv4_addr", "ipv4_addr"], [{"concat": ["203.0.113.9", "203.0.113.9"]}], ()),
        nft_set("sshd-6", "ipv6_addr", []),
        nft_set("sshd-6-covered", ["ipv6_addr", "ipv6_addr"], [], ())))
    # lifting the network leaves the host it covered enforced on its own; removing an absent entry is a no-op
    diff = Diff(remove=frozenset({("sshd", "203.0.113.0/24"), ("sshd", "198.51.100.1")}))
    assert plan_apply(snapshot, [SSHD], diff) == (
        "delete element inet journalban sshd-4 { 203.0.113.0/24 }\n"
        "delete element inet journalban sshd-4-covered { 203.0.113.9 . 203.0.113.9 }\n"
        "add element inet journalban sshd-4 { 203.0.113.9 }\n")
    assert plan_apply(snapshot, [SSHD], Diff(remove=frozenset({("sshd", "198.51.100.1")}))) is None
    with pytest.raises(ValueError, match="not among the jails"):
        plan_apply(snapshot, [SSHD], Diff(add=frozenset({("web", "198.51.100.1")})))


def test_faults_name_what_is_wrong() -> None:
    assert find_faults(None, [SSHD]).missing_table
    rule = {"rule": {"family": "inet", "table": "journalban", "chain": "input", "handle": 7,
                     "expr": [{"accept": None}]}}
    chain = {"chain": {"family": "inet", "table": "journalban", "name": "input", "handle": 1, "type": "filter",
                       "hook": "input", "prio": 0, "policy": "accept"}}
    faults = find_faults(parse_listing(listing(chain, rule)), [SSHD])
    assert faults.chains == {"input"} and faults.jails == {"sshd"}
    assert [r.handle for r in faults.foreign] == [7]
    assert "sshd-4-covered" in faults.sets


def test_plan_remove_keeps_other_jails_and_drops_the_table_last() -> None:
    sets = [nft_set(f"{j}-{v}", f"ipv{v}_addr", []) for j in ("sshd", "web") for v in (4, 6)]
    rules = [{"rule": {"family": "inet", "table": "journalban", "chain": "input", "handle": h, "comment": j,
                       "expr": [{"drop": None}]}} for h, j in ((3, "sshd"), (4, "web"))]
    snapshot = parse_listing(listing(*sets, *rules))
    assert plan_remove(snapshot, [SSHD]) == ("delete rule inet journalban input handle 3\n"
                                             "delete set inet journalban sshd-4\n"
                                             "delete set inet journalban sshd-6\n")
    assert plan_remove(snapshot, [SSHD, WEB]) == "delete table inet journalban\n"
    assert plan_remove(None, [SSHD]) is None
