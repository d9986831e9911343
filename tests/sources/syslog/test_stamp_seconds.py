"""StampSeconds gives exactly parse_traditional_stamp's time, minute cache and all."""

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from journalban.sources.syslog.rfc3164 import StampSeconds, parse_traditional_stamp

REFERENCES = [
    datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 30, tzinfo=UTC),  # stamps of tomorrow are of next year
    datetime(2027, 1, 1, 0, 10, tzinfo=UTC),  # stamps of late December are of last year
    datetime(2025, 3, 1, 0, 0, tzinfo=UTC),  # Feb 29 is years back
]
ZONES = [None, UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-11)),
         ZoneInfo("Europe/Berlin"), ZoneInfo("Australia/Lord_Howe")]  # DST by an hour, by half an hour


def stamps() -> list[str]:
    days = ["Jan  1", "Feb 28", "Feb 29", "Mar  1", "Nov 25", "Nov 26", "Dec 31", "Jun 15",
            "Mar 29", "Oct 25", "Apr  5", "Oct  4"]  # DST switches of 2026 in Berlin and on Lord Howe
    times = ["00:00:00", "00:10:59", "01:59:59", "02:00:00", "02:29:59", "02:30:00", "02:59:59", "03:00:00",
             "12:00:00", "23:30:00", "23:59:59", "13:07:60", "13:60:00"]
    return [f"{day} {time}" for day, time in itertools.product(days, times)]


@pytest.mark.parametrize("zone", ZONES, ids=["local", "utc", "+14", "-11", "berlin", "lord-howe"])
@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: r.strftime("%Y-%m-%d"))
def test_stamp_seconds_equal_the_parsed_stamp(reference: datetime, zone: timezone | None) -> None:
    seconds = StampSeconds(reference, zone)
    for _ in range(2):  # the second round reads the minute cache
        for stamp in stamps():
            parsed = parse_traditional_stamp(stamp, 0, reference, zone)
            expected = None if parsed is None else parsed[0].timestamp()
            assert seconds(stamp) == expected, stamp


def test_an_unreadable_stamp_is_none_and_spoils_no_minute() -> None:
    seconds = StampSeconds(REFERENCES[0])
    assert seconds("Foo 14 22:13:20") is None
    assert seconds("Nov 14 22:13:61") is None
    assert seconds("Nov 14 22:13:20") == parse_traditional_stamp(
        "Nov 14 22:13:20", 0, REFERENCES[0], None)[0].timestamp()  # type: ignore[index]


def test_bytes_and_odd_stamps_read_as_the_parser_reads_them() -> None:
    """A minute's cache must not vouch for a stamp whose seconds or separators differ."""
    reference = REFERENCES[0]
    seconds = StampSeconds(reference)
    odd = ["Nov 14 22:13:20", "Nov 14 22:13:١٢", "Nov 14 22:13-12", "Nov 14 22-13:12", "Nov 14 22:1:12",
           "Nov 14 22:13:2", "Nov 14 24:13:20", "Nov 32 22:13:20", "Nov 14 22:13:59", "Nov 14 22:13:20"]
    for stamp in odd:
        parsed = parse_traditional_stamp(stamp, 0, reference, None)
        expected = None if parsed is None else parsed[0].timestamp()
        assert seconds(stamp) == expected, stamp
        if stamp.isascii():
            assert seconds(stamp.encode()) == expected, stamp


@pytest.mark.parametrize("zone", ZONES, ids=["local", "utc", "+14", "-11", "berlin", "lord-howe"])
@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: r.strftime("%Y-%m-%d"))
def test_a_whole_minute_reads_every_second_as_its_start_plus_the_second(
        reference: datetime, zone: timezone | None) -> None:
    """The fast path adds a second to the minute's start without parsing the stamp: only
    where that gives what the stamp's own parse gives, for every second of the minute."""
    seconds = StampSeconds(reference, zone)
    latest = (reference + timedelta(days=1)).astimezone(zone)
    minutes = {stamp[:-3] for stamp in stamps()} | {latest.strftime("%b %e %H:%M")}
    whole = 0
    for minute in sorted(minutes):
        start = seconds.whole_minute(minute)
        if start is None:
            continue
        whole += 1
        assert seconds.whole_minutes[minute] == start
        for second in range(60):
            assert seconds(f"{minute}:{second:02d}") == start + second, (minute, second)
    assert whole > len(minutes) // 2
    assert seconds.whole_minute(latest.strftime("%b %e %H:%M")) is None, "its later seconds are last year's"


@pytest.mark.parametrize("zone", ZONES, ids=["local", "utc", "+14", "-11", "berlin", "lord-howe"])
@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: r.strftime("%Y-%m-%d"))
def test_a_whole_hour_holds_what_each_of_its_minutes_would(reference: datetime, zone: timezone | None) -> None:
    """``whole_hour`` vouches for all sixty minutes at once, or for none: never for a minute
    ``whole_minute`` would not (the latest moment's hour, a DST hour, Feb 29 in no recent year)."""
    latest = (reference + timedelta(days=1)).astimezone(zone)
    hours = {stamp[:-6] for stamp in stamps()} | {(latest + timedelta(hours=n)).strftime("%b %e %H")
                                                   for n in range(-2, 3)} | {"Nov 14 2", "Foo 14 10"}
    filled = 0
    for hour in sorted(hours):
        for as_bytes in (False, True):
            by_hour, by_minute = StampSeconds(reference, zone), StampSeconds(reference, zone)
            written: str | bytes = hour.encode() if as_bytes else hour
            by_hour.whole_hour(written)
            expected: dict[str | bytes, float] = {}
            for n in range(60):
                minute: str | bytes = f"{hour}:{n:02d}".encode() if as_bytes else f"{hour}:{n:02d}"
                start = by_minute.whole_minute(minute)
                if start is not None:
                    expected[minute] = start
            assert by_hour.whole_minutes in ({}, expected), written
            filled += bool(by_hour.whole_minutes)
    assert filled > len(hours)  # most hours, as text and as bytes
