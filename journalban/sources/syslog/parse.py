"""Turn one syslog frame into a ``SyslogMessage`` or a ``Malformed`` label. Pure: no I/O, no clock.

RFC 5424 is recognised by the version number after PRI; anything else with a
valid PRI is read as RFC 3164, which accepts any text (RFC 3164 4.3.3).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from journalban.sources.syslog.message import DEFAULT_MAX_MESSAGE, Malformed, SyslogMessage
from journalban.sources.syslog.rfc3164 import parse_3164
from journalban.sources.syslog.rfc5424 import FieldError, is_rfc5424, parse_5424, parse_common_5424, parse_pri

__all__ = ["DEFAULT_MAX_MESSAGE", "parse_message"]

_TRAILER = b"\r\n\x00"


def parse_message(
    data: bytes,
    received: datetime,
    *,
    max_size: int = DEFAULT_MAX_MESSAGE,
    zone: tzinfo | None = None,
) -> SyslogMessage | Malformed:
    """Parse one frame; ``received`` (aware) stands in for a missing stamp and anchors RFC 3164 years.

    ``zone`` is the zone of RFC 3164 stamps, which carry none (host local time when None).
    """
    if len(data) > max_size:
        return Malformed.of("too-long", data)
    data = bytes(data).rstrip(_TRAILER)
    if not data:
        return Malformed("empty")
    common = parse_common_5424(data, received)  # one regex for the usual frame
    if common is not None:
        return common
    try:
        pri, pos = parse_pri(data)
        if is_rfc5424(data, pos):
            return parse_5424(data, received)
        return parse_3164(data[pos:].decode("utf-8", errors="replace"), received, pri >> 3, pri & 7, zone)
    except FieldError as error:
        return Malformed.of(error.reason, data)
