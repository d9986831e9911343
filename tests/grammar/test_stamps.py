"""Stamp texts to UTC times, resolved against a reference rather than the clock."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from journalban.grammar import Match
from journalban.grammar.stamps import parse_clf, parse_iso8601, parse_stamp, parse_syslog

PARIS_SUMMER = timezone(timedelta(hours=2))


def test_clf_carries_its_zone() -> None:
    reference = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_clf("01/Apr/2013:16:59:57 +0000", reference) == datetime(
        2013, 4, 1, 16, 59, 57, tzinfo=UTC
    )
    assert parse_clf("01/Apr/2013:16:59:57 -0130", reference) == datetime(
        2013, 4, 1, 18, 29, 57, tzinfo=UTC
    )


@pytest.mark.parametrize("text", ["01/Foo/2013:16:59:57 +0000", "31/Feb/2013:16:59:57 +0000", "x"])
def test_clf_unparseable(text: str) -> None:
    assert parse_clf(text, datetime(2030, 1, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize("text", ["Apr  3 01:11:12", "Apr 3 01:11:12", "Apr 03 01:11:12"])
def test_syslog_day_forms_and_12_hour_clock(text: str) -> None:
    reference = datetime(2024, 4, 3, 12, 0, tzinfo=UTC)
    # PHP's 'h' writes 1 pm as 01: the stamp says 01:11, and that is all we can know
    assert parse_syslog(text, reference, UTC) == datetime(2024, 4, 3, 1, 11, 12, tzinfo=UTC)


def test_syslog_local_zone() -> None:
    reference = datetime(2024, 4, 3, 12, 0, tzinfo=UTC)
    assert parse_syslog("Apr 3 10:00:00", reference, PARIS_SUMMER) == datetime(
        2024, 4, 3, 8, 0, tzinfo=UTC
    )


def test_syslog_year_rollover() -> None:
    new_year = datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert parse_syslog("Dec 31 23:59:59", new_year, UTC) == datetime(
        2023, 12, 31, 23, 59, 59, tzinfo=UTC
    )
    # a writer whose clock runs a little ahead on New Year's Eve stays in the next year
    new_years_eve = datetime(2023, 12, 31, 23, 59, 0, tzinfo=UTC)
    assert parse_syslog("Jan  1 00:00:30", new_years_eve, UTC) == datetime(
        2024, 1, 1, 0, 0, 30, tzinfo=UTC
    )
    assert parse_syslog("Feb 29 12:00:00", datetime(2025, 3, 1, tzinfo=UTC), UTC) == datetime(
        2024, 2, 29, 12, 0, tzinfo=UTC
    )


@pytest.mark.parametrize("text", ["Foo  3 01:11:12", "Apr 3 25:11:12", "Apr 31 01:00:00x"])
def test_syslog_unparseable(text: str) -> None:
    assert parse_syslog(text, datetime(2024, 4, 3, tzinfo=UTC), UTC) is None


def test_iso8601() -> None:
    reference = datetime(2030, 1, 1, tzinfo=UTC)
    expected = datetime(2024, 1, 2, 2, 4, 5, 600000, tzinfo=UTC)
    assert parse_iso8601("2024-01-02T03:04:05.6+01:00", reference) == expected
    assert parse_iso8601("2024-01-02T02:04:05,6Z", reference) == expected
    assert parse_iso8601("2024-01-02 03:04:05", reference, PARIS_SUMMER) == datetime(
        2024, 1, 2, 1, 4, 5, tzinfo=UTC
    )
    assert parse_stamp("nope", "2024-01-02", reference) is None


def test_grammar_stamp_time_uses_its_format(grammar_from) -> None:  # type: ignore[no-untyped-def]
    grammar = grammar_from('time stamp\nfail r: "[" <stamp:clf> "] " <address>\n')
    assert grammar.trusts_stamp and grammar.stamp_format == "clf"
    match = grammar.match("[01/Apr/2013:16:59:57 +0000] 203.0.113.9")
    assert isinstance(match, Match) and match.stamp is not None
    assert grammar.stamp_time(match.stamp, datetime(2030, 1, 1, tzinfo=UTC)) == datetime(
        2013, 4, 1, 16, 59, 57, tzinfo=UTC
    )
    assert grammar.stamp_time("garbage", datetime(2030, 1, 1, tzinfo=UTC)) is None


def test_syslog_stamp_time_through_grammar_is_utc_aware(grammar_from) -> None:  # type: ignore[no-untyped-def]
    grammar = grammar_from('fail r: <stamp:syslog> " " <address>\n')
    assert not grammar.trusts_stamp
    reference = datetime(2024, 1, 1, 12, tzinfo=UTC)
    moment = grammar.stamp_time("Dec 31 23:59:59", reference)
    assert moment is not None and moment.utcoffset() == timedelta(0)
    # whatever the host zone, that is last night, not the end of this year
    assert reference - timedelta(days=2) < moment < reference
