"""When a budget reaches its soft and hard limits: from the spend so far in its period and its scope's outlook
(the daily forecast from the last generation with its calibrated 80% band of cumulative spend).

`exhaustion(period, spent, limit, now, outlook)` takes any period [start, end): a calendar month today, any budget
window tomorrow. The outlook is per UTC day: projected spend at the end of UTC day d is the spend so far plus the
forecast from now to d (today counts only for the part of it still to come), and within a day its forecast is spread
evenly over the day's hours (over what is left of today). The band around it is the outlook's band for a window of
as many days, less the share of the first day's band that today's hours gone take (a calibrated band is linear in a
window's length: what is left of today adds that share of a day's band, not a whole day's). The projection stops at
the period's end: the window's last UTC day counts only its hours before `end` (a window in a zone east or west of
UTC ends within a UTC day), so the period-end projection and whether the limit is reached this period are decided at
the window's end, never after it. The limit is reached at the instant that projection reaches it; the interval runs
from the instant the band's upper edge (90th percentile) reaches it to the one its lower edge (10th percentile)
does. Because cumulative spend only grows, these are the 10th and 90th percentiles of the date itself. Every date is
the day of that instant in the budget's zone (`time_zone`, where its window starts at a local midnight; a limit
reached just at a midnight counts for the day ending there), kept inside the window's local days; in UTC it is the
first UTC day whose projection reaches the limit.

Status: REACHED (spend is already at the limit; the day it got there), EXPECTED (the projection reaches it this
period: `date`, `earliest`, `latest`, the latter null when the lower edge never gets there), POSSIBLE (only the
upper edge reaches it: `earliest` only), NOT_THIS_PERIOD (not even the upper edge), BEYOND_FORECAST (the period
runs past the outlook and nothing reaches the limit before it ends), NO_FORECAST (no outlook for this scope yet).
A REACHED date is a day in the budget's zone too: the local day spend got there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum

import numpy as np

from models.forecasts import ForecastOutlookRow
from resolvers.platform.periods import Period

CENT = Decimal("0.01")
_TICK = timedelta(microseconds=1)


class ExhaustionStatus(StrEnum):
    REACHED = "reached"
    EXPECTED = "expected"
    POSSIBLE = "possible"
    NOT_THIS_PERIOD = "not_this_period"
    BEYOND_FORECAST = "beyond_forecast"
    NO_FORECAST = "no_forecast"


@dataclass(frozen=True)
class Outlook:
    start: date  # the first forecast day (the generation day)
    point: tuple[float, ...]  # USD per day
    low: tuple[float, ...]  # cumulative USD from `start` through each day: 10th percentile
    high: tuple[float, ...]  # ... and 90th
    method: str
    calibration: str
    generated_at: datetime

    @classmethod
    def from_row(cls, row: ForecastOutlookRow) -> Outlook:
        return cls(
            start=row.start_day,
            point=tuple(float(x) for x in row.point),
            low=tuple(float(x) for x in row.low),
            high=tuple(float(x) for x in row.high),
            method=row.method,
            calibration=row.calibration,
            generated_at=row.generated_at,
        )


@dataclass(frozen=True)
class Exhaustion:
    limit: Decimal
    status: ExhaustionStatus
    date: dt.date | None = None
    earliest: dt.date | None = None
    latest: dt.date | None = None


@dataclass(frozen=True)
class Projection:
    """Spend at the end of the period: so far plus the forecast, with the 80% band."""

    spend: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True)
class Path:
    """Projected cumulative spend (USD, spend so far included) at the end of each UTC day `first`, `first + 1`, ...;
    when it covers the period, the last value is the one at the period's end (inside that UTC day, or at its end)."""

    first: date
    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    covers_period: bool


def project_period(period: Period, spent: Decimal, now: datetime, outlook: Outlook) -> Path | None:
    today = now.astimezone(UTC).date()
    last_day = (period.end.astimezone(UTC) - timedelta(microseconds=1)).date()
    offset = (today - outlook.start).days
    available = len(outlook.point) - max(offset, 0)
    if offset < 0 or available <= 0 or last_day < today:
        return None
    days = (last_day - today).days + 1
    n = min(days, available)
    point = np.asarray(outlook.point, dtype=np.float64)
    cumulative = np.cumsum(point)
    # The band's distance below and above the point forecast, by window length (the calibration is per length).
    below = cumulative[:n] - np.asarray(outlook.low[:n])
    above = np.asarray(outlook.high[:n]) - cumulative[:n]
    elapsed = (now.astimezone(UTC) - datetime.combine(today, time(0), tzinfo=UTC)) / timedelta(days=1)
    ahead = np.cumsum(point[offset : offset + n]) - elapsed * point[offset]
    # Only the part of today still to come is uncertain: a calibrated band is q x scale x days, linear in the
    # window's length, so the hours gone take their share of the first day's band off every window, as they take
    # their share of its forecast off `ahead`.
    below = np.maximum(below - elapsed * below[0], 0.0)
    above = np.maximum(above - elapsed * above[0], 0.0)
    base = float(spent)
    path = Path(
        first=today,
        point=base + ahead,
        low=base + np.maximum(ahead - below, 0.0),
        high=base + ahead + above,
        covers_period=days <= available,
    )
    if path.covers_period:
        # The last UTC day counts only up to the period's end (a zone's window ends mid-UTC-day), its spend spread
        # evenly over its hours: each value there is the one at `period.end`. A UTC window ends at midnight: all.
        start, end = _segment(last_day, now, period)
        share = min(max((end - start) / (_day_end(last_day) - start), 0.0), 1.0)
        for values in (path.point, path.low, path.high):
            before = base if n == 1 else float(values[-2])
            values[-1] = before + (values[-1] - before) * share
    return path


def exhaustion(
    period: Period,
    spent: Decimal,
    limit: Decimal,
    now: datetime,
    outlook: Outlook | None,
    reached_on: date | None = None,
    time_zone: tzinfo = UTC,
) -> Exhaustion:
    """When spend in `period` reaches `limit` (see the module's docstring). `reached_on`: the day it got there,
    when the caller knows it already (spend at or over the limit), a day in the budget's `time_zone`; when it does
    not, today there (never a day outside the window's local days)."""
    if spent >= limit:
        day = reached_on or _local_today(period, now, time_zone)
        return Exhaustion(limit, ExhaustionStatus.REACHED, day, day, day)
    if outlook is None:
        return Exhaustion(limit, ExhaustionStatus.NO_FORECAST)
    path = project_period(period, spent, now, outlook)
    if path is None:
        return Exhaustion(limit, ExhaustionStatus.NO_FORECAST)
    target = float(limit)
    base = float(spent)

    def first(values: np.ndarray) -> date | None:
        hits = np.flatnonzero(values >= target)
        if not len(hits):
            return None
        i = int(hits[0])
        start, end = _segment(path.first + timedelta(days=i), now, period)
        before = base if i == 0 else float(values[i - 1])
        return _local_day(period, start, end, before, float(values[i]), target, time_zone)

    when, earliest, latest = first(path.point), first(path.high), first(path.low)
    if earliest is None:
        status = ExhaustionStatus.NOT_THIS_PERIOD if path.covers_period else ExhaustionStatus.BEYOND_FORECAST
        return Exhaustion(limit, status)
    if when is None:
        return Exhaustion(limit, ExhaustionStatus.POSSIBLE, None, earliest, None)
    return Exhaustion(limit, ExhaustionStatus.EXPECTED, when, earliest, latest)


def _day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def _segment(day: date, now: datetime, period: Period) -> tuple[datetime, datetime]:
    """The part of UTC day `day` a path's value covers: from its start (from `now` for today) to its end, or to the
    period's end when that comes first (the window's last UTC day)."""
    start = max(datetime.combine(day, time(0), tzinfo=UTC), now.astimezone(UTC))
    return start, min(_day_end(day), period.end.astimezone(UTC))


def _local_day(
    period: Period, start: datetime, end: datetime, before: float, after: float, target: float, time_zone: tzinfo
) -> date:
    """The day in the budget's zone when projected spend reaches `target` between `start` and `end` (a UTC day's
    `_segment`): `before` at `start`, `after` at `end`, the spend spread evenly in between. A limit reached just
    at a midnight counts for the day that ends there. Inside the window's local days."""
    share = (target - before) / (after - before)  # in (0, 1]: `before` < `target` <= `after`
    moment = min(max(start + (end - start) * share, start + _TICK), end) - _TICK
    return _within(period, moment.astimezone(time_zone).date(), time_zone)


def _within(period: Period, day: date, time_zone: tzinfo) -> date:
    """`day` moved inside the window's local days [start, end) in `time_zone`."""
    first = period.start.astimezone(time_zone).date()
    last = (period.end - _TICK).astimezone(time_zone).date()
    return min(max(day, first), last)


def _local_today(period: Period, now: datetime, time_zone: tzinfo) -> date:
    """Today in the budget's zone, inside its window's local days [start, end)."""
    return _within(period, now.astimezone(time_zone).date(), time_zone)


def period_end_projection(period: Period, spent: Decimal, now: datetime, outlook: Outlook | None) -> Projection | None:
    """Projected spend at the end of `period`, when the outlook reaches that far."""
    if outlook is None:
        return None
    path = project_period(period, spent, now, outlook)
    if path is None or not path.covers_period:
        return None
    return Projection(_usd(path.point[-1]), _usd(path.low[-1]), _usd(path.high[-1]))


def reached_day(period_start: date, daily: dict[date, Decimal], limit: Decimal) -> date | None:
    """The first day cumulative spend from `period_start` reached `limit`, from spend per day."""
    total = Decimal(0)
    for day in sorted(d for d in daily if d >= period_start):
        total += daily[day]
        if total >= limit:
            return day
    return None


def _usd(value: float) -> Decimal:
    return Decimal(repr(max(0.0, float(value)))).quantize(CENT)
