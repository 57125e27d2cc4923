"""Calendar periods in UTC. Budgets follow calendar months, so a period's spend is a query, not a reset job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Period:
    """A half-open UTC interval [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("periods are aware UTC datetimes")
        if self.end <= self.start:
            raise ValueError("a period ends after it starts")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def month_of(moment: datetime) -> Period:
    moment = moment.astimezone(UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    end = datetime(moment.year + (moment.month == 12), moment.month % 12 + 1, 1, tzinfo=UTC)
    return Period(start, end)
