"""The forecasting methods, on a scope's daily spend (USD per closed UTC day, oldest first).

- Weighted moving average (the guide's method): the daily rate is the weighted mean of the average daily spend
  in the last three 30-day blocks ("months"), weights 3, 2, 1 from the most recent; blocks without history are
  left out and the weights renormalised. A horizon's forecast is rate x days. Its interval comes from sample
  paths: the rate plus residuals (spend minus its block's mean) drawn in 7-day blocks (moving-block bootstrap).
- Exponential smoothing (Holt-Winters, statsmodels' `ExponentialSmoothing`): additive weekly seasonality (m = 7)
  with no trend or a damped additive trend, whichever has the lower AICc, i.e. ETS(A,N,A) or ETS(A,Ad,A).
  Intervals come from 1,000 simulated sample paths with additive bootstrapped residuals (statsmodels'
  `simulate(error="add", random_errors="bootstrap")`). (statsmodels' ETSModel fits the same forms but took about
  three times as long here, and the backtest fits dozens of models per scope.)
- Theta (statsmodels' `ThetaModel`, Assimakopoulos & Nikolopoulos 2000; Hyndman & Billah 2003): the history is
  deseasonalised by a classical weekly decomposition (multiplicative where every day has spend, else additive),
  forecast by simple exponential smoothing plus half the slope of a linear trend, and reseasonalised. It has one
  smoothing parameter, so it fits in about a quarter of ETS's time. Its sample paths add residuals of the
  weekly decomposition (drawn in 7-day blocks, as for the average) to the point forecast: like the average's, they
  ignore the error of the level and trend, so its uncalibrated interval is too narrow.
- Exponential smoothing on log spend (the same `ExponentialSmoothing` on log(spend), forecast back-transformed by
  exp): additive weekly seasonality with no trend, a damped trend or an undamped trend, whichever has the lower
  AICc. On logs an additive trend is a constant growth *rate* and the weekly pattern scales with the level, the
  law of steady growth (and of a level shift, which moves every day in proportion). exp of the forecast is the
  median of the forecast distribution, what minimises the absolute error MASE scores (not the mean). Its paths are
  exp of the simulated log paths, so never negative. Only where every day has spend (a log needs one): a history
  with a day at 0 raises ValueError, and the backtest reports that reason.

For every method the month totals are sums along each path, so an interval is a quantile of path *sums* (never a
sum of daily quantiles). Spend cannot be negative: paths are clipped at 0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

Series = NDArray[np.float64]

SEASON = 7
BLOCK = 30
WMA_WEIGHTS = (3.0, 2.0, 1.0)
PATHS = 1000
#: ETS needs a few whole weeks to estimate a weekly pattern.
MIN_ETS_HISTORY = 28


class ForecastMethod(StrEnum):
    WEIGHTED_MOVING_AVERAGE = "weighted_moving_average"
    EXPONENTIAL_SMOOTHING = "exponential_smoothing"
    THETA = "theta"
    LOG_EXPONENTIAL_SMOOTHING = "log_exponential_smoothing"


@dataclass(frozen=True)
class Projection:
    """A method's daily point forecast over a horizon and its sample paths (paths x days)."""

    method: ForecastMethod
    point: Series
    paths: Series
    detail: str = ""


def wma_rate(history: Series) -> float:
    if len(history) == 0:
        return 0.0
    total = weight = 0.0
    for i, w in enumerate(WMA_WEIGHTS):
        end = len(history) - i * BLOCK
        if end <= 0:
            break
        block = history[max(0, end - BLOCK) : end]
        total += w * float(block.mean())
        weight += w
    return total / weight


def weighted_moving_average(history: Series, horizon: int, rng: np.random.Generator) -> Projection:
    rate = wma_rate(history)
    point = np.full(horizon, rate)
    recent = history[-len(WMA_WEIGHTS) * BLOCK :]
    if len(recent) < 2:
        return Projection(ForecastMethod.WEIGHTED_MOVING_AVERAGE, point, np.tile(point, (PATHS, 1)))
    residuals = np.concatenate(
        [block - block.mean() for block in (recent[max(0, e - BLOCK) : e] for e in range(len(recent), 0, -BLOCK))]
    )
    return Projection(ForecastMethod.WEIGHTED_MOVING_AVERAGE, point, _block_paths(point, residuals, rng))


def _block_paths(point: Series, residuals: Series, rng: np.random.Generator) -> Series:
    """PATHS sample paths: the point forecast plus residuals drawn in 7-day blocks (moving-block bootstrap)."""
    horizon = len(point)
    size = min(SEASON, len(residuals))
    starts = rng.integers(0, len(residuals) - size + 1, size=(PATHS, -(-horizon // size)))
    draws = np.concatenate([residuals[s : s + size] for s in starts.ravel()]).reshape(PATHS, -1)[:, :horizon]
    return np.asarray(np.clip(point + draws, 0, None), dtype=np.float64)


#: ETS's forms, chosen by AICc: (trend, damped). On spend itself: no trend or a damped additive trend.
ETS_FORMS: tuple[tuple[str | None, bool], ...] = ((None, False), ("add", True))
#: On log spend: the same and an undamped trend (a constant growth rate, the law of steady growth).
LOG_ETS_FORMS: tuple[tuple[str | None, bool], ...] = ((None, False), ("add", True), ("add", False))


def _fit_ets(
    y: Series, forms: tuple[tuple[str | None, bool], ...], horizon: int, rng: np.random.Generator
) -> tuple[Series, Series, str]:
    """The lowest-AICc Holt-Winters fit with additive weekly seasonality among `forms`: point, paths (paths x days)
    and the form's name. Raises ValueError when no form could be fitted."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    best = None
    # statsmodels warns about convergence on short or flat series; the AICc comparison copes with a poor fit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for trend, damped in forms:
            try:
                fitted = ExponentialSmoothing(
                    y, trend=trend, damped_trend=damped, seasonal="add", seasonal_periods=SEASON
                ).fit(use_brute=False)  # the grid search costs 3x the time for the same fit here
            except (ValueError, np.linalg.LinAlgError):
                continue
            if np.isfinite(fitted.aicc) and (best is None or fitted.aicc < best.aicc):
                best = fitted
        if best is None:
            raise ValueError("no exponential smoothing model could be fitted")
        point = np.asarray(best.forecast(horizon), dtype=np.float64)
        paths = np.asarray(
            best.simulate(horizon, anchor="end", repetitions=PATHS, error="add", random_errors="bootstrap", rng=rng),
            dtype=np.float64,
        ).T
    if not (np.all(np.isfinite(point)) and np.all(np.isfinite(paths))):
        raise ValueError("the fitted model diverges")
    form = "A,N,A" if not best.model.trend else "A,Ad,A" if best.model.damped_trend else "A,A,A"
    return point, paths, form


def _check_history(history: Series, name: str) -> None:
    if len(history) < MIN_ETS_HISTORY:
        raise ValueError(f"{len(history)} days of history; {name} needs {MIN_ETS_HISTORY}")
    if float(np.ptp(history)) == 0.0:
        raise ValueError("constant history")


def exponential_smoothing(history: Series, horizon: int, rng: np.random.Generator) -> Projection:
    """Raises ValueError when the history is too short or the fit fails (callers fall back to the average)."""
    _check_history(history, "exponential smoothing")
    point, paths, form = _fit_ets(history, ETS_FORMS, horizon, rng)
    return Projection(ForecastMethod.EXPONENTIAL_SMOOTHING, np.clip(point, 0, None), np.clip(paths, 0, None), form)


def log_exponential_smoothing(history: Series, horizon: int, rng: np.random.Generator) -> Projection:
    """ETS on log spend, back-transformed by exp: the forecast is the median of its forecast distribution (what
    minimises the absolute error that MASE scores). Raises ValueError when a day has no spend, the history is too
    short or the fit fails."""
    _check_history(history, "exponential smoothing on log spend")
    if float(np.min(history)) <= 0.0:
        raise ValueError("a day without spend, whose log is undefined")
    point, paths, form = _fit_ets(np.log(history), LOG_ETS_FORMS, horizon, rng)
    with np.errstate(over="ignore"):
        point, paths = np.exp(point), np.exp(paths)
    if not (np.all(np.isfinite(point)) and np.all(np.isfinite(paths))):
        raise ValueError("the fitted model diverges")
    return Projection(ForecastMethod.LOG_EXPONENTIAL_SMOOTHING, point, paths, f"log; {form}")


def theta(history: Series, horizon: int, rng: np.random.Generator) -> Projection:
    """Raises ValueError when the history is too short or the fit fails (callers fall back to the average)."""
    from statsmodels.tsa.forecasting.theta import ThetaModel
    from statsmodels.tsa.seasonal import seasonal_decompose

    _check_history(history, "theta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the smoother's convergence warnings on short or flat series
        try:
            model = ThetaModel(history, period=SEASON, deseasonalize=True, use_test=False)
            point = np.asarray(model.fit().forecast(horizon), dtype=np.float64)
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise ValueError(f"theta could not be fitted: {exc}") from exc
    recent = history[-len(WMA_WEIGHTS) * BLOCK :]
    residuals = np.asarray(seasonal_decompose(recent, model="additive", period=SEASON).resid, dtype=np.float64)
    residuals = residuals[np.isfinite(residuals)]
    if not np.all(np.isfinite(point)) or len(residuals) < SEASON:
        raise ValueError("the fitted model diverges")
    point = np.clip(point, 0, None)
    return Projection(ForecastMethod.THETA, point, _block_paths(point, residuals, rng), model.method)


def project(method: ForecastMethod, history: Series, horizon: int, rng: np.random.Generator) -> Projection:
    if method is ForecastMethod.EXPONENTIAL_SMOOTHING:
        return exponential_smoothing(history, horizon, rng)
    if method is ForecastMethod.THETA:
        return theta(history, horizon, rng)
    if method is ForecastMethod.LOG_EXPONENTIAL_SMOOTHING:
        return log_exponential_smoothing(history, horizon, rng)
    return weighted_moving_average(history, horizon, rng)


def seasonal_naive_mae(train: Series) -> float:
    """In-sample mean absolute error of the seasonal naive forecast (y[t] = y[t-7]): MASE's denominator."""
    if len(train) <= SEASON:
        return float("nan")
    return float(np.mean(np.abs(train[SEASON:] - train[:-SEASON])))
