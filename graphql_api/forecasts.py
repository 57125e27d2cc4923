"""Forecasts in GraphQL: the `forecasts` query, the `generateForecasts` mutation, and the Budget type's `forecast`
(exhaustion dates)."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from graphql_api.context import Info
from resolvers import forecasts
from resolvers.budgets import BudgetState
from resolvers.forecasts import BudgetForecast, Forecast, ForecastHorizon
from resolvers.forecasts.exhaustion import Exhaustion, ExhaustionStatus
from resolvers.forecasts.methods import ForecastMethod

strawberry.enum(
    ForecastMethod,
    name="ForecastMethod",
    description="WEIGHTED_MOVING_AVERAGE (the guide's: last three months, weights 3-2-1), EXPONENTIAL_SMOOTHING "
    "(Holt-Winters with weekly seasonality), THETA (theta on the weekly-deseasonalised series) or "
    "LOG_EXPONENTIAL_SMOOTHING (Holt-Winters on log spend: growth and weekly pattern in proportion to the level), "
    "chosen per scope by a rolling-origin backtest.",
)
strawberry.enum(ForecastHorizon, name="ForecastHorizon", description="This month's end, or next month's total.")


@strawberry.type(name="BacktestScore", description="How a method did in the scope's rolling-origin backtest.")
class BacktestScoreType:
    method: ForecastMethod
    mase: float | None = strawberry.field(
        description="Mean absolute scaled error vs seasonal naive (m=7); < 1 beats it."
    )
    coverage: float | None = strawberry.field(
        description="Share of calibrated origins whose actual 28-day total fell in the calibrated 80% interval."
    )
    width: float | None = strawberry.field(description="Mean interval width over the mean actual total.")
    origins: int = strawberry.field(description="Backtest origins (a week apart) MASE is averaged over.")
    coverage_origins: int = strawberry.field(
        description="Origins with enough errors known before them to calibrate an interval (coverage is over these)."
    )
    calibration: str | None = strawberry.field(description="scope, pooled or mixed: whose errors calibrated them.")
    raw_coverage: float | None = strawberry.field(description="Coverage of the method's own uncalibrated interval.")
    error: str | None


@strawberry.type(name="Forecast", description="A scope's forecast spend for a month with an 80% interval.")
class ForecastType:
    team_id: str | None = strawberry.field(description="null = the whole platform.")
    period: str = strawberry.field(description="YYYY-MM.")
    horizon: ForecastHorizon
    forecasted_cost: Decimal = strawberry.field(description="USD for the whole month (this month: actual + forecast).")
    confidence_low: Decimal = strawberry.field(description="Low end of the calibrated 80% interval.")
    confidence_high: Decimal = strawberry.field(description="High end of the calibrated 80% interval.")
    calibration: str = strawberry.field(
        description="scope (the scope's own backtest errors), pooled (every scope's: its history is short) or none "
        "(too few errors anywhere: the method's own sample-path interval, uncalibrated)."
    )
    confidence_level: Decimal
    actual_to_date: Decimal = strawberry.field(description="This month: spend of its closed days so far.")
    method: ForecastMethod
    generated_at: datetime
    backtest_reason: str
    backtest: list[BacktestScoreType]
    details: JSON

    @classmethod
    def from_forecast(cls, f: Forecast) -> ForecastType:
        scores = f.backtest.get("scores", [])
        return cls(
            team_id=f.team_id,
            period=f.period,
            horizon=f.horizon,
            forecasted_cost=f.forecasted_cost,
            confidence_low=f.confidence_low,
            confidence_high=f.confidence_high,
            confidence_level=f.confidence_level,
            calibration=str(f.backtest.get("calibration", "none")),
            actual_to_date=f.actual_to_date,
            method=f.method,
            generated_at=f.generated_at,
            backtest_reason=str(f.backtest.get("reason", "")),
            backtest=[
                BacktestScoreType(
                    method=ForecastMethod(s["method"]),
                    mase=s.get("mase"),
                    coverage=s.get("coverage"),
                    width=s.get("width"),
                    origins=int(s.get("origins", 0)),
                    coverage_origins=int(s.get("coverage_origins", 0)),
                    calibration=s.get("calibration"),
                    raw_coverage=s.get("raw_coverage"),
                    error=s.get("error"),
                )
                for s in scores
            ],
            details=JSON(f.backtest),
        )


@strawberry.type
class ForecastQueries:
    @strawberry.field(description="This month's and next month's forecasts (a viewer sees its own team's only).")
    async def forecasts(self, info: Info, team_id: str | None = None) -> list[ForecastType]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await forecasts.list_forecasts(session, principal, runtime.clock().date(), team_id or None)
        return [ForecastType.from_forecast(f) for f in found]


@strawberry.type
class ForecastMutations:
    @strawberry.mutation(
        description="Forecast every team and the platform now (admin); raises projected_limit_exceeded alerts."
    )
    async def generate_forecasts(self, info: Info) -> list[ForecastType]:
        runtime, principal = info.context.runtime, info.context.caller()
        found = await forecasts.generate_forecasts(runtime, principal)
        return [ForecastType.from_forecast(f) for f in found]


# ---------------------------------------------------------------------------------------------- budgets

strawberry.enum(
    ExhaustionStatus,
    name="ExhaustionStatus",
    description="REACHED (already), EXPECTED (the forecast reaches it this period), POSSIBLE (only the 90th "
    "percentile does), NOT_THIS_PERIOD, BEYOND_FORECAST (the period runs past the forecast), NO_FORECAST.",
)


@strawberry.type(
    name="LimitExhaustion",
    description="When a budget's spend reaches one of its limits: days in the budget's timeZone.",
)
class LimitExhaustionType:
    limit: Decimal
    status: ExhaustionStatus
    date: dt.date | None = strawberry.field(
        description="The local day the forecast reaches the limit (REACHED: the day it did)."
    )
    earliest: dt.date | None = strawberry.field(description="10th percentile of the date: the 80% band's upper edge.")
    latest: dt.date | None = strawberry.field(
        description="90th percentile of the date (the band's lower edge); null: maybe not this period."
    )

    @classmethod
    def of(cls, e: Exhaustion) -> LimitExhaustionType:
        return cls(limit=e.limit, status=e.status, date=e.date, earliest=e.earliest, latest=e.latest)


@strawberry.type(
    name="BudgetForecast",
    description="A budget's outlook this period: projected spend at its end (80% interval) and when it reaches "
    "its soft and hard limits, from its scope's latest forecast and the spend so far.",
)
class BudgetForecastType:
    period_start: datetime
    period_end: datetime
    spent: Decimal
    projected_spend: Decimal | None = strawberry.field(description="USD at the period's end; null: no forecast.")
    projected_low: Decimal | None
    projected_high: Decimal | None
    soft: LimitExhaustionType
    hard: LimitExhaustionType
    method: str | None
    calibration: str | None = strawberry.field(description="scope, pooled or none (uncalibrated).")
    generated_at: datetime | None

    @classmethod
    def of(cls, f: BudgetForecast) -> BudgetForecastType:
        p = f.projection
        return cls(
            period_start=f.period.start,
            period_end=f.period.end,
            spent=f.spent,
            projected_spend=p.spend if p else None,
            projected_low=p.low if p else None,
            projected_high=p.high if p else None,
            soft=LimitExhaustionType.of(f.soft),
            hard=LimitExhaustionType.of(f.hard),
            method=f.method,
            calibration=f.calibration,
            generated_at=f.generated_at,
        )


async def budget_forecast(info: Info, state: BudgetState) -> BudgetForecastType:
    """The Budget type's `forecast` field."""
    runtime = info.context.runtime
    async with runtime.read() as session:
        found = await forecasts.budget_forecasts(session, runtime, [state], runtime.clock())
    return BudgetForecastType.of(found[state.budget.id])
