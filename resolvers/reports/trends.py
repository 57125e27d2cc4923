"""Cost trends: a dense daily series and a direction (increasing, decreasing, stable) with its change in percent.

The rule, chosen to be immune to weekday seasonality and to zero-spend days:

1. Today is partial, so it is shown in the series but never judged.
2. Compare two windows of whole weeks: the last W closed days against the W days before them, where
   W = 7 x max(1, floor((days - 1) / 14)). Whole weeks hold the same weekdays, so a quiet weekend never reads
   as a decline; when `days` is short the earlier window reaches back before the series (it is still history).
3. changePercent = (recent - earlier) / earlier x 100 over the windows' *sums*, rounded to two places. Sums
   are not thrown by days with no spend; no per-day ratio is ever taken.
4. |changePercent| < 5 is STABLE; otherwise INCREASING or DECREASING. With no spend in the earlier window:
   STABLE at 0 when the recent window is empty too, else INCREASING with changePercent null (no base).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from resolvers.platform.errors import InvalidInput
from resolvers.rollups import DayRange, Dim, Filters, SpendSource, Totals, aggregate

STABLE_PERCENT = Decimal(5)


class TrendDirection(StrEnum):
    INCREASING = "increasing"
    DECREASING = "decreasing"
    STABLE = "stable"


@dataclass(frozen=True)
class TrendPoint:
    date: date
    cost: Decimal
    requests: int


@dataclass(frozen=True)
class CostTrend:
    days: int
    direction: TrendDirection
    change_percent: Decimal | None
    points: list[TrendPoint]
    #: The two windows the direction compares (inclusive dates), for anyone who wants to check it.
    recent: tuple[date, date]
    earlier: tuple[date, date]
    recent_cost: Decimal
    earlier_cost: Decimal


def comparison_window(days: int) -> int:
    return 7 * max(1, (days - 1) // 14)


def direction_of(recent_nanos: int, earlier_nanos: int) -> tuple[TrendDirection, Decimal | None]:
    if earlier_nanos == 0:
        return (TrendDirection.STABLE, Decimal(0)) if recent_nanos == 0 else (TrendDirection.INCREASING, None)
    change = (Decimal(recent_nanos - earlier_nanos) * 100 / Decimal(earlier_nanos)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_EVEN
    )
    if abs(change) < STABLE_PERCENT:
        return TrendDirection.STABLE, change
    return (TrendDirection.INCREASING if change > 0 else TrendDirection.DECREASING), change


async def cost_trend(
    session: AsyncSession,
    source: SpendSource,
    today: date,
    days: int,
    filters: Filters,
    *,
    max_days: int,
    zone: tzinfo | None = None,
) -> CostTrend:
    """The series and direction over local days in `zone` (UTC by default); `today` is today there."""
    if not 1 <= days <= max_days:
        raise InvalidInput("days", f"must be from 1 to {max_days}")
    series = DayRange(today - timedelta(days=days - 1), today + timedelta(days=1))
    window = comparison_window(days)
    recent = DayRange(today - timedelta(days=window), today)
    earlier = DayRange(recent.start - timedelta(days=window), recent.start)
    grouped = await aggregate(
        session, source, DayRange(min(series.start, earlier.start), series.end), (Dim.DAY,), filters, zone
    )
    daily: dict[date, Totals] = {key[0]: t for key, t in grouped.items()}

    def nanos(span: DayRange) -> int:
        return sum(daily[d].spend_nanos for d in span.days() if d in daily)

    recent_nanos, earlier_nanos = nanos(recent), nanos(earlier)
    direction, change = direction_of(recent_nanos, earlier_nanos)
    points = [TrendPoint(d, daily.get(d, Totals()).cost, daily.get(d, Totals()).requests) for d in series.days()]
    return CostTrend(
        days=days,
        direction=direction,
        change_percent=change,
        points=points,
        recent=(recent.start, recent.end - timedelta(days=1)),
        earlier=(earlier.start, earlier.end - timedelta(days=1)),
        recent_cost=Totals(spend_nanos=recent_nanos).cost,
        earlier_cost=Totals(spend_nanos=earlier_nanos).cost,
    )
