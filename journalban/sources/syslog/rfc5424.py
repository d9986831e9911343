"""RFC 5424 header fields, one small function each (CrowdSec's shape).

Each field function takes the frame and a position and returns the value and
the position after it, or raises ``FieldError`` naming the field, which
``parse_message`` turns into ``Malformed(reason)``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from journalban.sources.syslog.message import SDElement, SyslogMessage

__all__ = ["FieldError", "is_rfc5424", "parse_5424", "parse_common_5424", "parse_fields", "parse_pri"]

BOM = b"\xef\xbb\xbf"
_SP = 0x20
_NIL = b"-"
_PRI = re.compile(rb"<(0|[1-9][0-9]{0,2})>")
_VERSION = re.compile(rb"([0-9]{1,3}) ")
_STAMP = re.compile(
    rb"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    rb"(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_SD_NAME = re.compile(rb"[!#-<>-\\^-~]{1,32}")  # PRINTUSASCII except '=', ' ', ']', '"'
_TRAILER = "\r\n\x00"


class FieldError(ValueError):
    """A header field that does not follow the grammar; ``reason`` labels it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_pri(data: bytes, pos: int = 0) -> tuple[int, int]:
    """``<PRI>``, 0..191, no leading zeros."""
    found = _PRI.match(data, pos)
    if found is None or int(found[1]) > 191:
        raise FieldError("pri")
    return int(found[1]), found.end()


def is_rfc5424(data: bytes, pos: int) -> bool:
    """A version number and a space right after PRI mark RFC 5424 (RFC 3164 has a stamp there)."""
    return _VERSION.match(data, pos) is not None


def parse_version(data: bytes, pos: int) -> int:
    found = _VERSION.match(data, pos)
    if found is None or found[1] != b"1":
        raise FieldError("version")
    return found.end()


def parse_timestamp(data: bytes, pos: int) -> tuple[datetime | None, int]:
    """FULL-DATE ``T`` FULL-TIME with offset or ``Z``, or NILVALUE; leap second 60 becomes 59."""
    if data.startswith(b"- ", pos):
        return None, pos + 2
    found = _STAMP.match(data, pos)
    if found is None or not data.startswith(b" ", found.end()):
        raise FieldError("timestamp")
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    micro = int((found[7] or b"0").ljust(6, b"0")[:6])
    zone = UTC
    if found[8] != b"Z":
        off_h, off_m = int(found[8][1:3]), int(found[8][4:6])
        if off_h > 23 or off_m > 59:
            raise FieldError("timestamp")
        offset = timedelta(hours=off_h, minutes=off_m)
        zone = timezone(-offset if found[8][:1] == b"-" else offset)
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=zone)
        return moment.astimezone(UTC), found.end() + 1
    except (ValueError, OverflowError):
        raise FieldError("timestamp") from None


def _token(data: bytes, pos: int, limit: int, reason: str) -> tuple[str | None, int]:
    """A NILVALUE or 1..limit printable US-ASCII characters, then a space."""
    end = data.find(b" ", pos)
    if end <= pos or end - pos > limit:
        raise FieldError(reason)
    raw = data[pos:end]
    if any(byte < 33 or byte > 126 for byte in raw):
        raise FieldError(reason)
    return (None if raw == _NIL else raw.decode("ascii")), end + 1


def parse_hostname(data: bytes, pos: int) -> tuple[str | None, int]:
    return _token(data, pos, 255, "hostname")


def parse_app_name(data: bytes, pos: int) -> tuple[str | None, int]:
    return _token(data, pos, 48, "app-name")


def parse_procid(data: bytes, pos: int) -> tuple[str | None, int]:
    return _token(data, pos, 128, "procid")


def parse_msgid(data: bytes, pos: int) -> tuple[str | None, int]:
    return _token(data, pos, 32, "msgid")


def _sd_name(data: bytes, pos: int) -> tuple[str, int]:
    found = _SD_NAME.match(data, pos)
    if found is None:
        raise FieldError("structured-data")
    return found[0].decode("ascii"), found.end()


def _param_value(data: bytes, pos: int) -> tuple[str, int]:
    """A quoted PARAM-VALUE; ``\\"``, ``\\\\`` and ``\\]`` unescape, other backslashes stay."""
    if not data.startswith(b'"', pos):
        raise FieldError("structured-data")
    out = bytearray()
    i = pos + 1
    while i < len(data):
        byte = data[i]
        if byte == 0x22:  # closing quote
            try:
                return out.decode("utf-8"), i + 1
            except UnicodeDecodeError:
                raise FieldError("encoding") from None
        if byte == 0x5C and i + 1 < len(data) and data[i + 1] in b'"\\]':
            out.append(data[i + 1])
            i += 2
            continue
        out.append(byte)
        i += 1
    raise FieldError("structured-data")


def _sd_element(data: bytes, pos: int) -> tuple[SDElement, int]:
    sd_id, pos = _sd_name(data, pos + 1)  # past '['
    params: list[tuple[str, str]] = []
    while data.startswith(b" ", pos):
        name, pos = _sd_name(data, pos + 1)
        if not data.startswith(b"=", pos):
            raise FieldError("structured-data")
        value, pos = _param_value(data, pos + 1)
        params.append((name, value))
    if not data.startswith(b"]", pos):
        raise FieldError("structured-data")
    return SDElement(sd_id, tuple(params)), pos + 1


def parse_structured_data(data: bytes, pos: int) -> tuple[tuple[SDElement, ...], int]:
    """NILVALUE or one or more SD-ELEMENTs, followed by the end of the frame or a space."""
    elements: list[SDElement] = []
    if data.startswith(b"-", pos):
        pos += 1
    else:
        while data.startswith(b"[", pos):
            element, pos = _sd_element(data, pos)
            elements.append(element)
        if not elements:
            raise FieldError("structured-data")
    if pos < len(data) and data[pos] != _SP:
        raise FieldError("structured-data")
    return tuple(elements), pos + 1


def parse_msg(data: bytes, pos: int) -> str:
    """The rest of the frame; with a BOM it must be UTF-8, without one bad bytes are replaced.

    One leading space is dropped: rsyslog's ``RSYSLOG_SyslogProtocol23Format`` writes
    ``%msg%``, which keeps the space that followed the RFC 3164 tag.
    """
    raw = data[pos:]
    if raw.startswith(BOM):
        try:
            text = raw[len(BOM) :].decode("utf-8")
        except UnicodeDecodeError:
            raise FieldError("encoding") from None
    else:
        text = raw.decode("utf-8", errors="replace")
    return text.removeprefix(" ").rstrip(_TRAILER)


def _pid(procid: str | None) -> int | None:
    return int(procid) if procid is not None and procid.isdigit() and procid.isascii() else None


# The whole header in one C-level match: PRI, version 1, stamp or NILVALUE, then
# HOSTNAME, APP-NAME, PROCID and MSGID as 1..limit printable US-ASCII characters (a
# NILVALUE is one of them). A frame it does not fit goes field by field instead,
# which names the field that is wrong.
_HEADER = re.compile(
    rb"<(0|[1-9][0-9]{0,2})>1 "
    rb"(?:-|([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2}))) "
    rb"([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) "
    rb"(?:(-)(?: |\Z)|(?=\[))"  # NILVALUE structured data, or the first element
)


def _stamp(stamp: bytes) -> datetime | None:
    """UTC time of a stamp ``_HEADER`` matched, by the C ISO parser (which cuts the fraction
    at microseconds, as ``parse_timestamp`` does); None where ``parse_timestamp`` might
    judge otherwise (a leap second, an offset it refuses), so the slow path decides."""
    if stamp[-1:] != b"Z" and (stamp[-5:-3] > b"23" or stamp[-2:] > b"59"):
        return None
    try:
        moment = datetime.fromisoformat(stamp.decode("ascii"))
        return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _nil(raw: bytes) -> str | None:
    return None if raw == _NIL else raw.decode("ascii")


def parse_common_5424(data: bytes, received: datetime) -> SyslogMessage | None:
    """The common frame in one regex match (``_HEADER``), or None for anything else, which
    the field-by-field parser then reads or refuses, naming the field."""
    found = _HEADER.match(data)
    if found is None:
        return None
    pri, stamp, host, app, procid, msgid, nil_sd = found.groups()
    facility, severity = divmod(int(pri), 8)
    if facility > 23:
        return None
    pos = found.end()
    sd: tuple[SDElement, ...] = ()
    if nil_sd is None:  # structured data elements
        try:
            sd, pos = parse_structured_data(data, pos)
        except FieldError:
            return None
    moment = received if stamp is None else _stamp(stamp)
    if moment is None:
        return None
    if data.startswith(BOM, pos):
        try:
            message = parse_msg(data, pos)
        except FieldError:
            return None
    else:
        message = data[pos:].decode("utf-8", errors="replace").removeprefix(" ").rstrip(_TRAILER)
    return SyslogMessage(
        moment,
        message,
        None if host == _NIL else host.decode("ascii"),
        None if app == _NIL else app.decode("ascii"),
        int(procid) if procid.isdigit() else None,
        None if msgid == _NIL else msgid.decode("ascii"),
        facility,
        severity,
        sd,
    )


def parse_5424(data: bytes, received: datetime) -> SyslogMessage:
    """A whole RFC 5424 frame; raises ``FieldError`` at the first field that is wrong."""
    return parse_common_5424(data, received) or parse_fields(data, received)


def parse_fields(data: bytes, received: datetime) -> SyslogMessage:
    """``parse_5424`` one field at a time: slower, and it names the field that is wrong."""
    pri, pos = parse_pri(data)
    pos = parse_version(data, pos)
    stamp, pos = parse_timestamp(data, pos)
    host, pos = parse_hostname(data, pos)
    app, pos = parse_app_name(data, pos)
    procid, pos = parse_procid(data, pos)
    msgid, pos = parse_msgid(data, pos)
    sd, pos = parse_structured_data(data, pos)
    return SyslogMessage(
        time=stamp or received,
        message=parse_msg(data, pos),
        host=host,
        app=app,
        pid=_pid(procid),
        msgid=msgid,
        facility=pri >> 3,
        severity=pri & 7,
        structured_data=sd,
    )
