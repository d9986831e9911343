"""A fail2ban jail's ``action`` lines to journalban's firewall, ports, chain and blocktype.

fail2ban bans by running shell templates; journalban has one built-in backend per
firewall. The first action that is an iptables, ipset or nftables ban action
decides the jail's ``firewall``, and its ``port``/``protocol``/``chain``/
``blocktype`` options (fail2ban's defaults where it gives none) the rest. Every
other action (mail, chat, abuse reports, other firewalls) is named in ``dropped``.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

from .values import extract_options, split_actions, words

# fail2ban action name -> journalban firewall
_FIREWALLS = {
    "iptables": "iptables", "iptables-multiport": "iptables", "iptables-new": "iptables",
    "iptables-allports": "iptables", "iptables-multiport-log": "iptables",
    "iptables-ipset": "ipset", "iptables-ipset-proto4": "ipset", "iptables-ipset-proto6": "ipset",
    "iptables-ipset-allports": "ipset", "iptables-ipset-proto6-allports": "ipset",
    "nftables": "nftables", "nftables-multiport": "nftables", "nftables-allports": "nftables",
}
_NOTIFY = re.compile(r"mail|mta|xarf|complain|apprise|smtp|slack|telegram|matrix|discord|pushover|"
                     r"abuseipdb|blocklist_de|dshield|mynetwatchman|badips|netscaler|cloudflare", re.I)
_CHAIN = re.compile(r"[A-Za-z0-9_-]{1,28}")


@dataclass
class Enforcement:
    """What journalban enforces for one jail; ``None`` fields keep journalban's default."""

    firewall: str | None = None
    ports: str | list[int | str] | None = None  # "all" or a list as in docs/config.md
    chain: str | None = None
    blocktype: str | None = None
    log: bool = False
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    notes: list[str] = field(default_factory=list)  # actions left out, for a comment in the config


def _ports(port: str, protocol: str, dropped: list[tuple[str, str]]) -> str | list[int | str]:
    """fail2ban's ``port``/``protocol`` (``ssh,https``, ``8000:8100``, ``tcp,udp``) as journalban ports."""
    protocols = [p.lower() for p in words(protocol)] or ["tcp"]
    unknown = [p for p in protocols if p not in ("tcp", "udp")]
    if unknown:
        dropped.append(("protocol", f"{protocol!r}: journalban closes tcp or udp ports only; all ports are closed"))
        return "all"
    out: list[int | str] = []
    for written in words(port):
        low, _, high = written.replace("-", ":").partition(":")
        numbers = []
        for part in (low, high) if high else (low,):
            if part.isdigit():
                numbers.append(int(part))
                continue
            try:
                numbers.append(socket.getservbyname(part, protocols[0]))
            except OSError:
                dropped.append(("port", f"{written!r} is no port number or service name known to this host; "
                                        "all ports are closed instead"))
                return "all"
        if len(numbers) == 2 and numbers[0] <= 1 and numbers[1] >= 65535:
            return "all"
        numbers = [max(number, 1) for number in numbers]
        for proto in protocols:
            spelled = ":".join(map(str, numbers))
            out.append(int(spelled) if proto == "tcp" and len(numbers) == 1 else
                       spelled if proto == "tcp" else f"{spelled}/{proto}")
    return out or "all"


_LETS_IN = frozenset({"return", "accept"})  # the matched addresses pass: an allow list, not bans


def _blocktype(written: str, dropped: list[tuple[str, str]]) -> str | None:
    word = written.split()[0].lower() if written.split() else ""
    if word in ("drop", "reject"):
        return word
    if word in _LETS_IN:
        raise ValueError(f"blocktype {written!r} lets the matched addresses in (an allow list, as in "
                         "pass2allow); journalban only bans")
    dropped.append(("blocktype", f"{written!r}: journalban drops or rejects; its default (drop) is used"))
    return None


def enforcement(action: str | None, port: str | None, protocol: str | None, chain: str | None,
                blocktype: str | None) -> Enforcement:
    """Map a jail's interpolated ``action`` (and its ``port``, ``protocol``, ``chain``, ``blocktype``).

    Raises ValueError for what journalban must not turn into bans (an allow list)."""
    out = Enforcement()
    for written in split_actions(action or ""):
        try:
            name, options = extract_options(written)
        except ValueError as error:
            out.dropped.append(("action", f"{error}; not carried over"))
            out.notes.append(written)
            continue
        backend = _FIREWALLS.get(name)
        if backend is None or out.firewall not in (None, backend):
            why = ("a mail/chat/report action: journalban runs none (an on_ban hook can)" if _NOTIFY.search(name)
                   else "a second firewall, other than the first action's: the first one is used"
                   if backend is not None else "no journalban firewall backend does what it does")
            out.dropped.append((f"action {name}", why))
            out.notes.append(" ".join(written.split()))
            continue
        allports = name.endswith("allports") or options.get("type") == "allports"
        given_port = options.get("port", port or "")
        given_protocol = options.get("protocol", protocol or "tcp")
        ports = "all" if allports or not given_port else _ports(given_port, given_protocol, out.dropped)
        if out.firewall is not None:  # e.g. one action for tcp, one for udp: the jail closes both
            earlier = out.ports
            out.ports = "all" if isinstance(ports, str) or not isinstance(earlier, list) else [
                *earlier, *(p for p in ports if p not in earlier)]
            continue
        out.firewall = backend
        out.log = name.endswith("-log")
        out.ports = ports
        given_chain = options.get("chain", chain or "")
        if given_chain and "<" not in given_chain and given_chain != "INPUT":
            if _CHAIN.fullmatch(given_chain):
                out.chain = given_chain
            else:
                out.dropped.append(("chain", f"{given_chain!r} is not a chain name; INPUT is used"))
        # fail2ban's iptables, ipset and nftables actions reject unless told otherwise
        given_block = options.get("blocktype", blocktype or "")
        out.blocktype = "reject" if not given_block or "<" in given_block else _blocktype(given_block, out.dropped)
    if out.firewall is None:
        if out.notes:
            out.dropped.append(("action", "no iptables, ipset or nftables ban action: journalban's "
                                          "default firewall (iptables) is used"))
        else:
            out.firewall = "dry-run"
            out.dropped.append(("action", "empty: fail2ban bans nothing for this jail; the dry-run firewall is used"))
    return out
