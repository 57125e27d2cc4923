"""The statistics of spend anomalies: what a scope's spend in an hour or a day was expected to be, how surprising
the actual is, and which key, user, model or team explains the excess. Pure CPU work on arrays; `resolvers.
anomalies` reads the series and stores what this finds.

Expected spend comes from a seasonal-trend decomposition (statsmodels' robust STL, Cleveland et al. 1990) fitted
on the history *before* the evaluated bucket, so an anomaly never hides in its own fit:

- Hourly: the 14 days before the evaluated hour's UTC day, only days of the same kind (weekdays for a weekday,
  Saturdays and Sundays for a weekend day; spend at the weekend differs from the week's, and a decomposition that
  ignored that would find every Monday morning unusual), concatenated and decomposed with a daily cycle
  (period 24). The day's expected hourly spend is the trend at the end plus each hour's seasonal component.
- Daily: the 56 days before the evaluated day, decomposed with a weekly cycle (period 7); expected is the trend
  at the end plus the seasonal component of the same weekday.

Spend is count-like (requests times their cost), so its noise grows with its level: a busy afternoon varies by
more dollars than a quiet night. The decomposition therefore works on the square root of spend (Box-Cox with
lambda = 1/2, the variance-stabilising transform of counts), where the noise is about as large at night as in the
day; expected spend is the decomposition's expectation squared back into USD.

The surprise is a robust z-score on that scale: (sqrt(actual) - sqrt(expected)) / scale, where scale is 1.4826 x
the median absolute
deviation of the decomposition's residuals (the MAD, consistent with a standard deviation for Gaussian noise),
floored at 1.2533 x their mean absolute deviation (the same for Gaussian noise, but above 0 for sparse series
whose residuals are mostly exactly 0). A bucket is an anomaly when z reaches the threshold (sensitivity) and the
excess is at least the minimum in USD. Only spend above the expected is an anomaly: these are cost alerts.

The driver: for every key, user, model and team under the scope (other than the scope's own kind), its spend in
the bucket minus its mean spend in the same position of the history (the same hour of the same kind of day; the
same weekday), and the one with the largest increase (the finest of those within 5% of it: a key before a user,
a model, a team), with its share of the scope's whole excess.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

Series = NDArray[np.float64]

HOURLY_HISTORY_DAYS = 14
DAILY_HISTORY_DAYS = 56
#: Fewer days of history (of the same kind, for hourly) than this are too few to decompose.
MIN_HOURLY_DAYS = 3
MIN_DAILY_DAYS = 21
MAD_TO_SIGMA = 1.4826
MEAN_ABS_TO_SIGMA = 1.2533


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True)
class Expectation:
    """Expected spend (USD) per bucket of the evaluated period (24 hours, or one day) and the robust scale of the
    residuals (on the square-root scale the decomposition works on)."""

    expected: Series
    scale: float


def _decompose(values: Series, period: int) -> tuple[Series, Series, Series]:
    from statsmodels.tsa.seasonal import STL

    # STL warns on nothing useful here; robust=True downweights past outliers so they do not shape the expectation.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = STL(values, period=period, robust=True).fit()
    return (
        np.asarray(fit.trend, dtype=np.float64),
        np.asarray(fit.seasonal, dtype=np.float64),
        np.asarray(fit.resid, dtype=np.float64),
    )


def robust_scale(residuals: Series) -> float:
    centre = float(np.median(residuals))
    mad = float(np.median(np.abs(residuals - centre))) * MAD_TO_SIGMA
    mean_abs = float(np.mean(np.abs(residuals - centre))) * MEAN_ABS_TO_SIGMA
    return max(mad, mean_abs)


def same_kind(day: date, other: date) -> bool:
    return (day.weekday() >= 5) == (other.weekday() >= 5)


def hourly_days(day: date) -> list[date]:
    """The history days an hourly expectation for `day` is fitted on (oldest first)."""
    days = [day - timedelta(days=k) for k in range(HOURLY_HISTORY_DAYS, 0, -1)]
    return [d for d in days if same_kind(day, d)]


def hourly_expectation(day: date, hours: Mapping[date, Series]) -> Expectation | None:
    """`hours`: 24 hourly amounts per history day (missing days count as no spend)."""
    days = hourly_days(day)
    if len(days) < MIN_HOURLY_DAYS:
        return None
    values = np.concatenate([hours.get(d, np.zeros(24)) for d in days])
    if not values.any():
        return None
    trend, seasonal, residuals = _decompose(np.sqrt(np.clip(values, 0.0, None)), 24)
    expected = np.clip(trend[-1] + seasonal[-24:], 0.0, None)
    return Expectation(expected**2, robust_scale(residuals))


def daily_expectation(history: Series) -> Expectation | None:
    """`history`: daily amounts of the DAILY_HISTORY_DAYS days before the evaluated day, oldest first."""
    if len(history) < MIN_DAILY_DAYS or not history.any():
        return None
    trend, seasonal, residuals = _decompose(np.sqrt(np.clip(history, 0.0, None)), 7)
    expected = max(0.0, float(trend[-1] + seasonal[-7]))
    return Expectation(np.array([expected**2]), robust_scale(residuals))


@dataclass(frozen=True)
class Verdict:
    actual: float
    expected: float
    score: float

    @property
    def excess(self) -> float:
        return self.actual - self.expected


def judge(actual: float, expected: float, scale: float, threshold: float, min_usd: float) -> Verdict | None:
    """An anomaly when the robust z (on the square-root scale) reaches `threshold` and the excess is at least
    `min_usd`; else None."""
    excess = actual - expected
    if excess < min_usd or excess <= 0:
        return None
    rise = float(np.sqrt(actual) - np.sqrt(max(expected, 0.0)))
    score = rise / scale if scale > 0 else float("inf")
    if score < threshold:
        return None
    return Verdict(actual, expected, min(score, 1e6))


@dataclass(frozen=True)
class Driver:
    kind: str
    id: str
    excess: float
    share: float


#: When several sub-scopes explain about as much (within DRIVER_TIE), the finest is named: a key belongs to one
#: user and one team, so "this key" says more than "this team".
DRIVER_PREFERENCE = ("key", "user", "model", "team")
DRIVER_TIE = 0.95


def driver(
    excess: float, now: Mapping[tuple[str, str], float], baseline: Mapping[tuple[str, str], float]
) -> Driver | None:
    """The sub-scope (kind, id) whose spend rose most over its baseline, and its share of the scope's excess."""
    rises = {key: now.get(key, 0.0) - baseline.get(key, 0.0) for key in set(now) | set(baseline)}
    if not rises or max(rises.values()) <= 0:
        return None
    top = max(rises.values())
    close = [key for key, rise in rises.items() if rise >= DRIVER_TIE * top]
    kind, ident = min(close, key=lambda k: (DRIVER_PREFERENCE.index(k[0]), -rises[k], k[1]))
    rise = rises[(kind, ident)]
    return Driver(kind, ident, rise, min(1.0, rise / excess) if excess > 0 else 1.0)
