"""Unix socket files only root can use: the control socket and the syslog listener's."""

import os
import socket
from pathlib import Path


def bind_private(path: Path, kind: socket.SocketKind) -> socket.socket:
    """A socket bound at ``path`` with mode 0600 from the first instant (umask while
    binding), owned by root when run as root, non-blocking. The caller clears any
    stale file at ``path`` first."""
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        if os.geteuid() == 0:
            os.chown(path, 0, 0)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
