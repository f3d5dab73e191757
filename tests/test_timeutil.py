from datetime import UTC, datetime, timedelta

import pytest

from jitctl.timeutil import format_duration, parse_duration, parse_rfc3339, rfc3339


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1h30m", 5400), ("1h0m5s", 3605), (" 45m ", 2700)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0s", "15", "m", "1.5h", "30m1h", "-5m", "2d", "1 h"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 3599, 3600, 5400, 43200])
def test_format_round_trips(seconds):
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


def test_rfc3339_is_utc_z():
    local = datetime(2026, 11, 21, 5, 0, 7, 123456, tzinfo=UTC).astimezone()
    assert rfc3339(local) == "2026-11-21T05:00:07Z"
    assert parse_rfc3339("2026-11-21T05:00:07Z") == datetime(2026, 11, 21, 5, 0, 7, tzinfo=UTC)
    assert parse_rfc3339("2026-11-21T06:00:07+01:00") == datetime(2026, 11, 21, 5, 0, 7, tzinfo=UTC)
