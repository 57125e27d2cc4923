"""Budgets: monthly limits for a user, a team or the whole platform, with their spend this calendar month.

A budget's status comes from LiteLLM_SpendLogs for the current UTC month: team budgets by `team_id`, user
budgets by the `user` column (the key owner), the global budget by everything.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.budgets import BudgetRow
from models.litellm import LiteLLMSchema
from models.types import whole_nanos
from resolvers import validation
from resolvers.auth import Principal, hash_key, require_admin
from resolvers.config import Settings
from resolvers.errors import Forbidden, InvalidInput, NotFound
from resolvers.events import Event
from resolvers.periods import Period, month_of
from resolvers.rollups import spend_to_date
from resolvers.runtime import Work
from resolvers.spend import Scope, ScopeKind


class EntityType(StrEnum):
    """The guide's user, team and global budgets, plus a LiteLLM virtual key and an end user (customer)."""

    USER = "user"
    TEAM = "team"
    GLOBAL = "global"
    KEY = "key"
    END_USER = "end_user"


class BudgetStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"
    EXCEEDED = "exceeded"


class _Keep:
    """Marks a field an update leaves as it is."""


KEEP: Final = _Keep()

BUDGET_TOPIC = "budget"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class BudgetDraft:
    name: str
    entity_type: str
    entity_id: str | None
    monthly_limit: Decimal
    soft_limit_percent: Decimal | None = None
    hard_limit_percent: Decimal | None = None
    alert_email: str | None = None


@dataclass(frozen=True)
class BudgetChanges:
    name: str | _Keep = KEEP
    monthly_limit: Decimal | _Keep = KEEP
    soft_limit_percent: Decimal | _Keep = KEEP
    hard_limit_percent: Decimal | _Keep = KEEP
    alert_email: str | _Keep | None = KEEP


@dataclass(frozen=True)
class Budget:
    id: str
    name: str
    entity_type: EntityType
    entity_id: str | None
    monthly_limit: Decimal
    soft_limit_percent: Decimal
    hard_limit_percent: Decimal
    alert_email: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def scope(self) -> Scope:
        return Scope(ScopeKind(self.entity_type.value), self.entity_id)

    @property
    def hard_limit(self) -> Decimal:
        return whole_nanos(self.monthly_limit * self.hard_limit_percent)

    @property
    def soft_limit(self) -> Decimal:
        return whole_nanos(self.monthly_limit * self.soft_limit_percent)

    @classmethod
    def from_row(cls, row: BudgetRow) -> Budget:
        return cls(
            id=row.id,
            name=row.name,
            entity_type=EntityType(row.entity_type),
            entity_id=row.entity_id or None,
            monthly_limit=row.monthly_limit,
            soft_limit_percent=row.soft_limit_percent,
            hard_limit_percent=row.hard_limit_percent,
            alert_email=row.alert_email,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True)
class BudgetState:
    """A budget with its spend over a period (the current calendar month unless said otherwise)."""

    budget: Budget
    period: Period
    current_spend: Decimal

    @property
    def remaining(self) -> Decimal:
        """What can still be spent before the hard limit blocks requests; never below zero."""
        return max(Decimal(0), self.budget.hard_limit - self.current_spend).normalize()

    @property
    def utilization(self) -> Decimal:
        """Spend as a fraction of the monthly limit, to six places (0.85 = 85 %)."""
        ratio = self.current_spend / self.budget.monthly_limit
        return ratio.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN).normalize()

    @property
    def status(self) -> BudgetStatus:
        if self.current_spend >= self.budget.hard_limit:
            return BudgetStatus.EXCEEDED
        if self.current_spend >= self.budget.soft_limit:
            return BudgetStatus.WARNING
        return BudgetStatus.OK


@dataclass(frozen=True)
class Thresholds:
    """Defaults for new budgets (SOFT_LIMIT_THRESHOLD, HARD_LIMIT_THRESHOLD)."""

    soft: Decimal
    hard: Decimal

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(settings.soft_limit_threshold, settings.hard_limit_threshold)


# ---------------------------------------------------------------------------------------------- reading


async def list_budgets(
    session: AsyncSession,
    principal: Principal,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> list[Budget]:
    query = select(BudgetRow).order_by(BudgetRow.entity_type, BudgetRow.entity_id, BudgetRow.name)
    if entity_type is not None:
        query = query.where(BudgetRow.entity_type == _entity_type(entity_type).value)
    entity_id = validation.identifier("entity_id", entity_id)
    if entity_id is not None:
        query = query.where(BudgetRow.entity_id == entity_id)
    budgets = [Budget.from_row(row) for row in (await session.scalars(query)).all()]
    return [b for b in budgets if principal.can_see(b.entity_type.value, b.entity_id)]


async def get_budget(session: AsyncSession, principal: Principal, budget_id: str) -> Budget:
    budget = Budget.from_row(await _row(session, budget_id))
    if not principal.can_see(budget.entity_type.value, budget.entity_id):
        raise Forbidden("this token may not read that budget")
    return budget


async def budget_states(
    session: AsyncSession, schema: LiteLLMSchema, budgets: list[Budget], now: datetime
) -> list[BudgetState]:
    """Each budget with its spend this calendar month: one spend query per entity type, not per budget."""
    period = month_of(now)
    spend = await spend_to_date(session, schema, [b.scope for b in budgets], period, now)
    return [BudgetState(b, period, spend[b.scope]) for b in budgets]


# ---------------------------------------------------------------------------------------------- writing


async def create_budget(work: Work, principal: Principal, draft: BudgetDraft, defaults: Thresholds) -> Budget:
    require_admin(principal, "creating a budget")
    entity_type = _entity_type(draft.entity_type)
    entity_id = _entity_id(entity_type, draft.entity_id)
    soft = _limit_percent("soft_limit_percent", draft.soft_limit_percent, defaults.soft)
    hard = _limit_percent("hard_limit_percent", draft.hard_limit_percent, defaults.hard)
    _check_order(soft, hard)
    row = BudgetRow(
        id=str(uuid.uuid4()),
        name=validation.text("name", draft.name, max_length=200) or "",
        entity_type=entity_type.value,
        entity_id=entity_id or "",
        monthly_limit=validation.usd("monthly_limit", draft.monthly_limit),
        soft_limit_percent=soft,
        hard_limit_percent=hard,
        alert_email=validation.email("alert_email", draft.alert_email),
        created_at=work.now,
        updated_at=work.now,
    )
    await _refuse_duplicate(work.session, entity_type, entity_id)
    work.session.add(row)
    try:
        await work.session.flush()
    except IntegrityError as exc:  # a concurrent create for the same entity won the race
        raise _duplicate(entity_type, entity_id) from exc
    budget = Budget.from_row(row)
    work.emit(Event(BUDGET_TOPIC, {"id": budget.id, "change": "created"}))
    return budget


async def update_budget(work: Work, principal: Principal, budget_id: str, changes: BudgetChanges) -> Budget:
    require_admin(principal, "updating a budget")
    row = await _row(work.session, budget_id)
    current = Budget.from_row(row)
    soft = current.soft_limit_percent
    hard = current.hard_limit_percent
    if not isinstance(changes.soft_limit_percent, _Keep):
        soft = validation.fraction("soft_limit_percent", changes.soft_limit_percent)
    if not isinstance(changes.hard_limit_percent, _Keep):
        hard = validation.fraction("hard_limit_percent", changes.hard_limit_percent)
    _check_order(soft, hard)
    if not isinstance(changes.name, _Keep):
        row.name = validation.text("name", changes.name, max_length=200) or ""
    if not isinstance(changes.monthly_limit, _Keep):
        row.monthly_limit = validation.usd("monthly_limit", changes.monthly_limit)
    if not isinstance(changes.alert_email, _Keep):
        row.alert_email = validation.email("alert_email", changes.alert_email)
    row.soft_limit_percent, row.hard_limit_percent = soft, hard
    row.updated_at = work.now
    await work.session.flush()
    budget = Budget.from_row(row)
    work.emit(Event(BUDGET_TOPIC, {"id": budget.id, "change": "updated"}))
    return budget


async def delete_budget(work: Work, principal: Principal, budget_id: str) -> Budget:
    require_admin(principal, "deleting a budget")
    row = await _row(work.session, budget_id)
    budget = Budget.from_row(row)
    await work.session.delete(row)
    await work.session.flush()
    work.emit(Event(BUDGET_TOPIC, {"id": budget.id, "change": "deleted"}))
    return replace(budget, updated_at=work.now)


# ---------------------------------------------------------------------------------------------- rules


def _entity_type(value: str) -> EntityType:
    try:
        return EntityType(value.strip().lower())
    except ValueError:
        allowed = ", ".join(e.value for e in EntityType)
        raise InvalidInput("entity_type", f"must be one of {allowed} (got {value!r})") from None


def _entity_id(entity_type: EntityType, value: str | None) -> str | None:
    if entity_type is EntityType.GLOBAL:
        if value is not None and value.strip():
            raise InvalidInput("entity_id", "must be empty for a global budget (it covers all spend)")
        return None
    entity_id = validation.text("entity_id", value, max_length=256)
    if entity_type is EntityType.KEY and entity_id is not None:
        # Keys are stored as LiteLLM stores them: the sha256 of the raw key. The raw key itself is never kept.
        if entity_id.startswith("sk-"):
            return hash_key(entity_id)
        if not _SHA256.fullmatch(entity_id):
            raise InvalidInput("entity_id", "a key budget needs the LiteLLM virtual key (sk-...) or its sha256 hex")
    return entity_id


def _limit_percent(field: str, value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else validation.fraction(field, value)


def _check_order(soft: Decimal, hard: Decimal) -> None:
    if soft > hard:
        raise InvalidInput("soft_limit_percent", f"{soft} may not be above the hard limit percent {hard}")


async def _refuse_duplicate(session: AsyncSession, entity_type: EntityType, entity_id: str | None) -> None:
    existing = await session.scalar(
        select(BudgetRow.id).where(BudgetRow.entity_type == entity_type.value, BudgetRow.entity_id == (entity_id or ""))
    )
    if existing is not None:
        raise _duplicate(entity_type, entity_id)


def _duplicate(entity_type: EntityType, entity_id: str | None) -> InvalidInput:
    if entity_type is EntityType.GLOBAL:
        return InvalidInput("entity_type", "a global budget already exists; update it instead")
    return InvalidInput("entity_id", f"a {entity_type.value} budget for {entity_id!r} already exists")


async def _row(session: AsyncSession, budget_id: str) -> BudgetRow:
    row = await session.get(BudgetRow, budget_id) if validation.is_uuid(budget_id) else None
    if row is None:
        raise NotFound(f"no budget with id {budget_id!r}")
    return row
