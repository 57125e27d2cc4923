"""Chargeback statements: a month's spend per team, split by the allocation rules, in a lifecycle
DRAFT -> FINALIZED -> EXPORTED.

- Generating a month builds a DRAFT from the month's spend (the same exact figures as the cost report) and the
  rules as they are now; generating it again replaces the draft's lines (the revision counts up).
- Finalizing freezes it (only once the month is over): its lines, totals and the rule metadata copied into them
  never change again. Late spend logs for a finalized month, or rule changes, do not touch it: the next statement
  generated carries the late spend as ADJUSTMENT lines (naming the month they adjust), and every statement shows
  `current_total` / `difference` against the logs as they are now.
- Exporting (CSV, JSON, SAP) is allowed from FINALIZED on and moves the statement to EXPORTED; a draft is refused.

Each team's spend is split per allocation type (see `splitting`): its rules' percents, and the remainder as an
UNALLOCATED line; a team without rules is wholly unallocated. Only one allocation type per team is *posted*
(charged and sent to SAP): cost center, else project, else department; the other types report the same spend
another way.

A statement's month is a calendar month in its time zone (`time_zone`, default SPENDPLANE_TIME_ZONE), read exactly
like a report in that zone; adjustments re-read each earlier month in its own zone.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import Select, delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from models.chargeback import ChargebackLineRow, ChargebackReportRow
from models.types import nanos_to_usd, usd_to_nanos
from resolvers.auth import Principal, require_admin
from resolvers.chargeback.rules import POSTING_ORDER, AllocationRule, AllocationType, all_rules, by_id
from resolvers.chargeback.splitting import LineKind, StatementLine, team_lines
from resolvers.platform import periods
from resolvers.platform.errors import InvalidInput
from resolvers.platform.pages import DEFAULT_PAGE, Keyset, Page
from resolvers.platform.periods import supported_day
from resolvers.platform.work import Work
from resolvers.reports import report_source
from resolvers.rollups import DayRange, Dim, SpendSource, aggregate, refresh_rollups_of

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")
_GENERATE_LOCK = 0x5350434247  # "SPCBG": one statement generation at a time


class StatementStatus(StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"
    EXPORTED = "exported"


@dataclass(frozen=True)
class TypeSummary:
    """One allocation type's view of the month: what its rules allocate and what is left."""

    allocation_type: AllocationType
    allocated: Decimal
    unallocated: Decimal


@dataclass(frozen=True)
class Statement:
    id: str
    period: str
    time_zone: str
    status: StatementStatus
    total_cost: Decimal
    allocated_cost: Decimal
    unallocated_cost: Decimal
    adjustment_cost: Decimal
    revision: int
    generated_at: datetime
    generated_by: str
    finalized_at: datetime | None
    finalized_by: str | None
    exported_at: datetime | None
    last_export_format: str | None
    lines: tuple[StatementLine, ...]

    @property
    def by_type(self) -> list[TypeSummary]:
        out = []
        for kind in POSTING_ORDER:
            allocated = sum(
                (
                    line.cost_nanos
                    for line in self.lines
                    if line.kind is LineKind.ALLOCATION and line.allocation_type is kind
                ),
                0,
            )
            total = usd_to_nanos(self.total_cost)
            out.append(TypeSummary(kind, nanos_to_usd(allocated), nanos_to_usd(total - allocated)))
        return out

    @classmethod
    def from_rows(cls, row: ChargebackReportRow, lines: Sequence[ChargebackLineRow]) -> Statement:
        return cls(
            id=row.id,
            period=row.period,
            time_zone=row.time_zone,
            status=StatementStatus(row.status),
            total_cost=row.total_cost,
            allocated_cost=row.allocated_cost,
            unallocated_cost=row.unallocated_cost,
            adjustment_cost=row.adjustment_cost,
            revision=row.revision,
            generated_at=row.generated_at,
            generated_by=row.generated_by,
            finalized_at=row.finalized_at,
            finalized_by=row.finalized_by,
            exported_at=row.exported_at,
            last_export_format=row.last_export_format,
            lines=tuple(StatementLine.from_row(r) for r in lines),
        )


# ---------------------------------------------------------------------------------------------- periods


def parse_period(value: str, today: date) -> DayRange:
    """'YYYY-MM' as its days; a month that has not started yet is refused."""
    found = _PERIOD.match((value or "").strip())
    if found is None or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 2000:
        raise InvalidInput("period", f"must be a month as YYYY-MM, e.g. 2026-02 (got {value!r})")
    start = supported_day("period", date(int(found.group(1)), int(found.group(2)), 1))
    if start > today:
        raise InvalidInput("period", f"{value} has not started yet")
    return DayRange(start, (start + timedelta(days=32)).replace(day=1))


def period_name(days: DayRange) -> str:
    return f"{days.start:%Y-%m}"


# ---------------------------------------------------------------------------------------------- lifecycle


async def generate_statement(
    runtime: Runtime, principal: Principal, period: str, time_zone: str | None = None
) -> Statement:
    """Build (or rebuild) the month's DRAFT: the calendar month in `time_zone` (default SPENDPLANE_TIME_ZONE;
    a draft regenerated in another zone takes that zone). The rollup is brought up to date first, so late logs
    count."""
    require_admin(principal, "generating a chargeback report")
    zone_name = periods.time_zone("time_zone", time_zone, runtime.settings.time_zone)
    days = parse_period(period, runtime.clock().astimezone(periods.zone(zone_name)).date())
    await refresh_rollups_of(runtime)
    async with runtime.work() as work:
        if work.dialect == "postgresql":
            await work.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _GENERATE_LOCK})
        name = period_name(days)
        existing = await work.session.scalar(select(ChargebackReportRow).where(ChargebackReportRow.period == name))
        if existing is not None and existing.status != StatementStatus.DRAFT:
            raise InvalidInput(
                "period",
                f"{name} is {existing.status}: a finalized statement never changes; spend that arrives later is "
                "carried into the next statement as adjustments",
            )
        source = await report_source(work.session, runtime)
        rules = await all_rules(work.session)
        spend = await _team_spend(work.session, source, days, zone_name)
        lines = [line for team in _teams(spend) for line in team_lines(team, spend[team], _of(rules, team))]
        lines += await _adjustments(work.session, source, rules, before=name)
        return await _write(work, principal, existing, name, zone_name, sum(spend.values()), lines)


async def finalize_statement(work: Work, principal: Principal, report_id: str) -> Statement:
    require_admin(principal, "finalizing a chargeback report")
    row = await by_id(work.session, ChargebackReportRow, report_id, "chargeback report")
    if row.status != StatementStatus.DRAFT:
        raise InvalidInput("id", f"the {row.period} statement is already {row.status}")
    zone = periods.zone(row.time_zone)
    days = parse_period(row.period, work.now.astimezone(zone).date())
    if work.now < periods.local_midnight(days.end, zone):
        raise InvalidInput("id", f"{row.period} has not ended: finalize it from {days.end} on ({row.time_zone})")
    row.status = StatementStatus.FINALIZED.value
    row.finalized_at = work.now
    row.finalized_by = principal.subject
    await work.session.flush()
    return await _load(work.session, row)


async def mark_exported(work: Work, principal: Principal, report_id: str, export_format: str) -> Statement:
    """A finalized (or already exported) statement is exported; a draft is refused."""
    require_admin(principal, "exporting a chargeback report")
    row = await by_id(work.session, ChargebackReportRow, report_id, "chargeback report")
    if row.status == StatementStatus.DRAFT:
        raise InvalidInput(
            "id", f"the {row.period} statement is a draft: finalize it before exporting (drafts may still change)"
        )
    row.status = StatementStatus.EXPORTED.value
    row.exported_at = row.exported_at or work.now
    row.last_export_format = export_format
    await work.session.flush()
    return await _load(work.session, row)


async def get_statement(session: AsyncSession, principal: Principal, report_id: str) -> Statement:
    require_admin(principal, "reading chargeback reports")
    return await _load(session, await by_id(session, ChargebackReportRow, report_id, "chargeback report"))


STATEMENT_KEYSET = Keyset("chargeback_reports", ChargebackReportRow.period, ChargebackReportRow.id, "text")


def _statements_query(principal: Principal, period: str | None) -> Select[ChargebackReportRow]:
    require_admin(principal, "reading chargeback reports")
    query = select(ChargebackReportRow)
    if period:
        query = query.where(ChargebackReportRow.period == period_name(parse_period(period, date.max)))
    return query


async def _with_lines(session: AsyncSession, rows: Sequence[ChargebackReportRow]) -> list[Statement]:
    lines: dict[str, list[ChargebackLineRow]] = defaultdict(list)
    if rows:
        found = await session.scalars(
            select(ChargebackLineRow)
            .where(ChargebackLineRow.report_id.in_([r.id for r in rows]))
            .order_by(ChargebackLineRow.report_id, ChargebackLineRow.position)
        )
        for line in found.all():
            lines[line.report_id].append(line)
    return [Statement.from_rows(r, lines[r.id]) for r in rows]


async def list_statements(session: AsyncSession, principal: Principal, period: str | None = None) -> list[Statement]:
    query = _statements_query(principal, period).order_by(ChargebackReportRow.period.desc())
    return await _with_lines(session, (await session.scalars(query)).all())


async def statement_page(
    session: AsyncSession,
    principal: Principal,
    period: str | None = None,
    *,
    first: int = DEFAULT_PAGE,
    after: str | None = None,
) -> Page[Statement]:
    """`list_statements` a cursor page at a time, newest period first (admin)."""
    query = STATEMENT_KEYSET.apply(_statements_query(principal, period), first, after)
    page = STATEMENT_KEYSET.page((await session.scalars(query)).all(), first, lambda r: (r.period, r.id))
    statements = {s.id: s for s in await _with_lines(session, [e.node for e in page.edges])}
    return page.map(lambda r: statements[r.id])


async def current_total(session: AsyncSession, source: SpendSource, period: str, time_zone: str = "UTC") -> Decimal:
    """The month's spend (in the statement's time zone) as reports read it now (differs from a frozen statement when
    late spend arrived and the rollup has re-counted its day)."""
    spend = await _team_spend(session, source, parse_period(period, date.max), time_zone)
    return nanos_to_usd(sum(spend.values()))


# ---------------------------------------------------------------------------------------------- internals


def _teams(teams: Iterable[str | None]) -> list[str | None]:
    """Named teams in order, spend without a team last."""
    return sorted(teams, key=lambda t: (t is None, t or ""))


def _of(rules: Sequence[AllocationRule], team: str | None) -> list[AllocationRule]:
    return [r for r in rules if team is not None and r.team_id == team]


async def _team_spend(
    session: AsyncSession, source: SpendSource, days: DayRange, time_zone: str
) -> dict[str | None, int]:
    grouped = await aggregate(session, source, days, (Dim.TEAM,), zone=periods.zone(time_zone))
    return {(key[0] or None): t.spend_nanos for key, t in grouped.items()}


async def _adjustments(
    session: AsyncSession, source: SpendSource, rules: Sequence[AllocationRule], *, before: str
) -> list[StatementLine]:
    """Late spend of every earlier frozen month: what its logs say now, minus what its statement charged, minus
    the adjustments later frozen statements already carried for it."""
    frozen = (
        await session.scalars(
            select(ChargebackReportRow)
            .where(ChargebackReportRow.status != StatementStatus.DRAFT.value, ChargebackReportRow.period < before)
            .order_by(ChargebackReportRow.period)
        )
    ).all()
    if not frozen:
        return []
    frozen_ids = [r.id for r in frozen]
    charged: dict[tuple[str, str | None], int] = defaultdict(int)
    posted = await session.scalars(
        select(ChargebackLineRow).where(ChargebackLineRow.report_id.in_(frozen_ids), ChargebackLineRow.posted)
    )
    period_of = {r.id: r.period for r in frozen}
    for line in posted.all():
        month = line.adjusts_period or period_of[line.report_id]
        charged[(month, line.team_id)] += usd_to_nanos(line.cost)
    out: list[StatementLine] = []
    for report in frozen:
        now = await _team_spend(session, source, parse_period(report.period, date.max), report.time_zone)
        teams = {t for (m, t) in charged if m == report.period} | set(now)
        for team in _teams(teams):
            delta = now.get(team, 0) - charged.get((report.period, team), 0)
            if delta:
                out += team_lines(team, delta, _of(rules, team), adjusts=report.period)
    return out


async def _write(
    work: Work,
    principal: Principal,
    existing: ChargebackReportRow | None,
    period: str,
    time_zone: str,
    total_nanos: int,
    lines: list[StatementLine],
) -> Statement:
    posted = [line for line in lines if line.posted]
    allocated = sum(x.cost_nanos for x in posted if x.kind is LineKind.ALLOCATION)
    unallocated = sum(x.cost_nanos for x in posted if x.kind is LineKind.UNALLOCATED)
    adjustments = sum(x.cost_nanos for x in posted if x.kind is LineKind.ADJUSTMENT)
    assert allocated + unallocated == total_nanos, "a statement's posted lines add up to its total"
    row = existing or ChargebackReportRow(id=str(uuid.uuid4()), period=period, revision=0)
    row.status = StatementStatus.DRAFT.value
    row.time_zone = time_zone
    row.total_cost, row.allocated_cost = nanos_to_usd(total_nanos), nanos_to_usd(allocated)
    row.unallocated_cost, row.adjustment_cost = nanos_to_usd(unallocated), nanos_to_usd(adjustments)
    row.revision += 1
    row.generated_at, row.generated_by = work.now, principal.subject
    if existing is None:
        work.session.add(row)
        await work.session.flush()
    else:
        await work.session.execute(delete(ChargebackLineRow).where(ChargebackLineRow.report_id == row.id))
    for position, line in enumerate(lines, start=1):
        work.session.add(
            ChargebackLineRow(
                report_id=row.id,
                position=position,
                kind=line.kind.value,
                team_id=line.team_id,
                allocation_type=line.allocation_type.value if line.allocation_type else None,
                allocation_target=line.allocation_target,
                percent=line.percent,
                cost=nanos_to_usd(line.cost_nanos),
                posted=line.posted,
                rule_id=line.rule_id,
                rule_name=line.rule_name,
                adjusts_period=line.adjusts_period,
                details=line.metadata,
            )
        )
    await work.session.flush()
    return await _load(work.session, row)


async def _load(session: AsyncSession, row: ChargebackReportRow) -> Statement:
    lines = await session.scalars(
        select(ChargebackLineRow).where(ChargebackLineRow.report_id == row.id).order_by(ChargebackLineRow.position)
    )
    return Statement.from_rows(row, lines.all())
