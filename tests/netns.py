"""Network namespaces for tests: real netfilter, never the host's rules.

Every namespace is created by the test that uses it and deleted (with every
process still running in it) when the test ends.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest


def require_netns() -> None:
    """Skip (with the reason) where namespaces or netfilter tools are missing."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "iptables", "ip6tables", "iptables-restore", "iptables-save"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@dataclass(frozen=True)
class Namespace:
    name: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 30,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv), check=check, timeout=timeout, text=True,
                              capture_output=True, **kwargs)  # type: ignore[call-overload]

    def popen(self, argv: Sequence[str], **kwargs: object) -> "subprocess.Popen[str]":
        return subprocess.Popen(self.argv(argv), text=True, **kwargs)  # type: ignore[call-overload]

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], check=False, capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


@contextlib.contextmanager
def namespace(prefix: str = "jb-test") -> Iterator[Namespace]:
    """A fresh namespace with loopback up; deleted with its processes afterwards."""
    ns = Namespace(f"{prefix}-{uuid.uuid4().hex[:8]}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True)
    try:
        ns.run(["ip", "link", "set", "lo", "up"])
        yield ns
    finally:
        for pid in ns.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns.name], check=False)


def link(a: Namespace, a_cidr: str, b: Namespace, b_cidr: str) -> tuple[str, str]:
    """Join two namespaces with a veth pair and address both ends (v4 or v6 CIDRs);
    returns the interface names in ``a`` and in ``b``."""
    suffix = uuid.uuid4().hex[:6]
    a_if, b_if = f"jba{suffix}", f"jbb{suffix}"
    subprocess.run(["ip", "link", "add", a_if, "netns", a.name, "type", "veth",
                    "peer", "name", b_if, "netns", b.name], check=True)
    for ns, ifname, cidr in ((a, a_if, a_cidr), (b, b_if, b_cidr)):
        ns.run(["ip", "addr", "add", cidr, "dev", ifname, *(["nodad"] if ":" in cidr else [])])
        ns.run(["ip", "link", "set", ifname, "up"])
    return a_if, b_if
