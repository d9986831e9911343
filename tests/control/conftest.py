"""A control context over a real ledger, detector and reconciler with the in-memory firewall,
and a control server run in a thread with its own event loop."""

import asyncio
import ipaddress
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from journalban.control.handlers import ControlContext, Snapshot, dispatch
from journalban.control.server import ControlServer
from journalban.detector import Detector, JailPolicy
from journalban.firewall.base import JailLayout
from journalban.firewall.memory import MemoryFirewall
from journalban.ledger.store import Ledger
from journalban.reconcile import Enforcement, Reconciler

T0 = datetime(2026, 4, 23, 10, 0, tzinfo=UTC)
IGNORED = ipaddress.ip_network("198.51.100.0/24")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeDaemon:
    """What ``DaemonContext`` gives the handlers, built from the real parts; records the hooks' calls."""

    ledger: Ledger
    detector: Detector
    reconciler: Reconciler
    firewall: MemoryFirewall
    clock: Clock
    problems: list[str] = field(default_factory=list)
    calls: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def policies(self) -> dict[str, JailPolicy]:
        return self.detector.policies

    def now(self) -> datetime:
        return self.clock()

    def reconcile_now(self) -> None:
        self.reconciler.run()  # at once, so tests see the firewall

    def banned(self, jail: str, address: str, expiry: datetime, reason: str) -> None:
        self.detector.prime((), [(jail, address, expiry)])
        self.calls.append(("on_ban", jail, address, reason))

    def lifted(self, jail: str, address: str, reason: str) -> None:
        self.detector.lifted(jail, address)
        self.calls.append(("on_unban", jail, address, reason))

    def snapshot(self) -> Snapshot:
        return Snapshot({"file:/var/log/wp.log": {"unparsed": 0, "cut": 0}}, {"lines": 7, "counted": 2},
                        self.reconciler.last, self.clock())

    async def reload(self) -> Sequence[str]:
        return self.problems

    def ask(self, request: object) -> dict[str, Any]:
        context: ControlContext = self
        return asyncio.run(dispatch(context, request))


def make_daemon(url: str, jails: Sequence[str] = ("wplogin", "sshd")) -> FakeDaemon:
    ledger = Ledger(url)
    ledger.upgrade()
    firewall, clock = MemoryFirewall(), Clock()
    policies = {name: JailPolicy(name, 3, 600, 3600, ignoreip=(IGNORED,)) for name in jails}
    reconciler = Reconciler(ledger, [Enforcement(firewall, tuple(JailLayout(n) for n in jails))], clock)
    return FakeDaemon(ledger, Detector(policies), reconciler, firewall, clock)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[FakeDaemon]:
    fake = make_daemon(f"sqlite:///{tmp_path}/ledger.db")
    yield fake
    fake.ledger.close()


class ServerThread:
    """A ControlServer serving from its own thread and loop, as the daemon would."""

    def __init__(self, path: Path, context: ControlContext, **options: Any) -> None:
        self.server = ControlServer(path, context, **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A directory in /tmp that any user may traverse (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="jb-control-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)
