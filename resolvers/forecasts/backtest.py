"""Rolling-origin backtests that choose each scope's forecasting method.

Origins step back a week at a time from the end of the history (up to six); at each, every method is fitted on
the history before it and forecasts the next 28 days (four whole weeks, about a month). Scores per method:

- MASE: mean absolute daily error over the horizon, divided by the in-sample mean absolute error of the seasonal
  naive forecast (Hyndman & Koehler 2006; m = 7), averaged over origins. Below 1 beats seasonal naive.
- Coverage: the share of origins whose actual 28-day total fell inside the method's 80% interval (the 10th and
  90th percentiles of its path sums). Nominal is 0.8.

Exponential smoothing ships only where it wins on both: a lower MASE than the weighted moving average, and a
coverage at least as close to 80%. Anywhere else — including too little history to backtest — the guide's
weighted moving average ships.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from resolvers.forecasts.methods import MIN_ETS_HISTORY, ForecastMethod, Series, project, seasonal_naive_mae

HORIZON = 28
ORIGINS = 6
STEP = 7
LEVEL = 0.8


@dataclass(frozen=True)
class Score:
    method: ForecastMethod
    mase: float | None
    coverage: float | None
    origins: int
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "method": self.method.value,
            "mase": None if self.mase is None else round(self.mase, 4),
            "coverage": None if self.coverage is None else round(self.coverage, 4),
            "origins": self.origins,
            "error": self.error,
        }


@dataclass(frozen=True)
class Choice:
    method: ForecastMethod
    scores: tuple[Score, ...]
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "chosen": self.method.value,
            "reason": self.reason,
            "horizon_days": HORIZON,
            "level": LEVEL,
            "scores": [s.as_dict() for s in self.scores],
        }


def origins(length: int) -> list[int]:
    """Where training stops (exclusive) at each origin, latest first, keeping enough history to fit."""
    found = []
    for k in range(ORIGINS):
        cut = length - HORIZON - k * STEP
        if cut < MIN_ETS_HISTORY:
            break
        found.append(cut)
    return found


def score(method: ForecastMethod, history: Series, seed: int) -> Score:
    cuts = origins(len(history))
    if not cuts:
        return Score(method, None, None, 0, "too little history to backtest")
    errors, covered = [], 0
    for cut in cuts:
        train, actual = history[:cut], history[cut : cut + HORIZON]
        scale = seasonal_naive_mae(train)
        try:
            projection = project(method, train, HORIZON, np.random.default_rng(seed + cut))
        except ValueError as exc:
            return Score(method, None, None, len(cuts), str(exc))
        if np.isfinite(scale) and scale > 0:
            errors.append(float(np.mean(np.abs(actual - projection.point))) / scale)
        low, high = np.quantile(projection.paths.sum(axis=1), [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        covered += int(low <= actual.sum() <= high)
    mase = float(np.mean(errors)) if errors else None
    return Score(method, mase, covered / len(cuts), len(cuts))


def choose(history: Series, seed: int = 0) -> Choice:
    wma = score(ForecastMethod.WEIGHTED_MOVING_AVERAGE, history, seed)
    ets = score(ForecastMethod.EXPONENTIAL_SMOOTHING, history, seed)
    return decide(wma, ets)


def decide(wma: Score, ets: Score) -> Choice:
    scores = (wma, ets)
    if ets.mase is None or ets.coverage is None or wma.mase is None or wma.coverage is None:
        why = ets.error or wma.error or "no backtest"
        return Choice(ForecastMethod.WEIGHTED_MOVING_AVERAGE, scores, f"weighted moving average: {why}")
    if ets.mase >= wma.mase:
        return Choice(ForecastMethod.WEIGHTED_MOVING_AVERAGE, scores, "exponential smoothing lost on MASE")
    if abs(ets.coverage - LEVEL) > abs(wma.coverage - LEVEL):
        return Choice(ForecastMethod.WEIGHTED_MOVING_AVERAGE, scores, "exponential smoothing lost on coverage")
    return Choice(ForecastMethod.EXPONENTIAL_SMOOTHING, scores, "exponential smoothing won on MASE and coverage")
