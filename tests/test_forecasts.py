"""Forecasts: per team and for the platform, this month's end and next month's total with an 80% interval; the
method chosen per scope by a rolling-origin backtest (exponential smoothing only where it beats the guide's
weighted moving average); projected overruns of a budget's hard limit alert once per budget and month."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from models.alerts import AlertDeliveryRow
from models.db import Database
from resolvers.config import Settings
from resolvers.forecasts.backtest import Choice, Score, decide
from resolvers.forecasts.methods import ForecastMethod, wma_rate
from resolvers.schedule import scheduled_jobs
from tests.conftest import NOW
from tests.support import Api, SpendLog, add_spend, add_virtual_key

FIELDS = """teamId period horizon forecastedCost confidenceLow confidenceHigh confidenceLevel actualToDate method
  generatedAt backtestReason backtest { method mase coverage origins error }"""
GENERATE = f"mutation {{ generateForecasts {{ {FIELDS} }} }}"
FORECASTS = f"query($team: String) {{ forecasts(teamId: $team) {{ {FIELDS} }} }}"
WEEKDAY = (1.0, 1.08, 1.1, 1.05, 0.92, 0.38, 0.3)


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


async def test_weekly_seasonal_spend_is_forecast_by_exponential_smoothing_with_an_interval(
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
    assert current["method"] == "EXPONENTIAL_SMOOTHING", current["backtestReason"]
    wma, ets = current["backtest"]
    assert (wma["method"], ets["method"]) == ("WEIGHTED_MOVING_AVERAGE", "EXPONENTIAL_SMOOTHING")
    assert ets["mase"] < wma["mase"] and ets["origins"] == 6
    assert abs(ets["coverage"] - 0.8) <= abs(wma["coverage"] - 0.8)
    for f in (current, upcoming):
        assert Decimal(f["confidenceLow"]) <= Decimal(f["forecastedCost"]) <= Decimal(f["confidenceHigh"])
        assert f["confidenceLevel"] == "0.8"
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
    assert current["method"] == "WEIGHTED_MOVING_AVERAGE" and "too little history" in current["backtestReason"]
    # 10 $/day: the 10 closed days of November so far, plus today and the 15 days after it.
    assert current["forecastedCost"] == "260" and current["actualToDate"] == "100"
    assert found[("new-team", "NEXT_MONTH")]["forecastedCost"] == "310"


def test_the_weighted_moving_average_weights_the_last_three_months_3_2_1() -> None:
    import numpy as np

    history = np.array([30.0] * 30 + [20.0] * 30 + [10.0] * 30 + [99.0] * 5)
    assert math.isclose(wma_rate(history[:90]), (3 * 10 + 2 * 20 + 1 * 30) / 6)
    assert math.isclose(wma_rate(np.array([4.0] * 12)), 4.0)  # one partial block: its mean


def test_exponential_smoothing_never_ships_where_it_loses() -> None:
    def choice(wma: tuple[float, float], ets: tuple[float, float]) -> Choice:
        return decide(
            Score(ForecastMethod.WEIGHTED_MOVING_AVERAGE, wma[0], wma[1], 6),
            Score(ForecastMethod.EXPONENTIAL_SMOOTHING, ets[0], ets[1], 6),
        )

    assert choice((1.2, 0.5), (0.9, 0.8)).method is ForecastMethod.EXPONENTIAL_SMOOTHING
    assert choice((0.9, 0.8), (0.95, 0.8)).method is ForecastMethod.WEIGHTED_MOVING_AVERAGE  # worse MASE
    lost = choice((1.2, 0.8), (0.9, 0.5))
    assert lost.method is ForecastMethod.WEIGHTED_MOVING_AVERAGE and "coverage" in lost.reason
    missing = decide(
        Score(ForecastMethod.WEIGHTED_MOVING_AVERAGE, 1.0, 0.5, 6),
        Score(ForecastMethod.EXPONENTIAL_SMOOTHING, None, None, 6, "the fitted model diverges"),
    )
    assert missing.method is ForecastMethod.WEIGHTED_MOVING_AVERAGE and "diverges" in missing.reason


async def test_a_forecast_above_a_budgets_hard_limit_alerts_once_per_budget_and_month(api: Api, db: Database) -> None:
    await weekly_traffic(db, "engineering", 60, 100.0, growth=0.0)
    budget = """mutation($input: BudgetInput!) { createBudget(input: $input) { id } }"""
    eng = {"name": "Eng", "entityType": "TEAM", "entityId": "engineering", "monthlyLimit": "2000"}
    tight = (await api.data(budget, {"input": {**eng, "alertEmail": "eng-lead@example.com"}}))["createBudget"]
    await api.data(budget, {"input": {"name": "Cap", "entityType": "GLOBAL", "monthlyLimit": "100000"}})
    for _ in range(2):
        await api.data(GENERATE)
    alerts = (await api.data("{ alerts(type: PROJECTED_LIMIT_EXCEEDED) { budgetId teamId message limit spend } }"))[
        "alerts"
    ]
    assert [(a["budgetId"], a["teamId"], a["limit"]) for a in alerts] == [(tight["id"], "engineering", "2000")]
    assert "forecast to reach" in alerts[0]["message"]
    async with db.reader() as session:
        deliveries = (await session.scalars(select(AlertDeliveryRow))).all()
    assert [(d.channel, d.target) for d in deliveries] == [("email", "eng-lead@example.com")]


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
