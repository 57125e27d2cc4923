"""Maintaining the rollup. Every closed UTC day below the watermark (`built_through`) is rolled up: its
quarter-hour buckets (from the raw logs), its daily rows (summed from the buckets), its summary and month rows.
A run rolls up the days the watermark has not reached yet (oldest first, the watermark following), and re-counts
the closed days of the last SPENDPLANE_ROLLUP_RECHECK_DAYS: a day whose raw row count is now larger than its
rollup's (late-arriving spend logs) is rebuilt. A rebuild replaces the whole day (buckets, daily, summary and month
rows) in one transaction (delete + INSERT ... SELECT), so re-runs never double count. A day whose raw logs have
shrunk (LiteLLM's retention purged them) keeps its rollup: the rollup is the long-term history.

The organisation's zone (SPENDPLANE_TIME_ZONE) also has a daily summary by local day (`ZONE_DAILY`: each local day
as a zoned total reads it, its UTC day plus and minus the offset's pieces): the `zone_daily` state row names its zone
and the first local day it lacks. A rebuilt UTC day
rebuilds the local days it overlaps that the table holds, in the same transaction; after the UTC watermark moves,
the local days it has closed are added (a few per transaction). A run given another zone empties the table and
starts again; until it is filled, zoned reads take the offset pieces, so no answer is ever from the wrong zone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Insert, delete, func, insert, literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import literal_column

from models.db import Database, insert_or_ignore
from models.litellm import LiteLLMSchema, spend_logs
from models.rollups import RollupStateRow, hour_block, quarter_hour, utc_day
from resolvers.platform.periods import Period, zone_names
from resolvers.rollups.reading import (
    BLOCK_MINUTES,
    BLOCKS,
    BUCKETS,
    BUCKETS_STATE,
    FINE,
    MONTHLY,
    ROLLUP_GRAIN,
    STATE,
    SUMMARY,
    SUMMARY_BUCKETS,
    SUMMARY_GRAIN,
    TOTAL_BUCKETS,
    ZONE_DAILY,
    ZONE_STATE,
    DayRange,
    Filters,
    SpendSource,
    aligned,
    as_date,
    midnight,
    next_month,
    raw_dimension,
    raw_filters,
    raw_measures,
    rolled_span_select,
    rollup_measures,
)
from resolvers.spend import require_spend_logs

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime

log = logging.getLogger("spendplane.rollups")

T = TypeVar("T")


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
    db: Database,
    schema: LiteLLMSchema,
    now: datetime,
    *,
    recheck_days: int,
    since: date | None = None,
    zone: str | None = None,
) -> RollupStatus:
    """Bring the rollup up to date (see the module docstring). `since` forces a rebuild of every closed day from
    that date on that still has raw logs (on demand, e.g. after changing LiteLLM data by hand). `zone` is the
    organisation's zone (SPENDPLANE_TIME_ZONE) whose local days get their own daily summary; None keeps the zone
    it has."""
    require_spend_logs(schema)
    today = now.astimezone(UTC).date()
    await finish_on_cancel(_ensure_state(db, now))
    async with db.reader() as session, session.begin():
        built = await session.scalar(select(RollupStateRow.built_through).where(RollupStateRow.name == STATE))
        buckets_built = await session.scalar(
            select(RollupStateRow.built_through).where(RollupStateRow.name == BUCKETS_STATE)
        )
        if built is not None and buckets_built is None:
            # Rolled up before the buckets existed (migration 0010): rebuild every day that still has raw logs.
            first = await session.scalar(select(func.min(spend_logs.c.start_time)))
            if first is not None:
                since = min(since or as_date(first), as_date(first))
        dirty = await _dirty_days(session, schema, today, built, recheck_days, since)

    rows_written = 0
    for day in dirty:
        rows_written += await finish_on_cancel(_rebuild_day(db, schema, day, now))
    # With no spend logs at all there is nothing to mark as rolled up: the first logs start the rollup.
    has_logs = built is not None or bool(dirty)
    built = await finish_on_cancel(_advance(db, today, now, len(dirty), has_logs=has_logs))
    local_days = await _advance_zone(db, schema, zone, now)
    if (dirty or local_days) and db.is_postgres:
        await _analyze(db)
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
        tables = (BUCKETS, SUMMARY_BUCKETS, BLOCKS, TOTAL_BUCKETS, FINE, SUMMARY, MONTHLY, ZONE_DAILY)
        await conn.execute(text(f"ANALYZE {', '.join(table.name for table in tables)}"))
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
        if state.built_through is not None:
            # Every day below the watermark now has its buckets (or had no raw logs left to make them from).
            buckets = await session.get(RollupStateRow, BUCKETS_STATE, with_for_update=True)
            if buckets is None:
                session.add(RollupStateRow(name=BUCKETS_STATE, built_through=state.built_through, updated_at=now))
            else:
                buckets.built_through, buckets.updated_at = state.built_through, now
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
        select(FINE.c.day, func.sum(FINE.c.requests))
        .where(FINE.c.day >= days.start, FINE.c.day < days.end)
        .group_by(FINE.c.day)
    )
    return {as_date(d): int(n) for d, n in rows}


async def _rebuild_day(db: Database, schema: LiteLLMSchema, day: date, now: datetime) -> int:
    """Replace one day's quarter-hour buckets (from its raw logs), its daily rows (summed from the buckets), its
    summary rows and its month's, in one transaction, serialised with any other rebuild by the state row's lock
    (PostgreSQL) or the write lock (SQLite)."""
    # Labels differ from every LiteLLM column name: PostgreSQL resolves GROUP BY names to input columns first.
    dims = [raw_dimension(schema, d).label(f"d_{d.value}") for d in ROLLUP_GRAIN]
    measures = raw_measures(schema)
    source = (
        select(quarter_hour(spend_logs.c.start_time).label("d_bucket"), *dims, *measures)
        .where(*raw_filters(schema, DayRange(day, day + timedelta(days=1)), Filters()))
        .group_by(literal_column("d_bucket"), *[literal_column(label.name) for label in dims])
    )
    measures_names = ["requests", "failures", "input_tokens", "output_tokens", "spend"]
    fine_dims = [BUCKETS.c[d.value] for d in ROLLUP_GRAIN]
    span = DayRange(day, day + timedelta(days=1)).period
    in_day = (BUCKETS.c.bucket >= span.start, BUCKETS.c.bucket < span.end)
    daily = (
        select(literal(day, Date).label("d_day"), *fine_dims, *rollup_measures(BUCKETS))
        .where(*in_day)
        .group_by(*fine_dims)
    )
    bucket_summary_dims = [BUCKETS.c[d.value] for d in SUMMARY_GRAIN]
    summary_buckets = (
        select(BUCKETS.c.bucket, *bucket_summary_dims, *rollup_measures(BUCKETS))
        .where(*in_day)
        .group_by(BUCKETS.c.bucket, *bucket_summary_dims)
    )
    total_buckets = select(BUCKETS.c.bucket, *rollup_measures(BUCKETS)).where(*in_day).group_by(BUCKETS.c.bucket)
    summary_dims = [FINE.c[d.value] for d in SUMMARY_GRAIN]
    summary = (
        select(FINE.c.day, *summary_dims, *rollup_measures(FINE))
        .where(FINE.c.day == day)
        .group_by(FINE.c.day, *summary_dims)
    )
    month = DayRange(day.replace(day=1), next_month(day))
    month_dims = [SUMMARY.c[d.value] for d in SUMMARY_GRAIN]
    monthly = (
        select(
            literal(month.start, Date).label("m_month"),
            *[SUMMARY.c[d.value] for d in SUMMARY_GRAIN],
            *rollup_measures(SUMMARY),
        )
        .where(SUMMARY.c.day >= month.start, SUMMARY.c.day < month.end)
        .group_by(*month_dims)
    )
    grain = [d.value for d in ROLLUP_GRAIN]
    async with db.sessions() as session, session.begin():
        state = await session.get(RollupStateRow, STATE, with_for_update=True)
        assert state is not None
        await session.execute(delete(BUCKETS).where(*in_day))
        await session.execute(
            delete(SUMMARY_BUCKETS).where(SUMMARY_BUCKETS.c.bucket >= span.start, SUMMARY_BUCKETS.c.bucket < span.end)
        )
        await session.execute(
            delete(TOTAL_BUCKETS).where(TOTAL_BUCKETS.c.bucket >= span.start, TOTAL_BUCKETS.c.bucket < span.end)
        )
        await session.execute(delete(FINE).where(FINE.c.day == day))
        await session.execute(delete(SUMMARY).where(SUMMARY.c.day == day))
        await session.execute(delete(MONTHLY).where(MONTHLY.c.month == month.start))
        await session.execute(insert(BUCKETS).from_select(["bucket", *grain, *measures_names], source))
        await session.execute(
            insert(SUMMARY_BUCKETS).from_select(
                ["bucket", *[d.value for d in SUMMARY_GRAIN], *measures_names], summary_buckets
            )
        )
        await session.execute(insert(TOTAL_BUCKETS).from_select(["bucket", *measures_names], total_buckets))
        await session.execute(delete(BLOCKS).where(BLOCKS.c.bucket >= span.start, BLOCKS.c.bucket < span.end))
        for statement in block_statements(span):
            await session.execute(statement)
        result = await session.execute(insert(FINE).from_select(["day", *grain, *measures_names], daily))
        await session.execute(
            insert(SUMMARY).from_select(["day", *[d.value for d in SUMMARY_GRAIN], *measures_names], summary)
        )
        await session.execute(
            insert(MONTHLY).from_select(["month", *[d.value for d in SUMMARY_GRAIN], *measures_names], monthly)
        )
        # The local days this UTC day is part of, where the zone's table holds them already (later ones are added
        # when the watermark passes their end).
        zoned = await session.get(RollupStateRow, ZONE_STATE)
        if zoned is not None and zoned.zone is not None and zoned.built_through is not None:
            tz = ZoneInfo(zoned.zone)
            local = span.start.astimezone(tz).date()
            last = (span.end - timedelta(microseconds=1)).astimezone(tz).date()
            rolled = SpendSource(schema, max(state.built_through or day, day + timedelta(days=1)))
            while local <= last and local < zoned.built_through:
                await _rebuild_local_day(session, rolled, tz, local)
                local += timedelta(days=1)
        # Days are rebuilt oldest first and the watermark follows them, so every summarised day (and so every
        # monthly row) is always below it: a report never counts a day from the rollup and the raw logs.
        if state.built_through is None or state.built_through <= day:
            state.built_through = day + timedelta(days=1)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


#: Local days added to the zone's daily summary per transaction (a first fill holds the rebuild lock this long).
ZONE_DAYS_PER_TRANSACTION = 7


def _local_span(day: date, tz: ZoneInfo) -> Period:
    return Period(
        datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC),
        datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC),
    )


async def _rebuild_local_day(session: AsyncSession, source: SpendSource, tz: ZoneInfo, day: date) -> None:
    """Replace one local day's rows of the zone's daily summary with what a zoned total reads for it (its UTC day
    from the daily summary, plus and minus the offset's pieces from the blocks and buckets: on days with buckets
    exactly the sum of its quarter hours, and on days rolled up before the buckets, whose raw logs are gone, the
    same figure the pieces give). A day whose bounds are off the quarter hours (historic offsets like
    Africa/Monrovia's -0:44:30) gets no rows; readers never take it from this table."""
    await session.execute(delete(ZONE_DAILY).where(ZONE_DAILY.c.day == day))
    span = _local_span(day, tz)
    if not (aligned(span.start) and aligned(span.end)):
        return
    sub = rolled_span_select(source, span, SUMMARY_GRAIN).subquery("local_day")
    rows = select(literal(day, Date).label("z_day"), *sub.c)
    measures_names = ["requests", "failures", "input_tokens", "output_tokens", "spend"]
    await session.execute(
        insert(ZONE_DAILY).from_select(["day", *[d.value for d in SUMMARY_GRAIN], *measures_names], rows)
    )


def _kept_zone(name: str | None) -> str | None:
    """The zone whose local days get a table of their own: None for UTC and any zone always at offset zero
    (their local days are UTC days), or a name this server does not know."""
    if name is None or name not in zone_names():
        return None
    tz = ZoneInfo(name)
    probes = [datetime(year, month, 1, tzinfo=UTC) for year in (1980, 2000, 2026) for month in (1, 7)]
    return name if any(tz.utcoffset(p) for p in probes) else None


async def _advance_zone(db: Database, schema: LiteLLMSchema, zone: str | None, now: datetime) -> int:
    """Keep the zone's daily summary: switch to `zone` (emptying the table) when it names another, then add the
    local days the UTC watermark has closed since, ZONE_DAYS_PER_TRANSACTION at a time, each transaction under
    the rebuild lock (the watermark's row), so a UTC day's rebuild and the local days it touches never interleave."""
    added = 0
    while True:
        done, days = await finish_on_cancel(_advance_zone_once(db, schema, zone, now))
        added += days
        if done:
            return added
        zone = None  # switched (if at all) in the first transaction; keep it


async def _advance_zone_once(db: Database, schema: LiteLLMSchema, zone: str | None, now: datetime) -> tuple[bool, int]:
    """One transaction of `_advance_zone`: (whether the table has reached the watermark, local days added)."""
    async with db.sessions() as session, session.begin():
        watermark = await session.get(RollupStateRow, STATE, with_for_update=True)
        state = await session.get(RollupStateRow, ZONE_STATE, with_for_update=True)
        if zone is not None:
            wanted = _kept_zone(zone)
            if state is None:
                state = RollupStateRow(name=ZONE_STATE, built_through=None, updated_at=now, zone=None)
                session.add(state)
            if state.zone != wanted:
                await session.execute(delete(ZONE_DAILY))
                state.zone, state.built_through, state.updated_at = wanted, None, now
        if state is None or state.zone is None or watermark is None or watermark.built_through is None:
            return True, 0
        buckets = await session.get(RollupStateRow, BUCKETS_STATE)
        if buckets is None:
            return True, 0  # days rolled up before the buckets: the next run backfills them first
        tz = ZoneInfo(state.zone)
        until = midnight(watermark.built_through)
        # The last local day wholly below the watermark, plus one: where the table may reach.
        reach = until.astimezone(tz).date()
        if _local_span(reach, tz).end <= until:
            reach += timedelta(days=1)
        first = state.built_through
        if first is None:
            earliest = await session.scalar(
                select(SUMMARY_BUCKETS.c.bucket).order_by(SUMMARY_BUCKETS.c.bucket).limit(1)
            )
            first = reach if earliest is None else min(reach, earliest.astimezone(tz).date())
        stop = max(first, min(reach, first + timedelta(days=ZONE_DAYS_PER_TRANSACTION)))
        rolled = SpendSource(schema, watermark.built_through)
        day = first
        while day < stop:
            await _rebuild_local_day(session, rolled, tz, day)
            day += timedelta(days=1)
        if state.built_through != stop:
            state.built_through, state.updated_at = stop, now
        return stop >= reach, (stop - first).days


def block_statements(span: Period | None = None) -> list[Insert]:
    """Fill the summary blocks (of BLOCK_MINUTES) from the summary buckets of `span` (whole UTC days; None: all of
    them), each length summed from the one before it (60 minutes from the quarter hours)."""
    statements = []
    grain = [d.value for d in SUMMARY_GRAIN]
    measures_names = ["requests", "failures", "input_tokens", "output_tokens", "spend"]
    source, previous = SUMMARY_BUCKETS, None
    for minutes in BLOCK_MINUTES:
        block = hour_block(source.c.bucket, minutes // 60).label("b_block")
        where = [] if span is None else [source.c.bucket >= span.start, source.c.bucket < span.end]
        if previous is not None:
            where.append(source.c.minutes == previous)
        dims = [source.c[d] for d in grain]
        select_ = (
            select(literal_column(str(minutes)).label("b_minutes"), block, *dims, *rollup_measures(source))
            .where(*where)
            .group_by(literal_column("b_block"), *dims)
            # In block order, so a block's rows sit together on disk (a read takes a few pages, not a page a row).
            .order_by(literal_column("b_block"), *dims)
        )
        statements.append(insert(BLOCKS).from_select(["minutes", "bucket", *grain, *measures_names], select_))
        source, previous = BLOCKS, minutes
    return statements


async def refresh_rollups_of(runtime: Runtime, since: date | None = None) -> RollupStatus:
    """`refresh_rollups` with this server's settings (ROLLUP_RECHECK_DAYS, SPENDPLANE_TIME_ZONE): what the job, the
    refreshRollups mutation and every reader that wants an up-to-date rollup (chargeback, forecasts) run."""
    return await refresh_rollups(
        runtime.db,
        runtime.litellm,
        runtime.clock(),
        recheck_days=runtime.settings.rollup_recheck_days,
        since=since,
        zone=runtime.settings.time_zone,
    )


async def rollup_job(runtime: Runtime, tick: datetime) -> str:
    """The periodic refresh (SPENDPLANE_ROLLUP_SCHEDULE, and once at start)."""
    status = await refresh_rollups_of(runtime)
    return status.summary
