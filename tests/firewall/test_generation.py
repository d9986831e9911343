"""Reads that trust the kernel's ruleset generation: no tool runs while nothing changed,
and any change, by anyone, is seen at the next read.

The backends keep what they read or left only without a command prefix, when the
kernel they ask is the one the tools change; so these tests move the test's own
thread into the namespace (``setns``: the tools it starts run there too) and back.
"""

import contextlib
import ctypes
import os
import random
import subprocess
from collections.abc import Iterator, Sequence

import pytest

from journalban.firewall.base import Diff, Entry, JailLayout
from journalban.firewall.iptables import IptablesFirewall, ruleset_generation
from journalban.firewall.nftables import NftablesFirewall
from journalban.reconcile import diff
from tests.netns import Namespace, namespace, require_netns

CLONE_NEWNET = 0x40000000
SSHD = JailLayout("sshd")
FIRST: Entry = ("sshd", "203.0.113.9")
SECOND: Entry = ("sshd", "203.0.113.10")
V6: Entry = ("sshd", "2001:db8::9")


@contextlib.contextmanager
def inside(ns: Namespace) -> Iterator[None]:
    """This thread in ``ns`` (and what it starts), back in its own namespace afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
    try:
        assert libc.setns(target, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        try:
            yield
        finally:
            assert libc.setns(own, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(own)
        os.close(target)


@pytest.fixture
def ns() -> Iterator[Namespace]:
    require_netns()
    with namespace() as ns:
        yield ns


class CountedIptables(IptablesFirewall):
    """The real backend, counting the tools it runs."""

    runs: list[str]

    def run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        self.runs = [*getattr(self, "runs", []), argv[0]]
        return super().run(argv, stdin)


class CountedNftables(NftablesFirewall):
    runs: list[str]

    def _run(self, command: list[str], stdin: str | None) -> "subprocess.CompletedProcess[str]":
        self.runs = [*getattr(self, "runs", []), " ".join(command[:2])]
        return super()._run(command, stdin)


def reconcile(fw: IptablesFirewall | NftablesFirewall, desired: frozenset[Entry]) -> None:
    change = diff(desired, fw.read([SSHD]))
    if change:
        fw.apply([SSHD], change)


def test_the_generation_moves_once_per_transaction_and_not_on_a_listing(ns: Namespace) -> None:
    with inside(ns):
        before = ruleset_generation()
        assert before is not None
        subprocess.run(["iptables-save"], check=True, capture_output=True)
        subprocess.run(["nft", "list", "ruleset"], check=True, capture_output=True)
        assert ruleset_generation() == before
        subprocess.run(["nft", "add", "table", "inet", "probe"], check=True)
        assert ruleset_generation() == (before + 1) & 0xFFFFFFFF


def test_iptables_reads_nothing_while_nothing_changed_and_sees_any_change(ns: Namespace) -> None:
    with inside(ns):
        fw = CountedIptables()
        reconcile(fw, frozenset({FIRST, V6}))
        fw.runs = []
        actual = fw.read([SSHD])
        assert actual.entries == {FIRST, V6} and actual.layout_ok
        assert fw.runs == []  # the apply's result, at the generation it left

        reconcile(fw, frozenset({FIRST, SECOND, V6}))  # a new ban: one restore, v4 only
        assert fw.runs == ["iptables-restore"]
        saved = subprocess.run(["iptables-save", "-t", "filter"], check=True, capture_output=True,
                               text=True).stdout
        assert "-A jb-sshd -s 203.0.113.10/32 -j DROP" in saved and "-A jb-sshd -s 203.0.113.9/32 -j DROP" in saved
        fw.runs = []
        assert fw.read([SSHD]).entries == {FIRST, SECOND, V6} and fw.runs == []

        # someone else deletes a ban: the generation moved, the next read lists again and sees it
        subprocess.run(["iptables", "-D", "jb-sshd", "-s", "203.0.113.9/32", "-j", "DROP"], check=True)
        actual = fw.read([SSHD])
        assert actual.entries == {SECOND, V6} and fw.runs == ["iptables-save", "ip6tables-save"]
        reconcile(fw, frozenset({FIRST, SECOND, V6}))  # healed
        assert fw.read([SSHD]).entries == {FIRST, SECOND, V6}

        # a change elsewhere in the ruleset (another table) also makes it list again, and agree
        subprocess.run(["nft", "add", "table", "inet", "other"], check=True)
        fw.runs = []
        assert fw.read([SSHD]).entries == {FIRST, SECOND, V6} and fw.runs == ["iptables-save", "ip6tables-save"]


def test_iptables_with_a_command_prefix_always_lists(ns: Namespace) -> None:
    fw = CountedIptables(command_prefix=ns.argv([]))
    reconcile(fw, frozenset({FIRST}))
    fw.runs = []
    assert fw.read([SSHD]).entries == {FIRST}
    assert len(fw.runs) == 2


def test_nftables_reads_nothing_while_nothing_changed_and_sees_any_change(ns: Namespace) -> None:
    with inside(ns):
        fw = CountedNftables()
        reconcile(fw, frozenset({FIRST, V6}))  # the table is created: only a listing shows it
        fw.runs = []
        assert fw.read([SSHD]).entries == {FIRST, V6} and fw.runs == ["nft -j"]
        fw.runs = []
        assert fw.read([SSHD]).entries == {FIRST, V6} and fw.runs == []

        reconcile(fw, frozenset({SECOND, V6}))  # a ban lifted, a ban added: one nft -f
        assert fw.runs == ["nft -f"]
        listed = subprocess.run(["nft", "list", "set", "inet", "journalban", "sshd-4"], check=True,
                                capture_output=True, text=True).stdout
        assert "203.0.113.10" in listed and "203.0.113.9 " not in listed and "203.0.113.9}" not in listed
        fw.runs = []
        assert fw.read([SSHD]).entries == {SECOND, V6} and fw.runs == []

        subprocess.run(["nft", "delete", "element", "inet", "journalban", "sshd-4", "{ 203.0.113.10 }"], check=True)
        actual = fw.read([SSHD])
        assert actual.entries == {V6} and fw.runs == ["nft -j"]

        # a network: applied, then listed again (only hosts-only applies are kept)
        reconcile(fw, frozenset({SECOND, V6, ("sshd", "198.51.100.0/24")}))
        fw.runs = []
        assert fw.read([SSHD]).entries == {SECOND, V6, ("sshd", "198.51.100.0/24")}
        assert fw.runs == ["nft -j"]
        fw.runs = []
        assert fw.read([SSHD]).entries == {SECOND, V6, ("sshd", "198.51.100.0/24")} and fw.runs == []


def test_nftables_apply_of_an_unread_diff_is_not_kept(ns: Namespace) -> None:
    with inside(ns):
        fw = CountedNftables()
        fw.apply([SSHD], Diff(add=frozenset({FIRST}), repair_layout=True))  # no read before it
        fw.runs = []
        assert fw.read([SSHD]).entries == {FIRST} and fw.runs == ["nft -j"]


def test_nftables_in_process_refusal_is_planned_again(ns: Namespace) -> None:
    """libnftables in this process refuses a transaction as ``nft -f`` does (a deleted
    element already gone): nothing changed, and the apply plans again on a new listing."""
    with inside(ns):
        fw = NftablesFirewall()
        reconcile(fw, frozenset({FIRST, SECOND}))
        assert fw.read([SSHD]).entries == {FIRST, SECOND}
        subprocess.run(["nft", "delete", "element", "inet", "journalban", "sshd-4", "{ 203.0.113.9 }"], check=True)
        fw.apply([SSHD], Diff(remove=frozenset({FIRST}), add=frozenset({V6})))  # planned on the read before
        listed = subprocess.run(["nft", "-j", "list", "table", "inet", "journalban"], check=True,
                                capture_output=True, text=True).stdout
        assert "2001:db8::9" in listed and "203.0.113.10" in listed and "203.0.113.9\"" not in listed
        assert fw.read([SSHD]).entries == {SECOND, V6}


@pytest.mark.parametrize("backend", [CountedIptables, CountedNftables])
def test_a_run_of_bans_and_lifts_leaves_the_remembered_read_equal_to_a_listing(
        ns: Namespace, backend: type[CountedIptables] | type[CountedNftables]) -> None:
    """What an apply leaves is remembered by changing the last read in place: after each of
    many applies, the read that costs nothing equals what a fresh backend lists."""
    pool = [("sshd", f"198.51.100.{i}") for i in range(1, 31)] + [("sshd", f"2001:db8::{i:x}") for i in range(1, 9)]
    rng = random.Random(5)
    with inside(ns):
        fw = backend()
        reconcile(fw, frozenset({FIRST}))
        fw.read([SSHD])  # the table is made: one listing, remembered from here on
        for _ in range(20):
            desired = frozenset(rng.sample(pool, rng.randrange(0, 12)))
            held = fw.read([SSHD])
            reconcile(fw, desired)
            fw.runs = []
            remembered = fw.read([SSHD])
            assert fw.runs == []
            assert remembered.entries == desired == backend().read([SSHD]).entries
            assert held.entries == desired  # the last read's own set, changed in place
