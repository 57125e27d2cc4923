"""Reading spend: the one way every report gets its figures. `aggregate` answers a day range from the rollup for
days below the watermark and from the raw logs for the rest (the open day, or closed days the job has not reached
yet) and merges them exactly (integer nano-USD). Queries that need neither key nor end user read the summaries:
the monthly one for calendar months covered whole, the daily one for the days around them.

Days in another time zone (`zone`): a local day is an interval of UTC instants whose ends fall on quarter hours
(every IANA zone's offset is a multiple of 15 minutes). Totals over local days read the UTC days between the
midnights nearest their ends from the daily tables, plus the quarter-hour buckets of the local days outside those
UTC days, minus the buckets of those UTC days outside the local days; figures per local day do the same per day
(the UTC day it overlaps most, plus and minus the offset's pieces), so only the offset's share of the buckets is
read, from the narrowest bucket table that holds the read's dimensions (totals, summary grain, full grain); at the
summary grain the whole hours of a piece come from blocks of 1, 2, 4 and 8 hours (a 9-hour piece is two blocks),
only the quarter hours off them from the buckets. The rollup's parts (days added, pieces added and subtracted)
are one statement, a UNION ALL grouped once (`_signed_sum`). Time below the watermark comes from the rollup and
time after it from the raw logs (a local day the watermark cuts from both, merged per key), as in UTC. Exports in
a zone read a few local days at a time the same way and order them in memory. `aggregate_span` does the same for
any UTC interval (budget windows).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, String, Table, and_, case, cast, func, or_, select, text, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement, literal_column

from models.litellm import LiteLLMSchema, spend_logs
from models.rollups import (
    CostSummaryBlockRow,
    CostSummaryBucketRow,
    CostSummaryDailyRow,
    CostSummaryMonthlyRow,
    CostTotalBucketRow,
    CostTrackingBucketRow,
    CostTrackingDailyRow,
    CostZoneDailyRow,
    RollupStateRow,
    utc_day,
)
from models.types import nanos_to_usd
from resolvers.platform.periods import Period
from resolvers.spend import (
    Scope,
    ScopeKind,
    chunks,
    requested_model,
    require_spend_logs,
    spend_by_scope,
    spend_nanos,
)

STATE = "daily"
#: The buckets' state row: present once every day below the watermark has its buckets (see migration 0010).
BUCKETS_STATE = "hourly"
BUCKETS: Table = CostTrackingBucketRow.__table__  # type: ignore[assignment]
#: The buckets at the summary's grain (no key, no end user): what zoned reports read when they can.
SUMMARY_BUCKETS: Table = CostSummaryBucketRow.__table__  # type: ignore[assignment]
#: The summary buckets summed over blocks of BLOCK_MINUTES: what zoned reads take for whole hours of their pieces.
BLOCKS: Table = CostSummaryBlockRow.__table__  # type: ignore[assignment]
#: The summary blocks' lengths, shortest first (each divides the next, and the day).
BLOCK_MINUTES = (60, 120, 240, 480)
#: The buckets summed over every dimension: what unfiltered, ungrouped zoned reads take.
TOTAL_BUCKETS: Table = CostTotalBucketRow.__table__  # type: ignore[assignment]
BUCKET = timedelta(minutes=15)
FINE: Table = CostTrackingDailyRow.__table__  # type: ignore[assignment]
SUMMARY: Table = CostSummaryDailyRow.__table__  # type: ignore[assignment]
MONTHLY: Table = CostSummaryMonthlyRow.__table__  # type: ignore[assignment]
#: The daily summary by local day in the organisation's zone; its state row names the zone and the first day it lacks.
ZONE_DAILY: Table = CostZoneDailyRow.__table__  # type: ignore[assignment]
ZONE_STATE = "zone_daily"
#: PostgreSQL's default 4 MB makes a month's grouping spill to a sort on disk; with this it stays a hash.
REPORT_WORK_MEM = "32MB"
#: Inline, never a bind: asyncpg would bind it twice, in SELECT and in GROUP BY.
_EMPTY: ColumnElement[str] = literal_column("''")


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
    #: Only these values of one dimension (a budget read asks for its scopes' ids, not the whole month).
    among: tuple[Dim, tuple[str, ...]] | None = None


@dataclass
class Totals:
    """Exact sums: counts and tokens as ints, spend as integer nano-USD."""

    requests: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    spend_nanos: int = 0

    def add(self, other: Totals, sign: int = 1) -> None:
        self.requests += sign * other.requests
        self.failures += sign * other.failures
        self.input_tokens += sign * other.input_tokens
        self.output_tokens += sign * other.output_tokens
        self.spend_nanos += sign * other.spend_nanos

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
        return Period(midnight(self.start), midnight(self.end))

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]


@dataclass(frozen=True)
class SpendSource:
    """Where a read gets its figures: the rollup below `built_through`, the raw logs from there on."""

    schema: LiteLLMSchema
    built_through: date | None
    raw_only: bool = False
    #: Every day below `built_through` has its quarter-hour buckets (false until the first run after 0010).
    buckets: bool = True
    #: The zone `ZONE_DAILY` is kept in, and the first local day it lacks (every one before it is there).
    zone_name: str | None = None
    zone_through: date | None = None

    @property
    def rolled_until(self) -> datetime | None:
        """The first instant the rollup does not hold."""
        if self.raw_only or self.built_through is None:
            return None
        return midnight(self.built_through)

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
    rows = await session.execute(
        select(RollupStateRow.name, RollupStateRow.built_through, RollupStateRow.zone).where(
            RollupStateRow.name.in_((STATE, BUCKETS_STATE, ZONE_STATE))
        )
    )
    states: dict[str, tuple[date | None, str | None]] = {name: (built, zone) for name, built, zone in rows}
    zone_through, zone_name = states.get(ZONE_STATE, (None, None))
    return SpendSource(
        schema,
        states.get(STATE, (None, None))[0],
        raw_only,
        buckets=BUCKETS_STATE in states and states[BUCKETS_STATE][0] is not None,
        zone_name=zone_name if zone_through is not None else None,
        zone_through=zone_through if zone_name is not None else None,
    )


# ---------------------------------------------------------------------------------------------- reading


async def aggregate(
    session: AsyncSession,
    source: SpendSource,
    days: DayRange,
    by: Sequence[Dim],
    filters: Filters = Filters(),
    zone: tzinfo | None = None,
) -> dict[Key, Totals]:
    """Totals over `days` (local days in `zone`, UTC by default) grouped by `by` (DAY = the local day), from the
    rollup and the raw logs, merged exactly."""
    await _tune(session)
    return await _run(session, _zoned_statements(source, days, by, filters, zone), by)


async def aggregate_span(
    session: AsyncSession, source: SpendSource, span: Period, by: Sequence[Dim], filters: Filters = Filters()
) -> dict[Key, Totals]:
    """Totals over any UTC interval grouped by `by` (no DAY): the daily tables for its whole UTC days below the
    watermark, the buckets for the quarter-hour-aligned rest below it, the raw logs for everything else."""
    if Dim.DAY in by:
        raise ValueError("aggregate_span does not group by day")
    await _tune(session)
    until = source.rolled_until
    split = span.start if until is None else max(span.start, min(until, span.end))
    statements: list[Select[Any]] = []
    if span.start < split:
        statements = _span_statements(source, span.start, split, by, filters)
    if split < span.end:
        statements.append(_raw_select(source.schema, Period(split, span.end), by, filters, False))
    return await _run(session, statements, by)


async def _run(session: AsyncSession, statements: Iterable[Select[Any]], by: Sequence[Dim]) -> dict[Key, Totals]:
    result: dict[Key, Totals] = {}
    for statement in statements:
        for row in await session.execute(statement):
            key, totals = _split_row(row, by)
            found = result.get(key)
            if found is None:
                found = result[key] = Totals()
            found.add(totals)
    return result


async def stream_aggregate(
    session: AsyncSession,
    source: SpendSource,
    days: DayRange,
    by: Sequence[Dim],
    filters: Filters = Filters(),
    zone: tzinfo | None = None,
) -> AsyncIterator[tuple[Key, Totals]]:
    """Like `aggregate`, but ordered by `by` (DAY first when present) and streamed, so exports never hold the
    whole result. Rows for one key come once (the rollup and raw parts cover disjoint days), provided `by`
    includes DAY. In UTC: over a server-side cursor. Per local day in another zone: STREAM_DAYS local days at a
    time read like `aggregate` (each day its UTC day plus and minus the offset's pieces, not every bucket),
    ordered in memory, so at most STREAM_DAYS days of groups are held."""
    await _tune(session)
    if Dim.DAY in by and local_bounds(days, zone) is not None:
        first = days.start
        while first < days.end:
            chunk = DayRange(first, min(days.end, first + timedelta(days=STREAM_DAYS)))
            found = await _run(session, _zoned_statements(source, chunk, by, filters, zone), by)
            for key in sorted(found, key=_order):
                yield key, found[key]
            first = chunk.end
        return
    for statement in _zoned_statements(source, days, by, filters, zone, ordered=True):
        result = await session.stream(statement.execution_options(yield_per=2000))
        async for row in result:
            yield _split_row(row, by)


#: Local days a zoned export reads (and holds) at a time.
STREAM_DAYS = 7


def _order(key: Key) -> tuple[Any, ...]:
    """A key's place in an ordered read: missing values ('' or None) first, as in SQL's order of ''."""
    return tuple("" if v is None else v for v in key)


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


def local_bounds(days: DayRange, zone: tzinfo | None) -> list[datetime] | None:
    """The UTC instants local days start at (one more than the days: the last day's end), or None where they are
    all UTC midnights (UTC itself, or any zone at offset zero throughout)."""
    if zone is None:
        return None
    bounds = [
        datetime.combine(days.start + timedelta(days=i), time(0), tzinfo=zone).astimezone(UTC)
        for i in range((days.end - days.start).days + 1)
    ]
    if all(b.time() == time(0) for b in bounds):
        return None
    return bounds


def _zoned_statements(
    source: SpendSource,
    days: DayRange,
    by: Sequence[Dim],
    filters: Filters,
    zone: tzinfo | None,
    *,
    ordered: bool = False,
) -> list[Select[Any]]:
    bounds = local_bounds(days, zone)
    if bounds is None:
        return [*_statements(source, days, by, filters, ordered=ordered)]
    # Zoned reads per local day are never ordered in SQL (`stream_aggregate` orders them per few days).
    assert not (ordered and Dim.DAY in by)
    start, end = bounds[0], bounds[-1]
    until = source.rolled_until
    per_day = Dim.DAY in by
    # Below the watermark from the rollup (a local day the watermark cuts: its part before it from the
    # buckets), after it from the raw logs, merged per key.
    split = start
    if until is not None and (source.buckets or not per_day):
        split = max(start, min(until, end))
    labels = LocalDays(days, bounds) if per_day else None
    statements: list[Select[Any]] = []
    if start < split:
        if labels is not None:
            statements += _telescoped(source, labels, split, by, filters, zone)
        else:
            statements += _span_statements(source, start, split, by, filters)
    if split < end:
        raw_labels = labels.since(split) if labels is not None else None
        statements.append(_raw_select(source.schema, Period(split, end), by, filters, ordered, raw_labels))
    return statements


@dataclass(frozen=True)
class LocalDays:
    """Local days and the UTC instants they start at (`bounds` has one more: the last day's end)."""

    days: DayRange
    bounds: list[datetime]

    def label(self, moment: ColumnElement[Any]) -> ColumnElement[Any]:
        """The local day (ISO text) an instant falls in; NULL outside the days. Inline day literals: the
        expression is grouped and ordered by its label, so each bound is bound once."""
        whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = [
            (moment < self.bounds[i + 1], literal_column(f"'{day.isoformat()}'"))
            for i, day in enumerate(self.days.days())
        ]
        return case(*whens).label("d_day")

    def since(self, moment: datetime) -> LocalDays:
        """Only the days that end after `moment` (what a raw read from `moment` on can meet): the label then
        tests one or two bounds per row, not one per day of the range (a 30-day trend's raw part is today's)."""
        first = next(i for i in range(len(self.bounds) - 1) if self.bounds[i + 1] > moment)
        return LocalDays(DayRange(self.days.start + timedelta(days=first), self.days.end), self.bounds[first:])


def _telescoped(
    source: SpendSource,
    local: LocalDays,
    split: datetime,
    by: Sequence[Dim],
    filters: Filters,
    zone: tzinfo | None = None,
) -> list[Select[Any]]:
    """Figures per local day below `split` without reading every bucket: each local day is the UTC day it
    overlaps most (from the daily tables, like a UTC report), plus the buckets of the local day outside that UTC
    day, minus the buckets of the UTC day outside the local day. Those pieces are the zone's offset long (at most
    12 hours a day, 5 h 45 min for Asia/Kathmandu), so a 30-day trend in Tokyo reads 9/24 of the buckets instead
    of all of them. Exact: integer sums, added and subtracted. A local day whose UTC day is not wholly rolled up
    (or is another local day's already, which no real zone does) is read from its buckets directly. In the zone
    `ZONE_DAILY` is kept in, the local days it holds are read from it, one row per group and day, as in UTC."""
    assert source.built_through is not None
    rolled_end = source.built_through
    kept: list[date] = []
    # The zone's table has the summary's grain: reads by key or end user take the pieces.
    summary_grain = all(d is Dim.DAY or d in SUMMARY_GRAIN for d in by) and (
        filters.among is None or filters.among[0] in SUMMARY_GRAIN
    )
    kept_through = None
    if summary_grain and source.buckets and _zone_key(zone) == source.zone_name:
        kept_through = source.zone_through
    whole: dict[date, date] = {}  # UTC day -> the local day it counts for
    plus: list[tuple[Period, date]] = []
    minus: list[tuple[Period, date]] = []
    direct: list[tuple[Period, date]] = []
    for i, day in enumerate(local.days.days()):
        start, end = local.bounds[i], local.bounds[i + 1]
        if end > split:
            if start < split:
                direct.append((Period(start, split), day))  # the rest of the day comes from the raw logs
            break
        if kept_through is not None and day < kept_through and aligned(start) and aligned(end):
            kept.append(day)
            continue
        utc = (start + (end - start) / 2).date()
        utc_start, utc_end = midnight(utc), midnight(utc + timedelta(days=1))
        if utc >= rolled_end or utc in whole or not (aligned(start) and aligned(end)):
            direct.append((Period(start, end), day))
            continue
        whole[utc] = day
        plus += [(Period(a, b), day) for a, b in ((start, min(end, utc_start)), (max(start, utc_end), end)) if a < b]
        minus += [(Period(a, b), day) for a, b in ((utc_start, start), (end, utc_end)) if a < b]
    parts: list[tuple[Select[Any], int]] = []
    if kept:
        parts.append((_zone_days_select(kept, by, filters), 1))
    if whole:
        parts.append((_labelled_days_select(whole, by, filters), 1))
    if plus:
        parts.append((_pieces_select(plus, by, filters), 1))
    if minus:
        parts.append((_pieces_select(minus, by, filters), -1))
    if direct:
        parts.append((_pieces_select(direct, by, filters), 1))
    return [_signed_sum(parts, by)] if parts else []


def _bucket_table(others: Sequence[Dim], filters: Filters) -> Table:
    """The narrowest bucket table that holds what a read groups and filters by: the totals (neither), the summary
    grain, or (key and end user) the full grain."""
    if not others and filters == Filters():
        return TOTAL_BUCKETS
    wanted = [*others, *([filters.among[0]] if filters.among is not None else [])]
    return SUMMARY_BUCKETS if all(d in SUMMARY_GRAIN for d in wanted) else BUCKETS


def _label(day: date) -> ColumnElement[Any]:
    return literal_column(f"'{day.isoformat()}'")


def _labelled_days_select(whole: dict[date, date], by: Sequence[Dim], filters: Filters) -> Select[Any]:
    """UTC days from the daily tables, each under the local day it counts for."""
    table = SUMMARY if all(d is Dim.DAY or d in SUMMARY_GRAIN for d in by) else FINE
    others = [table.c[d.value] for d in by if d is not Dim.DAY]
    # Per UTC day first (as a UTC read groups), then each day under its label: one CASE per group, not per row.
    inner = select(
        table.c.day.label("u_day"),
        *[c.label(f"d_{c.name}") for c in others],
        *[m.label(f"m{i}") for i, m in enumerate(rollup_measures(table))],
    ).where(table.c.day.in_(sorted(whole)))
    sub = _filtered(inner, table, filters).group_by(table.c.day, *others).subquery("per_day")
    label = case(*[(sub.c.u_day == _label(utc), _label(day)) for utc, day in whole.items()]).label("d_day")
    columns: list[ColumnElement[Any]] = [label if d is Dim.DAY else sub.c[f"d_{d.value}"] for d in by]
    names: list[ColumnElement[Any]] = [literal_column(c.name) for c in columns]
    return select(*columns, *[func.sum(sub.c[f"m{i}"]) for i in range(5)]).group_by(*names)


def _zone_key(zone: tzinfo | None) -> str | None:
    key = getattr(zone, "key", None)
    return key if isinstance(key, str) else None


def _zone_days_select(days: list[date], by: Sequence[Dim], filters: Filters) -> Select[Any]:
    """Local days from the zone's daily summary, the day as ISO text like the other parts' labels."""
    table = ZONE_DAILY
    first, last = days[0], days[-1]
    within = (
        (table.c.day >= first, table.c.day <= last)
        if (last - first).days + 1 == len(days)
        else (table.c.day.in_(days),)
    )
    columns: list[ColumnElement[Any]] = [
        cast(table.c.day, String).label("d_day") if d is Dim.DAY else table.c[d.value].label(f"d_{d.value}") for d in by
    ]
    statement = _filtered(select(*columns, *rollup_measures(table)).where(*within), table, filters)
    return statement.group_by(*[table.c.day if d is Dim.DAY else table.c[d.value] for d in by])


def _signed_sum(parts: list[tuple[Select[Any], int]], by: Sequence[Dim]) -> Select[Any]:
    """One statement: grouped selects (columns `by`, then the five sums) added or subtracted (sign -1) per group
    in a UNION ALL, so one result of the final groups comes back. A group whose parts cancel out (no request:
    every real group counts one) is left out."""
    if len(parts) == 1 and parts[0][1] == 1:
        return parts[0][0]
    rows = []
    for statement, sign in parts:
        sub = statement.subquery()
        columns = list(sub.c)
        measures = columns[len(by) :]
        rows.append(
            select(
                *[c.label(f"d_{d.value}") for c, d in zip(columns, by, strict=False)],
                *[(m if sign > 0 else -m).label(f"m{i}") for i, m in enumerate(measures)],
            )
        )
    signed = union_all(*rows).subquery("signed")
    columns = [signed.c[f"d_{d.value}"] for d in by]
    statement = select(*columns, *[func.sum(signed.c[f"m{i}"]) for i in range(5)])
    if any(sign < 0 for _, sign in parts):
        statement = statement.having(func.sum(signed.c.m0) != 0)
    return statement.group_by(*columns) if columns else statement


def _pieces_select(pieces: Sequence[tuple[Period, date | None]], by: Sequence[Dim], filters: Filters) -> Select[Any]:
    """The buckets of some UTC intervals on quarter hours, each interval under its local day (when `by` has DAY).
    At the summary grain, the whole blocks of BLOCK_MINUTES inside each interval come from the block table and
    only the quarter hours around them from the buckets (see `_blocks`)."""
    others = [d for d in by if d is not Dim.DAY]
    table = _bucket_table(others, filters)
    parts: list[Select[Any]] = []
    if table is SUMMARY_BUCKETS:
        blocks: list[tuple[int, datetime]] = []
        runs: list[Period] = []
        for period, _ in pieces:
            found, left = _blocks(period)
            blocks += found
            runs += left
        if blocks:
            on = or_(*[and_(BLOCKS.c.minutes == m, BLOCKS.c.bucket == t) for m, t in blocks])
            parts.append(_filtered(_piece_rows(BLOCKS, others).where(on), BLOCKS, filters))
        spans = runs
    else:
        spans = [period for period, _ in pieces]
    if spans:
        on = or_(*[and_(table.c.bucket >= p.start, table.c.bucket < p.end) for p in spans])
        parts.append(_filtered(_piece_rows(table, others).where(on), table, filters))
    sub = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("pieces")
    columns: list[ColumnElement[Any]] = []
    for d in by:
        if d is Dim.DAY:
            whens = [(and_(sub.c.b >= p.start, sub.c.b < p.end), _label(day)) for p, day in pieces if day is not None]
            columns.append(case(*whens).label("d_day"))
        else:
            columns.append(sub.c[f"d_{d.value}"])
    names: list[ColumnElement[Any]] = [literal_column(c.name) for c in columns]
    statement = select(*columns, *[func.sum(sub.c[f"m{i}"]) for i in range(5)])
    return statement.group_by(*names) if names else statement


def _piece_rows(table: Table, others: Sequence[Dim]) -> Select[Any]:
    measures = [table.c.requests, table.c.failures, table.c.input_tokens, table.c.output_tokens]
    return select(
        table.c.bucket.label("b"),
        *[table.c[d.value].label(f"d_{d.value}") for d in others],
        *[m.label(f"m{i}") for i, m in enumerate([*measures, type_coerce(table.c.spend, BigInteger)])],
    )


def _blocks(span: Period) -> tuple[list[tuple[int, datetime]], list[Period]]:
    """[start, end) on quarter hours as the fewest blocks of BLOCK_MINUTES aligned on UTC midnight (minutes,
    start), and the quarter-hour runs around them: [15:00, 24:00) is 1 h + 8 h, [18:15, 24:00) is 45 minutes of
    buckets + 1 h + 4 h."""
    blocks: list[tuple[int, datetime]] = []
    runs: list[Period] = []
    moment = span.start
    while moment < span.end:
        since = moment - midnight(moment.astimezone(UTC).date())
        for minutes in reversed(BLOCK_MINUTES):
            step = timedelta(minutes=minutes)
            if since % step == timedelta(0) and moment + step <= span.end:
                blocks.append((minutes, moment))
                moment += step
                break
        else:
            if runs and runs[-1].end == moment:
                runs[-1] = Period(runs[-1].start, moment + BUCKET)
            else:
                runs.append(Period(moment, moment + BUCKET))
            moment += BUCKET
    return blocks, runs


def aligned(moment: datetime) -> bool:
    return (moment - midnight(moment.astimezone(UTC).date())) % BUCKET == timedelta(0)


def _nearest_midnight(moment: datetime) -> datetime:
    day = midnight(moment.astimezone(UTC).date())
    return day + timedelta(days=1) if moment - day > timedelta(hours=12) else day


def _span_statements(
    source: SpendSource, start: datetime, end: datetime, by: Sequence[Dim], filters: Filters
) -> list[Select[Any]]:
    """[start, end) below the watermark, no DAY: the UTC days between the midnights nearest its ends from the
    daily tables (whole months from the monthly one), plus the buckets of [start, end) outside them, minus the
    buckets of those days outside [start, end): at most 12 hours of buckets at each end, exact (integer sums).
    Where a bound is off the quarter hours or the buckets are not built yet: the whole UTC days inside, and the
    raw logs for the rest."""
    until = source.rolled_until
    if source.buckets and until is not None and aligned(start) and aligned(end):
        near_first, near_last = _nearest_midnight(start), _nearest_midnight(end)
        if near_first < near_last <= until:
            parts = [(st, 1) for st in _statements(source, DayRange(near_first.date(), near_last.date()), by, filters)]
            plus = [(Period(a, b), None) for a, b in ((start, near_first), (near_last, end)) if a < b]
            minus = [(Period(b, a), None) for a, b in ((start, near_first), (near_last, end)) if b < a]
            if plus:
                parts.append((_pieces_select(plus, by, filters), 1))
            if minus:
                parts.append((_pieces_select(minus, by, filters), -1))
            return [_signed_sum(parts, by)]
    first = midnight(start.astimezone(UTC).date())
    if first < start:
        first += timedelta(days=1)
    last = midnight(end.astimezone(UTC).date())
    statements: list[Select[Any]] = []
    if first < last:
        statements += _statements(source, DayRange(first.date(), last.date()), by, filters)
        edges = [(a, b) for a, b in ((start, first), (last, end)) if a < b]
    else:
        edges = [(start, end)]
    for a, b in edges:
        edge = Period(a, b)
        if source.buckets and aligned(edge.start) and aligned(edge.end):
            statements.append(_bucket_select(edge, by, filters))
        else:
            statements.append(_raw_select(source.schema, edge, by, filters, False))
    return statements


def rolled_span_select(source: SpendSource, span: Period, by: Sequence[Dim]) -> Select[Any]:
    """[start, end) on quarter hours and below the watermark, grouped by `by` (no DAY), from the rollup in one
    statement, read the way a zoned total reads it (the UTC days between the nearest midnights, plus and minus
    the pieces): what the zone's daily summary holds for a local day, so it answers as the pieces would."""
    statements = _span_statements(source, span.start, span.end, by, Filters())
    return statements[0] if len(statements) == 1 else _signed_sum([(st, 1) for st in statements], by)


def _bucket_select(span: Period, by: Sequence[Dim], filters: Filters) -> Select[Any]:
    """The buckets of `span` grouped by `by` (no DAY)."""
    table = _bucket_table(by, filters)
    in_span = (table.c.bucket >= span.start, table.c.bucket < span.end)
    labels = [table.c[d.value].label(f"d_{d.value}") for d in by]
    statement = _filtered(select(*labels, *rollup_measures(table)).where(*in_span), table, filters)
    return statement.group_by(*[table.c[d.value] for d in by]) if by else statement


def _split_row(row: Sequence[Any], by: Sequence[Dim]) -> tuple[Key, Totals]:
    key = tuple(as_date(v) if d is Dim.DAY else v for d, v in zip(by, row, strict=False))
    requests, failures, input_tokens, output_tokens, spend = row[len(by) :]
    totals = Totals(
        int(requests or 0), int(failures or 0), int(input_tokens or 0), int(output_tokens or 0), int(spend or 0)
    )
    return key, totals


def _rollup_select(days: DayRange, by: Sequence[Dim], filters: Filters, ordered: bool) -> Select[Any]:
    # Filters only ever use summary columns; the key and end-user dimensions need the full rollup.
    table = SUMMARY if all(d is Dim.DAY or d in SUMMARY_GRAIN for d in by) else FINE
    columns = [table.c[d.value] for d in by]
    statement = (
        select(*columns, *rollup_measures(table))
        .where(table.c.day >= days.start, table.c.day < days.end)
        .group_by(*columns)
    )
    statement = _filtered(statement, table, filters)
    return statement.order_by(*columns) if ordered and columns else statement


def _whole_months(rolled: DayRange, built_through: date) -> tuple[DayRange | None, list[DayRange]]:
    """Split the rolled-up part of a range into the calendar months it covers whole (from their 1st to their end,
    or to the watermark, which is all the monthly summary holds) and the days around them."""
    first = rolled.start if rolled.start.day == 1 else next_month(rolled.start)
    last = first
    while next_month(last) <= rolled.end or (last < rolled.end == built_through):
        last = next_month(last)
    if last == first:
        return None, [rolled]
    months = DayRange(first, last)
    around = [DayRange(rolled.start, first)] if rolled.start < first else []
    if last < rolled.end:
        around.append(DayRange(last, rolled.end))
    return months, around


def next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def _monthly_select(months: DayRange, by: Sequence[Dim], filters: Filters) -> Select[Any]:
    columns = [MONTHLY.c[d.value] for d in by]
    statement = (
        select(*columns, *rollup_measures(MONTHLY))
        .where(MONTHLY.c.month >= months.start, MONTHLY.c.month < months.end)
        .group_by(*columns)
    )
    return _filtered(statement, MONTHLY, filters)


def _filtered(statement: Select[Any], table: Table, filters: Filters) -> Select[Any]:
    if filters.team_id is not None:
        statement = statement.where(table.c.team_id == filters.team_id)
    if filters.user_id is not None:
        statement = statement.where(table.c.user_id == filters.user_id)
    if filters.model is not None:
        statement = statement.where(or_(table.c.model == filters.model, table.c.model_group == filters.model))
    if filters.among is not None:
        dim, values = filters.among
        statement = statement.where(table.c[dim.value].in_(values))
    return statement


def rollup_measures(table: Table) -> list[ColumnElement[Any]]:
    return [
        func.sum(table.c.requests),
        func.sum(table.c.failures),
        func.sum(table.c.input_tokens),
        func.sum(table.c.output_tokens),
        func.sum(type_coerce(table.c.spend, BigInteger)),
    ]


def raw_dimension(schema: LiteLLMSchema, dim: Dim) -> ColumnElement[Any]:
    """How a dimension reads from LiteLLM_SpendLogs, with fallbacks for columns older releases lack; clipped to
    the rollup column's length (LiteLLM's text columns are unbounded), so raw and rolled-up rows always agree."""
    if dim is Dim.DAY:
        return utc_day(spend_logs.c.start_time)
    length: int = getattr(FINE.c[dim.value].type, "length")  # noqa: B009 - String columns have one
    return func.substr(_raw_value(schema, dim), literal_column("1"), literal_column(str(length)))


def _raw_value(schema: LiteLLMSchema, dim: Dim) -> ColumnElement[Any]:
    s = spend_logs.c
    if dim is Dim.MODEL_GROUP:
        return requested_model(schema)
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


def raw_measures(schema: LiteLLMSchema) -> list[ColumnElement[Any]]:
    failed = _failed(schema)
    return [
        func.count(),
        func.sum(case((failed, 1), else_=0)) if failed is not None else literal_column("0"),
        func.coalesce(func.sum(spend_logs.c.prompt_tokens), 0),
        func.coalesce(func.sum(spend_logs.c.completion_tokens), 0),
        spend_nanos(),
    ]


def raw_filters(schema: LiteLLMSchema, days: DayRange | Period, filters: Filters) -> list[ColumnElement[bool]]:
    s = spend_logs.c
    period = days.period if isinstance(days, DayRange) else days
    where = [s.start_time >= period.start, s.start_time < period.end]
    if filters.team_id is not None:
        where.append(raw_dimension(schema, Dim.TEAM) == filters.team_id)
    if filters.user_id is not None:
        where.append(raw_dimension(schema, Dim.USER) == filters.user_id)
    if filters.model is not None:
        where.append(or_(s.model == filters.model, raw_dimension(schema, Dim.MODEL_GROUP) == filters.model))
    if filters.among is not None:
        dim, values = filters.among
        where.append(raw_dimension(schema, dim).in_(values))
    return where


def _raw_select(
    schema: LiteLLMSchema,
    days: DayRange | Period,
    by: Sequence[Dim],
    filters: Filters,
    ordered: bool,
    local: LocalDays | None = None,
) -> Select[Any]:
    labels = [
        local.label(spend_logs.c.start_time)
        if d is Dim.DAY and local is not None
        else raw_dimension(schema, d).label(f"d_{d.value}")
        for d in by
    ]
    statement = select(*labels, *raw_measures(schema)).where(*raw_filters(schema, days, filters))
    if labels:
        # Grouping by the labels (not the expressions again) keeps every expression bound once.
        names: list[ColumnElement[Any]] = [literal_column(label.name) for label in labels]
        statement = statement.group_by(*names)
        if ordered:
            statement = statement.order_by(*names)
    return statement


# ---------------------------------------------------------------------------------------------- budgets


_SCOPE_DIMS = {
    ScopeKind.USER: Dim.USER,
    ScopeKind.TEAM: Dim.TEAM,
    ScopeKind.KEY: Dim.KEY,
    ScopeKind.END_USER: Dim.END_USER,
}


async def scope_spend(
    session: AsyncSession, source: SpendSource, scopes: Iterable[Scope], period: Period
) -> dict[Scope, Decimal]:
    """Spend per (non-tag) scope over any UTC interval through `aggregate_span`: per scope kind, grouped queries
    restricted to the scopes' ids, 500 at a time."""
    result: dict[Scope, Decimal] = {}
    wanted = list(scopes)
    kinds = {s.kind for s in wanted}
    if ScopeKind.TAG in kinds:
        raise ValueError("the rollup keeps no tags")
    if ScopeKind.GLOBAL in kinds:
        total = await aggregate_span(session, source, period, ())
        result[Scope.global_()] = sum((t.cost for t in total.values()), Decimal(0))
    for kind in kinds - {ScopeKind.GLOBAL}:
        ids = sorted({s.id for s in wanted if s.kind is kind and s.id is not None})
        for chunk in chunks(ids):
            among = Filters(among=(_SCOPE_DIMS[kind], tuple(chunk)))
            grouped = await aggregate_span(session, source, period, (_SCOPE_DIMS[kind],), among)
            for (key,), totals in grouped.items():
                result[Scope(kind, key)] = totals.cost
    return {s: result.get(s, Decimal(0)) for s in wanted}


async def rollup_spend_by_scope(
    session: AsyncSession, schema: LiteLLMSchema, scopes: Iterable[Scope], period: Period
) -> dict[Scope, Decimal]:
    """The same answer as `resolvers.spend.spend_by_scope` (tags aside), from the rollup where it can."""
    return await scope_spend(session, await spend_source(session, schema), scopes, period)


#: Days read from the raw logs at the end of a budget period: LiteLLM writes spend logs in batches, so a request
#: from just before midnight can land after the rollup closed its day; two raw days cover that with a margin.
RAW_TAIL_DAYS = 2


async def spend_to_date(
    session: AsyncSession, schema: LiteLLMSchema, scopes: Iterable[Scope], period: Period, now: datetime
) -> dict[Scope, Decimal]:
    """Spend per scope in a budget window, in any zone: closed time from the rollup (whole UTC days from the daily
    tables, a window's partial UTC days from the quarter-hour buckets), the last RAW_TAIL_DAYS UTC days and
    whatever the rollup has not reached from the raw logs, and tags (which the rollup does not keep) from the
    raw logs. What budgets show, what enforcement grants against and what reports read: one function."""
    wanted = list(scopes)
    result = dict.fromkeys(wanted, Decimal(0))
    rolled_scopes = [s for s in wanted if s.kind is not ScopeKind.TAG]
    raw_scopes = [s for s in wanted if s.kind is ScopeKind.TAG]
    if rolled_scopes:
        source = await spend_source(session, schema)
        # Never the rollup for the last RAW_TAIL_DAYS, even below the watermark (the monthly summary must not be
        # asked for a month "up to the watermark" either: that is why the period is cut, not the watermark).
        tail = midnight(now.astimezone(UTC).date() - timedelta(days=RAW_TAIL_DAYS - 1))
        cut = max(period.start, min(period.end, tail))
        pieces = []
        if period.start < cut:
            pieces.append(await scope_spend(session, source, rolled_scopes, Period(period.start, cut)))
        if cut < period.end:
            pieces.append(await spend_by_scope(session, schema, rolled_scopes, Period(cut, period.end)))
        for piece in pieces:
            for scope, usd in piece.items():
                result[scope] += usd
    if raw_scopes:
        result.update(await spend_by_scope(session, schema, raw_scopes, period))
    return result


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def as_date(value: Any) -> date:
    """A DATE as the drivers return it (a date, or ISO text from SQLite expressions) as a date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
