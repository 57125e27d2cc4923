"""The guide's forecast API: GET /api/v1/reports/forecast and POST /api/v1/reports/forecast/generate (JWT), and a
budget's outlook with its exhaustion dates: GET /api/v1/budgets/{budget_id}/forecast."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from resolvers import budgets, forecasts
from resolvers.forecasts import BudgetForecast, Forecast
from resolvers.forecasts.exhaustion import Exhaustion
from webhook.rest import JSON, caller, runtime_of


class ForecastOut(BaseModel):
    team_id: str | None
    period: str
    horizon: str
    forecasted_cost: Decimal
    confidence_low: Decimal
    confidence_high: Decimal
    confidence_level: Decimal
    actual_to_date: Decimal
    method: str
    generated_at: datetime
    backtest: dict[str, Any]

    @classmethod
    def render(cls, found: Forecast) -> dict[str, Any]:
        return cls.model_validate(found, from_attributes=True).model_dump()


async def list_forecasts(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await forecasts.list_forecasts(
            session, principal, runtime.clock().date(), request.query_params.get("team_id") or None
        )
    return JSON([ForecastOut.render(f) for f in found])


async def generate(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    found = await forecasts.generate_forecasts(runtime, principal)
    return JSON([ForecastOut.render(f) for f in found])


class LimitExhaustionOut(BaseModel):
    """When a budget's spend reaches one of its limits: `date`, `earliest` and `latest` are days in the budget's
    time_zone."""

    limit: Decimal
    status: str
    date: dt.date | None
    earliest: dt.date | None
    latest: dt.date | None

    @classmethod
    def of(cls, e: Exhaustion) -> LimitExhaustionOut:
        return cls(limit=e.limit, status=e.status.value, date=e.date, earliest=e.earliest, latest=e.latest)


class BudgetForecastOut(BaseModel):
    budget_id: str
    period_start: datetime
    period_end: datetime
    spent: Decimal
    projected_spend: Decimal | None
    projected_low: Decimal | None
    projected_high: Decimal | None
    soft: LimitExhaustionOut
    hard: LimitExhaustionOut
    method: str | None
    calibration: str | None
    generated_at: datetime | None

    @classmethod
    def render(cls, f: BudgetForecast) -> dict[str, Any]:
        p = f.projection
        return cls(
            budget_id=f.budget_id,
            period_start=f.period.start,
            period_end=f.period.end,
            spent=f.spent,
            projected_spend=p.spend if p else None,
            projected_low=p.low if p else None,
            projected_high=p.high if p else None,
            soft=LimitExhaustionOut.of(f.soft),
            hard=LimitExhaustionOut.of(f.hard),
            method=f.method,
            calibration=f.calibration,
            generated_at=f.generated_at,
        ).model_dump()


async def budget_forecast(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await budgets.get_budget(session, principal, request.path_params["budget_id"])
        states = await budgets.budget_states(session, runtime.litellm, [found], runtime.clock())
        outlook = await forecasts.budget_forecasts(session, runtime, states, runtime.clock())
    return JSON(BudgetForecastOut.render(outlook[found.id]))
