"""Telling systemd how the daemon is doing (sd_notify), without a library.

A no-op when ``NOTIFY_SOCKET`` is not set, i.e. when not run by systemd as
``Type=notify``.
"""

import logging
import os
import socket

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2_000_000 if usec.isdigit() and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *assignments: str) -> None:
        """Send ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``..."""
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:  # systemd gone or socket unreachable: never fatal
            log.debug("sd_notify failed: %s", exc)
