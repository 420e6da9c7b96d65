from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pullctl.config.schedule import ScheduleError, parse_duration, parse_schedule, parse_timezone


def test_dapr_form() -> None:
    assert parse_schedule("0 6 * * *", "dapr").dapr_form() == "0 0 6 * * *"
    assert parse_schedule("30 0 6 * * *", "dapr").dapr_form() == "30 0 6 * * *"
    assert parse_schedule("@every 1h30m", "dapr").dapr_form() == "@every 1h30m"
    assert parse_schedule("@daily", "k8s").dapr_form() == "@daily"


def test_duration() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("45s") == timedelta(seconds=45)
    with pytest.raises(ScheduleError, match="the duration '0s' must be longer than zero"):
        parse_duration("0s")


def test_window_of_a_daily_run() -> None:
    sched = parse_schedule("0 6 * * *")
    now = datetime(2026, 3, 10, 6, 0, 42, tzinfo=UTC)
    assert sched.window_ending_at_or_before(now, UTC) == (
        datetime(2026, 3, 9, 6, tzinfo=UTC),
        datetime(2026, 3, 10, 6, tzinfo=UTC),
    )
    later = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)
    assert sched.window_ending_at_or_before(later, UTC)[1] == datetime(2026, 3, 10, 6, tzinfo=UTC)


def test_window_in_a_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = parse_schedule("30 1 * * *").window_ending_at_or_before(
        datetime(2026, 7, 1, 12, tzinfo=UTC), berlin
    )
    assert end == datetime(2026, 7, 1, 1, 30, tzinfo=berlin)
    assert start == datetime(2026, 6, 30, 1, 30, tzinfo=berlin)


def test_every_window() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert parse_schedule("@every 15m", "dapr").window_ending_at_or_before(now, UTC) == (
        now - timedelta(minutes=15),
        now,
    )


def test_next_ticks() -> None:
    ticks = parse_schedule("@hourly").ticks(datetime(2026, 1, 1, 10, 30, tzinfo=UTC), UTC, 3)
    assert [t.hour for t in ticks] == [11, 12, 13]


def test_seconds_field_checked() -> None:
    with pytest.raises(ScheduleError, match="bad seconds field '61'"):
        parse_schedule("61 0 6 * * *", "dapr")


def test_tz_prefix_refused() -> None:
    with pytest.raises(ScheduleError, match="set the time zone with 'timezone:'"):
        parse_schedule("CRON_TZ=UTC 0 6 * * *")


def test_timezone() -> None:
    assert parse_timezone(None) is UTC
    with pytest.raises(ScheduleError, match=r"unknown time zone '\.\./etc/passwd'"):
        parse_timezone("../etc/passwd")
