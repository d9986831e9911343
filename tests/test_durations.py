import pytest

from journalban.durations import format_duration, parse_duration


@pytest.mark.parametrize(("value", "seconds"), [
    (600, 600), ("600", 600), ("10m", 600), ("1h", 3600), ("1d", 86400), ("1h30m", 5400), ("2w", 1209600),
])
def test_accepted(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [0, -5, "10 minutes", "1.5h", "", "m", True, None, 1.5, "10x"])
def test_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_format_round_trips() -> None:
    for seconds in (1, 59, 60, 600, 3600, 5400, 86400):
        assert parse_duration(format_duration(seconds)) == seconds
