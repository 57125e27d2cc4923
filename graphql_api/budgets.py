"""Budgets in GraphQL: the Budget type, its inputs, queries, mutations and the budgetUpdated subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types.unset import UNSET, UnsetType

from graphql_api.context import Info
from graphql_api.forecasts import BudgetForecastType, budget_forecast
from graphql_api.subscriptions import still_valid, subscription
from resolvers import budgets
from resolvers.budgets import (
    KEEP,
    Budget,
    BudgetChanges,
    BudgetDraft,
    BudgetState,
    BudgetStatus,
    EntityType,
    WindowDraft,
)
from resolvers.platform.errors import InvalidInput
from resolvers.platform.periods import Cadence, Weekday

strawberry.enum(EntityType, name="EntityType", description="What a budget applies to.")
strawberry.enum(
    BudgetStatus,
    name="BudgetStatus",
    description="OK below the soft limit, WARNING from the soft limit (spend plus what is in flight), EXCEEDED from "
    "the hard limit.",
)
strawberry.enum(Cadence, name="BudgetPeriod", description="How often a budget's window resets.")
strawberry.enum(Weekday, name="Weekday")


@strawberry.type(
    name="Budget",
    description="A spending limit per window (daily to yearly, calendar-aligned in its time zone) and its spend in "
    "the current window.",
)
class BudgetType:
    id: strawberry.ID
    name: str
    entity_type: EntityType
    entity_id: str | None = strawberry.field(
        description="The user, team, key (sha256), end user or tag; null for the global budget."
    )
    period: Cadence = strawberry.field(
        description="The window: DAILY, WEEKLY, MONTHLY (the default), QUARTERLY, YEARLY."
    )
    time_zone: str = strawberry.field(description="The IANA time zone the window's days, weeks and months are in.")
    week_starts_on: Weekday = strawberry.field(description="The weekday a WEEKLY window starts on.")
    month_start_day: int = strawberry.field(description="The day (1-28) a month starts on: a billing day.")
    year_start_month: int = strawberry.field(description="The month (1-12) a (fiscal) year and its quarters start.")
    limit: Decimal = strawberry.field(description="USD per window.")
    monthly_limit: Decimal | None = strawberry.field(
        description="The guide's monthly limit: the limit of a MONTHLY budget, null for other periods."
    )
    soft_limit_percent: Decimal = strawberry.field(description="Fraction of the limit that warns (0.8 = 80%).")
    hard_limit_percent: Decimal = strawberry.field(description="Fraction of the limit that blocks (1.0 = 100%).")
    alert_email: str | None
    current_spend: Decimal = strawberry.field(description="USD spent in the current window, from LiteLLM_SpendLogs.")
    reserved: Decimal = strawberry.field(
        description="USD held for admitted requests whose spend is not recorded yet (in flight), on every instance, "
        "the pooled margin over them included."
    )
    remaining: Decimal = strawberry.field(
        description="USD that can still be spent before the hard limit blocks (limit x hard percent - spend), "
        "never below 0."
    )
    utilization: Decimal = strawberry.field(description="Spend as a fraction of the limit (0.85 = 85%).")
    status: BudgetStatus
    period_start: datetime = strawberry.field(description="Start of the current window (UTC).")
    period_end: datetime = strawberry.field(description="End of the current window (UTC), exclusive: resetsAt.")
    resets_at: datetime = strawberry.field(description="When the current window ends and spend starts again at 0.")
    created_at: datetime
    updated_at: datetime
    state: strawberry.Private[BudgetState | None] = None

    @strawberry.field(description="Projected spend at the period's end and when the soft and hard limits are reached.")
    async def forecast(self, info: Info) -> BudgetForecastType:
        assert self.state is not None  # from_state sets it
        return await budget_forecast(info, self.state)

    @classmethod
    def from_state(cls, state: BudgetState) -> BudgetType:
        b = state.budget
        return cls(
            id=strawberry.ID(b.id),
            name=b.name,
            entity_type=b.entity_type,
            entity_id=b.entity_id,
            period=b.window.cadence,
            time_zone=b.window.time_zone,
            week_starts_on=b.window.week_starts_on,
            month_start_day=b.window.month_start_day,
            year_start_month=b.window.year_start_month,
            limit=b.limit,
            monthly_limit=b.monthly_limit,
            soft_limit_percent=b.soft_limit_percent,
            hard_limit_percent=b.hard_limit_percent,
            alert_email=b.alert_email,
            current_spend=state.current_spend,
            reserved=state.reserved,
            remaining=state.remaining,
            utilization=state.utilization,
            status=state.status,
            period_start=state.period.start,
            period_end=state.period.end,
            resets_at=state.resets_at,
            created_at=b.created_at,
            updated_at=b.updated_at,
            state=state,
        )


@strawberry.input(
    description="A new budget: a limit per period (limit, or monthlyLimit for a monthly budget). Soft and hard limit "
    "percents default to SOFT_LIMIT_THRESHOLD and HARD_LIMIT_THRESHOLD, the time zone to SPENDPLANE_TIME_ZONE."
)
class BudgetInput:
    name: str
    entity_type: EntityType
    monthly_limit: Decimal | None = None
    limit: Decimal | None = None
    entity_id: str | None = None
    period: Cadence | None = strawberry.field(default=None, description="Default MONTHLY.")
    time_zone: str | None = None
    week_starts_on: Weekday | None = strawberry.field(default=None, description="Default MONDAY.")
    month_start_day: int | None = strawberry.field(default=None, description="1-28, default 1.")
    year_start_month: int | None = strawberry.field(default=None, description="1-12, default 1 (January).")
    soft_limit_percent: Decimal | None = None
    hard_limit_percent: Decimal | None = None
    alert_email: str | None = None

    def window(self) -> WindowDraft:
        return WindowDraft(
            self.period.value if self.period else None,
            self.time_zone,
            self.week_starts_on.value if self.week_starts_on else None,
            self.month_start_day,
            self.year_start_month,
        )


@strawberry.input(description="Changes to a budget; omitted fields stay as they are. alertEmail: null clears it.")
class BudgetUpdateInput:
    name: str | None = UNSET
    limit: Decimal | None = UNSET
    monthly_limit: Decimal | None = UNSET
    period: Cadence | None = UNSET
    time_zone: str | None = UNSET
    week_starts_on: Weekday | None = UNSET
    month_start_day: int | None = UNSET
    year_start_month: int | None = UNSET
    soft_limit_percent: Decimal | None = UNSET
    hard_limit_percent: Decimal | None = UNSET
    alert_email: str | None = UNSET


def _required(field: str, value: object) -> object:
    if isinstance(value, UnsetType):
        return KEEP
    if value is None:
        raise InvalidInput(field, "may not be null; omit it to keep the current value")
    return value


def _given(field: str, value: object) -> object:
    """A window field of an update: None when omitted (kept), refused when null."""
    kept = _required(field, value)
    if kept is KEEP:
        return None
    return kept.value if isinstance(kept, Enum) else kept


def _changes(update: BudgetUpdateInput) -> BudgetChanges:
    return BudgetChanges(
        name=_required("name", update.name),  # type: ignore[arg-type]
        limit=_required("limit", update.limit),  # type: ignore[arg-type]
        monthly_limit=_required("monthly_limit", update.monthly_limit),  # type: ignore[arg-type]
        soft_limit_percent=_required("soft_limit_percent", update.soft_limit_percent),  # type: ignore[arg-type]
        hard_limit_percent=_required("hard_limit_percent", update.hard_limit_percent),  # type: ignore[arg-type]
        alert_email=KEEP if isinstance(update.alert_email, UnsetType) else update.alert_email,
        window=WindowDraft(
            _given("period", update.period),  # type: ignore[arg-type]
            _given("time_zone", update.time_zone),  # type: ignore[arg-type]
            _given("week_starts_on", update.week_starts_on),  # type: ignore[arg-type]
            _given("month_start_day", update.month_start_day),  # type: ignore[arg-type]
            _given("year_start_month", update.year_start_month),  # type: ignore[arg-type]
        ),
    )


async def states_of(info: Info, session: AsyncSession, found: list[Budget]) -> list[BudgetState]:
    """Budgets with their spend now, and what this instance's enforcement knows is in flight for them."""
    runtime = info.context.runtime
    return await budgets.budget_states(session, runtime.litellm, found, runtime.clock(), runtime.in_flight())


@strawberry.type
class BudgetQueries:
    @strawberry.field(description="Budgets the caller may see, optionally of one entity type or entity.")
    async def budgets(
        self, info: Info, entity_type: EntityType | None = None, entity_id: str | None = None
    ) -> list[BudgetType]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await budgets.list_budgets(
                session,
                principal,
                entity_type=entity_type.value if entity_type else None,
                entity_id=entity_id,
            )
            states = await states_of(info, session, found)
        return [BudgetType.from_state(s) for s in states]

    @strawberry.field(description="One budget by id.")
    async def budget(self, info: Info, id: strawberry.ID) -> BudgetType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await budgets.get_budget(session, principal, str(id))
            states = await states_of(info, session, [found])
        return BudgetType.from_state(states[0])


@strawberry.type
class BudgetMutations:
    @strawberry.mutation(description="Create a budget (admin).")
    async def create_budget(self, info: Info, input: BudgetInput) -> BudgetType:
        runtime, principal = info.context.runtime, info.context.caller()
        draft = BudgetDraft(
            name=input.name,
            entity_type=input.entity_type.value,
            entity_id=input.entity_id,
            limit=input.limit,
            monthly_limit=input.monthly_limit,
            soft_limit_percent=input.soft_limit_percent,
            hard_limit_percent=input.hard_limit_percent,
            alert_email=input.alert_email,
            window=input.window(),
        )
        async with runtime.work() as work:
            created = await budgets.create_budget(
                work, principal, draft, budgets.Thresholds.from_settings(runtime.settings)
            )
            states = await budgets.budget_states(work.session, runtime.litellm, [created], work.now)
        return BudgetType.from_state(states[0])

    @strawberry.mutation(description="Change a budget's name, limit, thresholds or alert email (admin).")
    async def update_budget(self, info: Info, id: strawberry.ID, input: BudgetUpdateInput) -> BudgetType:
        runtime, principal = info.context.runtime, info.context.caller()
        changes = _changes(input)
        async with runtime.work() as work:
            updated = await budgets.update_budget(work, principal, str(id), changes)
            states = await budgets.budget_states(work.session, runtime.litellm, [updated], work.now)
        return BudgetType.from_state(states[0])

    @strawberry.mutation(description="Delete a budget (admin). Returns the budget as it was.")
    async def delete_budget(self, info: Info, id: strawberry.ID) -> BudgetType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            deleted = await budgets.delete_budget(work, principal, str(id))
            states = await budgets.budget_states(work.session, runtime.litellm, [deleted], work.now)
        return BudgetType.from_state(states[0])


@strawberry.type
class BudgetSubscriptions:
    @strawberry.subscription(
        description="A budget's figures after every change to it: its limits, and its spend and in-flight holds "
        "(spend ingested, rollups refreshed, reservations settled; at most one event per budget per second). With "
        "no id: every budget the caller may see."
    )
    async def budget_updated(self, info: Info, id: strawberry.ID | None = None) -> AsyncGenerator[BudgetType, None]:
        async with subscription(info) as principal, info.context.runtime.feeds["budgets"].watch() as changed:
            async for state in changed:
                budget = state.budget
                if id is not None and budget.id != str(id):
                    continue
                still_valid(info, principal)
                if not principal.can_see(budget.entity_type.value, budget.entity_id):
                    continue  # another scope's budget: not this subscriber's business
                yield BudgetType.from_state(state)
