"""The daily rollup of LiteLLM_SpendLogs (`cost_tracking_daily`) and the one way every report reads spend.

Maintenance: every closed UTC day below the watermark (`built_through`) is rolled up. A run rolls up the days the
watermark has not reached yet, and re-counts the closed days of the last `SPENDPLANE_ROLLUP_RECHECK_DAYS`: a day
whose raw row count is now larger than its rollup's (late-arriving spend logs) is rebuilt. A rebuild replaces the
whole day (delete + INSERT … SELECT in one transaction), so re-runs never double count. A day whose raw logs have
shrunk (LiteLLM's retention purged them) keeps its rollup: the rollup is the long-term history.

Reading: `aggregate` answers a day range from the rollup for days below the watermark and from the raw logs for
the rest (the open day, or closed days the job has not reached yet), and merges them exactly (integer nano-USD).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import BigInteger, Date, Table, case, delete, func, insert, literal, or_, select, text, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement, literal_column

from models.db import Database, insert_or_ignore
from models.litellm import LiteLLMSchema, spend_logs
from models.rollups import CostSummaryDailyRow, CostSummaryMonthlyRow, CostTrackingDailyRow, RollupStateRow, utc_day
from models.types import nanos_to_usd
from resolvers.periods import Period
from resolvers.spend import Scope, ScopeKind, require_spend_logs, spend_nanos

if TYPE_CHECKING:
    from resolvers.runtime import Runtime

log = logging.getLogger("spendplane.rollups")

T = TypeVar("T")

STATE = "daily"
_T: Table = CostTrackingDailyRow.__table__  # type: ignore[assignment]
_S: Table = CostSummaryDailyRow.__table__  # type: ignore[assignment]
_M: Table = CostSummaryMonthlyRow.__table__  # type: ignore[assignment]
#: PostgreSQL's default 4 MB makes a month's grouping spill to a sort on disk; with this it stays a hash.
REPORT_WORK_MEM = "32MB"
_EMPTY: ColumnElement[str] = literal_column(
    "''"
)  # inline, never a bind: asyncpg would bind it twice in SELECT and GROUP BY


class Dim(StrEnum):
    """A dimension of the rollup; reports group by any of them."""

    DAY = "day"
    MODEL_GROUP = "model_group"
    MODEL = "model"
    PROVIDER = "provider"
    KEY = "api_key"
    USER = "user_id"
    TEAM = "team_id"
    END_USER = "end_user"


ROLLUP_GRAIN = (Dim.MODEL_GROUP, Dim.MODEL, Dim.PROVIDER, Dim.KEY, Dim.USER, Dim.TEAM, Dim.END_USER)
#: The summary table's grain: everything but key and end user (what reports group and filter by).
SUMMARY_GRAIN = (Dim.MODEL_GROUP, Dim.MODEL, Dim.PROVIDER, Dim.USER, Dim.TEAM)


@dataclass(frozen=True)
class Filters:
    """What a report is restricted to. `model` matches the called model or the requested model group (alias)."""

    team_id: str | None = None
    user_id: str | None = None
    model: str | None = None


@dataclass
class Totals:
    """Exact sums: counts and tokens as ints, spend as integer nano-USD."""

    requests: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    spend_nanos: int = 0

    def add(self, other: Totals) -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.spend_nanos += other.spend_nanos

    @property
    def cost(self) -> Decimal:
        return nanos_to_usd(self.spend_nanos)


@dataclass(frozen=True)
class DayRange:
    """UTC days [start, end)."""

    start: date
    end: date

    @property
    def period(self) -> Period:
        return Period(_midnight(self.start), _midnight(self.end))

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]


@dataclass(frozen=True)
class SpendSource:
    """Where a read gets its figures: the rollup below `built_through`, the raw logs from there on."""

    schema: LiteLLMSchema
    built_through: date | None
    raw_only: bool = False

    def split(self, days: DayRange) -> tuple[DayRange | None, DayRange | None]:
        edge = None if self.raw_only else self.built_through
        if edge is None or edge <= days.start:
            return None, days
        if edge >= days.end:
            return days, None
        return DayRange(days.start, edge), DayRange(edge, days.end)


Key = tuple[Any, ...]


async def spend_source(session: AsyncSession, schema: LiteLLMSchema, *, raw_only: bool = False) -> SpendSource:
    require_spend_logs(schema)
    built = await session.scalar(select(RollupStateRow.built_through).where(RollupStateRow.name == STATE))
    return SpendSource(schema, built, raw_only)


# ---------------------------------------------------------------------------------------------- reading


async def aggregate(
    session: AsyncSession, source: SpendSource, days: DayRange, by: Sequence[Dim], filters: Filters = Filters()
) -> dict[Key, Totals]:
    """Totals over `days` grouped by `by`, from the rollup and the raw logs, merged exactly."""
    result: dict[Key, Totals] = {}
    await _tune(session)
    for statement in _statements(source, days, by, filters):
        for row in await session.execute(statement):
            key, totals = _split_row(row, by)
            found = result.get(key)
            if found is None:
                result[key] = totals
            else:
                found.add(totals)
    return result


async def stream_aggregate(
    session: AsyncSession, source: SpendSource, days: DayRange, by: Sequence[Dim], filters: Filters = Filters()
) -> AsyncIterator[tuple[Key, Totals]]:
    """Like `aggregate`, but ordered by `by` (DAY first when present) and streamed over a server-side cursor,
    so exports never hold the whole result. Rows for one key come once (the rollup and raw parts cover
    disjoint days), provided `by` includes DAY."""
    await _tune(session)
    for statement in _statements(source, days, by, filters, ordered=True):
        result = await session.stream(statement.execution_options(yield_per=2000))
        async for row in result:
            yield _split_row(row, by)


async def _tune(session: AsyncSession) -> None:
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))


def _statements(
    source: SpendSource, days: DayRange, by: Sequence[Dim], filters: Filters, *, ordered: bool = False
) -> list[Select[Any]]:
    rolled, raw = source.split(days)
    statements = []
    if rolled is not None:
        ranges = [rolled]
        if not ordered and all(d in SUMMARY_GRAIN for d in by):
            assert source.built_through is not None
            months, ranges = _whole_months(rolled, source.built_through)
            if months is not None:
                statements.append(_monthly_select(months, by, filters))
        statements += [_rollup_select(r, by, filters, ordered) for r in ranges]
    if raw is not None:
        statements.append(_raw_select(source.schema, raw, by, filters, ordered))
    return statements


def _split_row(row: Sequence[Any], by: Sequence[Dim]) -> tuple[Key, Totals]:
    key = tuple(as_date(v) if d is Dim.DAY else v for d, v in zip(by, row, strict=False))
    requests, failures, input_tokens, output_tokens, spend = row[len(by) :]
    totals = Totals(
        int(requests or 0), int(failures or 0), int(input_tokens or 0), int(output_tokens or 0), int(spend or 0)
    )
    return key, totals


def _rollup_select(days: DayRange, by: Sequence[Dim], filters: Filters, ordered: bool) -> Select[Any]:
    # Filters only ever use summary columns; the key and end-user dimensions need the full rollup.
    table = _S if all(d is Dim.DAY or d in SUMMARY_GRAIN for d in by) else _T
    columns = [table.c[d.value] for d in by]
    statement = (
        select(*columns, *_rollup_measures(table))
        .where(table.c.day >= days.start, table.c.day < days.end)
        .group_by(*columns)
    )
    statement = _filtered(statement, table, filters)
    return statement.order_by(*columns) if ordered and columns else statement


def _whole_months(rolled: DayRange, built_through: date) -> tuple[DayRange | None, list[DayRange]]:
    """Split the rolled-up part of a range into the calendar months it covers whole (from their 1st to their end,
    or to the watermark, which is all the monthly summary holds) and the days around them."""
    first = rolled.start if rolled.start.day == 1 else _next_month(rolled.start)
    last = first
    while _next_month(last) <= rolled.end or (last < rolled.end == built_through):
        last = _next_month(last)
    if last == first:
        return None, [rolled]
    months = DayRange(first, last)
    around = [DayRange(rolled.start, first)] if rolled.start < first else []
    if last < rolled.end:
        around.append(DayRange(last, rolled.end))
    return months, around


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def _monthly_select(months: DayRange, by: Sequence[Dim], filters: Filters) -> Select[Any]:
    columns = [_M.c[d.value] for d in by]
    statement = (
        select(*columns, *_rollup_measures(_M))
        .where(_M.c.month >= months.start, _M.c.month < months.end)
        .group_by(*columns)
    )
    return _filtered(statement, _M, filters)


def _filtered(statement: Select[Any], table: Table, filters: Filters) -> Select[Any]:
    if filters.team_id is not None:
        statement = statement.where(table.c.team_id == filters.team_id)
    if filters.user_id is not None:
        statement = statement.where(table.c.user_id == filters.user_id)
    if filters.model is not None:
        statement = statement.where(or_(table.c.model == filters.model, table.c.model_group == filters.model))
    return statement


def _rollup_measures(table: Table) -> list[ColumnElement[Any]]:
    return [
        func.sum(table.c.requests),
        func.sum(table.c.failures),
        func.sum(table.c.input_tokens),
        func.sum(table.c.output_tokens),
        func.sum(type_coerce(table.c.spend, BigInteger)),
    ]


def raw_dimension(schema: LiteLLMSchema, dim: Dim) -> ColumnElement[Any]:
    """How a dimension reads from LiteLLM_SpendLogs, with fallbacks for columns older releases lack."""
    s = spend_logs.c
    if dim is Dim.DAY:
        return utc_day(s.start_time)
    if dim is Dim.MODEL_GROUP:
        if not schema.has(spend_logs, "model_group"):
            return func.coalesce(s.model, _EMPTY)
        return func.coalesce(func.nullif(s.model_group, _EMPTY), s.model, _EMPTY)
    column = {
        Dim.MODEL: "model",
        Dim.PROVIDER: "custom_llm_provider",
        Dim.KEY: "api_key",
        Dim.USER: "user",
        Dim.TEAM: "team_id",
        Dim.END_USER: "end_user",
    }[dim]
    if not schema.has(spend_logs, column):
        return _EMPTY
    return func.coalesce(s[column], _EMPTY)


def _failed(schema: LiteLLMSchema) -> ColumnElement[bool] | None:
    """LiteLLM marks failures with status 'failure' (NULL = success); older releases only in metadata."""
    if schema.has(spend_logs, "status"):
        return spend_logs.c.status == "failure"
    if schema.has(spend_logs, "metadata"):
        status: ColumnElement[bool] = spend_logs.c["metadata"]["status"].as_string() == "failure"
        return status
    return None


def _raw_measures(schema: LiteLLMSchema) -> list[ColumnElement[Any]]:
    failed = _failed(schema)
    return [
        func.count(),
        func.sum(case((failed, 1), else_=0)) if failed is not None else literal_column("0"),
        func.coalesce(func.sum(spend_logs.c.prompt_tokens), 0),
        func.coalesce(func.sum(spend_logs.c.completion_tokens), 0),
        spend_nanos(),
    ]


def _raw_filters(schema: LiteLLMSchema, days: DayRange, filters: Filters) -> list[ColumnElement[bool]]:
    s = spend_logs.c
    period = days.period
    where = [s.start_time >= period.start, s.start_time < period.end]
    if filters.team_id is not None:
        where.append(raw_dimension(schema, Dim.TEAM) == filters.team_id)
    if filters.user_id is not None:
        where.append(raw_dimension(schema, Dim.USER) == filters.user_id)
    if filters.model is not None:
        where.append(or_(s.model == filters.model, raw_dimension(schema, Dim.MODEL_GROUP) == filters.model))
    return where


def _raw_select(
    schema: LiteLLMSchema, days: DayRange, by: Sequence[Dim], filters: Filters, ordered: bool
) -> Select[Any]:
    labels = [raw_dimension(schema, d).label(f"d_{d.value}") for d in by]
    statement = select(*labels, *_raw_measures(schema)).where(*_raw_filters(schema, days, filters))
    if labels:
        # Grouping by the labels (not the expressions again) keeps every expression bound once.
        names: list[ColumnElement[Any]] = [literal_column(label.name) for label in labels]
        statement = statement.group_by(*names)
        if ordered:
            statement = statement.order_by(*names)
    return statement


# ---------------------------------------------------------------------------------------------- budgets


async def rollup_spend_by_scope(
    session: AsyncSession, schema: LiteLLMSchema, scopes: Iterable[Scope], period: Period
) -> dict[Scope, Decimal]:
    """The same answer as `resolvers.spend.spend_by_scope` for whole-day periods, from the rollup (one grouped
    query per scope kind over days, not requests). Budgets may switch to it; spend.py is left as it is."""
    source = await spend_source(session, schema)
    days = DayRange(period.start.date(), period.end.date())
    if _midnight(days.start) != period.start or _midnight(days.end) != period.end:
        raise ValueError("the rollup answers whole UTC days only")
    dims = {
        ScopeKind.USER: Dim.USER,
        ScopeKind.TEAM: Dim.TEAM,
        ScopeKind.KEY: Dim.KEY,
        ScopeKind.END_USER: Dim.END_USER,
    }
    result: dict[Scope, Decimal] = {}
    wanted = list(scopes)
    kinds = {s.kind for s in wanted}
    if ScopeKind.GLOBAL in kinds:
        total = await aggregate(session, source, days, ())
        result[Scope.global_()] = sum((t.cost for t in total.values()), Decimal(0))
    for kind in kinds - {ScopeKind.GLOBAL}:
        grouped = await aggregate(session, source, days, (dims[kind],))
        for (key,), totals in grouped.items():
            result[Scope(kind, key)] = totals.cost
    return {s: result.get(s, Decimal(0)) for s in wanted}


# ---------------------------------------------------------------------------------------------- maintenance


@dataclass(frozen=True)
class RollupStatus:
    built_through: date | None
    days_rebuilt: int = 0
    rows_written: int = 0
    rebuilt: tuple[date, ...] = field(default_factory=tuple)

    @property
    def summary(self) -> str:
        through = self.built_through.isoformat() if self.built_through else "nothing"
        return f"rolled up through {through}; rebuilt {self.days_rebuilt} days ({self.rows_written} rollup rows)"


async def rollup_status(session: AsyncSession) -> RollupStatus:
    built = await session.scalar(select(RollupStateRow.built_through).where(RollupStateRow.name == STATE))
    return RollupStatus(built)


async def refresh_rollups(
    db: Database, schema: LiteLLMSchema, now: datetime, *, recheck_days: int, since: date | None = None
) -> RollupStatus:
    """Bring the rollup up to date (see the module docstring). `since` forces a rebuild of every closed day from
    that date on that still has raw logs (on demand, e.g. after changing LiteLLM data by hand)."""
    require_spend_logs(schema)
    today = now.astimezone(UTC).date()
    await finish_on_cancel(_ensure_state(db, now))
    async with db.reader() as session, session.begin():
        built = await session.scalar(select(RollupStateRow.built_through).where(RollupStateRow.name == STATE))
        dirty = await _dirty_days(session, schema, today, built, recheck_days, since)

    rows_written = 0
    for day in dirty:
        rows_written += await finish_on_cancel(_rebuild_day(db, schema, day, now))
    if dirty and db.is_postgres:
        await _analyze(db)
    # With no spend logs at all there is nothing to mark as rolled up: the first logs start the rollup.
    has_logs = built is not None or bool(dirty)
    built = await finish_on_cancel(_advance(db, today, now, len(dirty), has_logs=has_logs))
    status = RollupStatus(built, len(dirty), rows_written, tuple(dirty))
    log.info("rollups: %s", status.summary)
    return status


async def finish_on_cancel(work: Awaitable[T]) -> T:
    """Run one write transaction to its end even if the caller is cancelled (a job stopped at shutdown), then let
    the cancellation through: an abandoned SQLite write transaction would hold the database lock."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def _analyze(db: Database) -> None:
    """Fresh planner statistics after a rebuild (autovacuum may take a while), or PostgreSQL plans reports for
    an empty table."""
    async with db.engine.connect() as conn:
        await conn.execute(text(f"ANALYZE {_T.name}, {_S.name}, {_M.name}"))
        await conn.commit()


async def _ensure_state(db: Database, now: datetime) -> None:
    async with db.sessions() as session, session.begin():
        await session.execute(
            insert_or_ignore(db.dialect, RollupStateRow.__table__),  # type: ignore[arg-type]
            {"name": STATE, "built_through": None, "updated_at": now, "days_rebuilt": 0},
        )


async def _advance(db: Database, today: date, now: datetime, days_rebuilt: int, *, has_logs: bool) -> date | None:
    async with db.sessions() as session, session.begin():
        state = await session.get(RollupStateRow, STATE, with_for_update=True)
        assert state is not None
        if has_logs and (state.built_through is None or state.built_through < today):
            state.built_through = today
        state.updated_at = now
        state.days_rebuilt = days_rebuilt
        return state.built_through


async def _dirty_days(
    session: AsyncSession,
    schema: LiteLLMSchema,
    today: date,
    built: date | None,
    recheck_days: int,
    since: date | None,
) -> list[date]:
    recheck_from = today - timedelta(days=recheck_days)
    if built is None:
        first = await session.scalar(select(func.min(spend_logs.c.start_time)))
        if first is None:
            return []
        built = as_date(first)
        recheck_from = built
    check_from = min(recheck_from, built, since or built)
    if check_from >= today:
        return []
    raw = await _raw_counts(session, schema, DayRange(check_from, today))
    rolled = await _rolled_counts(session, DayRange(check_from, today))
    dirty = set()
    for day in DayRange(check_from, today).days():
        raw_count, rolled_count = raw.get(day, 0), rolled.get(day, 0)
        if day >= built and (raw_count or rolled_count):
            dirty.add(day)  # never rolled up (or left over from an older watermark)
        elif raw_count > rolled_count and day >= recheck_from:
            dirty.add(day)  # late spend logs arrived
        elif since is not None and day >= since and raw_count:
            dirty.add(day)  # forced
    return sorted(dirty)


async def _raw_counts(session: AsyncSession, schema: LiteLLMSchema, days: DayRange) -> dict[date, int]:
    day = utc_day(spend_logs.c.start_time).label("d")
    period = days.period
    rows = await session.execute(
        select(day, func.count())
        .where(spend_logs.c.start_time >= period.start, spend_logs.c.start_time < period.end)
        .group_by(literal_column("d"))
    )
    return {as_date(d): int(n) for d, n in rows}


async def _rolled_counts(session: AsyncSession, days: DayRange) -> dict[date, int]:
    rows = await session.execute(
        select(_T.c.day, func.sum(_T.c.requests)).where(_T.c.day >= days.start, _T.c.day < days.end).group_by(_T.c.day)
    )
    return {as_date(d): int(n) for d, n in rows}


async def _rebuild_day(db: Database, schema: LiteLLMSchema, day: date, now: datetime) -> int:
    """Replace one day's rollup rows (and its summary rows, and its month's) with a fresh aggregate of its raw
    logs, in one transaction, serialised with any other rebuild by the state row's lock (PostgreSQL) or the write lock
    (SQLite)."""
    # Labels differ from every LiteLLM column name: PostgreSQL resolves GROUP BY names to input columns first.
    dims = [raw_dimension(schema, d).label(f"d_{d.value}") for d in ROLLUP_GRAIN]
    measures = _raw_measures(schema)
    source = (
        select(literal(day, Date).label("d_day"), *dims, *measures)
        .where(*_raw_filters(schema, DayRange(day, day + timedelta(days=1)), Filters()))
        .group_by(*[literal_column(label.name) for label in dims])
    )
    measures_names = ["requests", "failures", "input_tokens", "output_tokens", "spend"]
    summary_dims = [_T.c[d.value] for d in SUMMARY_GRAIN]
    summary = (
        select(_T.c.day, *summary_dims, *_rollup_measures(_T)).where(_T.c.day == day).group_by(_T.c.day, *summary_dims)
    )
    month = DayRange(day.replace(day=1), _next_month(day))
    monthly = (
        select(
            literal(month.start, Date).label("m_month"), *[_S.c[d.value] for d in SUMMARY_GRAIN], *_rollup_measures(_S)
        )
        .where(_S.c.day >= month.start, _S.c.day < month.end)
        .group_by(*[_S.c[d.value] for d in SUMMARY_GRAIN])
    )
    async with db.sessions() as session, session.begin():
        state = await session.get(RollupStateRow, STATE, with_for_update=True)
        assert state is not None
        await session.execute(delete(_T).where(_T.c.day == day))
        await session.execute(delete(_S).where(_S.c.day == day))
        await session.execute(delete(_M).where(_M.c.month == month.start))
        result = await session.execute(
            insert(_T).from_select(["day", *[d.value for d in ROLLUP_GRAIN], *measures_names], source)
        )
        await session.execute(
            insert(_S).from_select(["day", *[d.value for d in SUMMARY_GRAIN], *measures_names], summary)
        )
        await session.execute(
            insert(_M).from_select(["month", *[d.value for d in SUMMARY_GRAIN], *measures_names], monthly)
        )
        # Days are rebuilt oldest first and the watermark follows them, so every summarised day (and so every
        # monthly row) is always below it: a report never counts a day from the rollup and the raw logs.
        if state.built_through is None or state.built_through <= day:
            state.built_through = day + timedelta(days=1)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def as_date(value: Any) -> date:
    """A DATE as the drivers return it (a date, or ISO text from SQLite expressions) as a date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


async def rollup_job(runtime: Runtime, tick: datetime) -> str:
    """The periodic refresh (SPENDPLANE_ROLLUP_SCHEDULE, and once at start)."""
    status = await refresh_rollups(
        runtime.db, runtime.litellm, runtime.clock(), recheck_days=runtime.settings.rollup_recheck_days
    )
    return status.summary
