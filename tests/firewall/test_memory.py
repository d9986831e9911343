from journalban.firewall.base import Diff, JailLayout
from journalban.firewall.memory import APPLIED_KEPT, MemoryFirewall

JAILS = (JailLayout("sshd"),)


def test_a_dry_run_firewall_holds_every_entry_but_only_its_newest_diffs() -> None:
    """A dry-run daemon applies a diff per batch of bans for as long as it runs: what it
    shows of them stays bounded, what it would enforce stays whole."""
    firewall = MemoryFirewall()
    addresses = [f"198.51.{n // 256}.{n % 256}" for n in range(APPLIED_KEPT * 3)]
    for address in addresses:
        firewall.apply(JAILS, Diff(add=frozenset({("sshd", address)})))
    assert len(firewall.applied) == APPLIED_KEPT
    assert firewall.applied[-1] == Diff(add=frozenset({("sshd", addresses[-1])}))
    assert firewall.applied[0] == Diff(add=frozenset({("sshd", addresses[-APPLIED_KEPT])}))
    assert firewall.read(JAILS).entries == {("sshd", address) for address in addresses}
