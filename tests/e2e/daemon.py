"""Running the real ``journalban`` daemon as a process, inside a test namespace."""

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tests.netns import Namespace

T = TypeVar("T")

# Connect from a given source address; exit 0 connected, 1 timed out, 2 refused or unreachable.
CONNECT = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.settimeout(float(sys.argv[4])); s.bind((sys.argv[3], 0))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except TimeoutError:
    sys.exit(1)
except OSError:
    sys.exit(2)
sys.exit(0)
"""

LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 and IPv6 alike
s.bind(("::", int(sys.argv[1]))); s.listen(64)
while True:
    s.accept()[0].close()
"""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def connect(ns: Namespace, host: str, port: int, source: str, timeout: float = 1.5) -> str:
    code = ns.run([sys.executable, "-c", CONNECT, host, str(port), source, str(timeout)], check=False).returncode
    return {0: "connected", 1: "timed out", 2: "refused"}.get(code, f"exit {code}")


class HostNamespace(Namespace):
    """The host's own network namespace, with ``Namespace``'s interface: argv run as given.

    For a daemon that must share loopback with processes started on the host (rsyslogd)."""

    def argv(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def pids(self) -> list[int]:
        raise NotImplementedError("the host namespace holds every process")


HOST = HostNamespace("host")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def count(db: Path, sql: str, *args: object) -> int:
    """The single number a ``SELECT count(*) ...`` gives; 0 before the schema exists."""
    rows = query(db, sql, *args)
    return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


def query(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    connection = sqlite3.connect(db, timeout=10)
    try:
        return connection.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        connection.close()


class DaemonProcess:
    """``journalban run -c CONFIG`` in a namespace, its stderr kept in a file."""

    def __init__(self, ns: Namespace, config: Path, log: Path) -> None:
        self.ns, self.config, self.log = ns, config, log
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        start_at = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("a") as stderr:
            self.process = self.ns.popen([sys.executable, "-m", "journalban", "run", "-c", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        wait_for("the daemon to say it is ready", lambda: self._ready(start_at), timeout=30)

    def launch(self) -> None:
        """Start without waiting for "ready" (the first journal batch is read before it)."""
        with self.log.open("a") as stderr:
            self.process = self.ns.popen([sys.executable, "-m", "journalban", "run", "-c", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=stderr)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush or close anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _ready(self, start_at: int) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"journalban exited with {self.process.returncode}:\n{self.log.read_text()}")
        return "journalban ready" in self.log.read_text()[start_at:]

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"journalban did not stop on SIGTERM:\n{self.log.read_text()}") from None
