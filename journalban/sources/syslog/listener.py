"""The syslog listener: datagrams and streams in, ``Event`` batches out to a sink.

This is the source's only I/O. Every frame a peer sends ends as an event, a
counted ``Malformed`` or a counted ``ruled_out``; the sink is called synchronously
from the loop once per stream read or burst of datagrams, so nothing queues here
and memory per connection stays within ``max_message`` plus one read. There is no end-to-end acknowledgement:
``stop`` stops accepting, hands over what was received and closes; while we
are down the sender's queue (rsyslog's disk-assisted queue) holds messages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import stat
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from journalban.events import Event
from journalban.private_socket import bind_private
from journalban.sources.syslog.endpoints import (
    LOOPBACK,
    Endpoint,
    Network,
    format_address,
    is_allowed,
    parse_listen_url,
)
from journalban.sources.syslog.framing import StreamDecoder
from journalban.sources.syslog.message import DEFAULT_MAX_MESSAGE, Malformed, SyslogMessage
from journalban.sources.syslog.parse import parse_message

__all__ = ["Sink", "SyslogListener"]

log = logging.getLogger(__name__)

Sink = Callable[[str, list[Event]], None]
_DRAIN_LIMIT = 100_000  # datagrams read at stop, so a flood cannot hold stop forever
_QUIET = 0.1  # a connection silent this long has nothing more in flight
_LOG_EVERY = 10.0  # at most one malformed-input log line per this many seconds
_READ_SIZE = 262_144
_READ_BURST = 2048  # datagrams per readiness event before other work gets a turn
_PEER_MEMO = 4096  # remembered allow decisions per datagram socket
RECEIVE_BUFFER = 8 << 20  # bytes asked for each datagram socket (the kernel doubles it)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def _now() -> datetime:
    return datetime.now(UTC)


class SyslogListener:
    """Listen on unix/udp/tcp/tls URLs and hand parsed messages to ``sink(source, events)``.

    Construction checks the configuration without I/O (``ValueError``); ``start``
    binds, loads certificates and may raise ``OSError``/``ssl.SSLError``. ``keep(app,
    message)``, when given, says whether any grammar could use a parsed message; the
    others are counted (``ruled_out``) and never become events. ``keep_raw(frame)``,
    when given, says the same of a frame's bytes before it is parsed (the grammars'
    literal prefilter: a frame holding none of a rule's literals is no failure, whatever
    its header): most of a busy host's traffic then costs a byte search, not a parse.
    ``keep_block(data)`` (with ``keep_raw`` only) says it of a stream's whole read at
    once, marking where a frame may be kept (``match.prefilter_marks``): the frames
    without a mark are counted as ruled out and never even cut out of the read.
    """

    def __init__(
        self,
        listen: Sequence[str],
        sink: Sink,
        *,
        allow: Sequence[Network] = LOOPBACK,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_connections: int = 256,
        idle_timeout: float = 300.0,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        ca: str | os.PathLike[str] | None = None,
        clock: Callable[[], datetime] = _now,
        keep: Callable[[str | None, str], bool] | None = None,
        keep_raw: Callable[[bytes], bool] | None = None,
        keep_block: Callable[[bytes], list[int]] | None = None,
    ) -> None:
        if not listen:
            raise ValueError("listen: at least one URL is needed")
        self.endpoints = tuple(parse_listen_url(url) for url in listen)
        if any(e.scheme == "tls" for e in self.endpoints) and (cert is None or key is None):
            raise ValueError("tls:// listeners need cert and key")
        if max_message < 1 or max_connections < 1 or idle_timeout <= 0:
            raise ValueError("max_message, max_connections and idle_timeout must be positive")
        self.sink = sink
        self.allow = tuple(allow)
        self.max_message = max_message
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.cert, self.key, self.ca = cert, key, ca
        self.clock = clock
        self.keep = keep
        self.keep_raw = keep_raw
        self.keep_block = keep_block if keep_raw is not None else None  # a first pass of keep_raw's
        self._servers: list[asyncio.Server] = []
        self._datagrams: list[_DatagramInput] = []
        self._unix_paths: list[tuple[Path, int]] = []
        self._connections: set[_StreamInput] = set()
        self._addresses: dict[str, str] = {}
        self._counts: Counter[str] = Counter()
        self._malformed: Counter[str] = Counter()
        self._log_after = 0.0
        self._suppressed = 0

    @property
    def addresses(self) -> dict[str, str]:
        """Configured URL → bound URL (the real port when 0 was asked for)."""
        return dict(self._addresses)

    @property
    def counters(self) -> dict[str, Any]:
        """``received`` frames, ``parsed``, ``ruled_out`` (``keep_raw`` or, once parsed,
        ``keep`` said no grammar could use them), ``malformed`` by reason (of the frames
        ``keep_raw`` let through), ``refused`` peers (not in allow), ``dropped``
        connections (over max_connections), ``idle_closed``, ``sink_errors``, and the number of
        open ``connections``."""
        counts = {name: self._counts[name] for name in
                  ("received", "parsed", "ruled_out", "refused", "dropped", "idle_closed", "sink_errors")}  # fmt: skip
        return {**counts, "malformed": dict(self._malformed), "connections": len(self._connections)}

    async def start(self) -> None:
        """Bind every URL; on failure whatever was bound is closed again."""
        try:
            for endpoint in self.endpoints:
                await self._open(endpoint)
        except BaseException:
            await self.stop(grace=0)
            raise

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, read what is in flight (up to ``grace`` seconds), hand it over, close."""
        loop = asyncio.get_running_loop()
        for server in self._servers:
            server.close()
        for datagrams in self._datagrams:
            datagrams.close()  # reads what the kernel holds first
        deadline = loop.time() + grace
        while self._connections and loop.time() < deadline:
            if all(loop.time() - c.last_read >= _QUIET for c in self._connections):
                break
            await asyncio.sleep(_QUIET / 2)
        for connection in list(self._connections):
            connection.close(eof=False)
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)  # let connection_lost callbacks run
        for path, inode in self._unix_paths:
            try:
                if path.lstat().st_ino == inode:
                    path.unlink()
            except FileNotFoundError:
                pass
        self._servers.clear()
        self._datagrams.clear()
        self._unix_paths.clear()
        self._addresses.clear()

    async def _open(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        source = f"syslog:{endpoint.url}"
        if endpoint.scheme in ("unix", "udp"):
            sock = self._unix_socket(endpoint) if endpoint.scheme == "unix" else _udp_socket(endpoint)
            datagrams = _DatagramInput(self, source, sock, check_peer=endpoint.scheme == "udp")
            datagrams.start(loop)
            self._datagrams.append(datagrams)
            name = sock.getsockname()
            self._addresses[endpoint.url] = (
                f"unix://{name}" if endpoint.scheme == "unix" else format_address("udp", name[0], name[1])
            )
            return
        context = self._tls_context() if endpoint.scheme == "tls" else None
        server = await loop.create_server(
            lambda: _StreamInput(self, source),
            endpoint.host,
            endpoint.port,
            ssl=context,
            ssl_handshake_timeout=min(self.idle_timeout, 60.0) if context else None,
            reuse_address=True,
        )
        self._servers.append(server)
        name = server.sockets[0].getsockname()
        self._addresses[endpoint.url] = format_address(endpoint.scheme, name[0], name[1])

    def _unix_socket(self, endpoint: Endpoint) -> socket.socket:
        """A datagram socket file with mode 0600 from the start; a stale socket file is replaced."""
        path = Path(endpoint.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise FileExistsError(f"{path} exists and is not a socket")
            path.unlink()
        except FileNotFoundError:
            pass
        sock = bind_private(path, socket.SOCK_DGRAM)
        _grow_receive_buffer(sock)
        sock.setblocking(False)
        self._unix_paths.append((path, path.lstat().st_ino))
        return sock

    def _tls_context(self) -> ssl.SSLContext:
        assert self.cert is not None and self.key is not None  # checked in __init__
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.ca is not None:
            context.load_verify_locations(self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    # --- called by the protocols ---------------------------------------------------------

    def allowed(self, peer: Any) -> bool:
        return isinstance(peer, tuple) and bool(peer) and is_allowed(str(peer[0]), self.allow)

    def count(self, name: str) -> None:
        self._counts[name] += 1

    def ingest(self, source: str, frames: Sequence[bytes | Malformed], passed_over: int = 0) -> None:
        """Parse frames, count them, and hand the events of this batch to the sink at once.
        ``passed_over``: more frames received, which ``keep_block`` already ruled out."""
        received = self.clock()
        events: list[Event] = []
        keep, keep_raw, max_size = self.keep, self.keep_raw, self.max_message
        parsed = ruled_out = 0
        for frame in frames:
            if isinstance(frame, Malformed):
                result: SyslogMessage | Malformed = frame
            elif keep_raw is not None and len(frame) <= max_size and not keep_raw(frame):
                ruled_out += 1
                continue
            else:
                result = parse_message(frame, received, max_size=max_size)
            if isinstance(result, Malformed):
                self._malformed[result.reason] += 1
                self._report(source, result)
                continue
            parsed += 1
            if keep is not None and not keep(result.app, result.message):
                ruled_out += 1
                continue
            events.append(result.to_event(source))
        self._counts["received"] += len(frames) + passed_over
        self._counts["parsed"] += parsed
        self._counts["ruled_out"] += ruled_out + passed_over
        if events:
            try:
                self.sink(source, events)
            except Exception:
                self._counts["sink_errors"] += 1
                log.exception("%s: the sink refused %d events", source, len(events))

    def _report(self, source: str, malformed: Malformed) -> None:
        now = time.monotonic()
        if now < self._log_after:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        log.warning("%s: dropped %s%s", source, malformed, more)
        self._log_after = now + _LOG_EVERY
        self._suppressed = 0

    def track(self, connection: _StreamInput, add: bool) -> bool:
        """Register (``add``) or forget a connection; False when the limit is reached."""
        if not add:
            self._connections.discard(connection)
            return True
        if len(self._connections) >= self.max_connections:
            return False
        self._connections.add(connection)
        return True


def _udp_socket(endpoint: Endpoint) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        endpoint.host, endpoint.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _grow_receive_buffer(sock)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _grow_receive_buffer(sock: socket.socket) -> None:
    """Room for bursts: datagrams the kernel cannot queue while we parse are lost.

    ``SO_RCVBUFFORCE`` (root, CAP_NET_ADMIN) ignores ``net.core.rmem_max``; without the
    capability ``SO_RCVBUF`` is capped at it (docs/sources/syslog.md says how to raise it)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


class _DatagramInput:
    """One datagram is one message (RFC 5426); unix sockets skip the address check.

    Reads the socket itself from a loop reader callback, up to ``_READ_BURST`` datagrams
    per readiness event until the kernel has no more, and hands them to ``ingest`` as
    one batch: far cheaper than asyncio's one callback per datagram."""

    def __init__(self, owner: SyslogListener, source: str, sock: socket.socket, *, check_peer: bool) -> None:
        self.owner, self.source, self.sock, self.check_peer = owner, source, sock, check_peer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._peers: dict[object, bool] = {}  # address -> allowed, bounded

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self.read_ready)

    def read_ready(self, limit: int = _READ_BURST) -> int:
        """Read up to ``limit`` datagrams (fewer when the kernel runs dry); how many were read."""
        receive, frames, count = self.sock.recvfrom, [], 0
        check, peers = self.check_peer, self._peers
        while count < limit:
            try:
                data, addr = receive(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:  # e.g. an ICMP error queued on the socket
                log.debug("%s: %s", self.source, error)
                break
            count += 1
            if check:
                host = addr[0] if isinstance(addr, tuple) and addr else addr
                allowed = peers.get(host)
                if allowed is None:
                    allowed = self.owner.allowed(addr)
                    if len(peers) >= _PEER_MEMO:
                        peers.clear()
                    peers[host] = allowed
                if not allowed:
                    self.owner.count("refused")
                    continue
            frames.append(data)
        if frames:
            self.owner.ingest(self.source, frames)
        return count

    def close(self) -> None:
        """Read what the kernel already holds (bounded), then close the socket."""
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.read_ready(_DRAIN_LIMIT)
        self.sock.close()


class _StreamInput(asyncio.Protocol):
    """One TCP or TLS connection: allow-list and connection limit, framing, idle timeout."""

    def __init__(self, owner: SyslogListener, source: str) -> None:
        self.owner, self.source = owner, source
        self.decoder = StreamDecoder(owner.max_message)
        self.transport: asyncio.Transport | None = None
        self.last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self.owner.allowed(transport.get_extra_info("peername")):
            self.owner.count("refused")
            transport.abort()
            return
        if not self.owner.track(self, add=True):
            self.owner.count("dropped")
            transport.abort()
            return
        self.transport = transport
        loop = asyncio.get_running_loop()
        self.last_read = loop.time()
        self._timer = loop.call_later(self.owner.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.last_read = asyncio.get_running_loop().time()
        keep_block = self.owner.keep_block
        frames = self.decoder.feed(data, keep_block(data) if keep_block is not None else None)
        passed_over = self.decoder.take_passed_over()
        if frames or passed_over:
            self.owner.ingest(self.source, frames, passed_over)

    def eof_received(self) -> bool:
        self._flush(eof=True)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self._flush(eof=False)
        self._stop_timer()
        self.owner.track(self, add=False)
        self.transport = None

    def close(self, *, eof: bool) -> None:
        """Close from our side: a partial frame is counted as truncated, not delivered."""
        if self.transport is None:
            return
        self._flush(eof=eof)
        self._stop_timer()
        self.owner.track(self, add=False)
        transport, self.transport = self.transport, None
        transport.close()

    def _flush(self, *, eof: bool) -> None:
        frames = self.decoder.finish(eof=eof)
        if frames:
            self.owner.ingest(self.source, frames)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        idle = loop.time() - self.last_read
        if idle >= self.owner.idle_timeout:
            self.owner.count("idle_closed")
            self.close(eof=False)
        else:
            self._timer = loop.call_later(self.owner.idle_timeout - idle, self._check_idle)
