"""The default backend: one iptables chain per jail, fail2ban-style, for IPv4 and IPv6.

The table is read with ``iptables-save`` and changed with one ``iptables-restore
--noflush`` batch per family, so every change is atomic. Planning is pure (saved
table + diff -> restore text) and tested without a kernel; only ``_run`` does I/O.

Declaring an existing user chain (``:jb-x - [0:0]``) in a ``--noflush`` batch
flushes it on iptables-nft 1.8.9, so only missing chains are declared; and a
``-D`` of a rule that is not there fails the whole batch, so ``apply`` plans
against a fresh ``iptables-save`` taken just before it writes.
"""

import ipaddress
import re
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from journalban.firewall.base import Actual, Diff, Entry, FirewallError, JailLayout

PREFIX = "jb-"
MAX_CHAIN_NAME = 28  # netfilter's limit (XT_EXTENSION_MAXNAMELEN - 1)
MAX_JAIL_NAME = MAX_CHAIN_NAME - len(PREFIX)
MULTIPORT_SLOTS = 15  # ports one multiport match takes; a range counts twice
JAIL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
RETURN = ("-j", "RETURN")
TIMEOUT = 30.0

Rule = tuple[str, ...]  # a rule's words after "-A CHAIN", as iptables-save prints them
Table = dict[str, list[Rule]]  # the filter table: chain -> its rules in order


def chain_name(jail: str) -> str:
    """The chain holding ``jail``'s bans; ValueError if netfilter could not name it."""
    if len(jail) > MAX_JAIL_NAME or not JAIL_NAME.fullmatch(jail):
        raise ValueError(f"jail name {jail!r}: 1 to {MAX_JAIL_NAME} of A-Z a-z 0-9 _ . -")
    return PREFIX + jail


@dataclass(frozen=True, slots=True)
class Family:
    version: int
    save: str
    restore: str
    host_bits: int
    reject_with: str


V4 = Family(4, "iptables-save", "iptables-restore", 32, "icmp-port-unreachable")
V6 = Family(6, "ip6tables-save", "ip6tables-restore", 128, "icmp6-port-unreachable")
FAMILIES = (V4, V6)


# --- parse -------------------------------------------------------------------------

def parse_save(text: str) -> Table:
    """The chains and rules of ``iptables-save -t filter`` output."""
    table: Table = {}
    for line in text.splitlines():
        if line.startswith(":"):
            table.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            words = shlex.split(line)
            table.setdefault(words[1], []).append(tuple(words[2:]))
    return table


def banned_address(rule: Rule, family: Family) -> str | None:
    """The address a ban rule (``-s ADDR/32 -j DROP|REJECT ...``) blocks, else None."""
    if len(rule) < 4 or rule[0] != "-s" or rule[2:4] not in (("-j", "DROP"), ("-j", "REJECT")):
        return None
    if rule[3] == "DROP" and len(rule) != 4:
        return None
    try:
        net = ipaddress.ip_network(rule[1])
    except ValueError:
        return None
    if net.version != family.version or net.prefixlen != net.max_prefixlen:
        return None
    return str(net.network_address)


def entries_in(table: Table, jails: Sequence[JailLayout], family: Family) -> set[Entry]:
    return {(jail.name, address) for jail in jails
            for rule in table.get(chain_name(jail.name), [])
            if (address := banned_address(rule, family)) is not None}


# --- layout ------------------------------------------------------------------------

def ban_rule(address: str, jail: JailLayout, family: Family) -> Rule:
    target = ("-j", "DROP") if jail.blocktype == "drop" else (
        "-j", "REJECT", "--reject-with", family.reject_with)
    return ("-s", f"{address}/{family.host_bits}", *target)


def jump_rules(jail: JailLayout) -> list[Rule]:
    """The INPUT rules hooking ``jail`` in: one for all ports, or one per protocol and group."""
    target = ("-j", chain_name(jail.name))
    if jail.ports is None:
        return [target]
    return [("-p", spec.protocol, "-m", "multiport", "--dports", ",".join(group), *target)
            for spec in jail.ports for group in _port_groups(spec.ports)]


def _port_groups(ports: Iterable[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    used = 0
    for port in ports:
        cost = 2 if ":" in port else 1
        if used + cost > MULTIPORT_SLOTS:
            groups.append([])
            used = 0
        groups[-1].append(port)
        used += cost
    return [g for g in groups if g]


def _jump_target(rule: Rule) -> str | None:
    """The journalban chain a rule jumps to, if any (any jail's, configured or not)."""
    if len(rule) >= 2 and rule[-2] == "-j" and rule[-1].startswith(PREFIX):
        return rule[-1]
    return None


def input_ok(table: Table, jails: Sequence[JailLayout]) -> bool:
    """Each jail's jumps exist exactly once, above every rule of the operator's."""
    rules = table.get("INPUT", [])
    head = 0
    while head < len(rules) and _jump_target(rules[head]):
        head += 1
    mine = {chain_name(j.name) for j in jails}
    if any(_jump_target(rule) in mine for rule in rules[head:]):
        return False
    found = sorted(rule for rule in rules[:head] if _jump_target(rule) in mine)
    return found == sorted(rule for jail in jails for rule in jump_rules(jail))


def chain_ok(table: Table, jail: JailLayout, family: Family) -> bool:
    """The chain exists, ends in its only RETURN, and bans with the jail's blocktype."""
    rules = table.get(chain_name(jail.name))
    if rules is None or rules[-1:] != [RETURN] or rules.count(RETURN) != 1:
        return False
    return all(rule == ban_rule(address, jail, family) for rule in rules
               if (address := banned_address(rule, family)) is not None)


def layout_ok(table: Table, jails: Sequence[JailLayout], family: Family) -> bool:
    return input_ok(table, jails) and all(chain_ok(table, j, family) for j in jails)


# --- plan --------------------------------------------------------------------------

class Batch:
    """Restore lines plus the table they will leave behind, so later steps plan on it."""

    def __init__(self, table: Table) -> None:
        self.table: Table = {chain: list(rules) for chain, rules in table.items()}
        self.declare: list[str] = []
        self.lines: list[str] = []

    def new_chain(self, chain: str) -> None:
        self.table[chain] = []
        self.declare.append(f":{chain} - [0:0]")

    def delete(self, chain: str, rule: Rule) -> None:
        self.table[chain].remove(rule)  # like -D: the first rule that matches
        self.lines.append(_line("-D", chain, *rule))

    def insert(self, chain: str, position: int, rule: Rule) -> None:
        self.table[chain].insert(position - 1, rule)
        self.lines.append(_line("-I", chain, str(position), *rule))

    def append(self, chain: str, rule: Rule) -> None:
        self.table[chain].append(rule)
        self.lines.append(_line("-A", chain, *rule))

    def text(self) -> str | None:
        if not self.lines and not self.declare:
            return None
        return "\n".join(["*filter", *self.declare, *self.lines, "COMMIT", ""])


def _line(*words: str) -> str:
    return " ".join('"' + w.replace('"', '\\"') + '"' if not w or re.search(r'[\s"]', w)
                    else w for w in words)


def _version(address: str) -> int:
    return ipaddress.ip_address(address).version


def plan_apply(table: Table, jails: Sequence[JailLayout], diff: Diff, family: Family) -> str | None:
    """The restore text for one family: layout repairs, then deletions, then insertions."""
    batch = Batch(table)
    if diff.repair_layout:
        _repair(batch, jails, family)
    for jail_name, address in sorted(diff.remove):
        chain = chain_name(jail_name)
        if _version(address) == family.version and chain in batch.table:
            for rule in [r for r in batch.table[chain] if banned_address(r, family) == address]:
                batch.delete(chain, rule)
    layouts = {jail.name: jail for jail in jails}
    for jail_name, address in sorted(diff.add):
        if _version(address) != family.version:
            continue
        if jail_name not in layouts:
            raise ValueError(f"ban in jail {jail_name!r}, which is not among the jails given")
        chain = chain_name(jail_name)
        if chain not in batch.table:
            batch.new_chain(chain)
            batch.append(chain, RETURN)
        if not any(banned_address(r, family) == address for r in batch.table[chain]):
            batch.insert(chain, 1, ban_rule(address, layouts[jail_name], family))
    return batch.text()


def _repair(batch: Batch, jails: Sequence[JailLayout], family: Family) -> None:
    for jail in jails:
        chain = chain_name(jail.name)
        if chain not in batch.table:
            batch.new_chain(chain)
        rules = batch.table[chain]
        if rules[-1:] != [RETURN] or rules.count(RETURN) != 1:
            for _ in range(rules.count(RETURN)):
                batch.delete(chain, RETURN)
            batch.append(chain, RETURN)
        for rule in list(rules):
            address = banned_address(rule, family)
            if address is not None and rule != ban_rule(address, jail, family):
                batch.delete(chain, rule)
                batch.insert(chain, 1, ban_rule(address, jail, family))
    if not input_ok(batch.table, jails):
        mine = {chain_name(j.name) for j in jails}
        for rule in [r for r in batch.table.get("INPUT", []) if _jump_target(r) in mine]:
            batch.delete("INPUT", rule)
        for position, rule in enumerate((r for j in jails for r in jump_rules(j)), start=1):
            batch.insert("INPUT", position, rule)


def plan_remove(table: Table, jails: Sequence[JailLayout]) -> str | None:
    """Delete every jump into these jails' chains (from any chain), then the chains."""
    batch = Batch(table)
    mine = {chain_name(j.name) for j in jails} & table.keys()
    for chain, rules in table.items():
        for rule in [r for r in rules if _jump_target(r) in mine]:
            batch.delete(chain, rule)
    for chain in sorted(mine):
        batch.lines += [f"-F {chain}", f"-X {chain}"]
    return batch.text()


# --- run ---------------------------------------------------------------------------

class IptablesFirewall:
    """The fail2ban-style layout: chain ``jb-<jail>``, hooked in at the top of INPUT."""

    name = "iptables"

    def __init__(self, command_prefix: Sequence[str] = ()) -> None:
        self.command_prefix = tuple(command_prefix)

    def read(self, jails: Sequence[JailLayout]) -> Actual:
        entries: set[Entry] = set()
        ok = True
        for family in FAMILIES:
            table = self._save(family)
            entries |= entries_in(table, jails, family)
            ok = ok and layout_ok(table, jails, family)
        return Actual(entries=frozenset(entries), layout_ok=ok)

    def apply(self, jails: Sequence[JailLayout], diff: Diff) -> None:
        changed = {_version(address) for _, address in diff.add | diff.remove}
        for family in FAMILIES:
            if diff.repair_layout or family.version in changed:
                self._restore(family, plan_apply(self._save(family), jails, diff, family))

    def remove(self, jails: Sequence[JailLayout]) -> None:
        for family in FAMILIES:
            self._restore(family, plan_remove(self._save(family), jails))

    def _save(self, family: Family) -> Table:
        return parse_save(self._run([family.save, "-t", "filter"]))

    def _restore(self, family: Family, text: str | None) -> None:
        if text is not None:
            self._run([family.restore, "-w", "--noflush"], stdin=text)

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        command = [*self.command_prefix, *argv]
        try:
            done = subprocess.run(command, input=stdin, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise FirewallError(f"{' '.join(command)}: {error}") from error
        if done.returncode != 0:
            raise FirewallError(f"{' '.join(command)} exited {done.returncode}: "
                                f"{done.stderr.strip()}")
        return done.stdout
