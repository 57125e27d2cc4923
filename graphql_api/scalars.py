"""Scalars: money as a plain decimal string (never exponent form) and 64-bit integers for token sums."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NewType

import strawberry
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

SCALAR_MAP: dict[object, ScalarDefinition] = {Decimal: DecimalScalar, BigInt: BigIntScalar}
