"""Column types that keep money exact and time in UTC on both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: Money is stored as integer nano-USD: exact on both databases, fine enough for per-token prices and for
#: sub-micro-dollar requests (a 10-token embedding), and an int64 still holds 9.2 billion USD.
NANOS_PER_USD = 10**9
MONEY_PLACES = 9
_NANO = Decimal(1).scaleb(-MONEY_PLACES)

#: Ratios (soft/hard limit percents as fractions, 0.8 = 80 %) are stored as integer parts per million.
PPM = 10**6
RATIO_PLACES = 6


def usd_to_nanos(value: Decimal) -> int:
    """Exact conversion; callers validate precision first, so this never rounds money silently."""
    scaled = value.scaleb(MONEY_PLACES)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {MONEY_PLACES} decimal places")
    return int(scaled)


def whole_nanos(value: Decimal, *, up: bool = False) -> Decimal:
    """`value` in whole nano-USD, rounded down (or up): a limit times a percent can have more places than money."""
    return value.quantize(_NANO, rounding=ROUND_CEILING if up else ROUND_FLOOR)


def nanos_to_usd(nanos: int) -> Decimal:
    return (Decimal(int(nanos)) * _NANO).normalize() if nanos else Decimal(0)


def float_to_usd(value: float | None) -> Decimal:
    """LiteLLM writes spend as a double: convert once, at the read boundary, to the nearest nano-USD."""
    if not value:
        return Decimal(0)
    return nanos_to_usd(round(value * NANOS_PER_USD))


class Money(TypeDecorator[Decimal]):
    """A USD amount held as BIGINT nano-USD, read and written as ``Decimal``."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        return None if value is None else usd_to_nanos(Decimal(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else nanos_to_usd(int(value))


class Ratio(TypeDecorator[Decimal]):
    """A fraction such as 0.8, held as integer parts per million, read and written as ``Decimal``."""

    impl = Integer
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        scaled = Decimal(value).scaleb(RATIO_PLACES)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {RATIO_PLACES} decimal places")
        return int(scaled)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else (Decimal(int(value)).scaleb(-RATIO_PLACES)).normalize()


def as_utc(value: datetime) -> datetime:
    """Aware UTC from anything: naive values are taken to be UTC already (LiteLLM's convention)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on PostgreSQL; naive-UTC text on SQLite. Always aware UTC in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class NaiveUTCDateTime(TypeDecorator[datetime]):
    """Prisma's ``TIMESTAMP(3)`` without time zone, written in UTC by LiteLLM. Always aware UTC in Python."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)
