"""Asking the daemon over its control socket: one request, one reply, blocking."""

import json
import socket
from pathlib import Path
from typing import Any

from journalban.control.protocol import encode

TIMEOUT = 60.0  # a reload loads every grammar again


class DaemonNotRunning(Exception):
    """Nothing listens at the socket path."""


def request(path: str | Path, message: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """The daemon's reply to ``message``. ``DaemonNotRunning`` when there is no daemon;
    ``PermissionError`` for a user who is not root; ``OSError`` for a broken connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"journalban is not running (nothing listens at {path}: {exc.strerror})") from None
        try:
            sock.sendall(encode(message))
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused on sight (not root): the daemon's reply is already waiting to be read
        received = bytearray()
        while not received.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            received += chunk
    if not received:
        raise ConnectionError(f"{path}: the daemon closed the connection without replying")
    reply = json.loads(received)
    if not isinstance(reply, dict):
        raise ConnectionError(f"{path}: the reply is not a JSON object")
    return reply
