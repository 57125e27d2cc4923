"""Budgets: spending limits per window — daily, weekly, monthly (the guide's), quarterly or yearly, calendar-aligned
in the budget's time zone — for a user, a team, a key, an end user, a tag or the whole platform, with their spend
in the current window.

A budget's spend comes from LiteLLM_SpendLogs for its current window: team budgets by `team_id`, user budgets by
the `user` column (the key owner), key budgets by `api_key`, tag budgets by `request_tags`, the global budget by
everything. One entity may have one budget per period ("$50 a day and $500 a month").
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Callable
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
from resolvers.auth import Principal, hash_key, require_admin
from resolvers.platform import validation
from resolvers.platform.config import Settings
from resolvers.platform.errors import AlreadyExists, InvalidInput, NotFound
from resolvers.platform.events import Event
from resolvers.platform.periods import Cadence, Period, Weekday, Window, cadence_of, time_zone, weekday_of
from resolvers.platform.work import Work
from resolvers.rollups import spend_to_date
from resolvers.spend import Scope, ScopeKind


class EntityType(StrEnum):
    """The guide's user, team and global budgets, plus a LiteLLM virtual key, an end user (customer) and a request
    tag (LiteLLM's `request_tags`)."""

    USER = "user"
    TEAM = "team"
    GLOBAL = "global"
    KEY = "key"
    END_USER = "end_user"
    TAG = "tag"


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
class WindowDraft:
    """A budget's window as given: the period (an enum name or LiteLLM's budget_duration), the zone (blank: the
    default, SPENDPLANE_TIME_ZONE) and its anchors."""

    period: str | None = None
    time_zone: str | None = None
    week_starts_on: str | None = None
    month_start_day: int | None = None
    year_start_month: int | None = None

    def window(self, default_zone: str, current: Window | None = None) -> Window:
        base = current or Window(time_zone=default_zone)
        return Window(
            cadence_of("period", self.period) if self.period is not None else base.cadence,
            time_zone("time_zone", self.time_zone, default_zone) if self.time_zone is not None else base.time_zone,
            weekday_of("week_starts_on", self.week_starts_on)
            if self.week_starts_on is not None
            else base.week_starts_on,
            self.month_start_day if self.month_start_day is not None else base.month_start_day,
            self.year_start_month if self.year_start_month is not None else base.year_start_month,
        )


@dataclass(frozen=True)
class BudgetDraft:
    name: str
    entity_type: str
    entity_id: str | None
    #: USD per window. The guide's `monthly_limit` is the same figure, for monthly budgets only.
    limit: Decimal | None = None
    soft_limit_percent: Decimal | None = None
    hard_limit_percent: Decimal | None = None
    alert_email: str | None = None
    monthly_limit: Decimal | None = None
    window: WindowDraft = WindowDraft()
    #: The soft limit as an exact amount (the first start's GLOBAL_SOFT_BUDGET_USD), beside its percent; not an
    #: API field.
    soft_limit_usd: Decimal | None = None


@dataclass(frozen=True)
class BudgetChanges:
    name: str | _Keep = KEEP
    limit: Decimal | _Keep = KEEP
    monthly_limit: Decimal | _Keep = KEEP
    soft_limit_percent: Decimal | _Keep = KEEP
    hard_limit_percent: Decimal | _Keep = KEEP
    alert_email: str | _Keep | None = KEEP
    window: WindowDraft = WindowDraft()


def soft_limit_of(limit: Decimal, percent: Decimal, usd: Decimal | None) -> Decimal:
    """Where a budget warns: the amount it was set to in USD (the first start's), else its limit x percent."""
    return usd if usd is not None else whole_nanos(limit * percent)


@dataclass(frozen=True)
class Budget:
    id: str
    name: str
    entity_type: EntityType
    entity_id: str | None
    window: Window
    limit: Decimal
    soft_limit_percent: Decimal
    hard_limit_percent: Decimal
    alert_email: str | None
    created_at: datetime
    updated_at: datetime
    #: The soft limit as set in USD (models.budgets), or None: limit x soft_limit_percent.
    soft_limit_usd: Decimal | None = None

    @property
    def scope(self) -> Scope:
        return Scope(ScopeKind(self.entity_type.value), self.entity_id)

    @property
    def monthly_limit(self) -> Decimal | None:
        """The guide's monthly limit: the limit of a monthly budget (None for other periods)."""
        return self.limit if self.window.cadence is Cadence.MONTHLY else None

    @property
    def hard_limit(self) -> Decimal:
        return whole_nanos(self.limit * self.hard_limit_percent)

    @property
    def soft_limit(self) -> Decimal:
        return soft_limit_of(self.limit, self.soft_limit_percent, self.soft_limit_usd)

    @classmethod
    def from_row(cls, row: BudgetRow) -> Budget:
        return cls(
            id=row.id,
            name=row.name,
            entity_type=EntityType(row.entity_type),
            entity_id=row.entity_id or None,
            window=window_of(row),
            limit=row.spend_limit,
            soft_limit_percent=row.soft_limit_percent,
            hard_limit_percent=row.hard_limit_percent,
            alert_email=row.alert_email,
            created_at=row.created_at,
            updated_at=row.updated_at,
            soft_limit_usd=row.soft_limit_usd,
        )


def window_of(row: BudgetRow) -> Window:
    return Window(
        Cadence(row.period),
        row.time_zone,
        Weekday(row.week_starts_on),
        row.month_start_day,
        row.year_start_month,
    )


@dataclass(frozen=True)
class BudgetState:
    """A budget with its spend over its current window."""

    budget: Budget
    period: Period
    current_spend: Decimal
    #: Held for admitted requests whose spend is not in the logs yet (every instance's, as far as known).
    reserved: Decimal = Decimal(0)

    @property
    def resets_at(self) -> datetime:
        return self.period.end

    @property
    def remaining(self) -> Decimal:
        """What can still be spent before the hard limit blocks requests; never below zero."""
        return max(Decimal(0), self.budget.hard_limit - self.current_spend).normalize()

    @property
    def utilization(self) -> Decimal:
        """Spend as a fraction of the limit, to six places (0.85 = 85 %)."""
        ratio = self.current_spend / self.budget.limit
        return ratio.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN).normalize()

    @property
    def status(self) -> BudgetStatus:
        if self.current_spend >= self.budget.hard_limit:
            return BudgetStatus.EXCEEDED
        if self.current_spend + self.reserved >= self.budget.soft_limit:
            return BudgetStatus.WARNING
        return BudgetStatus.OK


@dataclass(frozen=True)
class Thresholds:
    """Defaults for new budgets (SOFT_LIMIT_THRESHOLD, HARD_LIMIT_THRESHOLD, SPENDPLANE_TIME_ZONE)."""

    soft: Decimal
    hard: Decimal
    time_zone: str = "UTC"

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(settings.soft_limit_threshold, settings.hard_limit_threshold, settings.time_zone)


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
    """One budget as `principal` may read it. Every face loads a budget for a caller here: one outside a viewer's
    scope is answered exactly as a missing id is (NOT_FOUND naming `id`), so its answers tell no viewer which
    other budgets exist."""
    budget = Budget.from_row(await _row(session, budget_id))
    if not principal.can_see(budget.entity_type.value, budget.entity_id):
        raise _missing(budget_id)
    return budget


async def find_budget(session: AsyncSession, budget_id: str) -> Budget | None:
    """A budget by id, or None (deleted, or never there): for feeds, which have no caller to refuse."""
    row = await session.get(BudgetRow, budget_id) if validation.is_uuid(budget_id) else None
    return Budget.from_row(row) if row is not None else None


async def budget_states(
    session: AsyncSession,
    schema: LiteLLMSchema,
    budgets: list[Budget],
    now: datetime,
    reserved: Callable[[tuple[str, str]], Decimal] | None = None,
) -> list[BudgetState]:
    """Each budget with its spend in its current window: one spend read per window (and scope kind), not per
    budget. `reserved`: in-flight holds by (ledger key, window key), as the enforcement engine knows them."""
    periods = {b.id: b.window.period_at(now) for b in budgets}
    by_period: dict[Period, list[Budget]] = defaultdict(list)
    for budget in budgets:
        by_period[periods[budget.id]].append(budget)
    spend: dict[tuple[Scope, Period], Decimal] = {}
    for period, group in by_period.items():
        found = await spend_to_date(session, schema, [b.scope for b in group], period, now)
        spend.update({(scope, period): usd for scope, usd in found.items()})
    return [
        BudgetState(
            b,
            periods[b.id],
            spend[(b.scope, periods[b.id])],
            reserved((ledger_key(b.id), periods[b.id].key)) if reserved is not None else Decimal(0),
        )
        for b in budgets
    ]


def ledger_key(budget_id: str) -> str:
    """The admission ledger's name of a stored budget."""
    return f"budget:{budget_id}"


# ---------------------------------------------------------------------------------------------- writing


async def create_budget(work: Work, principal: Principal, draft: BudgetDraft, defaults: Thresholds) -> Budget:
    require_admin(principal, "creating a budget")
    entity_type = _entity_type(draft.entity_type)
    entity_id = _entity_id(entity_type, draft.entity_id)
    window = draft.window.window(defaults.time_zone)
    limit = _limit(draft.limit, draft.monthly_limit, window)
    if limit is None:
        if window.cadence is Cadence.MONTHLY:
            raise InvalidInput("monthly_limit", "is required (USD per month; `limit` names the same figure)")
        raise InvalidInput("limit", f"is required (USD per {window.cadence.value.removesuffix('ly')} window)")
    soft = _limit_percent("soft_limit_percent", draft.soft_limit_percent, defaults.soft)
    hard = _limit_percent("hard_limit_percent", draft.hard_limit_percent, defaults.hard)
    _check_order(soft, hard)
    soft_usd = draft.soft_limit_usd
    if soft_usd is not None and not 0 < soft_usd <= whole_nanos(limit * hard):
        raise InvalidInput("soft_limit_usd", f"{soft_usd} is not above 0 and at most the hard limit")
    row = BudgetRow(
        id=str(uuid.uuid4()),
        name=validation.text("name", draft.name, max_length=200) or "",
        entity_type=entity_type.value,
        entity_id=entity_id or "",
        spend_limit=limit,
        soft_limit_percent=soft,
        hard_limit_percent=hard,
        soft_limit_usd=soft_usd,
        alert_email=validation.email("alert_email", draft.alert_email),
        created_at=work.now,
        updated_at=work.now,
    )
    _set_window(row, window)
    await _refuse_duplicate(work.session, entity_type, entity_id, window.cadence)
    work.session.add(row)
    try:
        await work.session.flush()
    except IntegrityError as exc:  # a concurrent create for the same entity and period won the race
        raise _duplicate(entity_type, entity_id, window.cadence) from exc
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
    window = changes.window.window(current.window.time_zone, current.window)
    limit = _limit(
        None if isinstance(changes.limit, _Keep) else changes.limit,
        None if isinstance(changes.monthly_limit, _Keep) else changes.monthly_limit,
        window,
    )
    if not isinstance(changes.name, _Keep):
        row.name = validation.text("name", changes.name, max_length=200) or ""
    if limit is not None:
        row.spend_limit = limit
    if not isinstance(changes.alert_email, _Keep):
        row.alert_email = validation.email("alert_email", changes.alert_email)
    if window.cadence is not current.window.cadence:
        await _refuse_duplicate(work.session, current.entity_type, current.entity_id, window.cadence)
    _set_window(row, window)
    if (limit is not None and limit != current.limit) or (soft, hard) != (
        current.soft_limit_percent,
        current.hard_limit_percent,
    ):
        row.soft_limit_usd = None  # a soft limit set in USD holds until the limit or a percent changes
    row.soft_limit_percent, row.hard_limit_percent = soft, hard
    row.updated_at = work.now
    try:
        await work.session.flush()
    except IntegrityError as exc:
        raise _duplicate(current.entity_type, current.entity_id, window.cadence) from exc
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


def _set_window(row: BudgetRow, window: Window) -> None:
    row.period = window.cadence.value
    row.time_zone = window.time_zone
    row.week_starts_on = window.week_starts_on.value
    row.month_start_day = window.month_start_day
    row.year_start_month = window.year_start_month


def _limit(limit: Decimal | None, monthly: Decimal | None, window: Window) -> Decimal | None:
    """The general `limit`, or the guide's `monthly_limit` for a monthly budget (one of them: two names of the
    same figure; the OpenAPI document says so, which it could not for "both, if equal")."""
    if monthly is not None and window.cadence is not Cadence.MONTHLY:
        raise InvalidInput("monthly_limit", f"is for monthly budgets; a {window.cadence.value} budget takes limit")
    if limit is not None and monthly is not None:
        raise InvalidInput("monthly_limit", "is another name of limit; give one of them")
    chosen = limit if limit is not None else monthly
    if chosen is None:
        return None
    return validation.usd("limit" if limit is not None else "monthly_limit", chosen)


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


async def _refuse_duplicate(
    session: AsyncSession, entity_type: EntityType, entity_id: str | None, cadence: Cadence
) -> None:
    existing = await session.scalar(
        select(BudgetRow.id).where(
            BudgetRow.entity_type == entity_type.value,
            BudgetRow.entity_id == (entity_id or ""),
            BudgetRow.period == cadence.value,
        )
    )
    if existing is not None:
        raise _duplicate(entity_type, entity_id, cadence)


def _duplicate(entity_type: EntityType, entity_id: str | None, cadence: Cadence) -> AlreadyExists:
    if entity_type is EntityType.GLOBAL:
        return AlreadyExists("entity_type", f"a {cadence.value} global budget already exists; update it instead")
    return AlreadyExists("entity_id", f"a {cadence.value} {entity_type.value} budget for {entity_id!r} already exists")


async def _row(session: AsyncSession, budget_id: str) -> BudgetRow:
    row = await session.get(BudgetRow, budget_id) if validation.is_uuid(budget_id) else None
    if row is None:
        raise _missing(budget_id)
    return row


def _missing(budget_id: str) -> NotFound:
    return NotFound(f"no budget with id {budget_id!r}", field="id")
