"""The real daemon fed by a real rsyslogd through the shipped snippets.

Local path: rsyslog's imuxsock reads the sender's credentials and forwards only
root's messages over a unix socket to journalban. Remote path: omfwd over TCP with
a disk-assisted queue, so what is sent while journalban is down arrives once it is
back, and nothing arrives twice. The ledger (SQLite in tmp) is the evidence.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon import HOST, DaemonProcess, count, free_port, query, wait_for
from tests.sources.syslog.test_rsyslog import local_config, logger, remote_config, rsyslogd

ATTACKER = "203.0.113.9"
ATTACK = f"Failed password for root from {ATTACKER} port 22 ssh2"

pytestmark = [
    pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslogd is not installed"),
    pytest.mark.skipif(shutil.which("logger") is None, reason="logger is not installed"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is not installed"),
]


def failed(address: str, port: int = 22) -> str:
    return f"Failed password for root from {address} port {port} ssh2"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """Where rsyslog's input socket lives: reachable by uid 65534, unlike pytest's tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="jb-e2e-rsyslog-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def daemon(tmp: Path, listen: str, maxretry: int) -> DaemonProcess:
    config = tmp / "journalban.toml"
    config.write_text(f"""
[control]
socket = "{tmp / 'control.sock'}"

[ledger]
url = "sqlite:///{tmp / 'ledger.db'}"

[sources.syslog]
listen = ["{listen}"]

[defaults]
firewall = "dry-run"
ignoreself = false

[jails.sshd]
grammar = "sshd"
syslog = true
journal = false
maxretry = {maxretry}
""")
    return DaemonProcess(HOST, config, tmp / "daemon.log")


def test_local_rsyslog_root_line_bans_and_nobody_line_does_not(shared_dir: Path, tmp_path: Path) -> None:
    input_socket = shared_dir / "rsyslog.sock"
    journalban_socket = tmp_path / "run" / "syslog.sock"
    ledger = tmp_path / "ledger.db"
    process = daemon(tmp_path, f"unix://{journalban_socket}", maxretry=1)
    process.start()
    try:
        with rsyslogd(shared_dir, local_config(input_socket, journalban_socket), input_socket):
            logger(input_socket, ATTACK)
            found = wait_for("the ban in the ledger",
                             lambda: query(ledger, "SELECT jail, address, reason FROM bans ORDER BY id"))
            assert found == [("sshd", ATTACKER, f"1 failure in 600s: {ATTACK}")]
            logger(input_socket, failed("198.51.100.66"), as_nobody=True)
            logger(input_socket, failed("198.51.100.7"))  # same pipeline: arrives after the line above would
            wait_for("the root line after nobody's",
                     lambda: count(ledger, "SELECT count(*) FROM bans WHERE address = '198.51.100.7'"))
        assert count(ledger, "SELECT count(*) FROM failures WHERE address = '198.51.100.66'") == 0
        rows = query(ledger, "SELECT address, rule, source FROM failures ORDER BY id")
        source = f"syslog:unix://{journalban_socket}"
        assert rows == [(ATTACKER, "sshd/failed", source), ("198.51.100.7", "sshd/failed", source)]
    finally:
        assert process.stop() == 0


def test_remote_rsyslog_delivers_what_was_sent_while_the_daemon_was_down_once(shared_dir: Path,
                                                                              tmp_path: Path) -> None:
    input_socket = shared_dir / "rsyslog.sock"
    ledger = tmp_path / "ledger.db"
    port = free_port()
    process = daemon(tmp_path, f"tcp://127.0.0.1:{port}", maxretry=1000)
    addresses = [f"198.51.100.{n}" for n in range(1, 31)]

    def failures() -> int:
        return count(ledger, "SELECT count(*) FROM failures")

    process.start()
    try:
        with rsyslogd(shared_dir, remote_config(input_socket, port), input_socket):
            for address in addresses[:10]:
                logger(input_socket, failed(address))
            wait_for("the first 10 failures", lambda: failures() >= 10, timeout=15)
            assert process.stop() == 0
            for address in addresses[10:20]:
                logger(input_socket, failed(address))
            time.sleep(1.5)  # rsyslog notices the closed connection and queues
            process.start()
            for address in addresses[20:]:
                logger(input_socket, failed(address))
            wait_for("all 30 failures", lambda: failures() >= 30, timeout=30)
            time.sleep(1.0)  # a duplicate would show up now
        rows = query(ledger, "SELECT address FROM failures")
        assert sorted(str(r[0]) for r in rows) == sorted(addresses)
    finally:
        if process.running:
            assert process.stop() == 0
