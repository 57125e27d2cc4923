"""The daily spend rollup (the guide's `cost_tracking_daily`) and its watermark, plus the UTC-day bucket
expression every query that groups LiteLLM's timestamps by day uses."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Date, Index, Integer, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from models.base import Base
from models.types import Money, UTCDateTime

#: The guide's name; a view of that name shows the rollup with spend in USD (see migration 0004).
VIEW_NAME = "cost_tracking_daily"


def _key(length: int) -> Mapped[str]:
    return mapped_column(String(length), primary_key=True)


class _Measures:
    """What every rollup table sums: requests (failed ones included), failures, tokens and exact spend."""

    requests: Mapped[int] = mapped_column(BigInteger, sort_order=10)
    failures: Mapped[int] = mapped_column(BigInteger, sort_order=10)
    input_tokens: Mapped[int] = mapped_column(BigInteger, sort_order=10)
    output_tokens: Mapped[int] = mapped_column(BigInteger, sort_order=10)
    spend: Mapped[Decimal] = mapped_column(Money, sort_order=10)


class _SummaryGrain(_Measures):
    """Model group x model x provider x user x team (missing ones stored as '', so the primary key holds them)."""

    model_group: Mapped[str] = _key(256)
    model: Mapped[str] = _key(256)
    provider: Mapped[str] = _key(64)
    user_id: Mapped[str] = _key(256)
    team_id: Mapped[str] = _key(256)


class _FullGrain(_Measures):
    """Model group x model x provider x key x user x team x end user (missing ones stored as ''): the summary's grain
    plus what budgets per key and per end user need."""

    model_group: Mapped[str] = _key(256)
    model: Mapped[str] = _key(256)
    provider: Mapped[str] = _key(64)
    api_key: Mapped[str] = _key(128)
    user_id: Mapped[str] = _key(256)
    team_id: Mapped[str] = _key(256)
    end_user: Mapped[str] = _key(256)


class CostTrackingDailyRow(_FullGrain, Base):
    """One UTC day x model group x model x provider x key x user x team x end user.

    Missing dimensions are stored as '' (not NULL) so the composite primary key can hold them. Rows exist only
    for closed days below the watermark; the open day is always read from the raw logs.
    """

    __tablename__ = "spendplane_cost_tracking_daily"
    # Budgets per key and per end user read a month of rows for a few ids, not the whole month.
    __table_args__ = (
        Index("ix_spendplane_cost_tracking_daily_api_key_day", "api_key", "day"),
        Index("ix_spendplane_cost_tracking_daily_end_user_day", "end_user", "day"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True, sort_order=-1)


class CostSummaryDailyRow(_SummaryGrain, Base):
    """The rollup without key and end user: what cost reports, trends, the summary, exports and forecasts group
    by, so they read a fraction of the rows. Rebuilt from `CostTrackingDailyRow` in the same transaction."""

    __tablename__ = "spendplane_cost_summary_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True, sort_order=-1)


class CostSummaryMonthlyRow(_SummaryGrain, Base):
    """The summary per calendar month (`month` = its first day): the sum of the month's summary days, all of them
    below the watermark. A report over whole months reads one row per group and month instead of one per day."""

    __tablename__ = "spendplane_cost_summary_monthly"

    month: Mapped[date] = mapped_column(Date, primary_key=True, sort_order=-1)


class CostTrackingBucketRow(_FullGrain, Base):
    """One quarter-hour (UTC) x the daily rollup's grain: what makes a day, week or month in any IANA zone an exact
    sum of whole buckets (every zone's offset is a multiple of 15 minutes, Asia/Kathmandu's +05:45 included).

    Rebuilt with its UTC day, from the raw logs; the daily rollup is summed from it in the same transaction.
    """

    __tablename__ = "spendplane_cost_tracking_buckets"
    __table_args__ = (
        Index("ix_spendplane_cost_tracking_buckets_api_key_bucket", "api_key", "bucket"),
        Index("ix_spendplane_cost_tracking_buckets_end_user_bucket", "end_user", "bucket"),
    )

    #: The bucket's first instant (UTC, on a quarter hour).
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, sort_order=-1)


class CostSummaryBucketRow(_SummaryGrain, Base):
    """The quarter-hour buckets without key and end user (the summary's grain): what reports, trends, the summary
    and exports in a time zone read for their partial UTC days and per-local-day figures. Summed from
    `CostTrackingBucketRow` in the same transaction; budgets per key or end user keep reading the full grain."""

    __tablename__ = "spendplane_cost_summary_buckets"

    #: The bucket's first instant (UTC, on a quarter hour).
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, sort_order=-1)


class CostTotalBucketRow(_Measures, Base):
    """The quarter-hour buckets summed over every dimension: what an unfiltered report in a time zone (the
    dashboard's trend, an organisation's month) reads, 96 rows a day. Summed from `CostTrackingBucketRow` in the
    same transaction."""

    __tablename__ = "spendplane_cost_total_buckets"

    #: The bucket's first instant (UTC, on a quarter hour).
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)


class CostSummaryBlockRow(_SummaryGrain, Base):
    """The summary-grain buckets summed over blocks of 1, 2, 4 and 8 hours (`minutes`), each aligned on UTC
    midnight: a zoned read's piece (a zone's offset long, e.g. [15:00, 24:00) for Asia/Tokyo) is a few blocks
    (1 h + 8 h) instead of 36 quarter hours, and on dense traffic a block holds far fewer rows than its quarter
    hours (the same users and models recur: an 8-hour block about as many as a day). Only the rest off the whole
    hours (Asia/Kathmandu's 45 minutes) is read from the quarter-hour table. Summed from `CostSummaryBucketRow` in
    the same transaction, written in block order."""

    __tablename__ = "spendplane_cost_summary_blocks"

    #: The block's length: 60, 120, 240 or 480.
    minutes: Mapped[int] = mapped_column(Integer, primary_key=True, sort_order=-2)
    #: The block's first instant (UTC, a multiple of its length after midnight).
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, sort_order=-1)


class CostZoneDailyRow(_SummaryGrain, Base):
    """The daily summary by local day in the organisation's zone (SPENDPLANE_TIME_ZONE, named by the `zone_daily`
    state row, whose `built_through` is the first local day not held): what figures per local day in that zone
    (the trend, the dashboard, exports) read like UTC ones read the daily summary. Summed from the summary buckets
    of the local day (its 23, 24 or 25 hours); rebuilt with every UTC day it overlaps, in that day's transaction."""

    __tablename__ = "spendplane_cost_zone_daily"

    #: The local day (in the state row's zone).
    day: Mapped[date] = mapped_column(Date, primary_key=True, sort_order=-1)


class RollupStateRow(Base):
    """The watermark: every closed UTC day before `built_through` has been rolled up at least once. The
    `zone_daily` row instead names the zone of `CostZoneDailyRow` (`zone`) and the first local day it lacks."""

    __tablename__ = "spendplane_rollup_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    built_through: Mapped[date | None] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    days_rebuilt: Mapped[int] = mapped_column(Integer, default=0)
    zone: Mapped[str | None] = mapped_column(String(64))


class utc_day(FunctionElement[date]):
    """The UTC calendar day of a naive-UTC timestamp (LiteLLM's columns), as a DATE on both databases.

    No bound parameters, so grouping by it twice never trips asyncpg's duplicate-bind problem.
    """

    type = Date()
    inherit_cache = True
    name = "utc_day"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


def day_of(column: ColumnElement[Any]) -> utc_day:
    return utc_day(column)


class quarter_hour(FunctionElement[datetime]):
    """The UTC quarter hour a naive-UTC timestamp (LiteLLM's columns) falls in, in the bucket column's storage form
    (timestamptz on PostgreSQL, naive-UTC text on SQLite). No bound parameters (grouped by twice)."""

    type = UTCDateTime()
    inherit_cache = True
    name = "quarter_hour"


@compiles(quarter_hour, "postgresql")
def _quarter_hour_postgresql(element: quarter_hour, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return (
        f"((date_trunc('hour', {column}) + floor(extract(minute FROM {column}) / 15) * interval '15 minutes')"
        " AT TIME ZONE 'UTC')"
    )


@compiles(quarter_hour, "sqlite")
def _quarter_hour_sqlite(element: quarter_hour, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return (
        f"(strftime('%Y-%m-%d %H:', {column}) || printf('%02d', (CAST(strftime('%M', {column}) AS INTEGER) / 15) * 15)"
        " || ':00.000000')"
    )


class hour_block(FunctionElement[datetime]):
    """The start of the block of `hours` hours (a divisor of 24, blocks aligned on UTC midnight) a bucket column's
    instant falls in, in the bucket column's storage form. No bound parameters (grouped by twice)."""

    type = UTCDateTime()
    #: `hours` is not a clause, so no cache key would hold it: compiled afresh each time (maintenance only).
    inherit_cache = False
    name = "hour_block"

    def __init__(self, column: ColumnElement[Any], hours: int) -> None:
        if 24 % hours:
            raise ValueError("a block's hours divide the day")
        self.hours = hours
        super().__init__(column)


@compiles(hour_block, "postgresql")
def _hour_block_postgresql(element: hour_block, compiler: SQLCompiler, **kw: Any) -> str:
    utc = f"({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC')"
    h = element.hours
    return (
        f"((date_trunc('day', {utc}) + floor(extract(hour FROM {utc}) / {h}) * interval '{h} hours')"
        " AT TIME ZONE 'UTC')"
    )


@compiles(hour_block, "sqlite")
def _hour_block_sqlite(element: hour_block, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    h = element.hours
    return (
        f"(substr({column}, 1, 11) || printf('%02d', (CAST(substr({column}, 12, 2) AS INTEGER) / {h}) * {h})"
        " || ':00:00.000000')"
    )
