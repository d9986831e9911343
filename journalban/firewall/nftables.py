"""The nftables backend: one table ``inet journalban``; per jail and family a host set and a network set.

Everything lives in a table journalban owns whole, so the operator's tables are
never read or written. Per jail and family, single addresses go into a plain set
``<jail>-4`` / ``<jail>-6`` (``type ipv4_addr`` / ``ipv6_addr``, a hash: adding
and deleting 100,000 elements takes a fraction of a second) and networks into an
interval set ``<jail>-net4`` / ``<jail>-net6`` (``flags interval``; nft 1.0.6
deletes from an interval set at about 4 ms an element, so hosts never go there).
The jail's rules match both sets; they sit in one base chain per hook (``input``;
``forward`` for FORWARD and DOCKER-USER), each tagged ``comment "<jail>"`` so a
jail's rules can be told apart and rebuilt alone.

Hook priority ``filter - 1``: in nftables an ``accept`` in another base chain
does not stop ours (every base chain on the hook sees the packet) while a drop
anywhere is final, so priority only decides who sees a packet first; one below
``filter`` puts us ahead of the operator's filter chains (and iptables-nft's,
hence DOCKER-USER's, which sit at ``filter``), so ban logging sees the packet
before any other drop.

A host inside a banned network is still its own element of the host set. Only
networks inside networks need care: an interval set refuses an overlapping
element ("interval overlaps with an existing one"), and ``auto-merge`` would
fold the inner network into the outer and forget it. So only the outermost
networks go into ``<jail>-net4``; those inside another are recorded in
``<jail>-net4-covered`` (``ipv4_addr . ipv4_addr``: first . last address), a
plain set no rule reads, reported by ``read`` only while an enforced element
contains it. ``read`` thus returns exactly what was desired. (The layout before
this one kept hosts in the interval set too, with ``<jail>-4-covered`` sets; an
interval ``<jail>-4`` is a layout fault, and the repair recreates it and deletes
the old ``-covered`` sets.)

Planning is pure (snapshot + diff -> ``nft -f`` text, one transaction) and
linear: entries arrive normalised, so hosts are told apart by string checks and
never parsed. ``apply`` plans against the snapshot its pass's ``read`` took (the
backend contract allows it), sparing a second listing of 100,000 elements. Only
elements that snapshot saw are deleted (nft 1.0.6 has no ``destroy element``, and
deleting an absent element fails the transaction); should the table have changed
between ``read`` and ``apply`` the transaction fails whole, changing nothing, and
``apply`` plans once more against a fresh listing.
"""

import bisect
import ctypes
import ipaddress
import json
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from journalban.firewall.base import Actual, Diff, Entry, FirewallError, JailLayout, Kinds, PortSpec, kinds_by_jail
from journalban.firewall.iptables import Known, entries_after, next_generation, ruleset_generation

TABLE = "inet journalban"
HOOK_CHAINS = {"INPUT": "input", "FORWARD": "forward", "DOCKER-USER": "forward"}
PRIORITY = -1  # "filter - 1", as nft prints it in JSON
JAIL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")  # an nft identifier: no leading digit
LOG_LIMIT = "limit rate 6/minute"
CHUNK = 5000  # elements per add/delete statement
# A batch of 100,000 elements takes about a second, but a hung tool is rarer than a
# big batch: a timeout must never turn a slow, correct transaction into a failure.
TIMEOUT = 600.0
LIBNFTABLES = "libnftables.so.1"

NO_ENTRIES = Kinds([], [], [], [])  # a jail the diff does not touch
Span = tuple[int, int]  # first and last address of an element, as integers
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ChainSpec = tuple[str, str, int, str]  # type, hook, priority, policy


@dataclass(frozen=True, slots=True)
class Family:
    version: int
    payload: str
    addr_type: str


V4 = Family(4, "ip", "ipv4_addr")
V6 = Family(6, "ip6", "ipv6_addr")
FAMILIES = (V4, V6)


def set_name(jail: str, family: Family) -> str:
    """The plain set of the jail's single addresses; ValueError if nft could not name it."""
    if not JAIL_NAME.fullmatch(jail):
        raise ValueError(f"jail name {jail!r}: nft names start with a letter or '_'")
    return f"{jail}-{family.version}"


def net_name(jail: str, family: Family) -> str:
    """The interval set of the jail's outermost networks."""
    set_name(jail, family)
    return f"{jail}-net{family.version}"


def covered_name(jail: str, family: Family) -> str:
    """The bookkeeping set of the jail's networks inside another of its networks."""
    return net_name(jail, family) + "-covered"


def obsolete_name(jail: str, family: Family) -> str:
    """The bookkeeping set of the layout before the host/network split."""
    return set_name(jail, family) + "-covered"


def chain_spec(chain: str) -> ChainSpec:
    return ("filter", chain, PRIORITY, "accept")


def hook_chain(jail: JailLayout) -> str:
    try:
        return HOOK_CHAINS[jail.chain]
    except KeyError:
        raise ValueError(f"jail {jail.name!r}: chain {jail.chain!r} is not one of "
                         f"{', '.join(HOOK_CHAINS)}") from None


# --- snapshot ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NftSet:
    type: tuple[str, ...]
    flags: tuple[str, ...]
    spans: frozenset[Span] = frozenset()  # the elements of an interval or concatenated set
    hosts: AbstractSet[str] = frozenset()  # the elements of a plain address set, normalised (a listing's:
    # a set of its own, which ``hosts_applied`` changes in place)

    @property
    def plain(self) -> bool:
        return len(self.type) == 1 and "interval" not in self.flags


@dataclass(frozen=True, slots=True)
class NftRule:
    chain: str
    handle: int
    comment: str | None
    text: str | None  # the rule in journalban's canonical form, None if not one of ours


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The table ``inet journalban`` as ``nft -j list`` shows it."""

    chains: Mapping[str, ChainSpec | None] = field(default_factory=dict)  # None: a regular chain
    sets: Mapping[str, NftSet] = field(default_factory=dict)
    rules: tuple[NftRule, ...] = ()


def parse_listing(text: str) -> Snapshot:
    """The chains, sets and rules of ``nft -j list table inet journalban``."""
    chains: dict[str, ChainSpec | None] = {}
    sets: dict[str, NftSet] = {}
    rules: list[NftRule] = []
    for obj in json.loads(text)["nftables"]:
        if "chain" in obj:
            c = obj["chain"]
            chains[c["name"]] = ((c.get("type", ""), c["hook"], c.get("prio", 0), c.get("policy", "accept"))
                                 if "hook" in c else None)
        elif "set" in obj:
            s = obj["set"]
            kind = tuple(s["type"]) if isinstance(s["type"], list) else (s["type"],)
            flags = tuple(s.get("flags", ()))
            elems = s.get("elem", [])
            if len(kind) == 1 and "interval" not in flags:
                sets[s["name"]] = NftSet(kind, flags, hosts={h for e in elems if (h := element_host(e))})
            else:
                sets[s["name"]] = NftSet(kind, flags, spans=frozenset(sp for e in elems if (sp := element_span(e))))
        elif "rule" in obj:
            r = obj["rule"]
            rules.append(NftRule(r["chain"], r["handle"], r.get("comment"), describe(r.get("expr", []))))
    return Snapshot(chains, sets, tuple(rules))


def element_host(elem: Any) -> str | None:
    """An element of a plain address set as an entry. nft prints addresses as inet_ntop
    does, which is Python's form too except for IPv6 written with a dotted quad."""
    if isinstance(elem, dict) and isinstance(elem.get("elem"), dict):  # carrying a timeout or comment
        elem = elem["elem"].get("val")
    if not isinstance(elem, str):
        return None
    return str(ipaddress.IPv6Address(elem)) if ":" in elem and "." in elem else elem


def element_span(elem: Any) -> Span | None:
    """A set element (``"a"``, ``{"prefix"}``, ``{"range"}``, ``{"concat"}``, ``{"elem"}``) as a span."""
    if isinstance(elem, str):
        value = int(ipaddress.IPv6Address(elem) if ":" in elem else ipaddress.IPv4Address(elem))
        return value, value
    if not isinstance(elem, dict):
        return None
    if "elem" in elem:  # an element carrying a timeout or comment
        return element_span(elem["elem"].get("val"))
    if "prefix" in elem:
        net = ipaddress.ip_network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}", strict=False)
        return network_span(net)
    pair = elem.get("range") or elem.get("concat")
    if isinstance(pair, list) and len(pair) == 2 and all(isinstance(a, str) for a in pair):
        return int(ipaddress.ip_address(pair[0])), int(ipaddress.ip_address(pair[1]))
    return None


# --- rules -------------------------------------------------------------------------

def describe(expr: Sequence[Any]) -> str | None:
    """A rule's JSON expressions in the form ``jail_rules`` writes, or None if it is not one."""
    words = []
    for statement in expr:
        if not isinstance(statement, dict) or len(statement) != 1:
            return None
        (kind, body), = statement.items()
        handler = _DESCRIBE.get(kind)
        word = handler(body) if handler else None
        if word is None:
            return None
        words.append(word)
    return " ".join(words)


def _match(body: Any) -> str | None:
    left, right = body.get("left", {}), body.get("right")
    payload = left.get("payload") if isinstance(left, dict) else None
    if body.get("op") != "==" or not isinstance(payload, dict):
        return None
    where = f"{payload.get('protocol')} {payload.get('field')}"
    if isinstance(right, str) and right.startswith("@"):
        return f"{where} {right}"
    values = right["set"] if isinstance(right, dict) and "set" in right else [right]
    ports = []
    for value in values:
        if isinstance(value, int):
            ports.append((value, value))
        elif isinstance(value, dict) and isinstance(value.get("range"), list):
            ports.append((value["range"][0], value["range"][1]))
        else:
            return None
    return f"{where} {_port_set(ports)}"


def _limit(body: Any) -> str | None:
    return f"limit rate {body['rate']}/{body['per']}" if not body.get("inv") and "rate" in body else None


def _log(body: Any) -> str | None:
    return f'log prefix "{body["prefix"]}"' if isinstance(body, dict) and set(body) == {"prefix"} else None


def _reject(body: Any) -> str | None:
    if body == {"type": "tcp reset"}:
        return "reject with tcp reset"
    if body == {"type": "icmpx", "expr": "port-unreachable"}:
        return "reject with icmpx type port-unreachable"
    return None


def _drop(body: Any) -> str | None:
    return "drop" if body is None else None


_DESCRIBE: dict[str, Callable[[Any], str | None]] = {
    "match": _match, "limit": _limit, "log": _log, "reject": _reject, "drop": _drop}


def _port_set(ports: Iterable[tuple[int, int]]) -> str:
    return "{ " + ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in sorted(set(ports))) + " }"


def _port_range(port: str) -> tuple[int, int]:
    first, _, last = port.partition(":")
    return int(first), int(last or first)


def jail_rules(jail: JailLayout) -> list[str]:
    """The jail's rules in order: per family, port group and set (hosts, then networks),
    the log rule (if any), then the block."""
    groups: list[PortSpec | None] = list(jail.ports) if jail.ports is not None else [None]
    rules = []
    for family in FAMILIES:
        for spec in groups:
            for name in (set_name(jail.name, family), net_name(jail.name, family)):
                match = f"{family.payload} saddr @{name}"
                if spec is not None:
                    match += f" {spec.protocol} dport {_port_set(_port_range(p) for p in spec.ports)}"
                if jail.log:
                    rules.append(f'{match} {LOG_LIMIT} log prefix "journalban {jail.name}: "')
                if jail.blocktype == "drop":
                    rules.append(f"{match} drop")
                elif spec is not None and spec.protocol == "tcp":
                    rules.append(f"{match} reject with tcp reset")
                else:
                    rules.append(f"{match} reject with icmpx type port-unreachable")
    return rules


# --- layout ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Faults:
    """What differs from the layout the jails want; empty when it is right."""

    missing_table: bool = False
    chains: frozenset[str] = frozenset()  # needed base chains missing or built otherwise
    sets: frozenset[str] = frozenset()  # needed sets missing or of another type or flags
    jails: frozenset[str] = frozenset()  # jails whose rules are not exactly the wanted ones
    foreign: tuple[NftRule, ...] = ()  # rules in our table that belong to no jail
    obsolete: frozenset[str] = frozenset()  # the jails' sets of the old layout, still there

    def __bool__(self) -> bool:
        return bool(self.missing_table or self.chains or self.sets or self.jails or self.foreign or self.obsolete)


def wanted_sets(jail: str, family: Family) -> dict[str, NftSet]:
    return {set_name(jail, family): NftSet((family.addr_type,), ()),
            net_name(jail, family): NftSet((family.addr_type,), ("interval",)),
            covered_name(jail, family): NftSet((family.addr_type, family.addr_type), ())}


def _set_ok(have: NftSet | None, want: NftSet) -> bool:
    return have is not None and have.type == want.type and set(have.flags) == set(want.flags)


def _obsolete(snapshot: Snapshot, jails: Iterable[str]) -> frozenset[str]:
    names = set(jails)
    wanted = {s for j in names for f in FAMILIES for s in wanted_sets(j, f)}
    return frozenset(n for j in names for f in FAMILIES
                     if (n := obsolete_name(j, f)) in snapshot.sets and n not in wanted)


def find_faults(snapshot: Snapshot | None, jails: Sequence[JailLayout]) -> Faults:
    if snapshot is None:
        names = {j.name for j in jails}
        return Faults(True, frozenset(hook_chain(j) for j in jails),
                      frozenset(s for j in names for f in FAMILIES for s in wanted_sets(j, f)), frozenset(names))
    chains = frozenset(c for c in map(hook_chain, jails) if snapshot.chains.get(c) != chain_spec(c))
    sets = frozenset(name for j in jails for f in FAMILIES for name, want in wanted_sets(j.name, f).items()
                     if not _set_ok(snapshot.sets.get(name), want))
    have: dict[str, list[tuple[str, str | None]]] = {}
    foreign = []
    for rule in snapshot.rules:
        if rule.comment is not None and JAIL_NAME.fullmatch(rule.comment):
            have.setdefault(rule.comment, []).append((rule.chain, rule.text))
        else:
            foreign.append(rule)
    wrong = frozenset(j.name for j in jails
                      if have.get(j.name, []) != [(hook_chain(j), text) for text in jail_rules(j)])
    return Faults(False, chains, sets, wrong, tuple(foreign), _obsolete(snapshot, (j.name for j in jails)))


# --- entries -----------------------------------------------------------------------

def network_span(net: Network) -> Span:
    return int(net.network_address), int(net.broadcast_address)


def _address(value: int, family: Family) -> str:
    return str(ipaddress.IPv4Address(value) if family.version == 4 else ipaddress.IPv6Address(value))


def cidr_spans(span: Span, family: Family) -> list[Span]:
    """A span cut into the networks that make it up (one, unless it is a range set by hand)."""
    size = span[1] - span[0] + 1
    if size & (size - 1) == 0 and span[0] % size == 0:  # the usual case, kept fast
        return [span]
    first, last = (ipaddress.ip_address(_address(v, family)) for v in span)
    return [network_span(net) for net in ipaddress.summarize_address_range(first, last)]


def entry_text(span: Span, family: Family) -> str:
    """A network span as an entry: a host bare, a network with its prefix."""
    size = span[1] - span[0] + 1
    if size == 1:
        return _address(span[0], family)
    bits = 32 if family.version == 4 else 128
    return f"{_address(span[0], family)}/{bits - size.bit_length() + 1}"


def span_text(span: Span, family: Family, separator: str) -> str:
    """How nft is told an element: a host bare, a network with its prefix, else ``first<sep>last``."""
    if separator == "-" and cidr_spans(span, family) == [span]:
        return entry_text(span, family)
    return f"{_address(span[0], family)}{separator}{_address(span[1], family)}"


def held_hosts(snapshot: Snapshot, jail: str, family: Family) -> AbstractSet[str]:
    """The host set's elements, if it is the set the layout wants."""
    name = set_name(jail, family)
    have = snapshot.sets.get(name)
    if have is None or not _set_ok(have, wanted_sets(jail, family)[name]):
        return frozenset()
    return have.hosts


def held_spans(snapshot: Snapshot, jail: str, family: Family) -> set[Span]:
    """What the jail's network sets hold for one family, as network spans: the enforced
    elements, plus the covered entries an enforced element contains."""
    want = wanted_sets(jail, family)
    enforced = snapshot.sets.get(net_name(jail, family))
    covered = snapshot.sets.get(covered_name(jail, family))
    if enforced is None or not _set_ok(enforced, want[net_name(jail, family)]):
        return set()
    held = {piece for span in enforced.spans for piece in cidr_spans(span, family)}
    if covered is not None and _set_ok(covered, want[covered_name(jail, family)]) and covered.spans:
        outer = sorted(enforced.spans)  # interval elements never overlap: sorted, their ends ascend too
        firsts = [first for first, _ in outer]
        for span in covered.spans:
            i = bisect.bisect_right(firsts, span[0]) - 1
            if i >= 0 and outer[i][1] >= span[1]:
                held.update(cidr_spans(span, family))
    return held


def entries_in(snapshot: Snapshot | None, jails: Sequence[JailLayout]) -> set[Entry]:
    if snapshot is None:
        return set()
    entries: set[Entry] = set()
    for jail in jails:
        for family in FAMILIES:
            entries.update((jail.name, host) for host in held_hosts(snapshot, jail.name, family))
            entries.update((jail.name, entry_text(span, family)) for span in held_spans(snapshot, jail.name, family))
    return entries


def split_outermost(spans: Iterable[Span]) -> tuple[set[Span], set[Span]]:
    """The network spans no other contains, and those inside another (networks nest or are apart)."""
    outer: set[Span] = set()
    inner: set[Span] = set()
    end = -1
    for span in sorted(spans, key=lambda s: (s[0], -s[1])):
        (inner if span[1] <= end else outer).add(span)
        end = max(end, span[1])
    return outer, inner


def entry_span(address: str, family: Family) -> Span | None:
    """An entry's span if it is of this family; ValueError if it is no address or network."""
    if (":" in address) != (family.version == 6):
        return None
    return network_span(ipaddress.ip_network(address))


# --- plan --------------------------------------------------------------------------

def _elements(verb: str, name: str, texts: Iterable[str], ordered: bool = True) -> Iterator[str]:
    """Statements of ``CHUNK`` elements each; host sets unordered (a hash keeps no order, and
    sorting 100,000 addresses costs more than nft takes to load them)."""
    listed = sorted(texts) if ordered else list(texts)
    for i in range(0, len(listed), CHUNK):
        yield f"{verb} element {TABLE} {name} {{ {', '.join(listed[i:i + CHUNK])} }}"


def plan_apply(snapshot: Snapshot | None, jails: Sequence[JailLayout], diff: Diff) -> str | None:
    """The ``nft -f`` text for one apply: layout repairs (if asked), then element changes."""
    layouts = {jail.name: jail for jail in jails}
    adds, removes = kinds_by_jail(diff.add), kinds_by_jail(diff.remove)
    for jail_name in adds:
        if jail_name not in layouts:
            raise ValueError(f"ban in jail {jail_name!r}, which is not among the jails given")
    current = snapshot or Snapshot()
    faults = find_faults(snapshot, jails)
    drop_rules: list[str] = []
    drop_chains: list[str] = []
    drop_sets = [f"delete set {TABLE} {name}" for name in sorted(faults.obsolete)]
    add_chains: list[str] = []
    add_sets: list[str] = []
    add_rules: list[str] = []
    emptied: set[str] = set()  # sets (re)created by this plan: they start empty
    if faults.missing_table:
        add_chains.append(f"add table {TABLE}")
    for jail in jails:
        for family in FAMILIES:
            for name, want in wanted_sets(jail.name, family).items():
                if name in faults.sets:
                    if name in current.sets:
                        drop_sets.append(f"delete set {TABLE} {name}")
                    kind = " . ".join(want.type)
                    flags = " flags interval;" if want.flags else ""
                    add_sets.append(f"add set {TABLE} {name} {{ type {kind};{flags} }}")
                    emptied.add(name)
    # a jail whose set is (re)created needs its rules again: they went with the old set
    rebuild = {j.name for j in jails if any(name in faults.sets for f in FAMILIES for name in wanted_sets(j.name, f))}
    if diff.repair_layout or rebuild:
        rebuild |= set(faults.jails)
        for chain in sorted(faults.chains):
            if chain in current.chains:
                drop_chains += [f"flush chain {TABLE} {chain}", f"delete chain {TABLE} {chain}"]
            add_chains.append(f"add chain {TABLE} {chain} {{ type filter hook {chain} priority filter - 1; "
                              "policy accept; }")
        rebuild |= {j.name for j in jails if hook_chain(j) in faults.chains}
        doomed = [r for r in current.rules if r.chain not in faults.chains
                  and (r in faults.foreign or r.comment in rebuild)]
        drop_rules = [f"delete rule {TABLE} {r.chain} handle {r.handle}" for r in doomed]
        for name in sorted(rebuild):
            jail = layouts[name]
            add_rules += [f'add rule {TABLE} {hook_chain(jail)} {text} comment "{name}"'
                          for text in jail_rules(jail)]
    lines = [*drop_rules, *drop_chains, *drop_sets, *add_chains, *add_sets, *add_rules]
    for jail in jails:
        add, remove = adds.get(jail.name, NO_ENTRIES), removes.get(jail.name, NO_ENTRIES)
        for family in FAMILIES:
            lines += _plan_hosts(current, jail.name, family, add.hosts(family.version), remove.hosts(family.version),
                                 emptied)
            # a host can be in the network set too (a /32 added by hand): removals look there as well
            lines += _plan_networks(current, jail.name, family, add.nets(family.version),
                                    [*remove.nets(family.version), *remove.hosts(family.version)], emptied)
    return "\n".join([*lines, ""]) if lines else None


def _plan_hosts(snapshot: Snapshot, jail: str, family: Family, add: Sequence[str], remove: Sequence[str],
                emptied: set[str]) -> list[str]:
    """Host set changes: add every host (adding a present element is no error), delete those
    the snapshot holds (all that can be there: a set recreated now starts empty)."""
    name = set_name(jail, family)
    have = frozenset() if name in emptied else held_hosts(snapshot, jail, family)
    return [*_elements("delete", name, [host for host in remove if host in have], ordered=False),
            *_elements("add", name, add, ordered=False)]


def _plan_networks(snapshot: Snapshot, jail: str, family: Family, add: Sequence[str], remove: Sequence[str],
                   emptied: set[str]) -> list[str]:
    """Network set changes: the outermost networks enforced, the rest put aside as covered."""
    enforced_name, covered_name_ = net_name(jail, family), covered_name(jail, family)
    spans = {name: (frozenset() if name in emptied or name not in snapshot.sets else snapshot.sets[name].spans)
             for name in (enforced_name, covered_name_)}
    if not add and not any(spans.values()) and not {enforced_name, covered_name_} & emptied:
        return []  # nothing there, nothing coming: the usual case for a jail of hosts
    want = wanted_sets(jail, family)
    view = Snapshot(sets={name: NftSet(want[name].type, want[name].flags, spans[name]) for name in spans})
    held = {entry_text(span, family): span for span in held_spans(view, jail, family)}
    gone = {held[a] for a in remove if a in held}
    new = {span for a in add if (span := entry_span(a, family))}
    if not gone and not new and not {enforced_name, covered_name_} & emptied:
        return []
    outer, inner = split_outermost((set(held.values()) - gone) | new)
    return [*_elements("delete", enforced_name, (span_text(s, family, "-") for s in spans[enforced_name] - outer)),
            *_elements("delete", covered_name_,
                       (span_text(s, family, " . ") for s in spans[covered_name_] - inner)),
            *_elements("add", enforced_name, (span_text(s, family, "-") for s in outer - spans[enforced_name])),
            *_elements("add", covered_name_, (span_text(s, family, " . ") for s in inner - spans[covered_name_]))]


def plan_remove(snapshot: Snapshot | None, jails: Sequence[JailLayout]) -> str | None:
    """Delete these jails' rules and sets; the whole table once nothing else of ours is in it."""
    if snapshot is None:
        return None
    names = {j.name for j in jails}
    ours = ({s for name in names for f in FAMILIES for s in wanted_sets(name, f)} & snapshot.sets.keys()
            | _obsolete(snapshot, names))
    keep_rules = [r for r in snapshot.rules if r.comment not in names]
    if not keep_rules and not snapshot.sets.keys() - ours:
        return f"delete table {TABLE}\n"
    lines = [f"delete rule {TABLE} {r.chain} handle {r.handle}" for r in snapshot.rules if r.comment in names]
    lines += [f"delete set {TABLE} {name}" for name in sorted(ours)]
    return "\n".join([*lines, ""]) if lines else None


# --- run ---------------------------------------------------------------------------

class Refused(FirewallError):
    """nft ran and refused the transaction (which then changed nothing)."""


class Libnftables:
    """nft's own library in this process: what ``nft -f -`` and ``nft -j list`` do, without
    starting a process (about 0.4 ms a small transaction against 7 ms for ``nft -f`` on a
    busy machine). Each call gets a fresh context, freed after it: a context keeps the
    ruleset it fetched, and a listing of 100,000 elements kept would cost 50 MB."""

    JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON

    def __init__(self) -> None:
        lib = ctypes.CDLL(LIBNFTABLES)
        lib.nft_ctx_new.argtypes, lib.nft_ctx_new.restype = [ctypes.c_uint32], ctypes.c_void_p
        lib.nft_ctx_free.argtypes, lib.nft_ctx_free.restype = [ctypes.c_void_p], None
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes, getattr(lib, name).restype = [ctypes.c_void_p], ctypes.c_int
        lib.nft_ctx_output_set_flags.argtypes, lib.nft_ctx_output_set_flags.restype = \
            [ctypes.c_void_p, ctypes.c_uint], None
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes, getattr(lib, name).restype = [ctypes.c_void_p], ctypes.c_char_p
        self._lib = lib

    def run(self, command: list[str], stdin: str | None) -> "subprocess.CompletedProcess[str]":
        """``nft -f -`` (the script on ``stdin``) or ``nft -j list ...``, as a finished process."""
        listing = command[1:3] != ["-f", "-"]
        text = " ".join(command[2:]) if listing else stdin or ""
        lib = self._lib
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise FirewallError("libnftables: nft_ctx_new failed")
        try:
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            if listing:
                lib.nft_ctx_output_set_flags(ctx, self.JSON)
            code = lib.nft_run_cmd_from_buffer(ctx, text.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        finally:
            lib.nft_ctx_free(ctx)
        return subprocess.CompletedProcess(command, 1 if code else 0, out, err)


def in_process() -> Libnftables | None:
    """libnftables if it loads here, else None (``nft`` runs as a process)."""
    try:
        return Libnftables()
    except (OSError, AttributeError):
        return None


def hosts_applied(snapshot: Snapshot, jails: Sequence[JailLayout], diff: Diff) -> Snapshot | None:
    """The snapshot after ``plan_apply`` of a ``diff`` of hosts only on a table in order: the
    host sets with the diff applied, in place (a listing's sets are its own, and the snapshot
    was planned on already). None for anything else (networks, repairs), which only a new
    listing shows; then nothing was changed."""
    if diff.repair_layout or find_faults(snapshot, jails):
        return None
    adds, removes = kinds_by_jail(diff.add), kinds_by_jail(diff.remove)
    changes: list[tuple[str, Sequence[str], Sequence[str]]] = []
    for jail in adds.keys() | removes.keys():
        add, remove = adds.get(jail, NO_ENTRIES), removes.get(jail, NO_ENTRIES)
        for family in FAMILIES:
            if add.nets(family.version) or remove.nets(family.version):
                return None
            if any(snapshot.sets[name].spans for name in (net_name(jail, family), covered_name(jail, family))):
                return None  # a removed host might sit in a network set too: the plan looks there
            new, gone = add.hosts(family.version), remove.hosts(family.version)
            if new or gone:
                changes.append((set_name(jail, family), new, gone))
    sets = dict(snapshot.sets)
    for name, added, removed in changes:
        held = sets[name]
        hosts = held.hosts if isinstance(held.hosts, set) else set(held.hosts)  # built by hand: copied once
        hosts.difference_update(removed)
        hosts.update(added)
        if hosts is not held.hosts:
            sets[name] = NftSet(held.type, held.flags, held.spans, hosts)
    return Snapshot(snapshot.chains, sets, snapshot.rules)


class NftablesFirewall:
    """Sets ``<jail>-4``/``-6`` (hosts) and ``<jail>-net4``/``-net6`` (networks) matched from
    base chains in table ``inet journalban``.

    Without a command prefix (the kernel asked is the one ``nft`` changes), nft runs in
    this process through libnftables (as a process where the library is missing), and
    what a read saw, or a hosts-only apply left, is kept with the ruleset generation it
    holds at: while the generation has not moved a read is that, without a listing, so
    a new ban's reconcile is one small transaction and no process. Any change by anyone
    moves the generation, so drift is still seen at the next read."""

    name = "nftables"

    def __init__(self, command_prefix: Sequence[str] = ()) -> None:
        self.command_prefix = tuple(command_prefix)
        self._read: tuple[Snapshot | None] | None = None  # what the last read saw, for the apply after it
        self._known: Known[Snapshot] | None = None
        # with a prefix, nft must run under it (``ip netns exec``): only then as a process
        self._library: Libnftables | bool | None = None if not self.command_prefix else False

    def generation(self) -> int | None:
        return None if self.command_prefix else ruleset_generation()

    def read(self, jails: Sequence[JailLayout]) -> Actual:
        known, self._known = self._known, None
        if known is not None and known.jails == tuple(jails) and self.generation() == known.generation:
            self._known, self._read = known, (known.view,)
            return known.actual
        self._read = None
        before = self.generation()
        snapshot = self.snapshot()
        self._read = (snapshot,)
        actual = Actual(entries=entries_in(snapshot, jails),  # a set of its own: see entries_after
                        layout_ok=not find_faults(snapshot, jails))
        if before is not None and snapshot is not None and self.generation() == before:
            self._known = Known(before, tuple(jails), actual, snapshot)
        return actual

    def apply(self, jails: Sequence[JailLayout], diff: Diff) -> None:
        """One transaction planned against the last read's snapshot; if the table changed
        since, nft refuses it whole and it is planned again against a fresh listing."""
        seen, self._read = self._read, None
        known, self._known = self._known, None
        if seen is not None:
            start = self.generation() if known is not None and seen[0] is known.view else None
            try:
                text = plan_apply(seen[0], jails, diff)
                self._load(text)
            except Refused:
                pass
            else:
                if start is not None and known is not None and start == known.generation:
                    self._keep(known, jails, diff, int(text is not None))
                return
        self._load(plan_apply(self.snapshot(), jails, diff))

    def _keep(self, known: Known[Snapshot], jails: Sequence[JailLayout], diff: Diff, commits: int) -> None:
        """Remember what a hosts-only apply on ``known`` left, if nobody else changed anything."""
        after = hosts_applied(known.view, jails, diff)
        generation = next_generation(known.generation, commits)
        if after is not None and self.generation() == generation:
            self._known = Known(generation, tuple(jails), Actual(entries_after(known.actual, diff), True), after)

    def remove(self, jails: Sequence[JailLayout]) -> None:
        self._read, self._known = None, None
        self._load(plan_remove(self.snapshot(), jails))

    def snapshot(self) -> Snapshot | None:
        """The table as it is now, or None if there is none."""
        command = [*self.command_prefix, "nft", "-j", "list", "table", *TABLE.split()]
        done = self._run(command, None)
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return None
            raise FirewallError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
        return parse_listing(done.stdout)

    def _load(self, text: str | None) -> None:
        if text is None:
            return
        command = [*self.command_prefix, "nft", "-f", "-"]
        done = self._run(command, text)
        if done.returncode != 0:
            raise Refused(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[:2000]}")

    def _run(self, command: list[str], stdin: str | None) -> "subprocess.CompletedProcess[str]":
        if self._library is None:
            self._library = in_process() or False
        if isinstance(self._library, Libnftables):
            return self._library.run(command, stdin)
        try:
            return subprocess.run(command, input=stdin, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise FirewallError(f"{' '.join(command)}: {error}") from error
