"""The records the syslog parsers return: a parsed message, or why a frame was refused.

``SyslogMessage`` keeps what the header said; ``to_event`` turns it into the
``Event`` every source emits. ``Malformed.reason`` is a short fixed label so the
listener can count refusals by kind without keeping the peer's bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType

from journalban.events import Event

__all__ = ["DEFAULT_MAX_MESSAGE", "FACILITIES", "SEVERITIES", "Malformed", "SDElement", "SyslogMessage"]

DEFAULT_MAX_MESSAGE = 65536  # bytes; RFC 6587 senders commonly allow 64 KiB

# rsyslog's names for facilities 0..23 (12..15 are not in <syslog.h>).
FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
    "uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that was not accepted; ``reason`` is a counter label such as ``"pri"``."""

    reason: str
    excerpt: str = ""  # the start of the frame, escaped, for a log line

    def __str__(self) -> str:
        return f"malformed {self.reason}: {self.excerpt}" if self.excerpt else f"malformed {self.reason}"

    @classmethod
    def of(cls, reason: str, data: bytes | bytearray) -> Malformed:
        return cls(reason, repr(bytes(data[:64]))[2:-1])


@dataclass(frozen=True, slots=True)
class SDElement:
    """One ``[id name="value" ...]`` element of RFC 5424 structured data, params in order."""

    id: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.params if key == name), None)

    def __str__(self) -> str:
        params = "".join(f' {key}="{_escape(value)}"' for key, value in self.params)
        return f"[{self.id}{params}]"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """One syslog message; ``time`` is aware UTC (the header's, else when it was received)."""

    time: datetime
    message: str
    host: str | None = None
    app: str | None = None
    pid: int | None = None
    msgid: str | None = None
    facility: int | None = None
    severity: int | None = None
    structured_data: tuple[SDElement, ...] = ()

    def __str__(self) -> str:
        pri = f"<{self.facility}.{self.severity}> " if self.facility is not None else ""
        pid = f"[{self.pid}]" if self.pid is not None else ""
        return f"{pri}{self.time.isoformat()} {self.host or '-'} {self.app or '-'}{pid}: {self.message!r}"

    def to_event(self, source: str) -> Event:
        return Event(self.time, source, self.message, self.host, self.app, self.pid,
                     _fields(self.msgid, self.facility, self.severity))


@lru_cache(maxsize=1024)
def _fields(msgid: str | None, facility: int | None, severity: int | None) -> Mapping[str, str]:
    """An event's extra fields; few distinct ones, so one read-only mapping each is shared."""
    fields: dict[str, str] = {}
    if msgid is not None:
        fields["msgid"] = msgid
    if facility is not None:
        fields["facility"] = FACILITIES[facility]
    if severity is not None:
        fields["severity"] = SEVERITIES[severity]
    return MappingProxyType(fields)
