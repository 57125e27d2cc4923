"""Forecasts: per team and for the platform, this month's end and next month's total with a conformally calibrated
80% interval; the method chosen per scope by a rolling-origin backtest (exponential smoothing or theta only where it
beats the guide's weighted moving average on MASE and its calibrated coverage is within 0.70-0.90, judged on at
least four origins); each budget's exhaustion dates; projected overruns of a budget's hard limit alert once per budget
and period, naming the date."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from models.alerts import AlertDeliveryRow
from models.db import Database
from resolvers.forecasts.backtest import (
    Choice,
    ScopeRuns,
    Score,
    coverage_interval,
    decide,
    evaluate,
    origins,
    run_scope,
    window_scores,
)
from resolvers.forecasts.calibration import (
    RECENT_ORIGINS,
    Calibration,
    Run,
    Window,
    conformal_quantile,
    pick,
    scale_of,
)
from resolvers.forecasts.exhaustion import (
    ExhaustionStatus,
    Outlook,
    exhaustion,
    period_end_projection,
    reached_day,
)
from resolvers.forecasts.methods import ForecastMethod, project, wma_rate
from resolvers.platform.config import Settings
from resolvers.platform.periods import Cadence, Period, zone
from resolvers.platform.periods import Window as BudgetWindow
from resolvers.service.schedule import scheduled_jobs
from tests.conftest import NOW
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

FIELDS = """teamId period horizon forecastedCost confidenceLow confidenceHigh confidenceLevel actualToDate method
  calibration generatedAt backtestReason
  backtest { method mase coverage width origins coverageOrigins calibration rawCoverage error }"""
GENERATE = f"mutation {{ generateForecasts {{ {FIELDS} }} }}"
FORECASTS = f"query($team: String) {{ forecasts(teamId: $team) {{ {FIELDS} }} }}"
WEEKDAY = (1.0, 1.08, 1.1, 1.05, 0.92, 0.38, 0.3)
WMA = ForecastMethod.WEIGHTED_MOVING_AVERAGE
THETA = ForecastMethod.THETA
LOG_ETS = ForecastMethod.LOG_EXPONENTIAL_SMOOTHING


async def weekly_traffic(db: Database, team: str, days: int, level: float, growth: float = 0.004) -> None:
    rng = random.Random(team)
    logs = []
    for back in range(1, days + 1):
        moment = NOW - timedelta(days=back)
        spend = level * (1 + growth) ** (days - back) * WEEKDAY[moment.weekday()] * rng.lognormvariate(0, 0.12)
        logs.append(SpendLog(round(spend, 6), moment.replace(hour=12, minute=0), team_id=team))
    await add_spend(db, *logs)


def by_scope(found: list[dict[str, Any]]) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(f["teamId"], f["horizon"]): f for f in found}


async def test_weekly_seasonal_spend_is_forecast_with_a_calibrated_interval_and_the_origins_that_ran(
    api: Api, db: Database
) -> None:
    await weekly_traffic(db, "engineering", 150, 100.0)
    found = by_scope((await api.data(GENERATE))["generateForecasts"])
    assert set(found) == {
        (None, "CURRENT_MONTH"),
        (None, "NEXT_MONTH"),
        ("engineering", "CURRENT_MONTH"),
        ("engineering", "NEXT_MONTH"),
    }
    current, upcoming = found[("engineering", "CURRENT_MONTH")], found[("engineering", "NEXT_MONTH")]
    assert (current["period"], upcoming["period"]) == ("2026-11", "2026-12")
    wma, ets, theta, log_ets = current["backtest"]
    assert [s["method"] for s in (wma, ets, theta, log_ets)] == [
        "WEIGHTED_MOVING_AVERAGE",
        "EXPONENTIAL_SMOOTHING",
        "THETA",
        "LOG_EXPONENTIAL_SMOOTHING",
    ]
    # 150 days of history: every origin a week apart that leaves 28 days to fit, reported as run.
    assert ets["origins"] == theta["origins"] == log_ets["origins"] == wma["origins"] == len(origins(150)) == 14
    for seasonal in (ets, theta, log_ets):
        assert 4 <= seasonal["coverageOrigins"] <= seasonal["origins"]
        assert seasonal["calibration"] in {"scope", "pooled", "mixed"}
        assert seasonal["mase"] < wma["mase"]  # a weekly pattern the average cannot follow
    # The rule, whichever way it went.
    if current["method"] != "WEIGHTED_MOVING_AVERAGE":
        chosen = next(s for s in current["backtest"] if s["method"] == current["method"])
        plausible = coverage_interval(chosen["coverage"], chosen["coverageOrigins"])
        assert plausible[1] >= 0.7 and plausible[0] <= 0.9 and chosen["mase"] < wma["mase"]
        assert all(chosen["mase"] <= s["mase"] for s in current["backtest"]) or "coverage" in current["backtestReason"]
    else:
        assert "coverage" in current["backtestReason"], current["backtestReason"]
    for f in (current, upcoming):
        assert Decimal(f["confidenceLow"]) <= Decimal(f["forecastedCost"]) <= Decimal(f["confidenceHigh"])
        assert f["confidenceLevel"] == "0.8" and f["calibration"] == "scope"
    # This month = its closed days (1st..14th) + forecast from today; December is a whole month of ~155 $/day.
    closed = sum(100 * 1.004 ** (150 - back) * WEEKDAY[(NOW - timedelta(days=back)).weekday()] for back in range(1, 15))
    assert abs(Decimal(current["actualToDate"]) - Decimal(closed)) / Decimal(closed) < Decimal("0.1")
    assert Decimal(current["forecastedCost"]) > Decimal(current["actualToDate"])
    assert 2500 < float(upcoming["forecastedCost"]) < 6000
    assert found[(None, "NEXT_MONTH")]["forecastedCost"] == upcoming["forecastedCost"]  # one team is everything
    again = by_scope((await api.data(FORECASTS, {"team": "engineering"}))["forecasts"])
    assert set(again) == {("engineering", "CURRENT_MONTH"), ("engineering", "NEXT_MONTH")}
    assert again[("engineering", "CURRENT_MONTH")]["forecastedCost"] == current["forecastedCost"]


async def test_short_history_keeps_the_guides_weighted_moving_average(api: Api, db: Database) -> None:
    await add_spend(db, *[SpendLog(10, NOW - timedelta(days=d), team_id="new-team") for d in range(1, 11)])
    found = by_scope((await api.data(GENERATE))["generateForecasts"])
    current = found[("new-team", "CURRENT_MONTH")]
    assert current["method"] == "WEIGHTED_MOVING_AVERAGE" and "too short to judge" in current["backtestReason"]
    assert [s["origins"] for s in current["backtest"]] == [0, 0, 0, 0]
    # 10 $/day: the 10 closed days of November so far, plus today and the 15 days after it.
    assert current["forecastedCost"] == "260" and current["actualToDate"] == "100"
    assert found[("new-team", "NEXT_MONTH")]["forecastedCost"] == "310"
    # Nothing anywhere to calibrate with: the interval is the method's own, and says so.
    assert current["calibration"] == "none"


async def test_a_60_day_history_backtests_on_the_one_origin_it_has_and_says_it_is_too_short(
    api: Api, db: Database
) -> None:
    await weekly_traffic(db, "young", 60, 50.0)
    current = by_scope((await api.data(GENERATE))["generateForecasts"])[("young", "CURRENT_MONTH")]
    assert [s["origins"] for s in current["backtest"]] == [1, 1, 1, 1] == [len(origins(60))] * 4
    assert current["method"] == "WEIGHTED_MOVING_AVERAGE"
    assert "too short to judge (1 backtest origins" in current["backtestReason"], current["backtestReason"]


def test_calibrated_intervals_cover_about_80_percent_where_the_raw_ones_do_not() -> None:
    """Stationary noisy weekly series: the average's own bootstrap interval ignores its parameter error; the
    conformal one, calibrated only with errors known at each origin, covers close to its stated level."""
    rng = np.random.default_rng(11)
    weekday = np.array(WEEKDAY * 26)[:182]
    scopes = [
        run_scope(50 * rng.uniform(0.5, 2) * weekday * rng.lognormal(0, 0.35, 182), seed, methods=(WMA,))
        for seed in range(24)
    ]
    pooled = {WMA: [r for s in scopes for r in s.runs[WMA]]}
    scores = [evaluate(WMA, s, pooled[WMA]) for s in scopes]
    covered = sum(s.coverage * s.coverage_origins for s in scores if s.coverage is not None)
    counted = sum(s.coverage_origins for s in scores)
    assert counted >= 24 * 8
    assert 0.72 <= covered / counted <= 0.9, covered / counted


def test_theta_forecasts_a_clean_weekly_series_better_than_the_average_and_ships_there() -> None:
    """A steady level with a strong weekday pattern and a little noise: the average forecasts every day at the
    weekly mean (it misses the weekend dip by half); theta's weekly deseasonalisation follows it."""
    rng = np.random.default_rng(5)
    weekday = np.array(WEEKDAY * 26)[:182]
    series = 80 * weekday * rng.lognormal(0, 0.05, 182)
    scope = run_scope(series, 1, methods=(WMA, THETA))
    assert not scope.errors and len(scope.runs[THETA]) == 16
    wma, theta = (evaluate(m, scope, scope.runs[m]) for m in (WMA, THETA))
    assert wma.mase is not None and theta.mase is not None
    assert theta.mase < 1 < wma.mase and theta.mase < wma.mase / 3, (theta.mase, wma.mase)
    choice = decide(wma, theta)
    assert choice.method is THETA and choice.reason.startswith("theta won on MASE and coverage"), choice.reason


def test_ets_on_log_spend_follows_steady_growth_where_theta_and_ets_lag_and_ships_there() -> None:
    """Spend growing 3% a week with a weekday pattern in proportion (the accuracy benchmark's steady growth, its
    law exactly): on log spend that is a linear trend plus an additive weekly pattern, ETS(A,A,A) on logs. Theta's
    half slope and ETS's damped additive trend fall behind the growth over 28 days; ETS on logs does not."""
    rng = np.random.default_rng(3)
    weekday = 1 + 0.5 * (np.array(WEEKDAY * 26)[:182] - 1)
    series = 60 * 1.03 ** (np.arange(182) / 7) * weekday * rng.lognormal(0, 0.1, 182)
    methods = (WMA, ForecastMethod.EXPONENTIAL_SMOOTHING, THETA, LOG_ETS)
    scope = run_scope(series, 1, methods=methods)
    assert not scope.errors and all(len(scope.runs[m]) == 16 for m in methods)
    wma, ets, theta, log_ets = (evaluate(m, scope, scope.runs[m]) for m in methods)
    assert log_ets.mase is not None and ets.mase is not None and theta.mase is not None
    assert log_ets.mase < 1 and log_ets.mase < 0.95 * min(ets.mase, theta.mase), (log_ets.mase, ets.mase, theta.mase)
    choice = decide(wma, ets, theta, log_ets)
    assert choice.method is LOG_ETS, choice.reason
    assert choice.reason.startswith("exponential smoothing on log spend won on MASE and coverage"), choice.reason
    projection = project(LOG_ETS, series, 60, np.random.default_rng(1))
    assert projection.detail.startswith("log; ") and projection.paths.shape == (1000, 60)
    assert np.all(projection.paths > 0)
    # The median forecast: about half the sample paths' 28-day totals are below the point's.
    below = float(np.mean(projection.paths[:, :28].sum(axis=1) < projection.point[:28].sum()))
    assert 0.4 < below < 0.6, below


def test_ets_on_log_spend_needs_spend_every_day_and_leaves_the_choice_to_the_others() -> None:
    """A day without spend has no logarithm: the method refuses with a reason the backtest reports, and the other
    methods are judged as before."""
    rng = np.random.default_rng(4)
    series = 40 * np.array(WEEKDAY * 26)[:182] * rng.lognormal(0, 0.1, 182)
    series[100] = 0.0
    with pytest.raises(ValueError, match="a day without spend"):
        project(LOG_ETS, series, 28, np.random.default_rng(1))
    scope = run_scope(series, 1)
    assert scope.runs[LOG_ETS] == () and "a day without spend" in scope.errors[LOG_ETS]
    assert len(scope.runs[THETA]) == 16 and THETA not in scope.errors
    score = evaluate(LOG_ETS, scope, [])
    assert score.mase is None and score.error is not None and "a day without spend" in score.error


async def test_a_forecast_by_ets_on_log_spend_is_stored_and_read_back(
    api: Api, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever scope it ships for, the new method's forecast is stored (its name fits the column) and read back
    with its interval and its backtest; the choice itself is the backtest's (tested above), forced here."""
    import resolvers.forecasts as forecasts

    real = forecasts.choose

    def log_ets_ships(scope: ScopeRuns, pooled: Any, recent: int | None = RECENT_ORIGINS) -> Choice:
        return Choice(LOG_ETS, real(scope, pooled, recent).scores, "forced by the test")

    monkeypatch.setattr(forecasts, "choose", log_ets_ships)
    await weekly_traffic(db, "growing", 120, 50.0, growth=0.005)
    current = by_scope((await api.data(GENERATE))["generateForecasts"])[("growing", "CURRENT_MONTH")]
    assert current["method"] == "LOG_EXPONENTIAL_SMOOTHING" and current["backtestReason"] == "forced by the test"
    log_ets = next(s for s in current["backtest"] if s["method"] == "LOG_EXPONENTIAL_SMOOTHING")
    assert log_ets["error"] is None and log_ets["origins"] == len(origins(120)) and log_ets["mase"] > 0
    assert Decimal(current["confidenceLow"]) <= Decimal(current["forecastedCost"]) <= Decimal(current["confidenceHigh"])
    assert current["calibration"] == "scope"
    again = by_scope((await api.data(FORECASTS, {"team": "growing"}))["forecasts"])
    stored = again[("growing", "CURRENT_MONTH")]
    assert stored["method"] == "LOG_EXPONENTIAL_SMOOTHING" and stored["forecastedCost"] == current["forecastedCost"]
    assert stored["backtest"] == current["backtest"]


def test_theta_intervals_are_calibrated_on_known_series() -> None:
    """Series of theta's own law (a linear trend times a weekday pattern, lognormal noise): its own interval ignores
    the error of its level and trend and covers far too little; the conformal 80% interval, calibrated only with
    errors known at each origin (own or pooled), covers close to 80% of the 28-day totals."""
    rng = np.random.default_rng(23)
    weekday = np.array(WEEKDAY * 26)[:182]
    trend = 1 + 0.003 * np.arange(182)
    scopes = [
        run_scope(50 * rng.uniform(0.5, 2) * trend * weekday * rng.lognormal(0, 0.15, 182), seed, methods=(THETA,))
        for seed in range(12)
    ]
    pooled = [r for s in scopes for r in s.runs[THETA]]
    scores = [evaluate(THETA, s, pooled) for s in scopes]
    covered = sum(s.coverage * s.coverage_origins for s in scores if s.coverage is not None)
    raw = sum(s.raw_coverage * s.coverage_origins for s in scores if s.raw_coverage is not None)
    counted = sum(s.coverage_origins for s in scores)
    assert counted >= 12 * 8
    assert raw / counted < 0.5, raw / counted
    assert 0.72 <= covered / counted <= 0.9, covered / counted


def early_errors_huge(origins: int = 16, calm: int = 12) -> list[Run]:
    """Backtest runs a week apart, latest first, forecasting 10 a day: the latest `calm` err by 1.0-1.35 x the
    scale per day on the 28-day total, the earlier ones (short training) by 40 x."""
    runs = []
    for k in range(origins):
        score = 1.0 + 0.05 * k if k < calm else 40.0
        runs.append(Run(cut=-28 - 7 * k, point=np.full(28, 10.0), actual=np.full(28, 10.0 + score), scale=1.0))
    return runs


def test_intervals_are_calibrated_with_the_latest_origins_errors_only_at_generation_and_in_the_backtest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The earliest origins were trained on about 28 days and err most: they must not widen today's interval. A
    scope's own interval uses its latest RECENT_ORIGINS known origins, in the forecast job and in the backtest's
    coverage alike; the pooled fallback still takes every scope's errors."""
    import resolvers.forecasts as forecasts
    from resolvers.forecasts import ScopeHistory, forecast_scopes
    from resolvers.spend import ScopeKind

    assert RECENT_ORIGINS == 4
    runs = early_errors_huge()
    month = Window(0, 28)
    assert window_scores(runs, month) == pytest.approx([1.0, 1.05, 1.1, 1.15])  # the latest four, not all 16
    assert conformal_quantile(window_scores(runs, month, recent=None)) == 40.0
    # The forecast job: every method's runs are these; the 28-day band is point +- 1.15 x scale x 28.
    rng = np.random.default_rng(3)
    series = 80 * np.array(WEEKDAY * 26)[:180] * rng.lognormal(0, 0.05, 180)
    monkeypatch.setattr(
        forecasts,
        "run_scope",
        lambda history, seed, horizon: ScopeRuns(history, runs={m: tuple(runs) for m in forecasts.METHODS}),
    )
    [made] = forecast_scopes([ScopeHistory(ScopeKind.TEAM, "t", tuple(series))], NOW.date(), NOW)
    assert made.outlook is not None and made.outlook.calibration == Calibration.SCOPE.value
    half = made.outlook.high[27] - sum(made.outlook.point[:28])
    assert half == pytest.approx(1.15 * scale_of(series) * 28, rel=1e-4), half
    # The backtest: at the latest five origins the four latest known ones are calm, so those intervals are narrow; with
    # every origin each would span 40 x. Each origin is still judged only with errors known before it.
    scope = ScopeRuns(np.zeros(200), runs={WMA: tuple(runs)})
    latest, every = evaluate(WMA, scope, runs), evaluate(WMA, scope, runs, recent=None)
    assert latest.coverage_origins == every.coverage_origins == 9  # own for origins 0-8, pooled for none more
    assert latest.width is not None and every.width is not None and latest.width < every.width * 0.6
    # Short own history: the pooled fallback takes every scope's known errors, as before.
    assert pick(window_scores(runs[:3], month), window_scores(runs, month, recent=None)).value == 40.0


def test_the_backtest_fits_run_with_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fits' matrices are tiny: BLAS worker threads only spin (7x the CPU on a busy machine)."""
    from threadpoolctl import threadpool_info

    import resolvers.forecasts.backtest as backtest

    seen: list[int] = []
    real = backtest.project

    def spy(*args: Any) -> Any:
        seen.extend(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        return real(*args)

    monkeypatch.setattr(backtest, "project", spy)
    run_scope(np.full(70, 5.0) + np.arange(70) % 7, 1, methods=(WMA,))
    assert seen and set(seen) == {1}


def test_the_best_qualified_method_ships_and_the_reason_names_the_others() -> None:
    def score(method: ForecastMethod, mase: float, coverage: float) -> Score:
        return Score(method, mase, coverage, 12, coverage_origins=12)

    ets, theta = ForecastMethod.EXPONENTIAL_SMOOTHING, THETA
    both = decide(score(WMA, 1.5, 0.6), score(ets, 0.9, 0.8), score(theta, 0.8, 0.8))
    assert both.method is theta and both.reason == "theta won on MASE and coverage", both.reason
    # The lower MASE has implausible coverage (2 of 12): the other candidate ships, and the reason says why.
    narrow = decide(score(WMA, 1.5, 0.6), score(ets, 0.9, 0.8), score(theta, 0.8, 2 / 12))
    assert narrow.method is ets and "theta won on MASE but its calibrated coverage 0.17" in narrow.reason
    neither = decide(score(WMA, 0.7, 0.8), score(ets, 0.9, 0.8), score(theta, 0.8, 0.8))
    assert neither.method is WMA
    assert neither.reason == "weighted moving average: exponential smoothing lost on MASE; theta lost on MASE"
    failed = decide(score(WMA, 1.5, 0.6), Score(ets, None, None, 0, error="constant history"), score(theta, 0.8, 0.8))
    assert failed.method is theta and "exponential smoothing failed (constant history)" in failed.reason


def test_the_conformal_quantile_is_the_split_conformal_rank() -> None:
    assert conformal_quantile([1.0, 2.0, 3.0]) is None  # 80% of 3 scores: no finite quantile
    assert conformal_quantile([4.0, 1.0, 3.0, 2.0]) == 4.0  # ceil(5 x 0.8) = 4th smallest of 4
    assert conformal_quantile([float(i) for i in range(1, 11)]) == 9.0  # ceil(11 x 0.8) = 9th of 10
    assert pick([1.0, 2.0], [5.0, 6.0, 7.0, 8.0]).calibration is Calibration.POOLED
    assert pick([1.0, 2.0, 3.0, 4.0], [9.0] * 9).calibration is Calibration.SCOPE
    assert pick([], [1.0]).calibration is Calibration.NONE


def test_the_weighted_moving_average_weights_the_last_three_months_3_2_1() -> None:
    import numpy as np

    history = np.array([30.0] * 30 + [20.0] * 30 + [10.0] * 30 + [99.0] * 5)
    assert math.isclose(wma_rate(history[:90]), (3 * 10 + 2 * 20 + 1 * 30) / 6)
    assert math.isclose(wma_rate(np.array([4.0] * 12)), 4.0)  # one partial block: its mean


def test_exponential_smoothing_never_ships_where_it_loses() -> None:
    def choice(wma: tuple[float, float], ets: tuple[float, float], origins: int = 12) -> Choice:
        return decide(
            Score(ForecastMethod.WEIGHTED_MOVING_AVERAGE, wma[0], wma[1], origins, coverage_origins=origins),
            Score(ForecastMethod.EXPONENTIAL_SMOOTHING, ets[0], ets[1], origins, coverage_origins=origins),
        )

    assert choice((1.2, 0.5), (0.9, 0.8)).method is ForecastMethod.EXPONENTIAL_SMOOTHING
    assert choice((0.9, 0.8), (0.95, 0.8)).method is ForecastMethod.WEIGHTED_MOVING_AVERAGE  # worse MASE
    # Coverage is judged by a binomial test: it fails only where every true coverage in 0.70-0.90 is implausible.
    for coverage, judged_on in ((0.25, 12), (0.5, 40), (1.0, 40), (0.97, 96)):  # too narrow or too wide, surely
        lost = choice((1.2, 0.8), (0.9, coverage), judged_on)
        assert lost.method is ForecastMethod.WEIGHTED_MOVING_AVERAGE and "coverage" in lost.reason, lost.reason
    for coverage, judged_on in ((0.5, 12), (1.0, 12), (11 / 12, 12), (0.7, 12), (0.85, 96)):  # not ruled out
        kept = choice((1.2, 0.5), (0.9, coverage), judged_on)
        assert kept.method is ForecastMethod.EXPONENTIAL_SMOOTHING, (coverage, judged_on, kept.reason)
    short = choice((1.2, 0.5), (0.9, 0.8), origins=3)
    assert short.method is ForecastMethod.WEIGHTED_MOVING_AVERAGE and "too short to judge (3" in short.reason
    missing = decide(
        Score(ForecastMethod.WEIGHTED_MOVING_AVERAGE, 1.0, 0.5, 6, coverage_origins=6),
        Score(ForecastMethod.EXPONENTIAL_SMOOTHING, None, None, 6, error="the fitted model diverges"),
    )
    assert missing.method is ForecastMethod.WEIGHTED_MOVING_AVERAGE and "diverges" in missing.reason


BUDGET = """mutation($input: BudgetInput!) { createBudget(input: $input) { id } }"""
OUTLOOK = """query($id: ID!) { budget(id: $id) { forecast { periodStart periodEnd spent projectedSpend projectedLow
  projectedHigh method calibration soft { limit status date earliest latest }
  hard { limit status date earliest latest } } } }"""


async def test_a_forecast_reaching_a_budgets_hard_limit_alerts_once_naming_the_date(api: Api, db: Database) -> None:
    await weekly_traffic(db, "engineering", 60, 100.0, growth=0.0)
    eng = {"name": "Eng", "entityType": "TEAM", "entityId": "engineering", "monthlyLimit": "2000"}
    tight = (await api.data(BUDGET, {"input": {**eng, "alertEmail": "eng-lead@example.com"}}))["createBudget"]
    await api.data(BUDGET, {"input": {"name": "Cap", "entityType": "GLOBAL", "monthlyLimit": "100000"}})
    for _ in range(2):
        await api.data(GENERATE)
    alerts = (
        await api.data("{ alerts(type: PROJECTED_LIMIT_EXCEEDED) { budgetId teamId message limit spend details } }")
    )["alerts"]
    assert [(a["budgetId"], a["teamId"], a["limit"]) for a in alerts] == [(tight["id"], "engineering", "2000")]
    hard = (await api.data(OUTLOOK, {"id": tight["id"]}))["budget"]["forecast"]["hard"]
    assert hard["status"] == "EXPECTED"
    details = alerts[0]["details"]
    assert details["projected_exceeded_date"] == hard["date"] and hard["date"] in alerts[0]["message"]
    assert details["projected_exceeded_earliest"] == hard["earliest"]
    assert "forecast to reach its hard limit" in alerts[0]["message"]
    async with db.reader() as session:
        deliveries = (await session.scalars(select(AlertDeliveryRow))).all()
    assert [(d.channel, d.target) for d in deliveries] == [("email", "eng-lead@example.com")]


async def test_exhaustion_dates_for_budgets_burning_fast_slow_and_already_past(api: Api, db: Database) -> None:
    await weekly_traffic(db, "engineering", 60, 100.0, growth=0.0)
    await weekly_traffic(db, "design", 60, 5.0, growth=0.0)
    # ops: exactly 100 $ on each of November's first ten days, nothing since.
    await add_spend(db, *[SpendLog(100, NOW.replace(day=d, hour=9), team_id="ops") for d in range(1, 11)])
    ids = {}
    for name, team, limit in (
        ("fast", "engineering", "2000"),
        ("slow", "design", "100000"),
        ("past", "ops", "450"),
    ):
        made = await api.data(
            BUDGET, {"input": {"name": name, "entityType": "TEAM", "entityId": team, "monthlyLimit": limit}}
        )
        ids[name] = made["createBudget"]["id"]
    before = (await api.data(OUTLOOK, {"id": ids["fast"]}))["budget"]["forecast"]
    assert before["hard"]["status"] == "NO_FORECAST" and before["projectedSpend"] is None
    await api.data(GENERATE)
    outlook = {n: (await api.data(OUTLOOK, {"id": i}))["budget"]["forecast"] for n, i in ids.items()}
    fast = outlook["fast"]
    spent, per_day = Decimal(fast["spent"]), Decimal(2000) / 30  # the weekday-weighted mean is about 83 $/day
    # 60 days of history: one backtest origin per scope, three scopes with spend: too few errors to calibrate with.
    assert fast["hard"]["status"] == "EXPECTED" and fast["calibration"] == "none"
    reached = date.fromisoformat(fast["hard"]["date"])
    assert NOW.date() < reached <= date(2026, 11, 30)
    assert abs((reached - NOW.date()).days - float((2000 - spent) / Decimal(83))) <= 3
    assert date.fromisoformat(fast["hard"]["earliest"]) <= reached
    assert fast["hard"]["latest"] is None or reached <= date.fromisoformat(fast["hard"]["latest"])
    # The soft limit (80%) comes first; the period's projection is above the limit and brackets it.
    assert fast["soft"]["status"] in {"EXPECTED", "REACHED"} and fast["soft"]["date"] <= fast["hard"]["date"]
    assert Decimal(fast["projectedLow"]) <= Decimal(fast["projectedSpend"]) <= Decimal(fast["projectedHigh"])
    assert Decimal(fast["projectedSpend"]) > Decimal(2000) and per_day > 0
    slow = outlook["slow"]
    assert (slow["hard"]["status"], slow["hard"]["date"], slow["soft"]["status"]) == (
        "NOT_THIS_PERIOD",
        None,
        "NOT_THIS_PERIOD",
    )
    past = outlook["past"]
    assert past["hard"]["status"] == "REACHED" and past["hard"]["date"] == "2026-11-05"  # 500 >= 450 on the 5th
    assert past["soft"]["date"] == "2026-11-04"  # 400 >= 360 (80%) on the 4th
    rest = await api.client.get(f"/api/v1/budgets/{ids['fast']}/forecast", headers=api.bearer())
    assert rest.status_code == 200
    body = rest.json()
    assert body["hard"] == {**fast["hard"], "status": "expected", "limit": body["hard"]["limit"]}
    assert body["budget_id"] == ids["fast"] and Decimal(str(body["hard"]["limit"])) == 2000
    missing = await api.client.get(
        "/api/v1/budgets/00000000-0000-4000-8000-000000000000/forecast", headers=api.bearer()
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("time_zone", "today"), [("Pacific/Auckland", "2026-11-16"), ("America/Los_Angeles", "2026-11-15")]
)
def test_a_limit_reached_on_an_unknown_day_is_dated_today_in_the_budgets_zone(time_zone: str, today: str) -> None:
    """When the day spend got there is not known (not in the rollups yet), REACHED is dated today in the budget's
    zone, never today in UTC: at 12:00 UTC on the 15th it is already the 16th in Auckland."""
    local = zone(time_zone)
    month = BudgetWindow(Cadence.MONTHLY, time_zone).period_at(NOW)
    done = exhaustion(month, Decimal(60), Decimal(50), NOW, None, None, local)
    assert (done.status, done.date, done.earliest, done.latest) == (ExhaustionStatus.REACHED,) + (
        date.fromisoformat(today),
    ) * 3
    # Late in a window's last local day (its UTC date is the next one already): still a day of the window.
    last = month.end - timedelta(minutes=1)
    assert exhaustion(month, Decimal(60), Decimal(50), last, None, None, local).date == (
        month.end.astimezone(local).date() - timedelta(days=1)
    )


def test_exhaustion_of_any_window_from_the_outlook() -> None:
    """The pure function: a 7-day window, a flat 10 $/day outlook with a band of +-2 $ per day ahead."""
    start = NOW.replace(hour=0)
    outlook = Outlook(
        start=start.date(),
        point=(10.0,) * 20,
        low=tuple(8.0 * (i + 1) for i in range(20)),
        high=tuple(12.0 * (i + 1) for i in range(20)),
        method="weighted_moving_average",
        calibration="scope",
        generated_at=start,
    )
    week = Period(start - timedelta(days=2), start + timedelta(days=5))
    at = start  # the very start of today: all of today still to come
    # 20 spent, limit 50: 30 to go at 10 a day reaches it at the end of day 3 (today + 2); the band at 12 / 8 a day.
    e = exhaustion(week, Decimal(20), Decimal(50), at, outlook)
    assert (e.status, e.date, e.earliest, e.latest) == (
        ExhaustionStatus.EXPECTED,
        start.date() + timedelta(days=2),
        start.date() + timedelta(days=2),
        start.date() + timedelta(days=3),
    )
    # Limit 71: the point reaches 20 + 10 x 5 = 70 by the window's end, only the upper edge (20 + 12 x 5) gets there.
    assert exhaustion(week, Decimal(20), Decimal(71), at, outlook).status is ExhaustionStatus.POSSIBLE
    assert exhaustion(week, Decimal(20), Decimal(500), at, outlook).status is ExhaustionStatus.NOT_THIS_PERIOD
    year = Period(start - timedelta(days=2), start + timedelta(days=365))
    assert exhaustion(year, Decimal(20), Decimal(5000), at, outlook).status is ExhaustionStatus.BEYOND_FORECAST
    done = exhaustion(week, Decimal(60), Decimal(50), at, outlook, reached_on=start.date())
    assert (done.status, done.date) == (ExhaustionStatus.REACHED, start.date())
    assert exhaustion(week, Decimal(20), Decimal(50), at, None).status is ExhaustionStatus.NO_FORECAST
    # Half of today gone: only half of today's forecast is still to come.
    noon = exhaustion(week, Decimal(20), Decimal(45), start + timedelta(hours=12), outlook)
    assert noon.date == start.date() + timedelta(days=2)  # 20 + 5 tonight, 35 tomorrow night, 45 the night after
    assert reached_day(date(2026, 11, 1), {date(2026, 11, d): Decimal(100) for d in range(1, 11)}, Decimal(450)) == (
        date(2026, 11, 5)
    )


def flat_outlook(start: date, days: int = 40) -> Outlook:
    """1 $ an hour (24 $ a day) from `start`, the band's edges at 30 and 16 $ a day of cumulative spend."""
    return Outlook(
        start=start,
        point=(24.0,) * days,
        low=tuple(16.0 * (i + 1) for i in range(days)),
        high=tuple(30.0 * (i + 1) for i in range(days)),
        method="weighted_moving_average",
        calibration="scope",
        generated_at=datetime.combine(start, time(2, 30), tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("time_zone", "late", "early", "at_midnight"),
    [
        # 20:00 UTC is 05:00 the next day in Tokyo and 12:00 the same day in Los Angeles (PST); 03:00 UTC is 12:00
        # the same day in Tokyo and 19:00 the day before in Los Angeles.
        ("UTC", ("2026-12-10", "2026-12-10", "2026-12-12"), ("2026-12-10", "2026-12-09", "2026-12-11"), "2026-12-09"),
        (
            "Asia/Tokyo",
            ("2026-12-11", "2026-12-10", "2026-12-12"),
            ("2026-12-10", "2026-12-10", "2026-12-11"),
            "2026-12-10",
        ),
        (
            "America/Los_Angeles",
            ("2026-12-10", "2026-12-09", "2026-12-11"),
            ("2026-12-09", "2026-12-09", "2026-12-10"),
            "2026-12-09",
        ),
    ],
)
def test_projected_dates_are_the_local_days_the_projection_reaches_the_limit(
    time_zone: str, late: tuple[str, ...], early: tuple[str, ...], at_midnight: str
) -> None:
    """An EXPECTED date and its interval are the days, in the budget's zone, of the instants the projection (each
    UTC day's forecast spread evenly over its hours) reaches the limit: the same days in UTC as before."""
    local = zone(time_zone)
    now = datetime(2026, 12, 8, tzinfo=UTC)
    month = BudgetWindow(Cadence.MONTHLY, time_zone).period_at(now)
    outlook = flat_outlook(now.date())

    def dates(limit: float, at: datetime = now) -> tuple[str | None, ...]:
        e = exhaustion(month, Decimal(10), Decimal(str(limit)), at, outlook, None, local)
        assert e.status is ExhaustionStatus.EXPECTED
        return tuple(d.isoformat() if d else None for d in (e.date, e.earliest, e.latest))

    # 68 $ to go: at 24 $ a day 20:00 UTC on Dec 10; the upper edge (30 a day) at 06:24 on Dec 10, the lower
    # (16 a day) at 06:00 on Dec 12.
    assert dates(78) == late
    # 51 $ to go: 03:00 UTC on Dec 10; the upper edge at 16:48 on Dec 9, the lower at 04:30 on Dec 11.
    assert dates(61) == early
    # 48 $ to go reach it just at midnight UTC: the day ending there (Dec 9 in UTC, the 10th in Tokyo already).
    assert dates(58)[0] == at_midnight
    # ... and 63 $ just at midnight in Tokyo (15:00 UTC on Dec 10): there, the 10th too.
    assert dates(73)[0] == "2026-12-10"
    # Half of today gone (12:00 UTC on Dec 8): 12 $ of today's 24 still to come, so 6 $ to go is 18:00 UTC.
    noon = now + timedelta(hours=12)
    assert dates(16, noon)[0] == {"Asia/Tokyo": "2026-12-09"}.get(time_zone, "2026-12-08")


@pytest.mark.parametrize(
    ("time_zone", "late", "just_in_time", "above_the_point"),
    [
        ("UTC", ("EXPECTED", "2026-12-31"), "EXPECTED", "EXPECTED"),
        # The window ends at 15:00 UTC on Dec 31 (midnight in Tokyo): 20:00 UTC is after it; only the upper edge
        # (30 $ a day) reaches 68 $ before then (at 06:24 UTC, 15:24 in Tokyo).
        ("Asia/Tokyo", ("POSSIBLE", "2026-12-31"), "EXPECTED", "POSSIBLE"),
        # The window ends at 08:00 UTC on Jan 1: 20:00 UTC on Dec 31 is 12:00 there, inside it.
        ("America/Los_Angeles", ("EXPECTED", "2026-12-31"), "EXPECTED", "EXPECTED"),
    ],
)
def test_a_limit_reached_only_after_the_window_ends_is_not_expected_this_period(
    time_zone: str, late: tuple[str, str], just_in_time: str, above_the_point: str
) -> None:
    """The projection stops at the window's end, not at the end of the UTC day holding it (9 h later in Tokyo, where
    the last UTC day of a window runs to 09:00 on the next local day). From 00:00 UTC on Dec 29 at 24 $ a day: 63 $
    by the end of a Tokyo December, 72 $ by a UTC one's, 80 $ by a Los Angeles one's."""
    local = zone(time_zone)
    now = datetime(2026, 12, 29, tzinfo=UTC)
    month = BudgetWindow(Cadence.MONTHLY, time_zone).period_at(now)
    outlook = flat_outlook(now.date())

    def status(limit: float) -> tuple[str, str | None]:
        e = exhaustion(month, Decimal(0), Decimal(str(limit)), now, outlook, None, local)
        day = e.date or e.earliest
        return e.status.name, day.isoformat() if day else None

    # 68 $ is reached at 20:00 UTC on Dec 31.
    assert status(24 * 2 + 20) == late
    # 62 $ at 14:00 UTC on Dec 31 (23:00 in Tokyo): inside every one of these windows, on its last local day.
    assert status(24 * 2 + 14) == (just_in_time, "2026-12-31")
    # 70 $: past the point projection at a Tokyo window's end (63 $), below its upper edge there (78.75 $).
    assert status(70)[0] == above_the_point
    # 80 $: past even the upper edge at a Tokyo window's end; the point gets there at 08:00 UTC on Jan 1, the end of
    # a Los Angeles window (reached just at its end: its last day), and within a UTC December only the upper edge.
    past_the_upper_edge = {
        "UTC": ("POSSIBLE", "2026-12-31"),
        "Asia/Tokyo": ("NOT_THIS_PERIOD", None),
        "America/Los_Angeles": ("EXPECTED", "2026-12-31"),
    }
    assert status(80) == past_the_upper_edge[time_zone]


@pytest.mark.parametrize(
    ("time_zone", "at", "projected"),
    [
        # From 00:00 UTC on Dec 29 with nothing spent, 24 $ a day (the band 16 and 30 $ a day): to the window's end.
        ("UTC", datetime(2026, 12, 29, tzinfo=UTC), ("72.00", "48.00", "90.00")),  # 3 days
        ("Asia/Tokyo", datetime(2026, 12, 29, tzinfo=UTC), ("63.00", "42.00", "78.75")),  # 2 days and 15 hours
        ("America/Los_Angeles", datetime(2026, 12, 29, tzinfo=UTC), ("80.00", "53.33", "100.00")),  # 3 days 8 hours
        # The window ends today (15:00 UTC on Dec 31 in Tokyo): 06:00 to 15:00 UTC is 9 $ still to come, half of
        # the 18 $ left of the UTC day (whose band is 12 to 22.50 $: three quarters of the one-day band's -8 and
        # +6 $, as three quarters of the day are left), so half of those.
        ("Asia/Tokyo", datetime(2026, 12, 31, 6, tzinfo=UTC), ("9.00", "6.00", "11.25")),
        ("UTC", datetime(2026, 12, 31, 6, tzinfo=UTC), ("18.00", "12.00", "22.50")),
    ],
)
def test_the_period_end_projection_stops_at_the_windows_end(
    time_zone: str, at: datetime, projected: tuple[str, str, str]
) -> None:
    """Projected spend at the end of the period is the projection at the window's end, the last UTC day counting only
    its hours before it; a UTC window's end is a UTC midnight, so nothing changes there."""
    month = BudgetWindow(Cadence.MONTHLY, time_zone).period_at(at)
    found = period_end_projection(month, Decimal(0), at, flat_outlook(date(2026, 12, 29)))
    assert found is not None
    assert (str(found.spend), str(found.low), str(found.high)) == projected


@pytest.mark.parametrize(
    ("time_zone", "late", "to_go"),
    [
        # 23:00 UTC: one hour of the UTC day left, 1 $ of its 24 $ still to come.
        ("UTC", datetime(2026, 12, 30, 23, tzinfo=UTC), "6"),
        # 23:00 in Tokyo is 14:00 UTC: ten hours of the UTC day left (10 $), one of them on the local day.
        ("Asia/Tokyo", datetime(2026, 12, 30, 14, tzinfo=UTC), "1.5"),
    ],
)
def test_the_band_on_what_is_left_of_today_is_as_wide_as_the_hours_left(
    time_zone: str, late: datetime, to_go: str
) -> None:
    """The band of a calibrated window total is q x scale x days: linear in the window's length. What is left of
    today is that share of a day, so it adds that share of a day's band (8 $ below, 6 $ above), not a whole day's:
    late at night, with little left in the budget, the upper edge does not reach the limit today."""
    local = zone(time_zone)
    outlook = flat_outlook(date(2026, 12, 29))
    # A window ending at midnight UTC tonight: 1 $ still to come at 23:00, its band that hour's share of a day's.
    tonight = Period(datetime(2026, 12, 24, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
    if time_zone == "UTC":
        found = period_end_projection(tonight, Decimal(0), late, outlook)
        assert found is not None
        assert (str(found.spend), str(found.low), str(found.high)) == ("1.00", "0.67", "1.25")
    month = BudgetWindow(Cadence.MONTHLY, time_zone).period_at(late)
    today = late.astimezone(local).date()
    e = exhaustion(month, Decimal(10), Decimal(10) + Decimal(to_go), late, outlook, None, local)
    # The point and both edges reach it after local midnight: not today, even at the upper edge.
    tomorrow = today + timedelta(days=1)
    assert (e.status, e.date, e.earliest) == (ExhaustionStatus.EXPECTED, tomorrow, tomorrow)
    # At midnight UTC all of today is still to come: the whole day's band, as before.
    midnight = late.replace(hour=0)
    day = Period(midnight - timedelta(days=1), midnight + timedelta(days=1))
    whole = period_end_projection(day, Decimal(0), midnight, outlook)
    assert whole is not None
    assert (str(whole.spend), str(whole.low), str(whole.high)) == ("24.00", "16.00", "30.00")


async def test_a_projected_overrun_alert_names_the_day_in_the_budgets_zone(api: Api, db: Database) -> None:
    """100 $ a day, every day at 12:00 UTC for 60 days: the outlook is 100 $ a day, spread over each UTC day's hours.
    Each budget's hard limit is reached late in a UTC day (Tokyo) or early in one (Los Angeles): the budget's
    forecast and its alert name the local day, not the UTC one."""
    for team in ("tokyo", "la", "late"):
        await add_spend(db, *[SpendLog(100, NOW - timedelta(days=back), team_id=team) for back in range(1, 61)])
    # November so far (from 15:00 UTC on Oct 31 in Tokyo, 07:00 UTC on Nov 1 in Los Angeles): 1400 $ (Nov 1 to 14).
    # Then 50 $ for the rest of today (Nov 15) and 100 $ a day: 1925 $ is reached at 18:00 UTC on Nov 20 (03:00 on
    # the 21st in Tokyo), 1875 $ at 06:00 UTC on Nov 20 (22:00 on the 19th in Los Angeles).
    # The projection stops at each window's end: 15:00 UTC on Nov 30 in Tokyo (14 days and 15 hours after tonight:
    # 2912.50 $), 08:00 UTC on Dec 1 in Los Angeles (15 days and 8 hours: 2983.33 $), never the end of that UTC day.
    # 2940 $ would be reached at 21:36 UTC on Nov 30, after the Tokyo window: not this period, and no alert.
    ids, budgets = {}, {"tokyo": "Asia/Tokyo", "la": "America/Los_Angeles", "late": "Asia/Tokyo"}
    for team, time_zone, limit in (
        ("tokyo", budgets["tokyo"], "1925"),
        ("la", budgets["la"], "1875"),
        ("late", budgets["late"], "2940"),
    ):
        budget = {"name": team, "entityType": "TEAM", "entityId": team, "monthlyLimit": limit, "timeZone": time_zone}
        ids[team] = (await api.data(BUDGET, {"input": budget}))["createBudget"]["id"]
    await api.data(GENERATE)
    alerts = (await api.data("{ alerts(type: PROJECTED_LIMIT_EXCEEDED) { budgetId message details } }"))["alerts"]
    for team, day, projected in (("tokyo", "2026-11-21", "2912.50"), ("la", "2026-11-19", "2983.33")):
        forecast = (await api.data(OUTLOOK, {"id": ids[team]}))["budget"]["forecast"]
        assert (forecast["spent"], Decimal(forecast["projectedSpend"])) == ("1400", Decimal(projected)), team
        assert (forecast["hard"]["status"], forecast["hard"]["date"]) == ("EXPECTED", day), team
        [alert] = [a for a in alerts if a["budgetId"] == ids[team]]
        assert alert["details"]["projected_exceeded_date"] == day and f" on {day} " in alert["message"], team
        assert Decimal(alert["details"]["projected_spend"]) == Decimal(projected), team
        # November in the budget's zone, though a Tokyo November starts on October 31 in UTC.
        assert (alert["details"]["period"], alert["details"]["time_zone"]) == ("2026-11", budgets[team]), team
    late = (await api.data(OUTLOOK, {"id": ids["late"]}))["budget"]["forecast"]
    assert late["hard"]["status"] in {"POSSIBLE", "NOT_THIS_PERIOD"} and late["hard"]["date"] is None
    assert not [a for a in alerts if a["budgetId"] == ids["late"]]


async def test_a_projected_overrun_alert_names_a_weekly_window_by_its_iso_week(api: Api, db: Database) -> None:
    """100 $ a day at 12:00 UTC. A weekly Asia/Tokyo budget's week runs from 15:00 UTC on Sunday Nov 8 (Monday the
    9th there) to 15:00 UTC today, Sunday Nov 15: 600 $ so far (Nov 9 to 14), 605 $ is reached at about 13:12 UTC
    (22:12 in Tokyo). Its alert names the ISO week, 2026-W46, not the month the week starts in."""
    await add_spend(db, *[SpendLog(100, NOW - timedelta(days=back), team_id="week") for back in range(1, 61)])
    budget = {
        "name": "week",
        "entityType": "TEAM",
        "entityId": "week",
        "period": "WEEKLY",
        "limit": "605",
        "timeZone": "Asia/Tokyo",
    }
    budget_id = (await api.data(BUDGET, {"input": budget}))["createBudget"]["id"]
    await api.data(GENERATE)
    alerts = (await api.data("{ alerts(type: PROJECTED_LIMIT_EXCEEDED) { budgetId details } }"))["alerts"]
    [alert] = [a for a in alerts if a["budgetId"] == budget_id]
    details = alert["details"]
    assert (details["projected_exceeded_date"], details["period"], details["time_zone"]) == (
        "2026-11-15",
        "2026-W46",
        "Asia/Tokyo",
    )
    assert (details["period_start"], details["period_end"]) == (
        "2026-11-08T15:00:00+00:00",
        "2026-11-15T15:00:00+00:00",
    )


async def test_viewers_see_their_own_teams_forecasts_and_the_rest_api(api: Api, db: Database) -> None:
    await add_spend(
        db,
        *[SpendLog(5, NOW - timedelta(days=d), team_id="eng") for d in range(1, 5)],
        *[SpendLog(7, NOW - timedelta(days=d), team_id="ops") for d in range(1, 5)],
    )
    generated = await api.client.post("/api/v1/reports/forecast/generate", headers=api.bearer())
    assert generated.status_code == 200 and {f["team_id"] for f in generated.json()} == {None, "eng", "ops"}
    assert generated.json()[0]["backtest"]["chosen"] == "weighted_moving_average"
    await add_virtual_key(db, "sk-eng", user_id="ann", team_id="eng")
    viewer = await api.login("sk-eng")
    mine = await api.client.get("/api/v1/reports/forecast", headers=api.bearer(viewer))
    assert {f["team_id"] for f in mine.json()} == {"eng"}
    assert (await api.client.get("/api/v1/reports/forecast?team_id=ops", headers=api.bearer(viewer))).status_code == 403
    assert (await api.client.post("/api/v1/reports/forecast/generate", headers=api.bearer(viewer))).status_code == 403
    assert (await api.error(GENERATE, token=viewer))["extensions"]["code"] == "FORBIDDEN"


def test_forecasts_are_generated_by_a_daily_job(settings: Settings) -> None:
    jobs = {job.name: job for job in scheduled_jobs(settings)}
    assert jobs["forecasts"].schedule == "30 2 * * *"
