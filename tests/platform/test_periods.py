"""Budget windows: calendar-aligned in the budget's time zone, with their anchors, exact across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from resolvers.platform.errors import InvalidInput
from resolvers.platform.periods import Cadence, Weekday, Window, cadence_of, local_days, month_of, time_zone

LA = "America/Los_Angeles"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_default_window_is_the_guides_calendar_month_in_utc() -> None:
    period = month_of(utc(2026, 11, 15, 12))
    assert (period.start, period.end) == (utc(2026, 11, 1), utc(2026, 12, 1))
    december = month_of(utc(2026, 12, 31, 23, 59))
    assert (december.start, december.end) == (utc(2026, 12, 1), utc(2027, 1, 1))
    assert Window().is_default_month


def test_a_daily_window_in_los_angeles_resets_at_local_midnight() -> None:
    window = Window(Cadence.DAILY, LA)
    # 07:59 UTC on Nov 16 is 23:59 on Nov 15 in Los Angeles (PST, UTC-8); 08:00 UTC is the next local day.
    before = window.period_at(utc(2026, 11, 16, 7, 59))
    after = window.period_at(utc(2026, 11, 16, 8, 0))
    assert (before.start, before.end) == (utc(2026, 11, 15, 8), utc(2026, 11, 16, 8))
    assert after.start == before.end


def test_a_local_day_is_23_or_25_hours_across_dst() -> None:
    window = Window(Cadence.DAILY, LA)
    spring = window.period_at(utc(2026, 3, 8, 12))  # clocks go forward on 8 March 2026
    autumn = window.period_at(utc(2026, 11, 1, 12))  # and back on 1 November 2026
    assert spring.end - spring.start == timedelta(hours=23)
    assert (spring.start, spring.end) == (utc(2026, 3, 8, 8), utc(2026, 3, 9, 7))
    assert autumn.end - autumn.start == timedelta(hours=25)
    assert (autumn.start, autumn.end) == (utc(2026, 11, 1, 7), utc(2026, 11, 2, 8))


def test_a_weekly_window_anchored_on_sunday() -> None:
    window = Window(Cadence.WEEKLY, week_starts_on=Weekday.SUNDAY)
    period = window.period_at(utc(2026, 11, 18, 10))  # a Wednesday
    assert (period.start, period.end) == (utc(2026, 11, 15), utc(2026, 11, 22))
    assert period.start.weekday() == 6
    on_sunday = window.period_at(utc(2026, 11, 22, 0))
    assert on_sunday.start == utc(2026, 11, 22)
    monday_week = Window(Cadence.WEEKLY).period_at(utc(2026, 11, 18, 10))
    assert monday_week.start == utc(2026, 11, 16)


def test_a_monthly_window_anchored_on_the_15th() -> None:
    window = Window(Cadence.MONTHLY, month_start_day=15)
    assert window.period_at(utc(2026, 11, 14, 23, 59)).start == utc(2026, 10, 15)
    period = window.period_at(utc(2026, 11, 15))
    assert (period.start, period.end) == (utc(2026, 11, 15), utc(2026, 12, 15))
    january = window.period_at(utc(2027, 1, 3))
    assert (january.start, january.end) == (utc(2026, 12, 15), utc(2027, 1, 15))


def test_a_fiscal_year_starting_in_april_and_its_quarters() -> None:
    year = Window(Cadence.YEARLY, year_start_month=4)
    assert year.period_at(utc(2027, 2, 1)).start == utc(2026, 4, 1)
    assert year.period_at(utc(2027, 4, 1)).start == utc(2027, 4, 1)
    assert year.period_at(utc(2026, 11, 15)).end == utc(2027, 4, 1)
    quarter = Window(Cadence.QUARTERLY, year_start_month=4)
    assert (quarter.period_at(utc(2026, 5, 20)).start, quarter.period_at(utc(2026, 5, 20)).end) == (
        utc(2026, 4, 1),
        utc(2026, 7, 1),
    )
    assert quarter.period_at(utc(2027, 2, 1)).start == utc(2027, 1, 1)


#: One window of each cadence, in zones and with starts that make edges odd.
ODD_WINDOWS = (
    Window(Cadence.DAILY, "Asia/Kathmandu"),
    Window(Cadence.WEEKLY, LA, Weekday.SUNDAY),
    Window(Cadence.MONTHLY, "Asia/Tokyo", month_start_day=28),
    Window(Cadence.QUARTERLY, "Europe/Berlin", year_start_month=2),
    Window(Cadence.YEARLY, "Australia/Lord_Howe", year_start_month=7),
)


def test_windows_follow_each_other_without_gaps() -> None:
    for window in ODD_WINDOWS:
        period = window.period_at(utc(2026, 1, 1))
        for _ in range(30):
            following = window.next_after(period)
            assert following.start == period.end
            assert window.period_at(following.start) == following
            assert window.period_at(following.end - timedelta(microseconds=1)) == following
            period = following


@pytest.mark.parametrize(
    ("window", "moment", "name"),
    [
        # A Tokyo day starts at 15:00 UTC the day before: 20:00 UTC on Dec 5 is already Dec 6 there.
        (Window(Cadence.DAILY, "Asia/Tokyo"), utc(2026, 12, 5, 20), "2026-12-06"),
        (Window(Cadence.DAILY, LA), utc(2026, 12, 6, 7, 59), "2026-12-05"),
        # ISO weeks: Monday Nov 30 to Sunday Dec 6 is week 49; ISO years differ from calendar years at their edges.
        (Window(Cadence.WEEKLY), utc(2026, 12, 6, 23), "2026-W49"),
        (Window(Cadence.WEEKLY), utc(2025, 12, 31), "2026-W01"),
        (Window(Cadence.WEEKLY), utc(2027, 1, 2), "2026-W53"),
        # A week starting on Sunday is named by the ISO week of that Sunday (its first day): Dec 6 to 12 is W49.
        (Window(Cadence.WEEKLY, week_starts_on=Weekday.SUNDAY), utc(2026, 12, 9), "2026-W49"),
        # Months as before: `YYYY-MM` of the first day, in the zone (a Tokyo December starts on Nov 30 in UTC).
        (Window(Cadence.MONTHLY, "Asia/Tokyo"), utc(2026, 11, 30, 16), "2026-12"),
        (Window(Cadence.MONTHLY, month_start_day=15), utc(2027, 1, 3), "2026-12"),
        (Window(Cadence.QUARTERLY), utc(2026, 11, 15), "2026-Q4"),
        (Window(Cadence.QUARTERLY, LA), utc(2026, 10, 1, 3), "2026-Q3"),  # still Sep 30 in Los Angeles
        # A quarter of a year from another month: the calendar quarter of its first day (Nov 1 to Feb 1: Q4 of 2026;
        # Feb 1 to May 1: Q1 of 2027; a fiscal year's first quarter from April: 2026-Q2).
        (Window(Cadence.QUARTERLY, year_start_month=2), utc(2027, 1, 20), "2026-Q4"),
        (Window(Cadence.QUARTERLY, year_start_month=2), utc(2027, 4, 30), "2027-Q1"),
        (Window(Cadence.QUARTERLY, year_start_month=4), utc(2026, 5, 20), "2026-Q2"),
        (Window(Cadence.YEARLY), utc(2026, 12, 6), "2026"),
        # A year from April 2026 runs to March 2027: 2026, the year of its first day.
        (Window(Cadence.YEARLY, year_start_month=4), utc(2027, 2, 1), "2026"),
        (Window(Cadence.YEARLY, "Asia/Tokyo"), utc(2026, 12, 31, 15), "2027"),
    ],
)
def test_a_window_is_named_by_its_cadence_in_its_zone(window: Window, moment: datetime, name: str) -> None:
    assert window.period_name(window.period_at(moment)) == name


def test_consecutive_windows_have_different_names() -> None:
    for window in ODD_WINDOWS:
        period = window.period_at(utc(2025, 12, 1))
        names = []
        for _ in range(60):
            names.append(window.period_name(period))
            period = window.next_after(period)
        assert len(set(names)) == len(names), (window, names)


def test_kathmandus_midnight_is_a_quarter_hour_in_utc() -> None:
    period = Window(Cadence.DAILY, "Asia/Kathmandu").period_at(utc(2026, 11, 15, 12))
    assert period.start == utc(2026, 11, 14, 18, 15)


def test_local_days_give_a_zones_calendar_days() -> None:
    from datetime import date

    tokyo = local_days(date(2026, 11, 14), date(2026, 11, 15), "Asia/Tokyo")
    assert (tokyo.start, tokyo.end) == (utc(2026, 11, 13, 15), utc(2026, 11, 14, 15))


def test_litellms_budget_durations_are_the_same_windows() -> None:
    assert cadence_of("period", "1d") is Cadence.DAILY
    assert cadence_of("period", "7d") is Cadence.WEEKLY
    assert cadence_of("period", "30d") is Cadence.MONTHLY
    assert cadence_of("period", "1mo") is Cadence.MONTHLY
    assert cadence_of("period", "MONTHLY") is Cadence.MONTHLY
    with pytest.raises(InvalidInput) as refused:
        cadence_of("budget_duration", "fortnightly")
    assert refused.value.field == "budget_duration"


def test_bad_anchors_and_zones_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as day:
        Window(Cadence.MONTHLY, month_start_day=31)
    assert day.value.field == "month_start_day"
    with pytest.raises(InvalidInput) as month:
        Window(Cadence.YEARLY, year_start_month=13)
    assert month.value.field == "year_start_month"
    with pytest.raises(InvalidInput) as tz:
        time_zone("time_zone", "Mars/Olympus_Mons", "UTC")
    assert tz.value.field == "time_zone"
    with pytest.raises(InvalidInput):
        time_zone("time_zone", "../../etc/passwd", "UTC")
    assert time_zone("time_zone", "  ", "Asia/Tokyo") == "Asia/Tokyo"
