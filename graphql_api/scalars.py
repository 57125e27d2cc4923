"""Scalars: money as a plain decimal string (never exponent form), 64-bit integers for token sums, and DateTime
refusing times that have no UTC equivalent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from operator import methodcaller
from typing import NewType

import strawberry
from strawberry.schema.types.base_scalars import wrap_parser
from strawberry.types.scalar import ScalarDefinition


def _serialize_decimal(value: Decimal) -> str:
    # str(Decimal("0.0000001")) is "1E-7"; clients want "0.0000001".
    return format(Decimal(value).normalize(), "f")


def _parse_decimal(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError('Decimal must be a number or a numeric string, e.g. "500.00"')
    try:
        parsed = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not parsed.is_finite():
        raise ValueError("Decimal must be finite")
    return parsed


DecimalScalar: ScalarDefinition = strawberry.scalar(
    name="Decimal",
    description='An exact decimal number, serialized as a plain string such as "15" or "0.000225". '
    "Money is in USD. Accepts a string or a number as input.",
    serialize=_serialize_decimal,
    parse_value=_parse_decimal,
)


def _parse_bigint(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("BigInt must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError("BigInt must be an integer")


BigInt = NewType("BigInt", int)

BigIntScalar: ScalarDefinition = strawberry.scalar(
    name="BigInt",
    description="A 64-bit integer (token counts outgrow GraphQL's 32-bit Int).",
    serialize=int,
    parse_value=_parse_bigint,
)


def _parse_datetime(value: str) -> datetime:
    """ISO 8601 (as Strawberry's own DateTime), refusing a time with no UTC equivalent (0001-01-01T00:00:00+14:00),
    which would otherwise fail wherever it is converted to UTC (every column and filter is UTC inside)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("it is out of range once converted to UTC") from None
    return parsed


DateTimeScalar: ScalarDefinition = strawberry.scalar(
    name="DateTime",
    description="Date with time (isoformat)",
    serialize=methodcaller("isoformat"),
    parse_value=wrap_parser(_parse_datetime, "DateTime"),
)

SCALAR_MAP: dict[object, ScalarDefinition] = {Decimal: DecimalScalar, BigInt: BigIntScalar, datetime: DateTimeScalar}
