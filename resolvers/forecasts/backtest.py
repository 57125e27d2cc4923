"""Rolling-origin backtests: they choose each scope's forecasting method and calibrate its intervals.

Origins step back a week at a time from 28 days before the end of the history, as long as at least 28 days of
training remain, up to 16 origins (about four months); every origin that fits is used, and the count is reported
(a 60-day history has one origin, a 180-day history 16). At each origin every method is fitted on the history
before it and forecasts far enough ahead for every window a forecast needs (`Run`). Scores per method, on the
28-day total after each origin:

- MASE: mean absolute daily error over the 28 days, divided by the in-sample mean absolute error of the seasonal
  naive forecast (y[t] = y[t-7]) over *all* the training days before the origin (Hyndman & Koehler 2006; m = 7),
  averaged over origins. Below 1 beats seasonal naive's one-week-ahead in-sample error; where the level has grown
  through the training days, the scale is that of the average level, below the current one's.
- Coverage of the *calibrated* 80% interval, measured honestly and as it ships: the interval at an origin is
  calibrated (`calibration`) only with errors whose actuals were known at that origin (an origin 28 days or more
  earlier): this scope's most recent `RECENT_ORIGINS` such origins or, where it has fewer than four, every
  scope's, so no origin is judged with its own future.
  Origins with too few earlier errors anywhere are left out of coverage (`coverage_origins` says how many count).
- Width: the mean calibrated interval width over the mean actual total (0.30 = the interval spans 30% of a
  month's spend).

A method other than the guide's weighted moving average (exponential smoothing, theta or exponential smoothing on log
spend) ships only where it beats
the average on MASE *and* its calibrated coverage is within 0.70-0.90, judged on at least four origins; with fewer,
the history is too short to judge and the average ships, saying so. Where both qualify, the lower MASE ships.
"Within" is judged as a binomial test, not on the observed share: 12 origins measure coverage with a standard error
of about 0.12, so 11 hits of 12 (0.92) says little against a true 0.85. Coverage fails only when the exact (Clopper-
Pearson, statsmodels' `proportion_confint`) 95% interval of the hit rate misses 0.70-0.90 entirely: every true
coverage in the range is implausible at the 5% level.

The fits run with one BLAS thread (threadpoolctl): their matrices are tiny, and OpenBLAS's worker threads spinning
on a busy machine made the optimiser's every step cost milliseconds (7x the CPU on the accuracy benchmark).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from resolvers.forecasts.calibration import (
    LEVEL,
    RECENT_ORIGINS,
    Calibration,
    Run,
    Window,
    interval,
    most_recent,
    pick,
    scale_of,
)
from resolvers.forecasts.methods import MIN_ETS_HISTORY, ForecastMethod, Series, project, seasonal_naive_mae

HORIZON = 28
STEP = 7
MAX_ORIGINS = 16
#: Fewer origins than this (for MASE, or calibrated ones for coverage) are too few to judge a method on.
MIN_ORIGINS = 4
COVERAGE_RANGE = (0.70, 0.90)
#: Coverage fails when its exact interval at this level misses COVERAGE_RANGE (a two-sided binomial test).
COVERAGE_TEST_ALPHA = 0.05
METHODS = (
    ForecastMethod.WEIGHTED_MOVING_AVERAGE,
    ForecastMethod.EXPONENTIAL_SMOOTHING,
    ForecastMethod.THETA,
    ForecastMethod.LOG_EXPONENTIAL_SMOOTHING,
)
NAMES = {
    ForecastMethod.WEIGHTED_MOVING_AVERAGE: "weighted moving average",
    ForecastMethod.EXPONENTIAL_SMOOTHING: "exponential smoothing",
    ForecastMethod.THETA: "theta",
    ForecastMethod.LOG_EXPONENTIAL_SMOOTHING: "exponential smoothing on log spend",
}
SCORED = Window(0, HORIZON)


@dataclass(frozen=True)
class Score:
    method: ForecastMethod
    mase: float | None
    coverage: float | None
    origins: int
    width: float | None = None
    coverage_origins: int = 0
    #: Where the coverage origins' calibration came from: scope, pooled or mixed.
    calibration: str | None = None
    #: The method's own sample-path interval, uncalibrated, on the same origins (what shipped before).
    raw_coverage: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "method": self.method.value,
            "mase": _round(self.mase),
            "coverage": _round(self.coverage),
            "width": _round(self.width),
            "origins": self.origins,
            "coverage_origins": self.coverage_origins,
            "calibration": self.calibration,
            "raw_coverage": _round(self.raw_coverage),
            "error": self.error,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


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


@dataclass(frozen=True)
class ScopeRuns:
    """Every method's backtest runs on one scope (or the error that stopped a method)."""

    history: Series
    runs: dict[ForecastMethod, tuple[Run, ...]] = field(default_factory=dict)
    errors: dict[ForecastMethod, str] = field(default_factory=dict)


def origins(length: int) -> list[int]:
    """Where training stops (exclusive) at each origin, latest first, keeping enough history to fit."""
    found = []
    for k in range(MAX_ORIGINS):
        cut = length - HORIZON - k * STEP
        if cut < MIN_ETS_HISTORY:
            break
        found.append(cut)
    return found


def run_scope(
    history: Series, seed: int, horizon: int = HORIZON, methods: Sequence[ForecastMethod] = METHODS
) -> ScopeRuns:
    """CPU work: fits every method at every origin."""
    with one_blas_thread():
        return _run_scope(history, seed, horizon, methods)


def one_blas_thread() -> threadpool_limits:
    """The fits' matrices are tiny: BLAS threads only contend (process-wide while it lasts)."""
    return threadpool_limits(limits=1, user_api="blas")


def _run_scope(history: Series, seed: int, horizon: int, methods: Sequence[ForecastMethod]) -> ScopeRuns:
    horizon = max(horizon, HORIZON)
    n = len(history)
    result = ScopeRuns(history)
    cuts = origins(n)
    for method in methods:
        runs: list[Run] = []
        for cut in cuts:
            train = history[:cut]
            try:
                projection = project(method, train, horizon, np.random.default_rng(seed + cut))
            except ValueError as exc:
                result.errors[method] = str(exc)
                runs = []
                break
            sums = projection.paths[:, :HORIZON].sum(axis=1)
            low, high = np.quantile(sums, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
            runs.append(
                Run(
                    cut=cut - n,
                    point=projection.point,
                    actual=history[cut : cut + horizon],
                    scale=scale_of(train),
                    naive_mae=seasonal_naive_mae(train),
                    raw=(float(low), float(high)),
                )
            )
        if not cuts:
            result.errors.setdefault(method, "too little history to backtest")
        result.runs[method] = tuple(runs)
    return result


def evaluate(
    method: ForecastMethod, scope: ScopeRuns, pooled: Sequence[Run], recent: int | None = RECENT_ORIGINS
) -> Score:
    """A method's backtest figures on one scope; `pooled` is every scope's runs of the method (this one's too);
    `recent` how many of the scope's latest known origins calibrate (None: all; the benchmark compares)."""
    error = scope.errors.get(method)
    runs = [r for r in scope.runs.get(method, ()) if len(r.actual) >= HORIZON]
    if error is not None or not runs:
        return Score(method, None, None, len(runs), error=error or "too little history to backtest")
    mases = [
        float(np.mean(np.abs(r.actual[:HORIZON] - r.point[:HORIZON]))) / r.naive_mae
        for r in runs
        if math.isfinite(r.naive_mae) and r.naive_mae > 0
    ]
    covered: list[bool] = []
    raw_covered: list[bool] = []
    widths: list[float] = []
    totals: list[float] = []
    sources: set[Calibration] = set()
    for run in runs:
        own = _scores(runs, run.cut, recent)
        q = pick(own, _scores(pooled, run.cut, None))
        if q.value is None:
            continue
        actual = float(run.actual[:HORIZON].sum())
        low, high = interval(float(run.point[:HORIZON].sum()), q.value, run.scale, HORIZON)
        covered.append(low <= actual <= high)
        if run.raw is not None:
            raw_covered.append(run.raw[0] <= actual <= run.raw[1])
        widths.append(high - low)
        totals.append(actual)
        sources.add(q.calibration)
    return Score(
        method,
        mase=float(np.mean(mases)) if mases else None,
        coverage=float(np.mean(covered)) if covered else None,
        origins=len(runs),
        width=sum(widths) / sum(totals) if totals and sum(totals) > 0 else None,
        coverage_origins=len(covered),
        calibration=None if not sources else sources.pop().value if len(sources) == 1 else "mixed",
        raw_coverage=float(np.mean(raw_covered)) if raw_covered else None,
    )


def _scores(runs: Sequence[Run], cut: int, recent: int | None) -> list[float]:
    """The 28-day scores of the runs whose actuals were known at origin `cut` (the latest `recent` of them)."""
    known = [r for r in runs if r.known_by(SCORED, cut) and r.score(SCORED) is not None]
    return [s for r in most_recent(known, recent) if (s := r.score(SCORED)) is not None]


def choose(
    scope: ScopeRuns, pooled: Mapping[ForecastMethod, Sequence[Run]], recent: int | None = RECENT_ORIGINS
) -> Choice:
    return decide(*(evaluate(m, scope, pooled.get(m, ()), recent) for m in METHODS))


def decide(wma: Score, *candidates: Score) -> Choice:
    """The guide's average unless a candidate beats it on MASE with plausible coverage; the best such one."""
    scores = (wma, *candidates)
    default = ForecastMethod.WEIGHTED_MOVING_AVERAGE
    # The average never fails to fit: its origins are the ones the history allows (a candidate that failed has none).
    origins, calibrated = wma.origins, wma.coverage_origins
    if origins < MIN_ORIGINS or calibrated < MIN_ORIGINS or wma.mase is None:
        return Choice(
            default,
            scores,
            f"weighted moving average: history too short to judge ({origins} backtest origins, {calibrated} "
            f"with a calibrated interval; {MIN_ORIGINS} needed)",
        )
    verdicts = []
    qualified: list[Score] = []
    for score in candidates:
        verdict = _verdict(wma.mase, score)
        if verdict is None:
            qualified.append(score)
        else:
            verdicts.append(verdict)
    if qualified:
        best = min(qualified, key=lambda s: s.mase if s.mase is not None else math.inf)
        others = "".join(f"; {v}" for v in verdicts)
        return Choice(best.method, scores, f"{NAMES[best.method]} won on MASE and coverage{others}")
    return Choice(default, scores, "weighted moving average: " + "; ".join(verdicts))


def _verdict(wma_mase: float, score: Score) -> str | None:
    """Why a candidate may not ship, or None where it may."""
    name = NAMES[score.method]
    low, high = COVERAGE_RANGE
    if score.error is not None:
        return f"{name} failed ({score.error})"
    if score.mase is None or score.coverage is None or score.coverage_origins < MIN_ORIGINS:
        return f"{name} has too few origins to judge"
    if score.mase >= wma_mase:
        return f"{name} lost on MASE"
    plausible_low, plausible_high = coverage_interval(score.coverage, score.coverage_origins)
    if plausible_high < low or plausible_low > high:
        return (
            f"{name} won on MASE but its calibrated coverage {score.coverage:.2f} ({score.coverage_origins} "
            f"origins; 95% interval {plausible_low:.2f}-{plausible_high:.2f}) is outside {low:.2f}-{high:.2f}"
        )
    return None


def coverage_interval(coverage: float, origins: int) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a coverage measured on `origins` origins."""
    from statsmodels.stats.proportion import proportion_confint

    hits = round(coverage * origins)
    low, high = proportion_confint(hits, origins, alpha=COVERAGE_TEST_ALPHA, method="beta")
    return float(low), float(high)


def window_scores(runs: Sequence[Run], window: Window, recent: int | None = RECENT_ORIGINS) -> list[float]:
    """The scores on `window` of the latest `recent` runs (None: all) whose actual total is known (at generation
    time every origin is past; a window further ahead is known at fewer). The same rule as `evaluate`'s."""
    known = [r for r in runs if r.score(window) is not None]
    return [s for r in most_recent(known, recent) if (s := r.score(window)) is not None]
