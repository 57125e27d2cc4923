"""Conformal calibration of forecast intervals from rolling-origin backtest errors.

What is calibrated is a *window total*: the spend of days [offset, offset + length) after the last known day (the
rest of this month, next month, or the first h days for an exhaustion date). At every backtest origin each method's
error on a window is scored in units of the scope's own day-to-day noise:

    score = |actual total - forecast total| / (scale x length)

where scale is the seasonal naive forecast's mean absolute daily error over the 56 training days before the
origin (the scaled errors of Hyndman & Koehler 2006, MASE's denominator; their mean spend where that is 0). That
makes scores comparable across windows, scopes and levels of spend, so they can be pooled: a noisy scope's large
errors do not widen a steady scope's interval. The interval
of a new forecast is `forecast total +- q x scale x length`, where q is the split-conformal quantile of the
scores: the ceil((n + 1) x 0.8)-th smallest of n (Vovk et al. 2005; Lei et al. 2018), so 80% needs at least
four scores. Spend cannot be negative: the lower end is clipped at 0.

Which scores: the scope's own from its most recent `RECENT_ORIGINS` (4) origins whose actual for that window is
known, when there are at least four; otherwise every scope's known scores, all origins (the *pooled* fallback);
otherwise none, and the interval stays the method's own (uncalibrated) one from its sample paths, said so in
`calibration`. Why only the recent origins: the errors are not exchangeable. The earliest origins were fitted on
about 28 days and err about 1.5x more than later ones fitted on months, so calibrating with every origin made the
intervals too wide (the synthetic benchmark's pooled 80% coverage 0.87 on seed 7; see docs/benchmarks.md). The
recent origins' training lengths are the closest to the forecast's own.

This is the rule of statsforecast's and sktime's `ConformalIntervals` (absolute errors of past forecasts at the
same horizon), applied to window totals: those libraries calibrate each day ahead separately, and daily
intervals cannot be summed into a month's interval. numpy does the order statistics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from resolvers.forecasts.methods import Series, seasonal_naive_mae

LEVEL = 0.8
#: ceil((n + 1) x 0.8) <= n from n = 4 on: fewer scores cannot give a finite 80% quantile.
MIN_SCORES = 4
#: Days of training history whose day-to-day noise scales the errors.
SCALE_DAYS = 56
#: A scope's own interval is calibrated with the errors of only its most recent this many origins (of those whose
#: actual is known): earlier origins were trained on less history and err more. The pooled fallback uses all.
#: Chosen on the synthetic benchmark's seed 7 (4, 6, 8 and all compared), checked on seeds 11 and 3.
RECENT_ORIGINS = 4


class Calibration(StrEnum):
    SCOPE = "scope"  # the scope's own backtest errors
    POOLED = "pooled"  # every scope's, where the scope's own history is too short
    NONE = "none"  # too few errors anywhere: the method's sample-path interval, uncalibrated


@dataclass(frozen=True)
class Window:
    """Days [offset, offset + length) after the last known day."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Run:
    """One method at one backtest origin: its daily point forecast and what happened (as far as observed)."""

    #: Where training stopped, counted back from the scope's last known day (negative): origins of different
    #: scopes with the same `cut` are the same date, which is what "known before" is measured on.
    cut: int
    point: Series
    actual: Series
    scale: float
    #: The seasonal naive forecast's in-sample mean absolute error on the training days (MASE's denominator).
    naive_mae: float = math.nan
    #: The method's own (uncalibrated) 80% interval of the backtest window's total, from its sample paths.
    raw: tuple[float, float] | None = None

    def score(self, window: Window) -> float | None:
        if len(self.actual) < window.end or not self.scale > 0:
            return None
        error = abs(float(self.actual[window.offset : window.end].sum() - self.point[window.offset : window.end].sum()))
        return error / (self.scale * window.length)

    def known_by(self, window: Window, cut: int) -> bool:
        """Whether this run's actual total for `window` was known at an origin `cut` (realised before it)."""
        return self.cut + window.end <= cut


def most_recent(runs: Iterable[Run], limit: int | None = RECENT_ORIGINS) -> list[Run]:
    """The `limit` runs with the latest origins (all of them where `limit` is None), latest first."""
    latest = sorted(runs, key=lambda r: r.cut, reverse=True)
    return latest if limit is None else latest[:limit]


def scale_of(history: Series) -> float:
    """The scope's recent day-to-day noise: the seasonal naive forecast's mean absolute error over the last 56
    days (MASE's scale, Hyndman & Koehler 2006), or their mean spend where that is 0 (a constant series)."""
    recent = history[-SCALE_DAYS:]
    naive = seasonal_naive_mae(recent)
    if math.isfinite(naive) and naive > 0:
        return naive
    return float(recent.mean()) if len(recent) else 0.0


def conformal_quantile(scores: Sequence[float], level: float = LEVEL) -> float | None:
    """The split-conformal quantile: the ceil((n + 1) x level)-th smallest score, None below MIN_SCORES."""
    n = len(scores)
    rank = math.ceil((n + 1) * level)
    if n < MIN_SCORES or rank > n:
        return None
    return float(np.sort(np.asarray(scores, dtype=np.float64))[rank - 1])


@dataclass(frozen=True)
class Quantile:
    value: float | None
    calibration: Calibration
    scores: int


def pick(own: Iterable[float], pooled: Iterable[float]) -> Quantile:
    """The scope's own scores when there are enough, else the pooled ones, else none."""
    mine = list(own)
    q = conformal_quantile(mine)
    if q is not None:
        return Quantile(q, Calibration.SCOPE, len(mine))
    everyone = list(pooled)
    q = conformal_quantile(everyone)
    if q is not None:
        return Quantile(q, Calibration.POOLED, len(everyone))
    return Quantile(None, Calibration.NONE, 0)


def interval(point_total: float, q: float, scale: float, length: int) -> tuple[float, float]:
    half = q * scale * length
    return max(0.0, point_total - half), point_total + half
