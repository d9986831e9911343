"""Listen URLs, checked without I/O: ``unix:///path``, ``udp://``, ``tcp://`` and ``tls://host:port``."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

__all__ = ["LOOPBACK", "Endpoint", "Network", "format_address", "is_allowed", "parse_listen_url"]

Network = IPv4Network | IPv6Network
LOOPBACK: tuple[Network, ...] = (ip_network("127.0.0.0/8"), ip_network("::1/128"))
SCHEMES = ("unix", "udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One parsed listen URL; ``path`` for unix, ``host`` and ``port`` for the others."""

    url: str
    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return self.url


def parse_listen_url(url: str) -> Endpoint:
    """Raise ``ValueError`` with the reason if ``url`` is not a listen URL we serve."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url!r}: scheme must be one of {', '.join(SCHEMES)}")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: no query or fragment allowed")
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"{url!r}: expected unix:///absolute/path")
        return Endpoint(url, "unix", path=parts.path)
    if parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: expected {parts.scheme}://host:port")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{url!r}: {error}") from None
    if not parts.hostname or port is None:
        raise ValueError(f"{url!r}: expected {parts.scheme}://host:port")
    return Endpoint(url, parts.scheme, host=parts.hostname, port=port)


def is_allowed(host: str, allow: tuple[Network, ...]) -> bool:
    """Whether a peer address (IPv4-mapped IPv6 folded to IPv4) falls in one of ``allow``."""
    try:
        address: IPv4Address | IPv6Address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allow if network.version == address.version)


def format_address(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
