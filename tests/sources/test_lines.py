"""File lines as events: the one-match fast path for the usual syslog header gives the
same event as ``parse_file_line``, and the cached stamp conversion the same time as
converting each stamp afresh; whole-line blocks and flagged-line numbering."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journalban.sources.lines import FlaggedLines, line_event, read_whole_lines
from journalban.sources.syslog import parse_file_line
from journalban.sources.syslog.rfc3164 import MONTHS, _local, parse_traditional_stamp

READ = datetime(2026, 11, 26, 12, tzinfo=UTC)
MONTH = st.sampled_from([*MONTHS, "Foo", "nov"])
SPACE = st.sampled_from([" ", "  ", "\t", ""])


@st.composite
def header_lines(draw: st.DrawFn) -> str:
    """Lines near the usual header's shape, and often just off it."""
    stamp = (f"{draw(MONTH)}{draw(SPACE)}{draw(st.integers(0, 32))} {draw(st.integers(0, 25)):02d}:"
             f"{draw(st.integers(0, 61)):02d}:{draw(st.integers(0, 61)):02d}")
    host = draw(st.sampled_from(["web1", "h" * 256, "", "a:b", "x[1]"]))
    tag = draw(st.sampled_from(["sshd", "sshd[123]", "sshd[]", "a" * 49, "sshd[1 2]", "postfix/smtpd[9]",
                                "sshd[١٢]", "CRON[x]"]))
    colon = draw(st.sampled_from([": ", ":", " ", ":  "]))
    message = draw(st.text(st.characters(exclude_characters="\n"), max_size=20))
    ending = draw(st.sampled_from(["", "\r", "\r\r"]))
    return f"{stamp}{draw(SPACE)}{host}{draw(SPACE)}{tag}{colon}{message}{ending}"


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(header_lines(), st.booleans())
def test_the_header_fast_path_gives_what_parse_file_line_gives(line: str, trust: bool) -> None:
    parsed = parse_file_line(line, READ)
    expected = None if parsed is None else parsed.to_event("file:x")
    if expected is not None and not trust:
        expected = type(expected)(READ, expected.source, expected.message, expected.host, expected.app,
                                  expected.pid, expected.fields)
    assert line_event("file:x", line, "syslog", READ, trust) == expected


def _stamp_afresh(month: str, day: int, clock: tuple[int, int, int], reference: datetime) -> datetime | None:
    """The conversion the cache replaced: every candidate year, every time."""
    latest = reference.astimezone(UTC) + timedelta(days=1)
    for year in range(latest.year + 1, latest.year - 8, -1):
        try:
            moment = _local(datetime(year, MONTHS[month], day, *clock), None)
        except (ValueError, OverflowError):
            continue
        if moment <= latest:
            return moment
    return None


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.sampled_from(list(MONTHS)), st.integers(1, 31), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 59), st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1),
                                        timezones=st.just(UTC)))
def test_the_cached_stamp_conversion_equals_converting_afresh(month: str, day: int, hour: int, minute: int,
                                                             second: int, reference: datetime) -> None:
    text = f"{month} {day:2d} {hour:02d}:{minute:02d}:{second:02d}"
    found = parse_traditional_stamp(text, 0, reference, None)
    expected = _stamp_afresh(month, day, (hour, minute, second), reference)
    assert (found[0] if found else None) == expected


@pytest.mark.parametrize("text", ["Feb 29 12:00:00", "Dec 31 23:59:59", "Jan  1 00:00:00", "Nov 26 12:00:60"])
def test_stamps_around_leap_days_year_ends_and_leap_seconds(text: str) -> None:
    found = parse_traditional_stamp(text, 0, datetime(2026, 12, 31, 23, tzinfo=UTC), None)
    fields = text.split()
    expected = None if fields[2].endswith(":60") else _stamp_afresh(
        fields[0], int(fields[1]), tuple(int(part) for part in fields[2].split(":")),  # type: ignore[arg-type]
        datetime(2026, 12, 31, 23, tzinfo=UTC))
    assert (found[0] if found else None) == expected


@pytest.mark.parametrize("size", [1, 3, 10, 1000])
def test_whole_line_blocks_rejoin_to_the_stream(size: int) -> None:
    data = b"one\ntwo\r\n\nthree " + b"x" * 50 + b"\nlast without newline"
    blocks = list(read_whole_lines(io.BytesIO(data), size))
    assert b"".join(blocks) == data
    assert all(block.endswith(b"\n") for block in blocks[:-1])
    assert list(read_whole_lines(io.BytesIO(b""), size)) == []


def test_flagged_lines_are_numbered_and_the_first_others_shown() -> None:
    blocks = [b"a\nb\nc\n", b"d\ne"]

    def every_other(block: bytes) -> list[int]:  # flags the lines holding b or e
        return [i + 1 for i, byte in enumerate(block) if byte in b"be"]

    reader = FlaggedLines(blocks, every_other, unflagged=2)
    assert list(reader) == [(1, "a"), (2, "b"), (3, "c"), (5, "e")]
    assert reader.lines == 5
