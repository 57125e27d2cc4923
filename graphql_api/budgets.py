"""Budgets in GraphQL: the Budget type, its inputs, queries, mutations and the budgetUpdated subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.types.unset import UNSET, UnsetType

from graphql_api.context import Info
from graphql_api.forecasts import BudgetForecastType, budget_forecast
from resolvers import budgets
from resolvers.budgets import KEEP, BudgetChanges, BudgetDraft, BudgetState, BudgetStatus, EntityType
from resolvers.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from resolvers.periods import utcnow

strawberry.enum(EntityType, name="EntityType", description="What a budget applies to.")
strawberry.enum(
    BudgetStatus,
    name="BudgetStatus",
    description="OK below the soft limit, WARNING from the soft limit, EXCEEDED from the hard limit.",
)


@strawberry.type(name="Budget", description="A monthly spending limit and its spend this calendar month (UTC).")
class BudgetType:
    id: strawberry.ID
    name: str
    entity_type: EntityType
    entity_id: str | None = strawberry.field(description="The user or team id; null for the global budget.")
    monthly_limit: Decimal = strawberry.field(description="USD per calendar month.")
    soft_limit_percent: Decimal = strawberry.field(description="Fraction of the limit that warns (0.8 = 80%).")
    hard_limit_percent: Decimal = strawberry.field(description="Fraction of the limit that blocks (1.0 = 100%).")
    alert_email: str | None
    current_spend: Decimal = strawberry.field(description="USD spent this calendar month, from LiteLLM_SpendLogs.")
    remaining: Decimal = strawberry.field(
        description="USD that can still be spent before the hard limit blocks (limit x hard percent - spend), "
        "never below 0."
    )
    utilization: Decimal = strawberry.field(description="Spend as a fraction of the monthly limit (0.85 = 85%).")
    status: BudgetStatus
    period_start: datetime = strawberry.field(description="Start of the current calendar month (UTC).")
    period_end: datetime = strawberry.field(description="Start of the next calendar month (UTC), exclusive.")
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
            monthly_limit=b.monthly_limit,
            soft_limit_percent=b.soft_limit_percent,
            hard_limit_percent=b.hard_limit_percent,
            alert_email=b.alert_email,
            current_spend=state.current_spend,
            remaining=state.remaining,
            utilization=state.utilization,
            status=state.status,
            period_start=state.period.start,
            period_end=state.period.end,
            created_at=b.created_at,
            updated_at=b.updated_at,
            state=state,
        )


@strawberry.input(
    description="A new budget. Soft and hard limit percents default to SOFT_LIMIT_THRESHOLD and HARD_LIMIT_THRESHOLD."
)
class BudgetInput:
    name: str
    entity_type: EntityType
    monthly_limit: Decimal
    entity_id: str | None = None
    soft_limit_percent: Decimal | None = None
    hard_limit_percent: Decimal | None = None
    alert_email: str | None = None


@strawberry.input(description="Changes to a budget; omitted fields stay as they are. alertEmail: null clears it.")
class BudgetUpdateInput:
    name: str | None = UNSET
    monthly_limit: Decimal | None = UNSET
    soft_limit_percent: Decimal | None = UNSET
    hard_limit_percent: Decimal | None = UNSET
    alert_email: str | None = UNSET


def _required(field: str, value: object) -> object:
    if isinstance(value, UnsetType):
        return KEEP
    if value is None:
        raise InvalidInput(field, "may not be null; omit it to keep the current value")
    return value


def _changes(update: BudgetUpdateInput) -> BudgetChanges:
    return BudgetChanges(
        name=_required("name", update.name),  # type: ignore[arg-type]
        monthly_limit=_required("monthly_limit", update.monthly_limit),  # type: ignore[arg-type]
        soft_limit_percent=_required("soft_limit_percent", update.soft_limit_percent),  # type: ignore[arg-type]
        hard_limit_percent=_required("hard_limit_percent", update.hard_limit_percent),  # type: ignore[arg-type]
        alert_email=KEEP if isinstance(update.alert_email, UnsetType) else update.alert_email,
    )


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
            states = await budgets.budget_states(session, runtime.litellm, found, runtime.clock())
        return [BudgetType.from_state(s) for s in states]

    @strawberry.field(description="One budget by id.")
    async def budget(self, info: Info, id: strawberry.ID) -> BudgetType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await budgets.get_budget(session, principal, str(id))
            states = await budgets.budget_states(session, runtime.litellm, [found], runtime.clock())
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
            monthly_limit=input.monthly_limit,
            soft_limit_percent=input.soft_limit_percent,
            hard_limit_percent=input.hard_limit_percent,
            alert_email=input.alert_email,
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
        description="A budget's figures after every change to it (limits, spend). With no "
        "id: every budget the caller may see."
    )
    async def budget_updated(self, info: Info, id: strawberry.ID | None = None) -> AsyncGenerator[BudgetType, None]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.bus.subscribe(budgets.BUDGET_TOPIC) as events:
            async for event in events:
                if id is not None and event.payload.get("id") != str(id):
                    continue
                if principal.expires_at is not None and principal.expires_at <= utcnow():
                    raise Unauthenticated("the token expired; reconnect with a fresh one")
                async with runtime.read() as session:
                    try:
                        found = await budgets.get_budget(session, principal, event.payload["id"])
                    except (NotFound, Forbidden):
                        continue  # deleted since, or another scope's budget: not this subscriber's business
                    states = await budgets.budget_states(session, runtime.litellm, [found], runtime.clock())
                yield BudgetType.from_state(states[0])
