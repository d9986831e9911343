"""The shipped rsyslog snippets driven by a real rsyslogd, feeding a real SyslogListener."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from journalban.sources.syslog import SyslogListener
from tests.sources.syslog.conftest import Recorder, wait_for
from tests.sources.syslog.pki import make_pki

PACKAGING = Path(__file__).parents[3] / "packaging" / "rsyslog"
ATTACK = "Failed password for root from 203.0.113.9 port 22 ssh2"

pytestmark = pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslogd is not installed")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory uid 65534 can reach (pytest's tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="jb-rsyslog-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def rsyslogd(directory: Path, config: str, input_socket: Path) -> Iterator[None]:
    (directory / "work").mkdir(exist_ok=True)
    conf = directory / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{directory}/work")\n{config}')
    check = subprocess.run(
        ["rsyslogd", "-N1", "-f", str(conf)], check=False, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        ["rsyslogd", "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not input_socket.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "rsyslogd did not create its input socket"
            time.sleep(0.02)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


def logger(socket_path: Path, message: str, *, as_nobody: bool = False) -> None:
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
    argv = [*prefix, "logger", "--socket-errors=on", "-u", str(socket_path), "-t", "sshd", message]
    subprocess.run(argv, check=True, timeout=10)


def local_config(input_socket: Path, journalban_socket: Path) -> str:
    """The shipped host snippet with the test's sockets in place of the system ones."""
    snippet = (PACKAGING / "60-journalban.conf").read_text()
    assert 'module(load="imuxsock" ' in snippet and "/run/journalban/syslog.sock" in snippet
    snippet = snippet.replace('module(load="imuxsock" ', f'module(load="imuxsock" SysSock.Name="{input_socket}" ')
    return snippet.replace("/run/journalban/syslog.sock", str(journalban_socket))


def remote_config(input_socket: Path, port: int) -> str:
    """The shipped remote snippet over plain TCP (its TLS lines taken out), retrying every second."""
    snippet = (PACKAGING / "61-journalban-remote.conf").read_text()
    snippet = re.sub(r"global\([^)]*\)", "", snippet)
    snippet = "\n".join(line for line in snippet.splitlines() if "StreamDriver" not in line)
    snippet = snippet.replace('target="journalban.example.net"', 'target="127.0.0.1"')
    snippet = snippet.replace('port="6514"', f'port="{port}"')
    snippet = snippet.replace('action.resumeInterval="10"', 'action.resumeInterval="1"')
    assert 'target="127.0.0.1"' in snippet and f'port="{port}"' in snippet
    return f'module(load="imuxsock" SysSock.Use="off")\ninput(type="imuxsock" Socket="{input_socket}")\n{snippet}\n'


def remote_tls_config(input_socket: Path, port: int, ca: Path, cert: Path, key: Path) -> str:
    """The shipped remote snippet as it is, over TLS, with the test's files, address and port."""
    snippet = (PACKAGING / "61-journalban-remote.conf").read_text()
    replacements = {"/etc/rsyslog.d/journalban/ca.pem": str(ca), "/etc/rsyslog.d/journalban/client.pem": str(cert),
                    "/etc/rsyslog.d/journalban/client.key": str(key), 'target="journalban.example.net"':
                    'target="127.0.0.1"', 'port="6514"': f'port="{port}"',
                    'action.resumeInterval="10"': 'action.resumeInterval="1"'}
    for old, new in replacements.items():
        assert old in snippet, old
        snippet = snippet.replace(old, new)
    assert 'StreamDriver="gtls"' in snippet and 'StreamDriverPermittedPeers="journalban.example.net"' in snippet
    return f'module(load="imuxsock" SysSock.Use="off")\ninput(type="imuxsock" Socket="{input_socket}")\n{snippet}\n'


def test_local_snippet_forwards_root_services_only(shared_dir: Path, tmp_path: Path) -> None:
    input_socket = shared_dir / "log.sock"
    journalban_socket = tmp_path / "journalban" / "syslog.sock"
    url = f"unix://{journalban_socket}"

    async def body() -> None:
        sink = Recorder()
        listener = SyslogListener([url], sink)
        await listener.start()
        try:
            with rsyslogd(shared_dir, local_config(input_socket, journalban_socket), input_socket):
                logger(input_socket, ATTACK)
                await wait_for(lambda: len(sink.events) == 1, timeout=10)
                logger(input_socket, "nobody: " + ATTACK, as_nobody=True)
                logger(input_socket, "root again")  # same pipeline, so it arrives after the line above would
                await wait_for(lambda: len(sink.events) == 2, timeout=10)
                await asyncio.sleep(0.2)
        finally:
            await listener.stop()
        first = sink.events[0]
        assert (first.app, first.message, first.source) == ("sshd", ATTACK, f"syslog:{url}")
        assert first.fields["facility"] == "user"
        assert sink.messages == [ATTACK, "root again"]
        assert listener.counters["malformed"] == {}

    asyncio.run(asyncio.wait_for(body(), 40))


def test_remote_snippet_delivers_what_was_sent_while_down_exactly_once(shared_dir: Path) -> None:
    input_socket = shared_dir / "log.sock"

    async def body() -> None:
        sink = Recorder()
        first = SyslogListener(["tcp://127.0.0.1:0"], sink)
        await first.start()
        port = int(first.addresses["tcp://127.0.0.1:0"].rsplit(":", 1)[1])
        second = SyslogListener([f"tcp://127.0.0.1:{port}"], sink)
        try:
            with rsyslogd(shared_dir, remote_config(input_socket, port), input_socket):
                for i in range(5):
                    logger(input_socket, f"{ATTACK} #{i}")
                await wait_for(lambda: len(sink.events) == 5, timeout=15)
                await first.stop()
                for i in range(5, 10):
                    logger(input_socket, f"{ATTACK} #{i}")
                await asyncio.sleep(1.5)  # rsyslog notices the closed connection and queues
                await second.start()
                await wait_for(lambda: len(sink.events) >= 10, timeout=30)
                await asyncio.sleep(0.5)  # a duplicate would show up now
        finally:
            await first.stop()
            await second.stop()
        assert sorted(sink.messages, key=lambda m: int(m.rsplit("#", 1)[1])) == [f"{ATTACK} #{i}" for i in range(10)]
        assert {event.app for event in sink.events} == {"sshd"}

    asyncio.run(asyncio.wait_for(body(), 60))


def test_snippets_pass_rsyslog_syntax_check(shared_dir: Path) -> None:
    """rsyslogd -N1 accepts the local snippet as shipped (the remote one names certificate
    files that must exist: the TLS test below checks it with its own)."""
    conf = shared_dir / "check.conf"
    conf.write_text(f'global(workDirectory="{shared_dir}")\n' + (PACKAGING / "60-journalban.conf").read_text())
    result = subprocess.run(
        ["rsyslogd", "-N1", "-f", str(conf)], check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def test_remote_snippet_over_tls_reaches_a_listener_that_checks_client_certificates(shared_dir: Path) -> None:
    """TLS both ways: rsyslog checks the listener's name against the snippet's permitted
    peer, the listener checks rsyslog's client certificate against its ``ca``. A sender
    whose certificate another CA signed gets nothing through."""
    pki = make_pki(shared_dir / "pki")

    async def body() -> tuple[Recorder, Recorder]:
        sinks: list[Recorder] = []
        for client in ("client", "rogue"):
            input_socket = shared_dir / f"{client}.sock"
            sink = Recorder()
            sinks.append(sink)
            listener = SyslogListener(["tls://127.0.0.1:0"], sink, cert=pki["server.pem"], key=pki["server.key"],
                                      ca=pki["ca.pem"])
            await listener.start()
            port = int(listener.addresses["tls://127.0.0.1:0"].rsplit(":", 1)[1])
            config = remote_tls_config(input_socket, port, pki["ca.pem"], pki[f"{client}.pem"], pki[f"{client}.key"])
            try:
                with rsyslogd(shared_dir, config, input_socket):
                    for i in range(3):
                        logger(input_socket, f"{ATTACK} #{i}")
                    if client == "client":
                        await wait_for(lambda sink=sink: len(sink.events) == 3, timeout=15)
                    else:
                        await asyncio.sleep(3)  # rsyslog retries every second; each handshake is refused
                    await asyncio.sleep(0.3)  # a duplicate would show up now
            finally:
                await listener.stop()
        return sinks[0], sinks[1]

    trusted, rogue = asyncio.run(asyncio.wait_for(body(), 60))
    assert trusted.messages == [f"{ATTACK} #{i}" for i in range(3)]
    assert {event.source for event in trusted.events} == {"syslog:tls://127.0.0.1:0"}
    assert rogue.messages == []
