"""Splitting a team's spend into statement lines: its rules' percents per allocation type, the remainder as an
UNALLOCATED line, exactly (largest remainders over integer nano-USD). Only one allocation type per team is
*posted* (charged and sent to SAP): cost center, else project, else department."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any

from models.chargeback import ChargebackLineRow
from models.types import nanos_to_usd, usd_to_nanos
from resolvers.chargeback.rules import HUNDRED, POSTING_ORDER, AllocationRule, AllocationType


class LineKind(StrEnum):
    ALLOCATION = "allocation"
    UNALLOCATED = "unallocated"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True)
class StatementLine:
    kind: LineKind
    team_id: str | None
    allocation_type: AllocationType | None
    allocation_target: str | None  # None: the unallocated part
    percent: Decimal
    cost_nanos: int
    posted: bool
    rule_id: str | None = None
    rule_name: str | None = None
    adjusts_period: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> Decimal:
        return nanos_to_usd(self.cost_nanos)

    @classmethod
    def from_row(cls, row: ChargebackLineRow) -> StatementLine:
        return cls(
            kind=LineKind(row.kind),
            team_id=row.team_id,
            allocation_type=AllocationType(row.allocation_type) if row.allocation_type else None,
            allocation_target=row.allocation_target,
            percent=row.percent,
            cost_nanos=usd_to_nanos(row.cost),
            posted=row.posted,
            rule_id=row.rule_id,
            rule_name=row.rule_name,
            adjusts_period=row.adjusts_period,
            metadata=dict(row.details or {}),
        )


def apportion(total: int, percents: Sequence[Decimal]) -> list[int]:
    """Split `total` (nano-USD) by percents that add up to 100, exactly: floors, then the leftover units to the
    largest remainders (earlier lines first on ties)."""
    sign, magnitude = (-1, -total) if total < 0 else (1, total)
    exact = [Fraction(magnitude) * Fraction(p) / 100 for p in percents]
    parts = [int(e) for e in exact]
    leftover = magnitude - sum(parts)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:leftover]:
        parts[i] += 1
    return [sign * p for p in parts]


def team_lines(
    team: str | None, nanos: int, rules: Sequence[AllocationRule], *, adjusts: str | None = None
) -> list[StatementLine]:
    """A team's spend (or a late-spend delta, when `adjusts` names the month) split by its rules."""
    kinds = [k for k in POSTING_ORDER if any(r.allocation_type is k for r in rules)]
    line_kind = LineKind.ADJUSTMENT if adjusts else None
    if not kinds:
        return [
            StatementLine(
                line_kind or LineKind.UNALLOCATED, team, None, None, HUNDRED, nanos, True, adjusts_period=adjusts
            )
        ]
    lines = []
    for kind in kinds:
        own = [r for r in rules if r.allocation_type is kind]
        left = HUNDRED - sum((r.allocation_percent for r in own), Decimal(0))
        percents = [r.allocation_percent for r in own] + ([left] if left > 0 else [])
        parts = apportion(nanos, percents)
        posted = kind is kinds[0]
        for rule, part in zip(own, parts, strict=False):
            lines.append(
                StatementLine(
                    line_kind or LineKind.ALLOCATION,
                    team,
                    kind,
                    rule.allocation_target,
                    rule.allocation_percent,
                    part,
                    posted,
                    rule.id,
                    rule.name,
                    adjusts,
                    dict(rule.metadata),
                )
            )
        if left > 0:
            lines.append(
                StatementLine(
                    line_kind or LineKind.UNALLOCATED, team, kind, None, left, parts[-1], posted, adjusts_period=adjusts
                )
            )
    return lines
