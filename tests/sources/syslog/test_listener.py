"""SyslogListener on real sockets: udp, tcp, unix, tls; allow-list, limits, idle timeout, stop."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import stat
import subprocess
from collections.abc import Awaitable, Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from journalban.sources.syslog import SyslogListener
from tests.sources.syslog.conftest import Recorder, wait_for

LINE = b"<38>1 2026-11-25T10:11:12Z web sshd 811 - - Failed password for root from 203.0.113.9 port 22 ssh2"


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


def bound(listener: SyslogListener, url: str) -> tuple[str, int]:
    parts = urlsplit(listener.addresses[url])
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def connect(address: tuple[str, int], **kw: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(address[0], address[1], **kw)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 3) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


def test_config_is_checked_without_io() -> None:
    sink = Recorder()
    for bad in ["http://x:1", "udp://127.0.0.1", "tcp://:5", "unix://relative", "udp://127.0.0.1:99999"]:
        with pytest.raises(ValueError):
            SyslogListener([bad], sink)
    with pytest.raises(ValueError, match="cert and key"):
        SyslogListener(["tls://127.0.0.1:0"], sink)
    with pytest.raises(ValueError):
        SyslogListener([], sink)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_udp(host: str) -> None:
    async def body() -> None:
        sink = Recorder()
        url = f"udp://{host}:0"
        listener = SyslogListener([url], sink)
        await listener.start()
        try:
            address = bound(listener, url)
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as client:
                client.sendto(LINE, address)
                client.sendto(b"not syslog", address)
                client.sendto(b"<13>Nov 25 10:00:00 web sshd[1]: bsd", address)
            await wait_for(lambda: listener.counters["received"] == 3)
        finally:
            await listener.stop()
        assert sink.messages == ["Failed password for root from 203.0.113.9 port 22 ssh2", "bsd"]
        assert {source for source, _ in sink.batches} == {f"syslog:{url}"}
        event = sink.events[0]
        assert (event.app, event.pid, event.host, event.fields["facility"]) == ("sshd", 811, "web", "auth")
        assert listener.counters["malformed"] == {"pri": 1}
        assert listener.counters["parsed"] == 2

    run(body)


def test_tcp_octet_counted_and_lf_mixed_on_one_connection() -> None:
    async def body() -> None:
        sink = Recorder()
        listener = SyslogListener(["tcp://127.0.0.1:0"], sink)
        await listener.start()
        try:
            reader, writer = await connect(bound(listener, "tcp://127.0.0.1:0"))
            writer.write(b"%d %s" % (len(LINE), LINE) + b"<13>Nov 25 10:00:00 web a: lf one\n")
            writer.write(b"<13>Nov 25 10:00:00 web a: lf two\n17 <13>1 - - - - - -")
            await writer.drain()
            await wait_for(lambda: listener.counters["parsed"] == 4)
            writer.write(b"<13>Nov 25 10:00:00 web a: at eof")
            writer.write_eof()
            await wait_for(lambda: listener.counters["parsed"] == 5)
            assert await closed_by_peer(reader)
            writer.close()
        finally:
            await listener.stop()
        assert sink.messages[1:] == ["lf one", "lf two", "", "at eof"]
        assert listener.counters["connections"] == 0

    run(body)


def test_unix_datagram_socket_is_0600_and_replaces_a_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "syslog.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()

    async def body() -> None:
        sink = Recorder()
        url = f"unix://{path}"
        listener = SyslogListener([url], sink)
        await listener.start()
        try:
            info = path.lstat()
            assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
            assert (info.st_uid, info.st_gid) == (0, 0)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
                client.sendto(LINE + b"\n", str(path))
            await wait_for(lambda: len(sink.events) == 1)
        finally:
            await listener.stop()
        assert sink.batches[0][0] == f"syslog:{url}"
        assert not path.exists()

    run(body)


def test_unix_path_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("keep me")

    async def body() -> None:
        listener = SyslogListener([f"unix://{path}"], Recorder())
        with pytest.raises(FileExistsError):
            await listener.start()

    run(body)
    assert path.read_text() == "keep me"


def test_senders_outside_allow_are_refused() -> None:
    async def body() -> None:
        sink = Recorder()
        urls = ["udp://127.0.0.1:0", "tcp://127.0.0.1:0"]
        listener = SyslogListener(urls, sink, allow=[ip_network("192.0.2.0/24"), ip_network("::1/128")])
        await listener.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.sendto(LINE, bound(listener, urls[0]))
            reader, writer = await connect(bound(listener, urls[1]))
            writer.write(LINE + b"\n")
            assert await closed_by_peer(reader)
            writer.close()
            await wait_for(lambda: listener.counters["refused"] == 2)
        finally:
            await listener.stop()
        assert sink.events == [] and listener.counters["received"] == 0

    run(body)


def test_max_connections() -> None:
    async def body() -> None:
        sink = Recorder()
        listener = SyslogListener(["tcp://127.0.0.1:0"], sink, max_connections=2)
        await listener.start()
        address = bound(listener, "tcp://127.0.0.1:0")
        writers = []
        try:
            for _ in range(2):
                writers.append((await connect(address))[1])
            await wait_for(lambda: listener.counters["connections"] == 2)
            reader, writer = await connect(address)
            writers.append(writer)
            assert await closed_by_peer(reader)
            assert listener.counters["dropped"] == 1
            writers[0].write(LINE + b"\n")
            await wait_for(lambda: len(sink.events) == 1)
        finally:
            for w in writers:
                w.close()
            await listener.stop()

    run(body)


def test_idle_timeout_closes_and_counts_the_cut_frame() -> None:
    async def body() -> None:
        listener = SyslogListener(["tcp://127.0.0.1:0"], Recorder(), idle_timeout=0.3)
        await listener.start()
        try:
            reader, writer = await connect(bound(listener, "tcp://127.0.0.1:0"))
            writer.write(b"<13>half a line")
            assert await closed_by_peer(reader)
            writer.close()
            assert listener.counters["idle_closed"] == 1
            assert listener.counters["malformed"] == {"truncated": 1}
            assert listener.counters["connections"] == 0
        finally:
            await listener.stop()

    run(body)


def test_oversized_messages_are_dropped_and_the_stream_goes_on() -> None:
    async def body() -> None:
        sink = Recorder()
        urls = ["tcp://127.0.0.1:0", "udp://127.0.0.1:0"]
        listener = SyslogListener(urls, sink, max_message=1024)
        await listener.start()
        try:
            _, writer = await connect(bound(listener, urls[0]))
            writer.write(b"<13>" + b"x" * 5000 + b"\n" + b"%d <13>" % 5004 + b"y" * 5000 + LINE + b"\n")
            await writer.drain()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.sendto(b"<13>" + b"z" * 2000, bound(listener, urls[1]))
            await wait_for(lambda: listener.counters["received"] == 4)
            writer.close()
        finally:
            await listener.stop()
        assert listener.counters["malformed"] == {"too-long": 3}
        assert len(sink.events) == 1

    run(body)


def test_stop_hands_over_what_was_received() -> None:
    async def body() -> None:
        sink = Recorder()
        urls = ["udp://127.0.0.1:0", "tcp://127.0.0.1:0"]
        listener = SyslogListener(urls, sink)
        await listener.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for _ in range(50):
                client.sendto(LINE, bound(listener, urls[0]))
        _, writer = await connect(bound(listener, urls[1]))
        writer.write(LINE + b"\n" + LINE + b"\n<13>cut")
        await writer.drain()
        await listener.stop()  # no wait: the kernel still holds the datagrams
        writer.close()
        assert len(sink.events) == 52
        assert listener.counters["malformed"] == {"truncated": 1}
        assert listener.addresses == {}

    run(body)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A server certificate, a CA, and a client certificate signed by that CA (EC P-256, 1 day)."""
    d = tmp_path_factory.mktemp("pki")

    def req(name: str, *extra: str) -> None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", f"/CN={name}", "-days", "1", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"),
             *extra],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip

    req("localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    req("ca")
    subprocess.run(
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
         "/CN=client", "-keyout", str(d / "client.key"), "-out", str(d / "client.csr")],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(d / "client.csr"), "-CA", str(d / "ca.pem"), "-CAkey",
         str(d / "ca.key"), "-days", "1", "-out", str(d / "client.pem")],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return {name: d / name for name in os.listdir(d)}


def client_context(pki: dict[str, Path], with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["localhost.pem"]))
    if with_cert:
        context.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
    return context


def test_tls_octet_counted(pki: dict[str, Path]) -> None:
    async def body() -> None:
        sink = Recorder()
        listener = SyslogListener(["tls://127.0.0.1:0"], sink, cert=pki["localhost.pem"], key=pki["localhost.key"])
        await listener.start()
        try:
            _, writer = await connect(
                bound(listener, "tls://127.0.0.1:0"), ssl=client_context(pki, False), server_hostname="localhost"
            )
            writer.write(b"%d %s" % (len(LINE), LINE))
            await writer.drain()
            await wait_for(lambda: len(sink.events) == 1)
            writer.close()
        finally:
            await listener.stop()
        assert sink.batches[0][0] == "syslog:tls://127.0.0.1:0"

    run(body)


def test_tls_client_certificates_required_with_ca(pki: dict[str, Path]) -> None:
    async def body() -> None:
        sink = Recorder()
        listener = SyslogListener(
            ["tls://127.0.0.1:0"], sink, cert=pki["localhost.pem"], key=pki["localhost.key"], ca=pki["ca.pem"]
        )
        await listener.start()
        address = bound(listener, "tls://127.0.0.1:0")
        try:
            reader, writer = await connect(address, ssl=client_context(pki, True), server_hostname="localhost")
            writer.write(b"%d %s" % (len(LINE), LINE))
            await writer.drain()
            await wait_for(lambda: len(sink.events) == 1)
            writer.close()
            # Without a client certificate: the handshake fails (TLS 1.3 reports it on the first read).
            try:
                reader, writer = await connect(address, ssl=client_context(pki, False), server_hostname="localhost")
            except (ssl.SSLError, ConnectionResetError):
                pass
            else:
                writer.write(b"%d %s" % (len(LINE), LINE))
                assert await closed_by_peer(reader)
                writer.close()
        finally:
            await listener.stop()
        assert len(sink.events) == 1

    run(body)
