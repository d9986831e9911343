"""The syslog fast paths give what the careful paths give: the one-regex RFC 5424 parser
against the field-by-field one, whole-frame slicing against the byte state machine; and
the UDP reader takes a burst in a few batches, and ``keep`` drops what no grammar uses."""

from __future__ import annotations

import asyncio
import functools
import random
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journalban.grammar import Grammar, load_grammar
from journalban.match import prefilter_bytes, prefilter_marks, syslog_keep
from journalban.sources.syslog import Malformed, StreamDecoder, SyslogListener
from journalban.sources.syslog.rfc5424 import FieldError, parse_common_5424, parse_fields
from tests.sources.syslog.conftest import Recorder, wait_for

RECEIVED = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]
FAILED = b"Failed password for root from 203.0.113.9 port 22 ssh2"

STAMPS = [b"-", b"2003-10-11T22:14:15.003Z", b"2026-11-25T18:54:50.431840+00:00", b"1985-04-12T23:20:50.52-04:00",
          b"2016-12-31T23:59:60Z", b"2026-02-30T10:00:00Z", b"2026-11-25T10:00:00+24:00", b"2026-11-25T10:00:00+05:99",
          b"0001-01-01T00:00:00+01:00", b"9999-12-31T23:59:59-01:00", b"2026-11-25T10:00:00.1234567890Z",
          b"2026-11-25T24:00:00Z", b"2026-11-25 10:00:00Z", b"2026-11-25T10:00:00"]
TOKENS = [b"-", b"web", b"sshd", b"811", b"ID47", b"a" * 48, b"a" * 49, b"9" * 128, b"x" * 256, b"\xff", b"tab\there",
          b"", b"0123"]
SDS = [b"-", b"[id@1 a=\"1\"]", b"[a b=\"\\]\\\"\"][c]", b"[bad", b"-x", b"[x=\"\xff\"]", b""]
MESSAGES = [b"", b" " + FAILED, FAILED, b"\xef\xbb\xbfutf8 \xc3\xa9", b"\xef\xbb\xbf\xff bad", b"\xffraw",
            b" two  spaces"]


@st.composite
def rfc5424_frames(draw: st.DrawFn) -> bytes:
    pri = draw(st.sampled_from([b"0", b"13", b"191", b"192", b"999", b"013", b"x"]))
    version = draw(st.sampled_from([b"1", b"2", b"11"]))
    parts = [b"<" + pri + b">" + version, draw(st.sampled_from(STAMPS))]
    parts += [draw(st.sampled_from(TOKENS)) for _ in range(4)]
    parts.append(draw(st.sampled_from(SDS)))
    frame = b" ".join(parts)
    message = draw(st.sampled_from(MESSAGES))
    if message or draw(st.booleans()):
        frame += b" " + message
    return frame


@settings(max_examples=2000, deadline=None)
@given(rfc5424_frames())
def test_the_one_regex_parser_agrees_with_the_field_parser(frame: bytes) -> None:
    fast = parse_common_5424(frame, RECEIVED)
    try:
        careful = parse_fields(frame, RECEIVED)
    except FieldError:
        assert fast is None  # the fast path never accepts what the grammar refuses
        return
    assert fast is None or fast == careful


def test_the_one_regex_parser_takes_the_common_frames() -> None:
    for frame in [b"<38>1 2026-11-25T10:11:12.5+01:00 web sshd 811 - - " + FAILED,
                  b"<13>1 - - - - - -", b'<165>1 2003-10-11T22:14:15.003Z h app - ID47 [a@1 b="c"] m']:
        fast = parse_common_5424(frame, RECEIVED)
        assert fast is not None and fast == parse_fields(frame, RECEIVED)


FRAME_PIECES = [b"5 hello", b"<13>Nov 25 10:00:00 web a: lf\n", b"\n", b"\r\n", b"\x00", b"0 x\n", b"12345678901 x\n",
                b"3 ab", b"70 " + b"y" * 70, b"71 " + b"z" * 71, b"q" * 80 + b"\n", b"2x\n", b"007 abcdefg"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(FRAME_PIECES) | st.binary(max_size=12), max_size=25), st.integers(1, 40))
def test_whole_frame_slicing_gives_the_state_machines_frames(pieces: list[bytes], chunk: int) -> None:
    stream = b"".join(pieces)
    whole, bytewise, chunked = StreamDecoder(70), StreamDecoder(70), StreamDecoder(70)
    expected = [f for at in range(len(stream)) for f in bytewise.feed(stream[at:at + 1])]
    expected += bytewise.finish(eof=True)
    got = whole.feed(stream) + whole.finish(eof=True)
    cut = [f for at in range(0, len(stream), chunk) for f in chunked.feed(stream[at:at + chunk])]
    cut += chunked.finish(eof=True)
    assert shape(got) == shape(expected) and shape(cut) == shape(expected)


def shape(frames: list[bytes | Malformed]) -> list[object]:
    """Frames, and refusals by reason (their excerpt shows what the last read held)."""
    return [f.reason if isinstance(f, Malformed) else f for f in frames]


async def counted(url: str, sink: Recorder, send: Callable[[str, int], Awaitable[None]], frames: int,
                  **options: Any) -> dict[str, Any]:
    """A listener on ``url`` (port 0) with ``options``, written to by ``send(host, port)``:
    its counters once it has received ``frames`` frames."""
    listener = SyslogListener([url], sink, **options)
    await listener.start()
    try:
        host, port = listener.addresses[url].split("://", 1)[1].rsplit(":", 1)
        await send(host, int(port))
        await wait_for(lambda: listener.counters["received"] == frames)
    finally:
        await listener.stop()
    return listener.counters


def test_a_udp_burst_is_read_in_a_few_batches_without_loss() -> None:
    async def body() -> tuple[int, int, dict[str, object]]:
        sink = Recorder()
        listener = SyslogListener(["udp://127.0.0.1:0"], sink)
        await listener.start()
        try:
            host, port = listener.addresses["udp://127.0.0.1:0"].removeprefix("udp://").rsplit(":", 1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                for n in range(3000):  # all sent before the loop runs the reader once
                    client.sendto(b"<38>1 - web sshd %d - - message %d" % (n, n), (host, int(port)))
            await wait_for(lambda: listener.counters["received"] == 3000)
        finally:
            await listener.stop()
        return len(sink.batches), len(sink.events), listener.counters

    batches, events, counters = asyncio.run(asyncio.wait_for(body(), 20))
    assert events == 3000 and counters["parsed"] == 3000
    assert batches <= 4  # 2,048 datagrams per readiness event at most, then the rest


def test_udp_buffer_asked_for_is_granted_to_root() -> None:
    async def body() -> int:
        listener = SyslogListener(["udp://127.0.0.1:0"], Recorder())
        await listener.start()
        try:
            return listener._datagrams[0].sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        finally:
            await listener.stop()

    assert asyncio.run(body()) >= 8 << 20  # beyond the 212,992-byte default rmem_max


def test_keep_drops_what_no_grammar_can_use_and_counts_it() -> None:
    grammar = load_grammar(ROOT / "grammars" / "sshd.grammar")

    async def body() -> tuple[Recorder, dict[str, object]]:
        sink = Recorder()
        listener = SyslogListener(["tcp://127.0.0.1:0"], sink, keep=syslog_keep([grammar]))
        await listener.start()
        try:
            host, port = listener.addresses["tcp://127.0.0.1:0"].removeprefix("tcp://").rsplit(":", 1)
            _, writer = await asyncio.open_connection(host, int(port))
            for line in [b"<38>1 - web sshd 1 - - " + FAILED, b"<38>1 - web cron 2 - - " + FAILED,
                         b"<38>1 - web sshd 3 - - Accepted password for deploy from 10.0.0.5 port 22 ssh2",
                         b"<38>1 - web sshd 4 - - Received disconnect from 10.0.0.5 port 51514:11: bye",
                         b"<999>1 - web sshd 5 - - " + FAILED]:
                writer.write(line + b"\n")
            await writer.drain()
            await wait_for(lambda: listener.counters["received"] == 5)
            writer.close()
        finally:
            await listener.stop()
        return sink, listener.counters

    sink, counters = asyncio.run(asyncio.wait_for(body(), 20))
    assert sink.messages == [FAILED.decode()]
    assert counters["parsed"] == 4 and counters["ruled_out"] == 3 and counters["malformed"] == {"pri": 1}


def test_fuzzed_frames_never_make_the_fast_parser_disagree() -> None:
    generator = random.Random(7)
    seeds = [b"<38>1 2026-11-25T10:11:12.5+01:00 web sshd 811 - - " + FAILED,
             b'<165>1 2003-10-11T22:14:15.003Z h app - ID47 [a@1 b="c"][d] m', b"<13>1 - - - - - -"]
    checked = 0
    for _ in range(20_000):
        frame = bytearray(generator.choice(seeds))
        for _ in range(generator.randint(1, 3)):
            at = generator.randrange(len(frame))
            frame[at:at + generator.randint(0, 2)] = bytes([generator.randrange(256)]) * generator.randint(0, 2)
        fast = parse_common_5424(bytes(frame), RECEIVED)
        if fast is not None:
            assert fast == parse_fields(bytes(frame), RECEIVED)
            checked += 1
    assert checked > 1000


def test_frames_without_a_rules_literals_are_ruled_out_before_parsing_with_the_same_events() -> None:
    """``keep_raw`` (the grammars' byte prefilter) drops what ``keep`` would drop after a
    parse; the events that reach the sink are the same, only the cost differs."""
    grammar = load_grammar(ROOT / "grammars" / "sshd.grammar")
    lines = [b"<38>1 - web sshd 1 - - " + FAILED, b"<38>1 - web cron 2 - - " + FAILED,
             b"<38>1 - web sshd 3 - - Accepted password for deploy from 10.0.0.5 port 22 ssh2",
             b"<38>1 - web sshd 4 - - Received disconnect from 10.0.0.5 port 51514:11: bye",
             b"<999>1 - web sshd 5 - - pam_unix(sshd:session): session opened",  # malformed, no literal
             b"<999>1 - web sshd 6 - - " + FAILED,  # malformed, with the literals: parsed, counted
             b"<38>Oct 11 22:14:15 web sshd[7]: " + FAILED]

    async def send(host: str, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for line in lines:
                sender.sendto(line, (host, port))

    async def body(keep_raw: bool) -> tuple[Recorder, dict[str, Any]]:
        sink = Recorder()
        counters = await counted("udp://127.0.0.1:0", sink, send, len(lines), keep=syslog_keep([grammar]),
                                 keep_raw=prefilter_bytes([grammar]) if keep_raw else None)
        return sink, counters

    plain_sink, plain = asyncio.run(asyncio.wait_for(body(False), 20))
    fast_sink, fast = asyncio.run(asyncio.wait_for(body(True), 20))
    assert fast_sink.messages == plain_sink.messages == [FAILED.decode(), FAILED.decode()]
    assert plain["parsed"] == 5 and plain["ruled_out"] == 3 and plain["malformed"] == {"pri": 2}
    assert fast["parsed"] == 3 and fast["ruled_out"] == 4 and fast["malformed"] == {"pri": 1}


# Frames for the block prefilter: failures (keys inside), everyday lines (none), and
# pieces that end in part of a key, so that one runs across two frames.
MARKED_PIECES = [b"<38>1 - web sshd 1 - - " + FAILED, b"<38>1 - web sshd 2 - - Accepted password for deploy",
                 b"<38>1 - web sshd 3 - - Invalid user admin from 198.51.100.7 port 2222", b"x Fai", b"led y",
                 b"<38>1 - web sshd 4 - - Received disconnect: Too many authentication failures [preauth]",
                 b"\xff\xfeFailed", b"Failed", b"ed password"]


def marked_stream(pieces: list[tuple[int, bool]]) -> bytes:
    """Octet-counted and LF-framed frames of ``MARKED_PIECES``, back to back."""
    return b"".join(b"%d %s" % (len(MARKED_PIECES[i]), MARKED_PIECES[i]) if counted
                    else MARKED_PIECES[i].replace(b"\n", b"") + b"\n" for i, counted in pieces)


@functools.cache
def sshd_grammar() -> Grammar:
    return load_grammar(ROOT / "grammars" / "sshd.grammar")


@functools.cache
def sshd_prefilters() -> tuple[Callable[[bytes], bool] | None, Callable[[bytes], list[int]] | None]:
    return prefilter_bytes([sshd_grammar()]), prefilter_marks([sshd_grammar()])


def sshd_marks() -> Callable[[bytes], list[int]]:
    marks = sshd_prefilters()[1]
    if marks is None:
        pytest.skip("hyperscan is not available here: no block prefilter to test")
    return marks


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(MARKED_PIECES) - 1), st.booleans()), max_size=30),
       st.integers(1, 200))
def test_a_read_marked_by_the_block_prefilter_loses_no_frame_the_byte_prefilter_keeps(
        pieces: list[tuple[int, bool]], chunk: int) -> None:
    """Frames passed over for want of a mark are frames ``keep_raw`` refuses: the same
    frames are kept, and those passed over are counted, whatever the read boundaries."""
    keep_raw, marks = sshd_prefilters()[0], sshd_marks()
    assert keep_raw is not None
    stream = marked_stream(pieces)
    plain_decoder, marked_decoder = StreamDecoder(), StreamDecoder()
    plain: list[bytes | Malformed] = []
    marked: list[bytes | Malformed] = []
    passed_over = 0
    for at in range(0, len(stream), chunk):
        read = stream[at:at + chunk]
        plain += plain_decoder.feed(read)
        marked += marked_decoder.feed(read, marks(read))
        passed_over += marked_decoder.take_passed_over()
    plain += plain_decoder.finish(eof=True)
    marked += marked_decoder.finish(eof=True)

    def kept(frames: list[bytes | Malformed]) -> list[object]:
        return [f for f in shape(frames) if not isinstance(f, bytes) or keep_raw(f)]

    assert kept(marked) == kept(plain)
    assert len(marked) + passed_over == len(plain)


def test_marks_find_each_rule_key_even_where_keys_overlap() -> None:
    marks = sshd_marks()
    block = b"10 Failed xyz" + b"5 Faile" + b"4 dxxx" + b"x" * 20 + b"Invalid user"
    assert marks(block) == [block.index(b"Failed") + 6, len(block)]
    assert marks(b"Fai" + b"led" + b"FailedFailed") == [6, 12, 18]
    assert marks(b"nothing to see here\n" * 100) == []


def test_tcp_reads_ruled_out_by_marks_give_the_same_events_and_counts() -> None:
    """The listener with ``keep_block`` and without: the same failures reach the sink, and
    every frame is counted as received, and as parsed or ruled out, just the same."""
    grammar, marks = sshd_grammar(), sshd_marks()
    rng = random.Random(7)
    pieces = [(rng.randrange(len(MARKED_PIECES)), rng.random() < 0.7) for _ in range(3000)]
    stream = marked_stream(pieces)

    async def send(host: str, port: int) -> None:
        _, writer = await asyncio.open_connection(host, port)
        for at in range(0, len(stream), 997):  # reads that cut frames at odd places
            writer.write(stream[at:at + 997])
            await writer.drain()
        writer.close()

    async def body(keep_block: bool) -> tuple[Recorder, dict[str, Any]]:
        sink = Recorder()
        counters = await counted("tcp://127.0.0.1:0", sink, send, len(pieces), keep=syslog_keep([grammar]),
                                 keep_raw=prefilter_bytes([grammar]), keep_block=marks if keep_block else None)
        return sink, counters

    plain_sink, plain = asyncio.run(asyncio.wait_for(body(False), 30))
    fast_sink, fast = asyncio.run(asyncio.wait_for(body(True), 30))
    assert fast_sink.messages == plain_sink.messages and len(plain_sink.messages) > 300
    assert {k: fast[k] for k in ("received", "parsed", "ruled_out", "malformed")} == \
        {k: plain[k] for k in ("received", "parsed", "ruled_out", "malformed")}
