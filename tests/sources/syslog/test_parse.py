"""parse_message and parse_file_line: RFC examples, real rsyslog output, RFC 3164 variants, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from journalban.sources.syslog import Malformed, SDElement, SyslogMessage, parse_file_line, parse_message

RECEIVED = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
BOM = b"\xef\xbb\xbf"


def ok(data: bytes, **kw: object) -> SyslogMessage:
    result = parse_message(data, RECEIVED, **kw)  # type: ignore[arg-type]
    assert isinstance(result, SyslogMessage), result
    return result


# --- RFC 5424 section 6.5, examples 1-4 ---------------------------------------------------


def test_rfc5424_example_1_with_bom() -> None:
    m = ok(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - " + BOM
           + b"'su root' failed for lonvick on /dev/pts/8")  # fmt: skip
    assert m == SyslogMessage(
        time=datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC),
        message="'su root' failed for lonvick on /dev/pts/8",
        host="mymachine.example.com",
        app="su",
        pid=None,
        msgid="ID47",
        facility=4,
        severity=2,
    )
    event = m.to_event("syslog:udp://127.0.0.1:514")
    assert event.fields == {"msgid": "ID47", "facility": "auth", "severity": "crit"}
    assert (event.app, event.host, event.pid, event.time) == ("su", "mymachine.example.com", None, m.time)
    assert event.source == "syslog:udp://127.0.0.1:514"


def test_rfc5424_example_2_offset_and_procid() -> None:
    m = ok(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.")
    assert m.time == datetime(2003, 8, 24, 12, 14, 15, 3, tzinfo=UTC)
    assert (m.host, m.app, m.pid, m.msgid) == ("192.0.2.1", "myproc", 8710, None)
    assert (m.facility, m.severity) == (20, 5)
    assert m.message == "%% It's time to make the do-nuts."
    assert m.to_event("s").fields == {"facility": "local4", "severity": "notice"}


def test_rfc5424_example_3_structured_data_and_msg() -> None:
    m = ok(b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
           b'eventSource="Application" eventID="1011"] ' + BOM + b"An application event log entry...")  # fmt: skip
    assert m.structured_data == (
        SDElement("exampleSDID@32473", (("iut", "3"), ("eventSource", "Application"), ("eventID", "1011"))),
    )
    assert m.message == "An application event log entry..."
    assert m.structured_data[0].get("eventID") == "1011"


def test_rfc5424_example_4_two_elements_no_msg() -> None:
    m = ok(b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
           b'eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]')  # fmt: skip
    assert [e.id for e in m.structured_data] == ["exampleSDID@32473", "examplePriority@32473"]
    assert m.message == ""


def test_structured_data_escapes() -> None:
    m = ok(rb'<13>1 - - - - - [x@1 a="q\"uote" b="back\\slash" c="br\]acket" d="other\n" e="raw]ok"] msg')
    assert m.structured_data[0].params == (
        ("a", 'q"uote'), ("b", "back\\slash"), ("c", "br]acket"), ("d", "other\\n"), ("e", "raw]ok"),
    )  # fmt: skip
    assert str(m.structured_data[0]) == r'[x@1 a="q\"uote" b="back\\slash" c="br\]acket" d="other\\n" e="raw\]ok"]'


def test_all_nil_values_take_received_time() -> None:
    m = ok(b"<0>1 - - - - - -")
    assert m == SyslogMessage(time=RECEIVED, message="", facility=0, severity=0)
    assert m.to_event("s").fields == {"facility": "kern", "severity": "emerg"}


def test_timestamp_precision_and_leap_second() -> None:
    assert ok(b"<13>1 2026-01-02T03:04:05.123456789+01:30 h a - - - x").time == datetime(
        2026, 1, 2, 1, 34, 5, 123456, tzinfo=UTC
    )
    assert ok(b"<13>1 2016-12-31T23:59:60Z h a - - - x").time.second == 59


# --- real rsyslog output (captured from rsyslogd 8.2302, RSYSLOG_SyslogProtocol23Format) -------

RSYSLOG_LINES = [
    b"<13>1 2026-11-25T18:54:50.431840+00:00 vm sshd - - -  Failed password for root from 203.0.113.9 port 22 ssh2\n",
    b"<38>1 2026-11-25T18:54:50.441211+01:00 vm sshd 22118 - -  Invalid user admin from 198.51.100.4 port 51234\n",
]


def test_rsyslog_protocol23_output() -> None:
    first, second = (ok(line) for line in RSYSLOG_LINES)
    assert (first.app, first.host, first.pid) == ("sshd", "vm", None)
    assert first.message == "Failed password for root from 203.0.113.9 port 22 ssh2"  # one space and LF dropped
    assert first.time == datetime(2026, 11, 25, 18, 54, 50, 431840, tzinfo=UTC)
    assert (second.pid, second.facility, second.severity) == (22118, 4, 6)
    assert second.time == datetime(2026, 11, 25, 17, 54, 50, 441211, tzinfo=UTC)


# --- RFC 3164 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "host", "app", "pid", "message"),
    [
        (b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed", "mymachine", "su", None, "'su root' failed"),
        (b"<38>Nov  5 01:02:03 web sshd[811]: Failed password", "web", "sshd", 811, "Failed password"),
        (b"<38>Nov 5 01:02:03 sshd[811]: no host here", None, "sshd", 811, "no host here"),
        (b"<38>Nov  5 01:02:03 sshd: no host, no pid", None, "sshd", None, "no host, no pid"),
        (b"<38>Nov  5 01:02:03 web just text", "web", None, None, "just text"),
        (b"<38>Nov  5 01:02:03 ::1 app[x1]: v6 host", "::1", "app", None, "v6 host"),
        (b"<38>2026-11-05T01:02:03.5+00:00 web sshd[9]: iso stamp", "web", "sshd", 9, "iso stamp"),
    ],
)
def test_rfc3164_variants(data: bytes, host: str | None, app: str | None, pid: int | None, message: str) -> None:
    m = ok(data, zone=UTC)
    assert (m.host, m.app, m.pid, m.message) == (host, app, pid, message)
    assert (m.facility, m.severity) == divmod(int(data[1 : data.index(b">")]), 8)


def test_rfc3164_year_inference_and_zone() -> None:
    assert ok(b"<13>Nov 26 09:00:00 h a: x", zone=UTC).time == datetime(2026, 11, 26, 9, tzinfo=UTC)
    assert ok(b"<13>Nov 27 09:00:00 h a: x", zone=UTC).time.year == 2025  # more than a day ahead
    plus2 = timezone(timedelta(hours=2))
    assert ok(b"<13>Nov 25 12:00:00 h a: x", zone=plus2).time == datetime(2026, 11, 25, 10, tzinfo=UTC)


def test_rfc3164_without_stamp_keeps_the_text() -> None:
    m = ok(b"<13>hello world")
    assert (m.time, m.host, m.app, m.message) == (RECEIVED, None, None, "hello world")
    assert ok(b"<13>sshd[4]: no stamp").app == "sshd"


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\n", "empty"),
        (b"no pri", "pri"),
        (b"<192>1 - - - - - -", "pri"),
        (b"<013>x", "pri"),
        (b"<1234>x", "pri"),
        (b"<13 x", "pri"),
        (b"<13>2 - - - - - - x", "version"),
        (b"<13>1 2026-13-01T00:00:00Z h a - - - x", "timestamp"),
        (b"<13>1 2026-01-01 00:00:00Z h a - - - x", "timestamp"),
        (b"<13>1 2026-01-01T00:00:00 h a - - - x", "timestamp"),
        (b"<13>1 2026-01-01T00:00:00+24:00 h a - - - x", "timestamp"),
        (b"<13>1 0001-01-01T00:00:00+01:00 h a - - - x", "timestamp"),
        (b"<13>1 - " + b"h" * 256 + b" a - - - x", "hostname"),
        (b"<13>1 - h " + b"a" * 49 + b" - - - x", "app-name"),
        (b"<13>1 - h \xc3\xa9 - - - x", "app-name"),
        (b"<13>1 - h a " + b"1" * 129 + b" - - x", "procid"),
        (b"<13>1 - h a - " + b"m" * 33 + b" - x", "msgid"),
        (b"<13>1 - h a - -", "msgid"),
        (b"<13>1 - h a - - x", "structured-data"),
        (b'<13>1 - h a - - [id a="1"', "structured-data"),
        (b"<13>1 - h a - - [id a=1] x", "structured-data"),
        (b'<13>1 - h a - - [id a="1"]x', "structured-data"),
        (b"<13>1 - h a - - []", "structured-data"),
        (b'<13>1 - h a - - [id a="\xff"]', "encoding"),
        (b"<13>1 - h a - - - " + BOM + b"\xff\xfe", "encoding"),
        (b"<13>" + b"x" * 70000, "too-long"),
    ],
)
def test_malformed_by_reason(data: bytes, reason: str) -> None:
    result = parse_message(data, RECEIVED)
    assert isinstance(result, Malformed), result
    assert result.reason == reason


def test_without_bom_bad_utf8_is_replaced() -> None:
    assert ok(b"<13>1 - h a - - - caf\xe9").message == "caf\ufffd"


def test_max_size_is_the_callers() -> None:
    assert parse_message(b"<13>" + b"x" * 20, RECEIVED, max_size=10) == Malformed.of("too-long", b"<13>" + b"x" * 20)


# --- /var/log/auth.log lines -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "time", "app", "pid", "message"),
    [
        ("Nov 25 09:11:12 web sshd[811]: Failed password for root", datetime(2026, 11, 25, 9, 11, 12), "sshd", 811,
         "Failed password for root"),
        ("Nov  5 09:11:12 web sshd[811]: padded\n", datetime(2026, 11, 5, 9, 11, 12), "sshd", 811, "padded"),
        ("Nov 5 09:11:12 web CRON: unpadded", datetime(2026, 11, 5, 9, 11, 12), "CRON", None, "unpadded"),
        ("Dec 31 23:59:59 web su: last year", datetime(2025, 12, 31, 23, 59, 59), "su", None, "last year"),
        ("2026-11-25T10:11:12.123456+00:00 web sshd[7]: precise", datetime(2026, 11, 25, 10, 11, 12, 123456), "sshd",
         7, "precise"),
        ("2026-11-25T11:11:12.123456+01:00 web kernel: [  1.0] x", datetime(2026, 11, 25, 10, 11, 12, 123456),
         "kernel", None, "[  1.0] x"),
        ("Nov 25 09:11:12 web -- MARK --", datetime(2026, 11, 25, 9, 11, 12), None, None, "-- MARK --"),
    ],
)  # fmt: skip
def test_file_lines(line: str, time: datetime, app: str | None, pid: int | None, message: str) -> None:
    m = parse_file_line(line, RECEIVED, zone=UTC)
    assert m is not None
    assert (m.time, m.host, m.app, m.pid, m.message) == (time.replace(tzinfo=UTC), "web", app, pid, message)
    assert m.facility is None and m.to_event("file:/var/log/auth.log").fields == {}


def test_file_line_year_inference_near_new_year() -> None:
    reference = datetime(2027, 1, 1, 0, 30, tzinfo=UTC)
    assert parse_file_line("Dec 31 23:59:00 h a: x", reference, zone=UTC).time.year == 2026  # type: ignore[union-attr]
    assert parse_file_line("Jan  1 23:00:00 h a: x", reference, zone=UTC).time.year == 2027  # type: ignore[union-attr]
    leap = parse_file_line("Feb 29 12:00:00 h a: x", reference, zone=UTC)
    assert leap is not None and leap.time.year == 2024


def test_file_line_default_zone_is_host_local() -> None:
    m = parse_file_line("Nov 25 09:11:12 web a: x", RECEIVED)
    assert m is not None
    assert m.time == datetime(2026, 11, 25, 9, 11, 12).astimezone().astimezone(UTC)


@pytest.mark.parametrize("line", ["", "garbage", "Nov 25 09:11:12", "Foo 25 09:11:12 h a: x", "Nov 32 09:11:12 h a: x"])
def test_file_line_refused(line: str) -> None:
    assert parse_file_line(line, RECEIVED) is None


def test_str_is_readable() -> None:
    m = ok(RSYSLOG_LINES[0])
    expected = (
        "<1.5> 2026-11-25T18:54:50.431840+00:00 vm sshd: 'Failed password for root from 203.0.113.9 port 22 ssh2'"
    )
    assert str(m) == expected
    assert str(Malformed.of("pri", b"x\xff")) == "malformed pri: x\\xff"
