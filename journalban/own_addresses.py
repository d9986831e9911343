"""The host's own addresses, which ``ignoreself`` keeps from ever being banned."""

import ipaddress
import json
import logging
import subprocess

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def own_addresses() -> tuple[IPNetwork, ...]:
    """Every address on every interface, as /32 and /128 networks (from ``ip -j addr``)."""
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True, timeout=10)
        interfaces = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("cannot list the host's own addresses (ignoreself covers loopback only): %s", exc)
        return ()
    found = []
    for interface in interfaces:
        for info in interface.get("addr_info", []):
            try:
                found.append(ipaddress.ip_network(info["local"]))
            except (KeyError, ValueError):
                continue
    return tuple(found)
