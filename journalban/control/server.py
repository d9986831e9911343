"""The control socket: a Unix stream socket for root only, JSON lines each way.

Two locks on the door: the socket file is mode 0600 and owned by root from the
moment it exists (bound under a umask), and every peer's uid is read with
SO_PEERCRED, so a socket chmod-ed open by mistake still serves only root. Lines and
connections are bounded; a bad request gets an error reply, never an exception.
"""

import asyncio
import contextlib
import json
import logging
import socket
import stat
import struct
from pathlib import Path

from journalban.control.handlers import ControlContext, dispatch
from journalban.control.protocol import MAX_LINE, encode, error_reply
from journalban.private_socket import bind_private

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 16
IDLE_TIMEOUT = 300.0  # seconds a connection may stay silent


class ControlSocketError(OSError):
    """The socket cannot be made: the path holds something else, or a live daemon listens there."""


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _clear_stale(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse anything else at ``path``."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            return
    raise ControlSocketError(f"{path}: another journalban daemon is listening there")


def bind_control_socket(path: Path) -> socket.socket:
    """A listening socket file, mode 0600 from the start; a missing parent is made 0700."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    _clear_stale(path)
    return bind_private(path, socket.SOCK_STREAM)


class ControlServer:
    def __init__(self, path: str | Path, context: ControlContext, *, max_connections: int = MAX_CONNECTIONS,
                 max_line: int = MAX_LINE, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.path = Path(path)
        self.context = context
        self.max_connections = max_connections
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        sock = bind_control_socket(self.path)
        self._inode = self.path.lstat().st_ino
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=self.max_line)
        log.info("control socket at %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await asyncio.sleep(0)  # connections accepted just now register before they are cancelled
            for task in list(self._clients):
                task.cancel()
            if self._clients:
                await asyncio.wait(list(self._clients))
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            if self.path.lstat().st_ino == self._inode:  # not a newer daemon's socket
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            if len(self._clients) > self.max_connections:
                await self._reply(writer, error_reply("too many control connections; try again"))
                return
            uid = peer_uid(writer.get_extra_info("socket"))
            if uid != 0:
                log.warning("control socket: refused a connection from uid %d", uid)
                await self._reply(writer, error_reply("permission denied: the control socket serves root only"))
                return
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("control connection failed")
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await asyncio.wait_for(self._read_line(reader), self.idle_timeout)
            except TimeoutError:
                return
            if line is None:
                await self._reply(writer, error_reply(f"request longer than {self.max_line} bytes"))
                continue
            if not line:
                return
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError as exc:
                await self._reply(writer, error_reply(f"not a JSON object: {exc}"))
                continue
            await self._reply(writer, await dispatch(self.context, request))

    @staticmethod
    async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
        """The next line (b"" at the end); None for a line over the limit, which is skipped
        to its end without being held in memory, so the next request is read whole."""
        try:
            return await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError as exc:
            consumed = exc.consumed
        while True:
            await reader.readexactly(consumed)
            try:
                await reader.readuntil(b"\n")
                return None
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError as exc:
                consumed = exc.consumed

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict[str, object]) -> None:
        writer.write(encode(reply))
        await writer.drain()
