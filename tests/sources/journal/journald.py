"""A private journald instance (a journal namespace) for tests, and journal builders.

``running_journald()`` starts ``systemd-journald NAME`` without systemd as PID 1, with
its rate limit off, and removes everything it created when it ends: the process,
``/etc/systemd/journald@NAME.conf``, ``/run/systemd/journal.NAME`` and the journal
directory (and ``/etc/machine-id`` if it had to write one). The ``journald``
fixture wraps it for pytest; other test packages import it from here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

JOURNALD = "/lib/systemd/systemd-journald"
JOURNAL_REMOTE = "/usr/lib/systemd/systemd-journal-remote"
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by an unprivileged user, unlike the venv under /root
NOBODY = 65534
START_TIMEOUT = 10.0

_SEND_AS = ("import socket, sys; "
            "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(sys.stdin.buffer.read(), sys.argv[1])")

Fields = Mapping[str, str | bytes]


def native_datagram(fields: Fields) -> bytes:
    """One entry in journald's native protocol; values with newlines use the length form."""
    out = bytearray()
    for name, value in fields.items():
        raw = value.encode() if isinstance(value, str) else value
        if b"\n" in raw:
            out += name.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
        else:
            out += name.encode() + b"=" + raw + b"\n"
    return bytes(out)


def export_record(fields: Fields) -> bytes:
    """One entry in journal export format (for systemd-journal-remote)."""
    return native_datagram(fields) + b"\n"


def build_journal(export: bytes, path: Path) -> Path:
    """Write export-format ``export`` into the journal file ``path`` (trusted fields kept)."""
    subprocess.run([JOURNAL_REMOTE, "-o", str(path), "-"], input=export, check=True, capture_output=True,
                   timeout=30)
    return path


@dataclass
class Journald:
    """A running journald namespace: write to it, wait for it, find its files."""

    namespace: str
    directory: Path
    process: subprocess.Popen[bytes]
    _keepalive: socket.socket | None = field(default=None, repr=False)

    @property
    def runtime(self) -> Path:
        return Path(f"/run/systemd/journal.{self.namespace}")

    @property
    def socket_path(self) -> str:
        return str(self.runtime / "socket")

    def send(self, fields: Fields) -> None:
        """Write one entry as root over the native socket (journald records ``_UID=0``)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(native_datagram(fields), self.socket_path)

    def send_as(self, uid: int, fields: Fields) -> None:
        """Write one entry from a process running as ``uid`` (no groups, gid = uid)."""
        subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", SYSTEM_PYTHON, "-c", _SEND_AS,
             self.socket_path],
            input=native_datagram(fields), check=True, timeout=30,
        )

    def sync(self) -> None:
        """Return once journald has written everything sent before (``journalctl --sync``)."""
        subprocess.run(["journalctl", f"--namespace={self.namespace}", "--sync"], check=True, timeout=30,
                       capture_output=True)


def _machine_id() -> tuple[str, str | None]:
    """The machine id, and what /etc/machine-id held before if we had to write one."""
    path = Path("/etc/machine-id")
    before = path.read_text().strip() if path.exists() else None
    if before:
        return before, None
    new = uuid.uuid4().hex
    path.write_text(new + "\n")
    return new, "" if before is not None else "missing"


def _wait_for(predicate: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not predicate():
        if process.poll() is not None:
            raise RuntimeError(f"journald exited with {process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"journald: no {what} after {START_TIMEOUT} s")
        time.sleep(0.02)


def _keepalive(runtime: Path) -> socket.socket:
    """Hold a stdout stream open: a namespace journald exits after 30 s with no client."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(runtime / "stdout"))
    sock.sendall(b"jbtest-keepalive\n\n6\n0\n0\n0\n0\n")
    return sock


@contextlib.contextmanager
def running_journald() -> Iterator[Journald]:
    """Start a journald namespace instance; stop it and remove its files on exit."""
    namespace = "jbtest" + uuid.uuid4().hex[:8]
    conf = Path(f"/etc/systemd/journald@{namespace}.conf")
    runtime = Path(f"/run/systemd/journal.{namespace}")
    machine_id, restore_machine_id = _machine_id()
    # Persistent when /var/log/journal exists (Storage=auto), volatile otherwise.
    candidates = [Path(f"/var/log/journal/{machine_id}.{namespace}"),
                  Path(f"/run/log/journal/{machine_id}.{namespace}")]
    process: subprocess.Popen[bytes] | None = None
    keepalive: socket.socket | None = None
    try:
        conf.write_text("[Journal]\nRateLimitIntervalSec=0\n")
        process = subprocess.Popen([JOURNALD, namespace], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        _wait_for(lambda: (runtime / "socket").exists() and any(c.is_dir() for c in candidates), "socket", process)
        keepalive = _keepalive(runtime)
        directory = next(c for c in candidates if c.is_dir())
        yield Journald(namespace, directory, process, keepalive)
    finally:
        if keepalive is not None:
            keepalive.close()
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        conf.unlink(missing_ok=True)
        shutil.rmtree(runtime, ignore_errors=True)
        for candidate in candidates:
            shutil.rmtree(candidate, ignore_errors=True)
        if restore_machine_id == "missing":
            os.unlink("/etc/machine-id")
        elif restore_machine_id == "":
            Path("/etc/machine-id").write_text("")


@pytest.fixture
def journald() -> Iterator[Journald]:
    """A fresh journald namespace for one test; skipped where journald is not installed."""
    if not os.access(JOURNALD, os.X_OK):
        pytest.skip(f"{JOURNALD} is not installed")
    if os.geteuid() != 0:
        pytest.skip("starting a journald instance needs root")
    with running_journald() as instance:
        yield instance
