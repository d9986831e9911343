"""StreamDecoder: octet-counted and LF frames mixed, split reads, limits, resynchronisation."""

from __future__ import annotations

import tracemalloc

import pytest

from journalban.sources.syslog import Malformed, StreamDecoder
from journalban.sources.syslog.framing import Frame


def feed_bytewise(decoder: StreamDecoder, data: bytes) -> list[Frame]:
    return [frame for i in range(len(data)) for frame in decoder.feed(data[i : i + 1])]


STREAM = b"11 <13>1 - - x<13>lf frame\n\n\r\n5 <1>ab<2>second lf\n"
EXPECTED = [b"<13>1 - - x", b"<13>lf frame", b"<1>ab", b"<2>second lf"]


def test_mixed_framing_in_one_read() -> None:
    assert StreamDecoder().feed(STREAM) == EXPECTED


def test_mixed_framing_byte_by_byte() -> None:
    assert feed_bytewise(StreamDecoder(), STREAM) == EXPECTED


@pytest.mark.parametrize("split", range(1, len(STREAM)))
def test_any_split_point(split: int) -> None:
    decoder = StreamDecoder()
    assert decoder.feed(STREAM[:split]) + decoder.feed(STREAM[split:]) == EXPECTED


def test_octet_counted_body_may_hold_lf() -> None:
    assert StreamDecoder().feed(b"8 <1>a\nb\nc") == [b"<1>a\nb\nc"]


def test_oversized_octet_frame_is_dropped_and_skipped_without_buffering() -> None:
    decoder = StreamDecoder(max_message=10)
    out = decoder.feed(b"20 ")
    assert out == [Malformed("too-long", "octet count 20")]
    assert decoder.feed(b"x" * 15) == [] and decoder.buffered == 0
    assert decoder.feed(b"y" * 5 + b"3 <1>") == [b"<1>"]


def test_overlong_line_is_dropped_up_to_its_lf() -> None:
    decoder = StreamDecoder(max_message=10)
    out = decoder.feed(b"<1>" + b"x" * 20)
    assert len(out) == 1 and isinstance(out[0], Malformed) and out[0].reason == "too-long"
    assert decoder.feed(b"still the same line") == [] and decoder.buffered == 0
    assert decoder.feed(b"\n<1>next\n") == [b"<1>next"]


def test_line_of_exactly_max_is_kept() -> None:
    decoder = StreamDecoder(max_message=10)
    assert decoder.feed(b"<1>4567890\n") == [b"<1>4567890"]
    assert decoder.feed(b"10 <1>4567890") == [b"<1>4567890"]


@pytest.mark.parametrize("bad", [b"12x <1>a\n", b"0 <1>a\n", b"12345678901 <1>a\n", b"12\n"])
def test_bad_length_prefix_resynchronises_at_lf(bad: bytes) -> None:
    out = StreamDecoder().feed(bad + b"<1>after\n")
    assert [type(f) for f in out] == [Malformed, bytes]
    assert isinstance(out[0], Malformed) and out[0].reason == "framing"
    assert out[1] == b"<1>after"


def test_finish_at_eof_and_at_cut() -> None:
    decoder = StreamDecoder()
    decoder.feed(b"<1>unterminated")
    assert decoder.finish(eof=True) == [b"<1>unterminated"]
    decoder.feed(b"<1>unterminated")
    assert [f.reason for f in decoder.finish(eof=False) if isinstance(f, Malformed)] == ["truncated"]
    decoder.feed(b"10 <1>")
    assert [f.reason for f in decoder.finish(eof=True) if isinstance(f, Malformed)] == ["truncated"]
    assert decoder.finish(eof=True) == []


def test_100_mb_without_lf_stays_bounded() -> None:
    decoder = StreamDecoder()
    chunk = b"<" + b"A" * (1 << 20)
    tracemalloc.start()
    try:
        out: list[Frame] = []
        for _ in range(100):
            out += decoder.feed(chunk)
            assert decoder.buffered <= decoder.max_message
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [f.reason for f in out if isinstance(f, Malformed)] == ["too-long"]
    assert peak < 8 * (1 << 20)  # a few chunks' worth, never the stream
