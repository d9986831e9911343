"""No input makes parsing or framing raise: a hypothesis property plus a seeded mutation loop."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from journalban.sources.syslog import Malformed, StreamDecoder, SyslogMessage, parse_file_line, parse_message
from journalban.sources.syslog.message import FACILITIES, SEVERITIES

RECEIVED = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
SEEDS = [
    b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed",
    b'<165>1 2003-10-11T22:14:15.003Z h evntslog - ID47 [exampleSDID@32473 iut="3" eventID="1011"][p@1 c="h\\]"] m',
    b"<13>1 2026-11-25T18:54:50.431840+00:00 vm sshd - - -  Failed password for root from 203.0.113.9 port 22\n",
    b"<38>Nov  5 01:02:03 web sshd[811]: Failed password",
    b"<38>2026-11-05T01:02:03.5+00:00 web sshd[9]: iso stamp",
    b"11 <13>1 - - x<13>lf frame\n5 <1>ab",
]
TOKENS = [
    b"<", b">", b"[", b"]", b'"', b"\\", b" ", b"\n", b"-", b"=", b"1 ", b"99999999999 ", b"\xef\xbb\xbf", b"\xff",
]  # fmt: skip


def check(data: bytes) -> None:
    result = parse_message(data, RECEIVED)
    assert isinstance(result, SyslogMessage | Malformed)
    if isinstance(result, SyslogMessage):
        assert result.time.tzinfo is not None and result.time.utcoffset() == UTC.utcoffset(None)
        event = result.to_event("fuzz")
        assert event.fields.get("facility", "kern") in FACILITIES
        assert event.fields.get("severity", "emerg") in SEVERITIES
    parse_file_line(data.decode("utf-8", errors="replace"), RECEIVED)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        where = rng.randint(0, len(buf))
        op = rng.randrange(4)
        if op == 0 and buf:
            del buf[where : where + rng.randint(1, 8)]
        elif op == 1:
            buf[where:where] = rng.choice(TOKENS)
        elif op == 2 and buf:
            buf[min(where, len(buf) - 1)] = rng.randrange(256)
        else:
            buf[where:where] = rng.randbytes(rng.randint(1, 6))
    return bytes(buf)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parse_never_raises_on_any_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SEEDS + TOKENS) | st.binary(max_size=20), max_size=20), st.integers(1, 50))
def test_framing_never_raises_and_stays_bounded(parts: list[bytes], chunk: int) -> None:
    decoder = StreamDecoder(max_message=64)
    data = b"".join(parts)
    for i in range(0, len(data), chunk):
        for frame in decoder.feed(data[i : i + chunk]):
            assert isinstance(frame, bytes | Malformed)
            if isinstance(frame, bytes):
                assert len(frame) <= 64
                check(frame)
        assert decoder.buffered <= 64
    decoder.finish(eof=True)


def test_fuzz_loop_100k_frames() -> None:
    rng = random.Random(5424)
    started = time.monotonic()
    decoder = StreamDecoder(max_message=512)
    for i in range(100_000):
        data = rng.randbytes(rng.randint(0, 80)) if i % 4 == 0 else mutate(rng, rng.choice(SEEDS))
        check(data)
        for frame in decoder.feed(data):
            if isinstance(frame, bytes):
                check(frame)
        assert decoder.buffered <= 512
    assert time.monotonic() - started < 30  # bounded: a few seconds on a laptop
