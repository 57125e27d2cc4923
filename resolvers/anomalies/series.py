"""Reading the spend and requests the anomaly scan needs, per bucket and (team, key, user, model) combination, into
a `Cube` (LiteLLM logs one row per request: the raw logs are counted, the rollup carries `requests`). Hourly
buckets also carry their most expensive request.

Daily spend comes from the rollup (`resolvers.rollups.aggregate`: rolled-up days, raw logs past the watermark).
Hourly spend is read from the raw logs grouped by UTC hour, here and only here (`hourly_cube`): when the rollup
has hourly buckets, this is the one function to point at them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, literal_column
from sqlalchemy.sql.functions import FunctionElement

from models.litellm import LiteLLMSchema, spend_logs
from models.types import NANOS_PER_USD
from resolvers.anomalies.detection import DAILY_HISTORY_DAYS, HOURLY_HISTORY_DAYS, Granularity
from resolvers.anomalies.scan import Cube
from resolvers.rollups import DayRange, Dim, SpendSource, aggregate, as_date, raw_dimension
from resolvers.rollups.reading import midnight
from resolvers.spend import require_spend_logs, spend_nanos

DIMS = (Dim.TEAM, Dim.KEY, Dim.USER, Dim.MODEL_GROUP)


class utc_hour(FunctionElement[str]):
    """The start of the UTC hour of a naive-UTC timestamp, as ISO text on SQLite and a timestamp on PostgreSQL.
    No bound parameters, so grouping by it never trips asyncpg's duplicate-bind problem."""

    type = String()
    inherit_cache = True
    name = "utc_hour"


@compiles(utc_hour, "postgresql")
def _utc_hour_postgresql(element: utc_hour, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date_trunc('hour', {compiler.process(element.clauses, **kw)})"


@compiles(utc_hour, "sqlite")
def _utc_hour_sqlite(element: utc_hour, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strftime('%Y-%m-%d %H:00:00', {compiler.process(element.clauses, **kw)})"


def _as_hour(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def hourly_cube(session: AsyncSession, schema: LiteLLMSchema, day: date) -> Cube:
    """Hourly spend from the 14 days before `day` through the end of `day` (what an hourly scan of `day` needs)."""
    require_spend_logs(schema)
    start = midnight(day - timedelta(days=HOURLY_HISTORY_DAYS))
    end = midnight(day + timedelta(days=1))
    labels = [
        utc_hour(spend_logs.c.start_time).label("d_hour"),
        *(raw_dimension(schema, d).label(f"d_{d.value}") for d in DIMS),
    ]
    # Grouping by the labels (not the expressions again) keeps every expression bound once.
    names: list[ColumnElement[Any]] = [literal_column(label.name) for label in labels]
    statement = (
        select(
            *labels,
            spend_nanos(),
            func.count(),
            func.max(cast(func.round(spend_logs.c.spend * NANOS_PER_USD), BigInteger)),
        )
        .where(
            spend_logs.c.start_time >= start.replace(tzinfo=None), spend_logs.c.start_time < end.replace(tzinfo=None)
        )
        .group_by(*names)
    )
    cube = Cube(Granularity.HOUR, start, (HOURLY_HISTORY_DAYS + 1) * 24)
    for row in await session.execute(statement):
        hour, team, key, user, model, nanos, requests, largest = tuple(row)
        combo = (team or "", key or "", user or "", model or "")
        cube.add(combo, _as_hour(hour), int(nanos or 0), int(requests), int(largest or 0))
    return cube


async def daily_cube(session: AsyncSession, source: SpendSource, day: date) -> Cube:
    """Daily spend from the 56 days before `day` through `day` (what a daily scan of `day` needs)."""
    first = day - timedelta(days=DAILY_HISTORY_DAYS)
    grouped = await aggregate(session, source, DayRange(first, day + timedelta(days=1)), (Dim.DAY, *DIMS))
    cube = Cube(Granularity.DAY, midnight(first), DAILY_HISTORY_DAYS + 1)
    for (when, team, key, user, model), totals in grouped.items():
        combo = (team or "", key or "", user or "", model or "")
        cube.add(combo, midnight(as_date(when)), totals.spend_nanos, totals.requests)
    return cube
