"""The ipset backend's pure half: parsing ``ipset save`` and planning both restore texts."""

import pytest

from journalban.firewall.base import Diff, JailLayout, PortSpec
from journalban.firewall.ipset import (
    MAX_JAIL_NAME,
    entries_in_sets,
    hooks_layout_ok,
    jail_sets,
    misfits,
    our_names,
    parse_ipset_headers,
    parse_ipset_save,
    plan_hooks,
    plan_remove_hooks,
    plan_sets,
    sets_ok,
)
from journalban.firewall.iptables import V4, V6, parse_save

SSHD = JailLayout("sshd")
SAVE = """\
create other hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
add other 192.0.2.1
create jb-sshd-4 hash:ip family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x2
add jb-sshd-4 203.0.113.9
create jb-sshd-6 hash:ip family inet6 hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x3
add jb-sshd-6 2001:db8::9
create jb-sshd-net4 hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x4
add jb-sshd-net4 203.0.113.0/24
add jb-sshd-net4 198.51.100.2
create jb-sshd-net6 hash:net family inet6 hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x5
add jb-sshd-net6 2001:db8:1::/64
"""
HOOKED = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m set --match-set jb-sshd-4 src -j DROP
-A INPUT -m set --match-set jb-sshd-net4 src -j DROP
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""


def test_set_names_fit_ipset() -> None:
    assert MAX_JAIL_NAME == 23
    assert [s.name for s in jail_sets("x" * 23)][2] == "jb-" + "x" * 23 + "-net4"
    assert len(jail_sets("x" * 23)[3].name) == 31
    for bad in ("x" * 24, "", "a b"):
        with pytest.raises(ValueError):
            jail_sets(bad)


def test_parse_only_our_sets_and_normalise() -> None:
    sets = parse_ipset_save(SAVE, our_names([SSHD]))
    assert "other" not in sets and sets_ok(sets, [SSHD])
    assert entries_in_sets(sets, [SSHD]) == {
        ("sshd", "203.0.113.9"), ("sshd", "2001:db8::9"), ("sshd", "203.0.113.0/24"),
        ("sshd", "198.51.100.2"), ("sshd", "2001:db8:1::/64")}


@pytest.mark.parametrize("broken", [
    SAVE.replace("create jb-sshd-net6 hash:net family inet6", "create jb-sshd-net6 hash:ip family inet6"),
    SAVE.replace("create jb-sshd-6 hash:ip family inet6", "create jb-sshd-6 hash:ip family inet"),
    "\n".join(line for line in SAVE.splitlines() if "jb-sshd-net4" not in line),
])
def test_sets_not_ok(broken: str) -> None:
    assert not sets_ok(parse_ipset_save(broken, our_names([SSHD])), [SSHD])


def test_plan_sets_creates_missing_then_deletes_then_adds() -> None:
    diff = Diff(add=frozenset({("sshd", "203.0.113.10"), ("sshd", "2001:db8:2::/64")}),
                remove=frozenset({("sshd", "198.51.100.2"), ("sshd", "203.0.113.0/24")}))
    in_net_set = {("sshd", "198.51.100.2")}  # a host read from the net set
    assert plan_sets({"jb-sshd-4", "jb-sshd-6", "other"}, [SSHD], diff, in_net_set) == (
        "create jb-sshd-net4 hash:net family inet hashsize 1024 maxelem 1048576\n"
        "create jb-sshd-net6 hash:net family inet6 hashsize 1024 maxelem 1048576\n"
        "del jb-sshd-net4 198.51.100.2\ndel jb-sshd-net4 203.0.113.0/24\ndel jb-sshd-4 198.51.100.2\n"
        "add jb-sshd-4 203.0.113.10\nadd jb-sshd-net6 2001:db8:2::/64\n")
    assert plan_sets(our_names([SSHD]), [SSHD], Diff(repair_layout=True)) is None
    with pytest.raises(ValueError, match="nope"):
        plan_sets(set(), [SSHD], Diff(add=frozenset({("nope", "192.0.2.1")})))


def test_hooks_checked_and_planned() -> None:
    table = parse_save(HOOKED)
    assert hooks_layout_ok(table, [SSHD], V4)
    assert plan_hooks(table, [SSHD], V4) is None
    assert not hooks_layout_ok(table, [SSHD], V6)
    assert plan_hooks(table, [SSHD], V6) == (
        "*filter\n-I INPUT 1 -m set --match-set jb-sshd-6 src -j DROP\n"
        "-I INPUT 2 -m set --match-set jb-sshd-net6 src -j DROP\nCOMMIT\n")
    below = parse_save(HOOKED.replace("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n", "").replace(
        "-A INPUT -m set", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -m set", 1))
    assert not hooks_layout_ok(below, [SSHD], V4)
    assert plan_hooks(below, [SSHD], V4) == (
        "*filter\n-D INPUT -m set --match-set jb-sshd-4 src -j DROP\n"
        "-D INPUT -m set --match-set jb-sshd-net4 src -j DROP\n"
        "-I INPUT 1 -m set --match-set jb-sshd-4 src -j DROP\n"
        "-I INPUT 2 -m set --match-set jb-sshd-net4 src -j DROP\nCOMMIT\n")


def test_hook_rules_reject_ports_and_log() -> None:
    web = JailLayout("web", blocktype="reject", log=True, chain="FORWARD",
                     ports=(PortSpec("tcp", ("80", "443")),))
    plan = plan_hooks(parse_save(HOOKED), [SSHD, web], V6) or ""
    assert plan.splitlines()[1:4] == [
        ":jbl-web - [0:0]",
        '-A jbl-web -m limit --limit 6/min --limit-burst 10 -j LOG --log-prefix "journalban web: "',
        "-A jbl-web -j REJECT --reject-with icmp6-port-unreachable"]
    assert ("-I FORWARD 1 -p tcp -m multiport --dports 80,443 -m set --match-set jb-web-6 src "
            "-j jbl-web") in plan


def test_plan_remove_hooks_only_ours() -> None:
    text = HOOKED.replace("COMMIT", "-A FORWARD -m set --match-set jb-sshd-4 src -j DROP\n"
                                    "-A FORWARD -m set --match-set other src -j DROP\nCOMMIT")
    assert plan_remove_hooks(parse_save(text), [SSHD], V4) == (
        "*filter\n-D INPUT -m set --match-set jb-sshd-4 src -j DROP\n"
        "-D INPUT -m set --match-set jb-sshd-net4 src -j DROP\n"
        "-D FORWARD -m set --match-set jb-sshd-4 src -j DROP\nCOMMIT\n")
    assert plan_remove_hooks(parse_save(HOOKED), [JailLayout("other")], V4) is None


TERSE = """\
Name: other
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
Size in memory: 200
References: 0
Number of entries: 1
Name: jb-sshd-4
Type: hash:net
Revision: 7
Header: family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x2
Size in memory: 200
References: 1
Number of entries: 0
Name: jb-sshd-6
Type: hash:ip
Revision: 6
Header: family inet6 hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x3
Size in memory: 200
References: 1
Number of entries: 0
"""


def test_headers_show_sets_taken_by_another_type() -> None:
    sets = parse_ipset_headers(TERSE, our_names([SSHD]))
    assert set(sets) == {"jb-sshd-4", "jb-sshd-6"}
    assert misfits(sets, [SSHD]) == ["jb-sshd-4"]
    assert not sets_ok(sets, [SSHD])
