"""The guide's report API: /api/v1/reports/{cost,trend,export,summary} (JWT), snake_case JSON, money as numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from resolvers import reports
from resolvers.platform import periods
from resolvers.reports import BreakdownRow, trends
from resolvers.reports.exports import CostExport, export_format
from resolvers.spend import require_spend_logs
from webhook.downloads import download, query_int
from webhook.rest import JSON, caller, runtime_of


class BreakdownRowOut(BaseModel):
    key: str | None
    cost: Decimal
    requests: int
    failed_requests: int
    input_tokens: int
    output_tokens: int
    share: Decimal

    @classmethod
    def render(cls, found: BreakdownRow) -> dict[str, Any]:
        return cls.model_validate(found, from_attributes=True).model_dump()


class CostReportOut(BaseModel):
    period: str
    start_date: date
    end_date: date
    time_zone: str
    team_id: str | None
    user_id: str | None
    model: str | None
    total_cost: Decimal
    total_requests: int
    total_failed_requests: int
    total_input_tokens: int
    total_output_tokens: int
    breakdown_by_model: list[BreakdownRowOut]
    breakdown_by_user: list[BreakdownRowOut]
    breakdown_by_team: list[BreakdownRowOut]


class TrendPointOut(BaseModel):
    date: date
    cost: Decimal
    requests: int


class CostTrendOut(BaseModel):
    days: int
    direction: str
    change_percent: Decimal | None
    recent_start: date
    recent_end: date
    recent_cost: Decimal
    earlier_start: date
    earlier_end: date
    earlier_cost: Decimal
    points: list[TrendPointOut]


class DashboardSummaryOut(BaseModel):
    date: date
    today_cost: Decimal
    week_cost: Decimal
    month_cost: Decimal
    top_models: list[BreakdownRowOut]


def _zone(request: Request) -> str:
    return reports.report_time_zone(request.query_params.get("time_zone"), runtime_of(request).settings.time_zone)


def _window(request: Request) -> reports.ReportWindow:
    runtime, params = runtime_of(request), request.query_params
    zone = _zone(request)
    return reports.report_window(
        params.get("period"),
        params.get("start_date"),
        params.get("end_date"),
        today=reports.local_today(runtime.clock(), zone),
        max_days=runtime.settings.report_max_days,
        time_zone=zone,
    )


async def cost_report(request: Request) -> Response:
    runtime, principal, params = runtime_of(request), caller(request), request.query_params
    filters = reports.scoped_filters(
        principal, team_id=params.get("team_id"), user_id=params.get("user_id"), model=params.get("model")
    )
    window = _window(request)
    async with runtime.read() as session:
        source = await reports.report_source(session, runtime)
        report = await reports.cost_report(session, source, window, filters)
    t = report.totals
    return JSON(
        {
            "period": window.period.value,
            "start_date": window.start_date.isoformat(),
            "end_date": window.end_date.isoformat(),
            "time_zone": window.time_zone,
            "team_id": filters.team_id,
            "user_id": filters.user_id,
            "model": filters.model,
            "total_cost": t.cost,
            "total_requests": t.requests,
            "total_failed_requests": t.failures,
            "total_input_tokens": t.input_tokens,
            "total_output_tokens": t.output_tokens,
            "breakdown_by_model": [BreakdownRowOut.render(r) for r in report.by_model],
            "breakdown_by_user": [BreakdownRowOut.render(r) for r in report.by_user],
            "breakdown_by_team": [BreakdownRowOut.render(r) for r in report.by_team],
        }
    )


async def cost_trend(request: Request) -> Response:
    runtime, principal, params = runtime_of(request), caller(request), request.query_params
    filters = reports.scoped_filters(principal, team_id=params.get("team_id"), model=params.get("model"))
    days = query_int(params.get("days"), "days", 30)
    zone = _zone(request)
    async with runtime.read() as session:
        source = await reports.report_source(session, runtime)
        trend = await trends.cost_trend(
            session,
            source,
            reports.local_today(runtime.clock(), zone),
            days,
            filters,
            max_days=runtime.settings.report_max_days,
            zone=periods.zone(zone),
        )
    return JSON(
        {
            "days": trend.days,
            "direction": trend.direction.value,
            "change_percent": trend.change_percent,
            "recent_start": trend.recent[0].isoformat(),
            "recent_end": trend.recent[1].isoformat(),
            "recent_cost": trend.recent_cost,
            "earlier_start": trend.earlier[0].isoformat(),
            "earlier_end": trend.earlier[1].isoformat(),
            "earlier_cost": trend.earlier_cost,
            "points": [{"date": p.date.isoformat(), "cost": p.cost, "requests": p.requests} for p in trend.points],
        }
    )


async def summary(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    filters = reports.scoped_filters(principal)
    zone = _zone(request)
    async with runtime.read() as session:
        source = await reports.report_source(session, runtime)
        found = await reports.dashboard_summary(session, source, runtime.clock(), filters, zone)
    return JSON(
        {
            "date": found.today.isoformat(),
            "today_cost": found.today_cost,
            "week_cost": found.week_cost,
            "month_cost": found.month_cost,
            "top_models": [BreakdownRowOut.render(r) for r in found.top_models],
        }
    )


async def export(request: Request) -> Response:
    """Everything is checked before the first byte goes out; then the file streams from the database."""
    runtime, principal, params = runtime_of(request), caller(request), request.query_params
    chosen = export_format(params.get("format"))
    filters = reports.scoped_filters(
        principal, team_id=params.get("team_id"), user_id=params.get("user_id"), model=params.get("model")
    )
    found = CostExport(chosen, _window(request), filters)
    require_spend_logs(runtime.litellm)

    async def chunks() -> AsyncIterator[bytes]:
        async with runtime.read() as session:
            source = await reports.report_source(session, runtime)
            async for chunk in found.chunks(session, source):
                yield chunk

    return download(chunks(), filename=found.filename, media_type=found.content_type)
