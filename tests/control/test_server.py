"""The control server over a real Unix socket: root only, bounded, never brought down by a request."""

import asyncio
import json
import os
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from journalban.control.client import DaemonNotRunning, request
from journalban.control.server import ControlServer, ControlSocketError

from .conftest import FakeDaemon, ServerThread

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c"]
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit()
try:
    s.sendall(b'{"command": "list"}\\n')
except BrokenPipeError:  # refused before the request went out
    pass
print(s.makefile().readline().strip())
try:
    print("closed" if s.recv(1) == b"" else "open")
except ConnectionResetError:  # closed with the request unread
    print("closed")
"""


def exchange(sock: socket.socket, *lines: bytes) -> list[dict[str, Any]]:
    reader = sock.makefile("rb")
    replies = []
    for line in lines:
        sock.sendall(line)
        replies.append(json.loads(reader.readline()))
    return replies


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def test_the_socket_is_roots_alone(daemon: FakeDaemon, socket_dir: Path) -> None:
    path = socket_dir / "run" / "control.sock"
    with ServerThread(path, daemon):
        info = path.stat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert (info.st_uid, info.st_gid) == (0, 0)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        os.chmod(path.parent, 0o711)
        nobody = subprocess.run([*NOBODY, CLIENT, str(path)], check=False, capture_output=True, text=True, timeout=30)
        assert nobody.stdout.strip() == "EACCES", nobody.stderr

        os.chmod(path, 0o666)  # a mistake: the peer check still refuses, and closes
        nobody = subprocess.run([*NOBODY, CLIENT, str(path)], check=False, capture_output=True, text=True, timeout=30)
        assert nobody.returncode == 0, nobody.stderr
        reply, state = nobody.stdout.strip().splitlines()
        assert json.loads(reply) == {"ok": False, "error": "permission denied: the control socket serves root only"}
        assert state == "closed"
        assert request(path, {"command": "list"}) == {"ok": True, "bans": []}  # root still served
    assert not path.exists()


def test_bad_requests_get_error_replies_and_the_server_serves_on(daemon: FakeDaemon, socket_dir: Path) -> None:
    path = socket_dir / "control.sock"
    with ServerThread(path, daemon), connect(path) as sock:
        replies = exchange(sock, b"{not json\n", b'"just a string"\n', b'{"command": "rm -rf"}\n',
                           "{\"command\": \"history\", \"address\": \"\u00e9\"}\n".encode(), b"\xff\xfe\n",
                           b'{"command": "list"}\n')
        assert [r["ok"] for r in replies] == [False] * 5 + [True]
        assert "not a JSON object" in replies[0]["error"] and "unknown command" in replies[2]["error"]


def test_a_line_over_the_limit_is_refused_and_skipped(daemon: FakeDaemon, socket_dir: Path) -> None:
    path = socket_dir / "control.sock"
    with ServerThread(path, daemon), connect(path) as sock:
        reader = sock.makefile("rb")
        big = b'{"command": "list", "jail": "' + b"x" * (1 << 20) + b'"}\n'
        sock.sendall(big + b'{"command": "list"}\n' + b"y" * 70000 + b"\n" + b'{"command": "list"}\n')
        replies = [json.loads(reader.readline()) for _ in range(4)]
        assert replies[0] == {"ok": False, "error": "request longer than 65536 bytes"}
        assert replies[1] == {"ok": True, "bans": []}  # the same connection serves on
        assert replies[2]["ok"] is False and replies[3]["ok"] is True


def test_connections_are_bounded(daemon: FakeDaemon, socket_dir: Path) -> None:
    path = socket_dir / "control.sock"
    with ServerThread(path, daemon, max_connections=2):
        first, second = connect(path), connect(path)
        try:
            assert exchange(first, b'{"command": "list"}\n')[0]["ok"]
            assert exchange(second, b'{"command": "list"}\n')[0]["ok"]
            assert request(path, {"command": "list"})["error"].startswith("too many control connections")
        finally:
            first.close()
            second.close()


def test_a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not(daemon: FakeDaemon, socket_dir: Path) -> None:
    path = socket_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays behind, as after a crash
    with ServerThread(path, daemon):
        assert request(path, {"command": "list"})["ok"]
        second = ControlServer(path, daemon)
        with pytest.raises(ControlSocketError, match="another journalban daemon"):
            asyncio.run(second.start())
        assert request(path, {"command": "list"})["ok"]  # and the probe's connection is done with
    path.write_text("not a socket")
    with pytest.raises(ControlSocketError, match="not a socket"):
        asyncio.run(ControlServer(path, daemon).start())


def test_the_client_tells_a_stopped_daemon(socket_dir: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        request(socket_dir / "absent.sock", {"command": "status"})
