"""The guide's forecast API: GET /api/v1/reports/forecast and POST /api/v1/reports/forecast/generate (JWT)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from resolvers import forecasts
from resolvers.forecasts import Forecast
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
