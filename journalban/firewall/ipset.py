"""The ipset backend: each jail's bans in kernel hash sets, one hook rule per set.

Per jail, ``hash:ip`` sets ``jb-<jail>-4``/``-6`` hold hosts and ``hash:net`` sets
``jb-<jail>-net4``/``-net6`` hold networks; a lookup costs the same for 10 or
100,000 bans. The hook rules (``-m set --match-set SET src -j DROP``) sit at the
top of the jail's hook chain, kept there like the iptables backend's jumps, whose
planning helpers (hooks, log chain, restore batches) this module reuses.

``apply`` writes every set change in one ``ipset restore -exist`` call (``-exist``
makes adding what is there and deleting what is not harmless), then, only when the
layout needs repair, one ``iptables-restore --noflush`` batch per family.
"""

import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from journalban.firewall.base import Actual, Diff, Entry, FirewallError, JailLayout, kinds_by_jail
from journalban.firewall.iptables import (
    FAMILIES,
    PREFIX,
    Batch,
    Family,
    Rule,
    Runner,
    Table,
    ban_target,
    chain_name,
    drop_stale_log_chains,
    entry_text,
    hooks_by_chain,
    hooks_ok,
    log_chain_name,
    log_chain_ok,
    match_set,
    missing_chains,
    missing_hook_error,
    port_matches,
    repair_hooks,
    repair_log_chain,
)

MAX_SET_NAME = 31  # IPSET_MAXNAMELEN - 1
MAX_JAIL_NAME = MAX_SET_NAME - len(PREFIX) - len("-net4")  # 23
HASHSIZE = 1024  # the kernel doubles it as a set fills; a start, not a limit
MAXELEM = 1_048_576
SET_FAMILY = {4: "inet", 6: "inet6"}


@dataclass(frozen=True, slots=True)
class SetSpec:
    """One of a jail's four sets."""

    name: str
    kind: str  # "hash:ip" or "hash:net"
    version: int

    @property
    def create(self) -> str:
        return (f"create {self.name} {self.kind} family {SET_FAMILY[self.version]} "
                f"hashsize {HASHSIZE} maxelem {MAXELEM}")


@functools.cache
def jail_sets(jail: str) -> tuple[SetSpec, SetSpec, SetSpec, SetSpec]:
    """ip4, ip6, net4, net6; ValueError if a set could not be named."""
    chain_name(jail)
    if len(jail) > MAX_JAIL_NAME:
        raise ValueError(f"jail name {jail!r}: at most {MAX_JAIL_NAME} characters for ipset")
    base = PREFIX + jail
    return (SetSpec(f"{base}-4", "hash:ip", 4), SetSpec(f"{base}-6", "hash:ip", 6),
            SetSpec(f"{base}-net4", "hash:net", 4), SetSpec(f"{base}-net6", "hash:net", 6))


def sets_for(jail: str, version: int) -> tuple[SetSpec, SetSpec]:
    """The jail's host set and net set of one family."""
    ip4, ip6, net4, net6 = jail_sets(jail)
    return (ip4, net4) if version == 4 else (ip6, net6)


# --- parse -------------------------------------------------------------------------

@dataclass(slots=True)
class SetState:
    kind: str
    family: str
    members: list[str] = field(default_factory=list)


def parse_ipset_save(text: str, names: set[str]) -> dict[str, SetState]:
    """The sets named ``names`` in ``ipset save`` output, with their members; others skipped."""
    sets: dict[str, SetState] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or words[1] not in names:
            continue
        if words[0] == "create":
            options = dict(zip(words[3::2], words[4::2], strict=False))
            sets[words[1]] = SetState(words[2], options.get("family", ""))
        elif words[0] == "add" and words[1] in sets:
            sets[words[1]].members.append(words[2])
    return sets


def parse_ipset_headers(text: str, names: set[str]) -> dict[str, SetState]:
    """The sets named ``names`` in ``ipset list -t`` output (headers only, no members)."""
    sets: dict[str, SetState] = {}
    name = kind = ""
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == "Name":
            name = value.strip()
        elif key == "Type":
            kind = value.strip()
        elif key == "Header" and name in names:
            words = value.split()
            options = dict(zip(words[::2], words[1::2], strict=False))
            sets[name] = SetState(kind, options.get("family", ""))
    return sets


def misfits(sets: dict[str, SetState], jails: Sequence[JailLayout]) -> list[str]:
    """Our set names taken by a set of another type or family, which journalban leaves alone."""
    return [spec.name for jail in jails for spec in jail_sets(jail.name)
            if spec.name in sets and (sets[spec.name].kind, sets[spec.name].family)
            != (spec.kind, SET_FAMILY[spec.version])]


def our_names(jails: Sequence[JailLayout]) -> set[str]:
    return {spec.name for jail in jails for spec in jail_sets(jail.name)}


def entries_in_sets(sets: dict[str, SetState], jails: Sequence[JailLayout],
                    kind: str | None = None) -> set[Entry]:
    """The entries these jails' sets hold (only those of sets of ``kind``, if given)."""
    entries: set[Entry] = set()
    for jail in jails:
        for spec in jail_sets(jail.name):
            if spec.name not in sets or kind not in (None, spec.kind):
                continue
            for member in sets[spec.name].members:
                if (entry := entry_text(member, spec.version)) is not None:
                    entries.add((jail.name, entry))
    return entries


def sets_ok(sets: dict[str, SetState], jails: Sequence[JailLayout]) -> bool:
    """Every set exists with its type and family."""
    return len(sets) == len(our_names(jails)) and not misfits(sets, jails)


# --- hooks -------------------------------------------------------------------------

def hook_rules_for(family: Family) -> Callable[[JailLayout], list[Rule]]:
    """The rules hooking a jail's sets of ``family`` in: per port group, host set then net set."""
    def rules(jail: JailLayout) -> list[Rule]:
        names = [spec.name for spec in sets_for(jail.name, family.version)]
        return [(*match, "-m", "set", "--match-set", name, "src", *ban_target(jail, family))
                for match in port_matches(jail) for name in names]
    return rules


def _my_set_rules(jails: Sequence[JailLayout], family: Family) -> Callable[[Rule], bool]:
    mine = {spec.name for jail in jails for spec in sets_for(jail.name, family.version)}
    return lambda rule: match_set(rule) in mine


def hooks_layout_ok(table: Table, jails: Sequence[JailLayout], family: Family) -> bool:
    hooks = hooks_by_chain(jails, hook_rules_for(family))
    return (hooks_ok(table, hooks, _my_set_rules(jails, family))
            and all(log_chain_ok(table, jail, family) for jail in jails))


# --- plan --------------------------------------------------------------------------

def plan_sets(present: set[str], jails: Sequence[JailLayout], diff: Diff,
              hosts_in_net_sets: Collection[Entry] = frozenset()) -> str | None:
    """The ``ipset restore -exist`` text: create missing sets, then deletions, then additions.
    ``hosts_in_net_sets``: hosts that ``read`` found in a net set (put there by hand)."""
    names = {jail.name for jail in jails}
    lines = [spec.create for jail in jails for spec in jail_sets(jail.name)
             if spec.name not in present]
    removals, additions = kinds_by_jail(diff.remove), kinds_by_jail(diff.add)
    if unknown := additions.keys() - names:
        raise ValueError(f"ban in jail {sorted(unknown)[0]!r}, which is not among the jails given")
    for jail, kinds in sorted(removals.items()):
        for version in (4, 6):
            host_set, net_set = sets_for(jail, version)
            hosts = kinds.hosts(version)
            if hosts_in_net_sets:  # put in the net set by hand: deleted from there too
                lines += [f"del {net_set.name} {a}" for a in hosts if (jail, a) in hosts_in_net_sets]
            lines += [f"del {net_set.name} {a}" for a in kinds.nets(version)]
            lines += [f"del {host_set.name} {a}" for a in hosts]
    for jail, kinds in sorted(additions.items()):
        for version in (4, 6):
            host_set, net_set = sets_for(jail, version)
            lines += [f"add {host_set.name} {a}" for a in kinds.hosts(version)]
            lines += [f"add {net_set.name} {a}" for a in kinds.nets(version)]
    return "\n".join([*lines, ""]) if lines else None


def plan_hooks(table: Table, jails: Sequence[JailLayout], family: Family) -> str | None:
    """The restore text putting these jails' hook rules and log chains right for one family."""
    batch = Batch(table)
    for jail in jails:
        repair_log_chain(batch, jail, family)
    repair_hooks(batch, hooks_by_chain(jails, hook_rules_for(family)), _my_set_rules(jails, family))
    drop_stale_log_chains(batch, jails)
    return batch.text()


def plan_remove_hooks(table: Table, jails: Sequence[JailLayout], family: Family) -> str | None:
    """Delete every rule matching these jails' sets, then their log chains."""
    batch = Batch(table)
    mine = _my_set_rules(jails, family)
    for chain, rules in table.items():
        for rule in [r for r in rules if mine(r)]:
            batch.delete(chain, rule)
    for jail in jails:
        if log_chain_name(jail.name) in batch.table:
            batch.drop_chain(log_chain_name(jail.name))
    return batch.text()


# --- run ---------------------------------------------------------------------------

class IpsetFirewall(Runner):
    """Sets ``jb-<jail>-4/-6/-net4/-net6`` matched by rules at the top of the jail's chain."""

    name = "ipset"

    def __init__(self, command_prefix: Sequence[str] = ()) -> None:
        super().__init__(command_prefix)
        self._hosts_in_net_sets: frozenset[Entry] = frozenset()  # from the last read
        self._read: tuple[dict[str, SetState], dict[int, Table]] | None = None  # its sets and tables

    def read(self, jails: Sequence[JailLayout]) -> Actual:
        self._read = None
        sets = parse_ipset_save(self.run(["ipset", "save"]), our_names(jails))
        tables = {family.version: self.save(family) for family in FAMILIES}
        ok = sets_ok(sets, jails) and all(hooks_layout_ok(tables[f.version], jails, f) for f in FAMILIES)
        self._hosts_in_net_sets = frozenset(
            entry for entry in entries_in_sets(sets, jails, "hash:net") if "/" not in entry[1])
        self._read = (sets, tables)
        return Actual(entries=frozenset(entries_in_sets(sets, jails)), layout_ok=ok)

    def apply(self, jails: Sequence[JailLayout], diff: Diff) -> None:
        """Planned on what this pass's ``read`` saw, sparing a listing per tool; should a set or
        rule have gone since, so that a command fails, it is planned again on a fresh one
        (``ipset restore -exist`` may repeat what already went in)."""
        seen, self._read = self._read, None
        present = seen[0] if seen is not None else None
        if present is not None:
            try:
                self._load_sets(present, jails, diff)
            except FirewallError:
                present = None
        if present is None:
            present = parse_ipset_headers(self.run(["ipset", "list", "-t"]), our_names(jails))
            self._load_sets(present, jails, diff)
        if not diff.repair_layout:
            return
        missing: list[str] = []
        for family in FAMILIES:
            table = seen[1][family.version] if seen is not None else None
            if table is not None:
                try:
                    self.restore(family, plan_hooks(table, jails, family))
                except FirewallError:
                    table = None
            if table is None:
                table = self.save(family)
                self.restore(family, plan_hooks(table, jails, family))
            missing += missing_chains(table, hooks_by_chain(jails, hook_rules_for(family)))
        if missing:
            raise missing_hook_error(missing)
        if wrong := misfits(present, jails):
            raise FirewallError(f"set {', '.join(wrong)} exists with another type or family; "
                                "journalban does not destroy it: remove it by hand")

    def _load_sets(self, present: dict[str, SetState], jails: Sequence[JailLayout], diff: Diff) -> None:
        text = plan_sets(set(present), jails, diff, self._hosts_in_net_sets)
        if text is not None:
            self.run(["ipset", "restore", "-exist"], stdin=text)

    def remove(self, jails: Sequence[JailLayout]) -> None:
        self._read = None
        for family in FAMILIES:
            self.restore(family, plan_remove_hooks(self.save(family), jails, family))
        destroy = [f"destroy {spec.name}" for jail in jails for spec in jail_sets(jail.name)]
        self.run(["ipset", "restore", "-exist"], stdin="\n".join([*destroy, ""]))
