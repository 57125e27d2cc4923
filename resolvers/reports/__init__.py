"""Cost reports and the dashboard summary: totals and breakdowns by model, user and team over a period.

Periods follow the guide: `daily` is today, `weekly` this ISO week (Monday) to today, `monthly` this calendar
month to today, `custom` any `start_date`..`end_date` (both inclusive, at most SPENDPLANE_REPORT_MAX_DAYS days).
Days, weeks and months are those of the report's `time_zone` (an IANA name; default SPENDPLANE_TIME_ZONE), exact
across DST (a local day may be 23 or 25 hours). Every figure is an exact sum of the raw logs (rollup for closed
time, raw logs for the rest; see `resolvers.rollups.reading` for how a local day is read from whole buckets).

Who sees what: an admin sees everything. A viewer (a LiteLLM virtual key) is held to its own team: its reports
are filtered to that team whatever it asks, asking for another team is FORBIDDEN, and within the team it sees
the breakdown by user. A key without a team is held to its own user the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from resolvers.auth import Principal
from resolvers.platform import periods, validation
from resolvers.platform.errors import Forbidden, InvalidInput
from resolvers.platform.periods import supported_day
from resolvers.rollups import DayRange, Dim, Filters, SpendSource, Totals, aggregate, spend_source

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime

SHARE_PLACES = Decimal("0.000001")
TOP_MODELS = 5
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ReportPeriod(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    CUSTOM = "custom"


async def report_source(session: AsyncSession, runtime: Runtime) -> SpendSource:
    """Where this service's reports read from (the rollup, unless SPENDPLANE_REPORTS_FROM_RAW)."""
    return await spend_source(session, runtime.litellm, raw_only=runtime.settings.reports_from_raw)


def report_time_zone(value: str | None, default: str) -> str:
    """A report's zone as asked (checked: BAD_USER_INPUT naming `time_zone`), else the service's default."""
    return periods.time_zone("time_zone", value, default)


def local_today(now: datetime, time_zone: str) -> date:
    return now.astimezone(periods.zone(time_zone)).date()


@dataclass(frozen=True)
class ReportWindow:
    """A report's days: `start_date` .. `end_date`, both inclusive, local days in `time_zone`."""

    period: ReportPeriod
    start_date: date
    end_date: date
    time_zone: str = "UTC"

    @property
    def zone(self) -> tzinfo:
        return periods.zone(self.time_zone)

    @property
    def days(self) -> DayRange:
        return DayRange(self.start_date, self.end_date + timedelta(days=1))


def parse_date(field: str, value: str | date | None) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return supported_day(field, value)
    text = value.strip()
    if not text:
        return None
    try:
        if not _DATE.match(text):
            raise ValueError
        parsed = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, f"must be a date as YYYY-MM-DD (got {value!r})") from None
    return supported_day(field, parsed)


def report_window(
    period: str | None,
    start_date: str | date | None,
    end_date: str | date | None,
    *,
    today: date,
    max_days: int,
    time_zone: str = "UTC",
) -> ReportWindow:
    """The days a report covers (`today` is today in `time_zone`); every way to get it wrong is BAD_USER_INPUT
    naming the field."""
    kind = _period(period)
    start, end = parse_date("start_date", start_date), parse_date("end_date", end_date)
    if kind is not ReportPeriod.CUSTOM:
        if start is not None or end is not None:
            field = "start_date" if start is not None else "end_date"
            raise InvalidInput(field, f"is only taken with period custom (the {kind.value} period ends today)")
        first = {
            ReportPeriod.DAILY: today,
            ReportPeriod.WEEKLY: today - timedelta(days=today.weekday()),
            ReportPeriod.MONTHLY: today.replace(day=1),
        }[kind]
        return ReportWindow(kind, first, today, time_zone)
    if start is None:
        raise InvalidInput("start_date", "is required with period custom")
    end = end or today
    if end < start:
        raise InvalidInput("end_date", f"{end} is before start_date {start}")
    if (end - start).days + 1 > max_days:
        raise InvalidInput("end_date", f"the range may cover at most {max_days} days (SPENDPLANE_REPORT_MAX_DAYS)")
    return ReportWindow(kind, start, end, time_zone)


def _period(value: str | None) -> ReportPeriod:
    try:
        return ReportPeriod((value or "monthly").strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in ReportPeriod)
        raise InvalidInput("period", f"must be one of {allowed} (got {value!r})") from None


def scoped_filters(
    principal: Principal, *, team_id: str | None = None, user_id: str | None = None, model: str | None = None
) -> Filters:
    """The filters a caller's report really uses (see the module docstring)."""
    team_id = validation.identifier("team_id", team_id)
    user_id = validation.identifier("user_id", user_id)
    model = validation.identifier("model", model)
    if principal.is_admin:
        return Filters(team_id, user_id, model)
    if principal.team_id:
        if team_id is not None and team_id != principal.team_id:
            raise Forbidden("this token may only read its own team's spend")
        return Filters(principal.team_id, user_id, model)
    if principal.user_id:
        if team_id is not None or (user_id is not None and user_id != principal.user_id):
            raise Forbidden("this token may only read its own user's spend")
        return Filters(None, principal.user_id, model)
    raise Forbidden("this key belongs to no user or team, so it may not read spend reports")


@dataclass(frozen=True)
class BreakdownRow:
    """One model, user or team of a report. `key` None = requests without a user (or team)."""

    key: str | None
    cost: Decimal
    requests: int
    failed_requests: int
    input_tokens: int
    output_tokens: int
    share: Decimal


@dataclass(frozen=True)
class CostReport:
    window: ReportWindow
    filters: Filters
    totals: Totals
    by_model: list[BreakdownRow]
    by_user: list[BreakdownRow]
    by_team: list[BreakdownRow]

    @property
    def total_cost(self) -> Decimal:
        return self.totals.cost


def share(part: int, whole: int) -> Decimal:
    if whole == 0:
        return Decimal(0)
    return (Decimal(part) / Decimal(whole)).quantize(SHARE_PLACES, rounding=ROUND_HALF_EVEN).normalize()


def breakdown(groups: dict[str | None, Totals], whole: int) -> list[BreakdownRow]:
    """Rows by cost, then requests, then key (so equal figures come in a stable order)."""
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1].spend_nanos, -kv[1].requests, kv[0] or ""))
    return [
        BreakdownRow(
            key=key,
            cost=t.cost,
            requests=t.requests,
            failed_requests=t.failures,
            input_tokens=t.input_tokens,
            output_tokens=t.output_tokens,
            share=share(t.spend_nanos, whole),
        )
        for key, t in ordered
    ]


def _add(groups: dict[str | None, Totals], key: str | None, totals: Totals) -> None:
    groups.setdefault(key or None, Totals()).add(totals)


async def cost_report(session: AsyncSession, source: SpendSource, window: ReportWindow, filters: Filters) -> CostReport:
    """One grouped read (model x user x team; a few thousand groups a month at most), folded three ways."""
    grouped = await aggregate(session, source, window.days, (Dim.MODEL, Dim.USER, Dim.TEAM), filters, window.zone)
    totals = Totals()
    by_model: dict[str | None, Totals] = {}
    by_user: dict[str | None, Totals] = {}
    by_team: dict[str | None, Totals] = {}
    for (model, user, team), t in grouped.items():
        totals.add(t)
        _add(by_model, model, t)
        _add(by_user, user, t)
        _add(by_team, team, t)
    whole = totals.spend_nanos
    return CostReport(
        window, filters, totals, breakdown(by_model, whole), breakdown(by_user, whole), breakdown(by_team, whole)
    )


@dataclass(frozen=True)
class DashboardSummary:
    today: date
    today_cost: Decimal
    week_cost: Decimal
    month_cost: Decimal
    top_models: list[BreakdownRow]


async def dashboard_summary(
    session: AsyncSession, source: SpendSource, now: datetime, filters: Filters, time_zone: str = "UTC"
) -> DashboardSummary:
    """Today, this ISO week, this calendar month (in `time_zone`), and the month's five most expensive models: one
    read by day and model from the earlier of the week's and the month's first day."""
    today = local_today(now, time_zone)
    week_start = today - timedelta(days=today.weekday())
    month_start = today.replace(day=1)
    days = DayRange(min(week_start, month_start), today + timedelta(days=1))
    grouped = await aggregate(session, source, days, (Dim.DAY, Dim.MODEL), filters, periods.zone(time_zone))
    today_nanos = week_nanos = 0
    month = Totals()
    models: dict[str | None, Totals] = {}
    for (day, model), t in grouped.items():
        if day == today:
            today_nanos += t.spend_nanos
        if day >= week_start:
            week_nanos += t.spend_nanos
        if day >= month_start:
            month.add(t)
            _add(models, model, t)
    return DashboardSummary(
        today,
        Totals(spend_nanos=today_nanos).cost,
        Totals(spend_nanos=week_nanos).cost,
        month.cost,
        breakdown(models, month.spend_nanos)[:TOP_MODELS],
    )
