"""The helpers every backend plans with: entries grouped and told apart by their text alone."""

from journalban.firewall.base import Kinds, by_jail, kinds_by_jail


def test_entries_grouped_by_jail() -> None:
    assert by_jail(frozenset()) == {}
    assert by_jail(frozenset({("sshd", "203.0.113.9")})) == {"sshd": ["203.0.113.9"]}
    grouped = by_jail(frozenset({("sshd", "203.0.113.9"), ("web", "2001:db8::1"), ("sshd", "198.51.100.0/24")}))
    assert {jail: sorted(addresses) for jail, addresses in grouped.items()} == {
        "sshd": ["198.51.100.0/24", "203.0.113.9"], "web": ["2001:db8::1"]}


def test_kinds_of_normalised_entries() -> None:
    kinds = Kinds.of(["203.0.113.9", "2001:db8::1", "198.51.100.0/24", "2001:db8:1::/64", "192.0.2.1"])
    assert kinds == Kinds(["203.0.113.9", "192.0.2.1"], ["2001:db8::1"], ["198.51.100.0/24"], ["2001:db8:1::/64"])
    assert (kinds.hosts(4), kinds.nets(6)) == (["203.0.113.9", "192.0.2.1"], ["2001:db8:1::/64"])
    assert Kinds.of(["203.0.113.9"]) == Kinds(["203.0.113.9"], [], [], [])  # the botnet case: one kind
    assert Kinds.of([]) == Kinds([], [], [], [])


def test_kinds_by_jail_are_kept_for_the_families_planned_in_turn() -> None:
    diff = frozenset({("sshd", "203.0.113.9"), ("web", "2001:db8::/32")})
    kinds = kinds_by_jail(diff)
    assert kinds == {"sshd": Kinds(["203.0.113.9"], [], [], []), "web": Kinds([], [], [], ["2001:db8::/32"])}
    assert kinds_by_jail(diff) is kinds  # the second family's plan does not group again
