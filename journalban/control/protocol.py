"""The control socket's wire format: one JSON object per line each way.

A request is ``{"command": NAME, ...arguments}``; a reply is ``{"ok": true, ...}``
or ``{"ok": false, "error": TEXT}`` (a refused reload adds ``"problems": [...]``).
Lines are UTF-8 and at most ``MAX_LINE`` bytes. Only root may connect.
"""

import ipaddress
import json
from typing import Any

DEFAULT_SOCKET = "/run/journalban/control.sock"
MAX_LINE = 64 * 1024


class ControlError(Exception):
    """A request the daemon refuses: bad arguments, an unknown jail, a protected address."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


def encode(message: dict[str, Any]) -> bytes:
    """One line; anything JSON cannot write (a datetime, say) as its ``str``."""
    return json.dumps(message, default=str, ensure_ascii=False).encode() + b"\n"


def error_reply(message: str, problems: tuple[str, ...] = ()) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": False, "error": message}
    if problems:
        reply["problems"] = list(problems)
    return reply


SHORTEST_PREFIX = {4: 16, 6: 32}  # a wider subnet ban would cut off whole providers


def parse_target(text: str) -> str:
    """An address or CIDR network as the ledger and the firewall write it: a host bare
    (``203.0.113.9``), a network with its prefix and host bits cleared (``203.0.113.0/24``),
    IPv4-mapped IPv6 folded to IPv4. ``ValueError`` for anything else."""
    cleaned = text.strip()
    try:
        if "%" in cleaned:  # a zone index means nothing to a firewall
            raise ValueError
        if "/" in cleaned:
            network = ipaddress.ip_network(cleaned, strict=False)
        else:
            network = ipaddress.ip_network(ipaddress.ip_address(cleaned))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR network") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    shortest = SHORTEST_PREFIX[network.version]
    if network.prefixlen < shortest:
        raise ValueError(f"{text!r}: networks wider than /{shortest} are refused for IPv{network.version}")
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)
