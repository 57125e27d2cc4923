"""Reports in GraphQL: costReport, costTrend, dashboardSummary, exportCostReport, and the rollup's status and
on-demand refresh."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

import strawberry

from graphql_api.context import Info
from graphql_api.scalars import BigInt
from resolvers import reports
from resolvers.auth import require_admin
from resolvers.platform import periods
from resolvers.platform.errors import InvalidInput
from resolvers.reports import BreakdownRow, ReportPeriod, exports, trends
from resolvers.reports.exports import CostExport, CostExportFormat
from resolvers.reports.trends import CostTrend, TrendDirection
from resolvers.rollups import RollupStatus, refresh_rollups_of, rollup_status

strawberry.enum(
    ReportPeriod,
    name="ReportPeriod",
    description="DAILY = today, WEEKLY = this week (Monday) to today, MONTHLY = this month to today, "
    "CUSTOM = startDate..endDate (inclusive). Days are UTC.",
)
strawberry.enum(TrendDirection, name="TrendDirection", description="How the recent whole weeks compare.")
strawberry.enum(
    CostExportFormat,
    name="CostExportFormat",
    description="CSV and JSON: one row per day, team, user, model group, model and provider. FOCUS: FinOps "
    "FOCUS 1.2 CSV, one row per day, provider, model and token meter.",
)

MAX_BREAKDOWN = 5000
#: exportCostReport inlines files up to this size; larger ones are downloaded from `url`.
MAX_INLINE_EXPORT_BYTES = 5 * 1024 * 1024


@strawberry.type(name="CostBreakdownRow", description="One model, user or team of a report.")
class CostBreakdownRowType:
    key: str | None = strawberry.field(description="The model, user id or team id; null = none logged.")
    cost: Decimal = strawberry.field(description="USD.")
    requests: BigInt = strawberry.field(description="Requests, failed ones included.")
    failed_requests: BigInt
    input_tokens: BigInt
    output_tokens: BigInt
    share: Decimal = strawberry.field(description="Fraction of the report's total cost (0.25 = 25%).")

    @classmethod
    def from_row(cls, row: BreakdownRow) -> CostBreakdownRowType:
        return cls(
            key=row.key,
            cost=row.cost,
            requests=BigInt(row.requests),
            failed_requests=BigInt(row.failed_requests),
            input_tokens=BigInt(row.input_tokens),
            output_tokens=BigInt(row.output_tokens),
            share=row.share,
        )


def _rows(rows: list[BreakdownRow], limit: int | None) -> list[CostBreakdownRowType]:
    if limit is not None and not 1 <= limit <= MAX_BREAKDOWN:
        raise InvalidInput("limit", f"must be from 1 to {MAX_BREAKDOWN}")
    return [CostBreakdownRowType.from_row(r) for r in rows[: limit or MAX_BREAKDOWN]]


_LIMIT = "At most this many rows, most expensive first (default and maximum 5000); the counts say how many exist."


@strawberry.type(
    name="CostReport",
    description="Spend over a period with breakdowns by model, user and team; every figure is an exact sum of "
    "LiteLLM_SpendLogs (read from the rollup for closed time: daily rows and quarter-hour buckets).",
)
class CostReportType:
    report: strawberry.Private[reports.CostReport]

    @strawberry.field
    def period(self) -> ReportPeriod:
        return self.report.window.period

    @strawberry.field(description="First day (in `timeZone`), inclusive.")
    def start_date(self) -> date:
        return self.report.window.start_date

    @strawberry.field(description="Last day (in `timeZone`), inclusive.")
    def end_date(self) -> date:
        return self.report.window.end_date

    @strawberry.field(description="The IANA time zone whose days the report covers.")
    def time_zone(self) -> str:
        return self.report.window.time_zone

    @strawberry.field(description="The team filter applied (a viewer's own team, whatever it asked).")
    def team_id(self) -> str | None:
        return self.report.filters.team_id

    @strawberry.field(description="The user filter applied.")
    def user_id(self) -> str | None:
        return self.report.filters.user_id

    @strawberry.field(description="The model filter applied (called model or model group).")
    def model(self) -> str | None:
        return self.report.filters.model

    @strawberry.field(description="USD.")
    def total_cost(self) -> Decimal:
        return self.report.totals.cost

    @strawberry.field(description="Requests, failed ones included.")
    def total_requests(self) -> BigInt:
        return BigInt(self.report.totals.requests)

    @strawberry.field
    def total_failed_requests(self) -> BigInt:
        return BigInt(self.report.totals.failures)

    @strawberry.field
    def total_input_tokens(self) -> BigInt:
        return BigInt(self.report.totals.input_tokens)

    @strawberry.field
    def total_output_tokens(self) -> BigInt:
        return BigInt(self.report.totals.output_tokens)

    @strawberry.field(description="By the model LiteLLM called. " + _LIMIT)
    def breakdown_by_model(self, limit: int | None = None) -> list[CostBreakdownRowType]:
        return _rows(self.report.by_model, limit)

    @strawberry.field(description="By user (the key owner). " + _LIMIT)
    def breakdown_by_user(self, limit: int | None = None) -> list[CostBreakdownRowType]:
        return _rows(self.report.by_user, limit)

    @strawberry.field(description="By team. " + _LIMIT)
    def breakdown_by_team(self, limit: int | None = None) -> list[CostBreakdownRowType]:
        return _rows(self.report.by_team, limit)

    @strawberry.field(description="How many models the report has.")
    def model_count(self) -> int:
        return len(self.report.by_model)

    @strawberry.field(description="How many users the report has.")
    def user_count(self) -> int:
        return len(self.report.by_user)

    @strawberry.field(description="How many teams the report has.")
    def team_count(self) -> int:
        return len(self.report.by_team)


@strawberry.type(name="TrendPoint", description="One UTC day of a trend.")
class TrendPointType:
    date: date
    cost: Decimal
    requests: BigInt


@strawberry.type(
    name="CostTrend",
    description="A daily series and its direction. The rule: the sums of the last W closed days and of the W days "
    "before them, W = 7 x max(1, floor((days - 1) / 14)) (whole weeks, so weekdays cancel out); "
    "|change| < 5% is STABLE. Today is in the series but not judged (it is partial).",
)
class CostTrendType:
    days: int
    direction: TrendDirection
    change_percent: Decimal | None = strawberry.field(
        description="Percent change of the recent window over the earlier one; null when the earlier had no spend."
    )
    points: list[TrendPointType]
    recent_start: date
    recent_end: date
    recent_cost: Decimal
    earlier_start: date
    earlier_end: date
    earlier_cost: Decimal

    @classmethod
    def from_trend(cls, trend: CostTrend) -> CostTrendType:
        return cls(
            days=trend.days,
            direction=trend.direction,
            change_percent=trend.change_percent,
            points=[TrendPointType(date=p.date, cost=p.cost, requests=BigInt(p.requests)) for p in trend.points],
            recent_start=trend.recent[0],
            recent_end=trend.recent[1],
            recent_cost=trend.recent_cost,
            earlier_start=trend.earlier[0],
            earlier_end=trend.earlier[1],
            earlier_cost=trend.earlier_cost,
        )


@strawberry.type(name="DashboardSummary", description="Today, this week and this month (UTC), and the top models.")
class DashboardSummaryType:
    date: date
    today_cost: Decimal
    week_cost: Decimal = strawberry.field(description="Since Monday (UTC), today included.")
    month_cost: Decimal = strawberry.field(description="Since the 1st (UTC), today included.")
    top_models: list[CostBreakdownRowType] = strawberry.field(description="The five most expensive this month.")


@strawberry.type(
    name="CostExport",
    description="A cost export. `url` downloads it (streamed, any size) with the same bearer token; `content` "
    "inlines it when it is at most 5 MiB.",
)
class CostExportType:
    export: strawberry.Private[CostExport]
    format: CostExportFormat
    filename: str
    content_type: str
    url: str

    @strawberry.field(description="The file's text (CSV or JSON); asking for it reads the whole export.")
    async def content(self, info: Info) -> str:
        runtime = info.context.runtime
        async with runtime.read() as session:
            source = await reports.report_source(session, runtime)
            return await exports.export_text(
                session,
                source,
                self.export,
                max_bytes=MAX_INLINE_EXPORT_BYTES,
                budget=info.context.response_budget,
                field=".".join(str(key) for key in info.path.as_list()),
            )


@strawberry.type(name="RollupStatus", description="The daily rollup's watermark.")
class RollupStatusType:
    built_through: date | None = strawberry.field(
        description="Closed days before this date are read from the rollup; this day on, from the raw logs."
    )
    days_rebuilt: int
    rows_written: int

    @classmethod
    def from_status(cls, status: RollupStatus) -> RollupStatusType:
        return cls(
            built_through=status.built_through, days_rebuilt=status.days_rebuilt, rows_written=status.rows_written
        )


_ZONE = "The IANA time zone whose days, weeks and months the report follows (default SPENDPLANE_TIME_ZONE)."


def _zone(info: Info, time_zone: str | None) -> str:
    return reports.report_time_zone(time_zone, info.context.runtime.settings.time_zone)


def _window(
    info: Info, period: ReportPeriod, start_date: date | None, end_date: date | None, time_zone: str | None
) -> reports.ReportWindow:
    runtime = info.context.runtime
    zone = _zone(info, time_zone)
    return reports.report_window(
        period.value,
        start_date,
        end_date,
        today=reports.local_today(runtime.clock(), zone),
        max_days=runtime.settings.report_max_days,
        time_zone=zone,
    )


@strawberry.type
class ReportQueries:
    @strawberry.field(description="Spend over a period with breakdowns by model, user and team.")
    async def cost_report(
        self,
        info: Info,
        period: ReportPeriod = ReportPeriod.MONTHLY,
        start_date: date | None = None,
        end_date: date | None = None,
        team_id: str | None = None,
        user_id: str | None = None,
        model: str | None = None,
        time_zone: Annotated[str | None, strawberry.argument(description=_ZONE)] = None,
    ) -> CostReportType:
        runtime, principal = info.context.runtime, info.context.caller()
        filters = reports.scoped_filters(principal, team_id=team_id, user_id=user_id, model=model)
        window = _window(info, period, start_date, end_date, time_zone)
        async with runtime.read() as session:
            source = await reports.report_source(session, runtime)
            report = await reports.cost_report(session, source, window, filters)
        return CostReportType(report=report)

    @strawberry.field(description="A daily cost series over the last `days` days (today included) and its direction.")
    async def cost_trend(
        self,
        info: Info,
        days: int = 30,
        model: str | None = None,
        team_id: str | None = None,
        time_zone: Annotated[str | None, strawberry.argument(description=_ZONE)] = None,
    ) -> CostTrendType:
        runtime, principal = info.context.runtime, info.context.caller()
        filters = reports.scoped_filters(principal, team_id=team_id, model=model)
        zone = _zone(info, time_zone)
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
        return CostTrendType.from_trend(trend)

    @strawberry.field(description="Today's, this week's and this month's cost, and the month's top five models.")
    async def dashboard_summary(
        self, info: Info, time_zone: Annotated[str | None, strawberry.argument(description=_ZONE)] = None
    ) -> DashboardSummaryType:
        runtime, principal = info.context.runtime, info.context.caller()
        filters = reports.scoped_filters(principal)
        zone = _zone(info, time_zone)
        async with runtime.read() as session:
            source = await reports.report_source(session, runtime)
            summary = await reports.dashboard_summary(session, source, runtime.clock(), filters, zone)
        return DashboardSummaryType(
            date=summary.today,
            today_cost=summary.today_cost,
            week_cost=summary.week_cost,
            month_cost=summary.month_cost,
            top_models=[CostBreakdownRowType.from_row(r) for r in summary.top_models],
        )

    @strawberry.field(description="A cost export as CSV, JSON or FOCUS 1.2: its download URL and (small) content.")
    async def export_cost_report(
        self,
        info: Info,
        format: CostExportFormat = CostExportFormat.CSV,
        period: ReportPeriod = ReportPeriod.MONTHLY,
        start_date: date | None = None,
        end_date: date | None = None,
        team_id: str | None = None,
        time_zone: Annotated[str | None, strawberry.argument(description=_ZONE)] = None,
    ) -> CostExportType:
        principal = info.context.caller()
        export = CostExport(
            format,
            _window(info, period, start_date, end_date, time_zone),
            reports.scoped_filters(principal, team_id=team_id),
        )
        return CostExportType(
            export=export, format=format, filename=export.filename, content_type=export.content_type, url=export.url
        )

    @strawberry.field(description="How far the daily rollup reaches.")
    async def rollup_status(self, info: Info) -> RollupStatusType:
        info.context.caller()
        async with info.context.runtime.read() as session:
            return RollupStatusType.from_status(await rollup_status(session))


@strawberry.type
class ReportMutations:
    @strawberry.mutation(
        description="Bring the daily rollup up to date now (admin); `since` also rebuilds every closed day from "
        "that date on. The periodic job does the same on SPENDPLANE_ROLLUP_SCHEDULE."
    )
    async def refresh_rollups(self, info: Info, since: date | None = None) -> RollupStatusType:
        runtime, principal = info.context.runtime, info.context.caller()
        require_admin(principal, "refreshing the rollup")
        status = await refresh_rollups_of(runtime, since)
        return RollupStatusType.from_status(status)
