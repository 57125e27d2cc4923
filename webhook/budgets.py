"""The guide's budget admin API: /api/v1/budgets (JWT), on the same domain functions as GraphQL."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from resolvers import budgets
from resolvers.budgets import KEEP, BudgetChanges, BudgetDraft, BudgetState, Thresholds
from resolvers.errors import InvalidInput
from webhook.rest import JSON, caller, read_model, runtime_of


class BudgetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    entity_type: str = Field(description="user, team or global")
    entity_id: str | None = Field(default=None, max_length=256)
    monthly_limit: Decimal = Field(allow_inf_nan=False)
    soft_limit_percent: Decimal | None = Field(default=None, allow_inf_nan=False)
    hard_limit_percent: Decimal | None = Field(default=None, allow_inf_nan=False)
    alert_email: str | None = Field(default=None, max_length=320)


class BudgetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    monthly_limit: Decimal | None = Field(default=None, allow_inf_nan=False)
    soft_limit_percent: Decimal | None = Field(default=None, allow_inf_nan=False)
    hard_limit_percent: Decimal | None = Field(default=None, allow_inf_nan=False)
    alert_email: str | None = Field(default=None, max_length=320)


class BudgetOut(BaseModel):
    id: str
    name: str
    entity_type: str
    entity_id: str | None
    monthly_limit: Decimal
    soft_limit_percent: Decimal
    hard_limit_percent: Decimal
    alert_email: str | None
    current_spend: Decimal
    remaining: Decimal
    utilization: Decimal
    status: str
    period_start: datetime
    period_end: datetime
    created_at: datetime
    updated_at: datetime

    @classmethod
    def render(cls, state: BudgetState) -> dict[str, Any]:
        b = state.budget
        return cls(
            id=b.id,
            name=b.name,
            entity_type=b.entity_type.value,
            entity_id=b.entity_id,
            monthly_limit=b.monthly_limit,
            soft_limit_percent=b.soft_limit_percent,
            hard_limit_percent=b.hard_limit_percent,
            alert_email=b.alert_email,
            current_spend=state.current_spend,
            remaining=state.remaining,
            utilization=state.utilization,
            status=state.status.value,
            period_start=state.period.start,
            period_end=state.period.end,
            created_at=b.created_at,
            updated_at=b.updated_at,
        ).model_dump()


async def list_budgets(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await budgets.list_budgets(
            session,
            principal,
            entity_type=request.query_params.get("entity_type") or None,
            entity_id=request.query_params.get("entity_id") or None,
        )
        states = await budgets.budget_states(session, runtime.litellm, found, runtime.clock())
    return JSON([BudgetOut.render(s) for s in states])


async def create_budget(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, BudgetCreate)
    draft = BudgetDraft(**body.model_dump())
    async with runtime.work() as work:
        created = await budgets.create_budget(work, principal, draft, Thresholds.from_settings(runtime.settings))
        states = await budgets.budget_states(work.session, runtime.litellm, [created], work.now)
    return JSON(BudgetOut.render(states[0]), status_code=201)


async def get_budget(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await budgets.get_budget(session, principal, request.path_params["budget_id"])
        states = await budgets.budget_states(session, runtime.litellm, [found], runtime.clock())
    return JSON(BudgetOut.render(states[0]))


async def update_budget(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, BudgetUpdate)
    given = body.model_fields_set
    for field in ("name", "monthly_limit", "soft_limit_percent", "hard_limit_percent"):
        if field in given and getattr(body, field) is None:
            raise InvalidInput(field, "may not be null; omit it to keep the current value")
    changes = BudgetChanges(
        **{field: getattr(body, field) if field in given else KEEP for field in BudgetChanges.__dataclass_fields__}
    )
    async with runtime.work() as work:
        updated = await budgets.update_budget(work, principal, request.path_params["budget_id"], changes)
        states = await budgets.budget_states(work.session, runtime.litellm, [updated], work.now)
    return JSON(BudgetOut.render(states[0]))


async def delete_budget(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.work() as work:
        deleted = await budgets.delete_budget(work, principal, request.path_params["budget_id"])
        states = await budgets.budget_states(work.session, runtime.litellm, [deleted], work.now)
    return JSON(BudgetOut.render(states[0]))
