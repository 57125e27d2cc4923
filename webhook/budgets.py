"""The guide's budget admin API: /api/v1/budgets (JWT), on the same domain functions as GraphQL."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from models.types import MONEY_PLACES, RATIO_PLACES
from resolvers import budgets
from resolvers.budgets import KEEP, Budget, BudgetChanges, BudgetDraft, BudgetState, EntityType, Thresholds, WindowDraft
from resolvers.platform.errors import InvalidInput
from resolvers.platform.periods import MAX_MONTH_START_DAY, PERIOD_NAMES, Cadence, Weekday, cadence_of
from resolvers.platform.validation import MAX_USD
from resolvers.service.runtime import Runtime
from webhook.openapi import BLANKS, CONTROLS, NAME_PATTERN, amount, choice, refine, time_zone
from webhook.rest import JSON, caller, read_model, runtime_of


class _Window(BaseModel):
    period: str | None = Field(
        default=None,
        description="daily, weekly, monthly (default), quarterly or yearly; LiteLLM's budget_duration strings "
        "(1d, 7d, 30d, 1mo, 3mo, 1y) are accepted too",
    )
    budget_duration: str | None = Field(default=None, max_length=16, description="LiteLLM's name for period")
    time_zone: str | None = Field(default=None, max_length=64, description="IANA zone; default SPENDPLANE_TIME_ZONE")
    week_starts_on: str | None = Field(default=None, max_length=9, description="monday (default) ... sunday")
    month_start_day: int | None = Field(default=None, description="1-28 (a billing day), default 1")
    year_start_month: int | None = Field(default=None, description="1-12 (a fiscal year), default 1")

    def window(self) -> WindowDraft:
        if self.period is not None and self.budget_duration is not None and self.period != self.budget_duration:
            raise InvalidInput("budget_duration", "give period or budget_duration, not both")
        duration = cadence_of("budget_duration", self.budget_duration).value if self.budget_duration else None
        return WindowDraft(
            self.period if self.period is not None else duration,
            self.time_zone,
            self.week_starts_on,
            self.month_start_day,
            self.year_start_month,
        )


_WINDOW_FIELDS = ("period", "budget_duration", "time_zone", "week_starts_on", "month_start_day", "year_start_month")
#: What the window's fields take (checked by resolvers.platform.periods), for the document.
_WINDOW_SCHEMA: dict[str, dict[str, Any]] = {
    "period": choice(*PERIOD_NAMES),
    # Empty is taken as not given (`_Window.window`), as LiteLLM sends it; blanks are not.
    "budget_duration": choice(*PERIOD_NAMES, blank=True),
    "time_zone": time_zone(),
    "week_starts_on": choice(*Weekday),
    "month_start_day": {"minimum": 1, "maximum": MAX_MONTH_START_DAY},
    "year_start_month": {"minimum": 1, "maximum": 12},
}
#: The amounts: a limit in USD (above 0, at most 9 places), a soft or hard limit as a fraction (above 0, at most 10,
#: at most 6 places), as resolvers.platform.validation checks them.
_AMOUNTS: dict[str, dict[str, Any]] = {
    **{name: amount(places=MONEY_PLACES, maximum=int(MAX_USD), above_zero=True) for name in ("limit", "monthly_limit")},
    **{
        name: amount(places=RATIO_PLACES, maximum=10, above_zero=True)
        for name in ("soft_limit_percent", "hard_limit_percent")
    },
}
_ONE_WINDOW_NAME = {"not": {"required": ["period", "budget_duration"]}}
#: The names of a monthly period, as `cadence_of` reads them.
_MONTHLY = tuple(name for name in PERIOD_NAMES if cadence_of("period", name) is Cadence.MONTHLY)


def _given(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


#: `monthly_limit` is `limit`'s other name, for a monthly budget only (`resolvers.budgets._limit`): never both,
#: and with it the period, when given, is monthly (an update's stored period is checked too: its description).
_ONE_LIMIT_NAME = {
    "if": _given("monthly_limit"),
    "then": {
        "not": _given("limit"),
        "properties": {
            "period": {"anyOf": [{"type": "null"}, choice(*_MONTHLY)]},
            "budget_duration": {"anyOf": [{"type": "null"}, choice(*_MONTHLY, blank=True)]},
        },
    },
}
#: A new budget has a limit (`monthly_limit` is the older name of the same figure).
_A_LIMIT = {
    "anyOf": [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in ("limit", "monthly_limit")
    ]
}
#: A budget names its user, team, key, end user or tag; a global one names none (`resolvers.budgets._entity_id`):
#: a global budget's entity_id is absent, null or blank; any other's is a name (not blank, no control
#: characters), and a key's is the LiteLLM virtual key (`sk-...`) or its sha256 in lower-case hex.
_ENTITY = {
    "if": {"properties": {"entity_type": choice(EntityType.GLOBAL)}},
    "then": {
        "properties": {"entity_id": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": rf"^[{BLANKS}]*$"}]}}
    },
    "else": {
        "required": ["entity_id"],
        "properties": {"entity_id": {"type": "string", "pattern": NAME_PATTERN}},
        "if": {"properties": {"entity_type": choice(EntityType.KEY)}},
        "then": {
            "properties": {"entity_id": {"pattern": rf"^[{BLANKS}]*(sk-[^{CONTROLS}]*|[0-9a-f]{{64}})[{BLANKS}]*$"}}
        },
    },
}
#: An address email-validator takes, or blank (none).
_EMAIL = {"alert_email": {"anyOf": [{"format": "email"}, {"pattern": rf"^[{BLANKS}]*$"}]}}


class BudgetCreate(_Window):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=refine(
            not_blank=("name",),
            props={"entity_type": choice(*EntityType), **_WINDOW_SCHEMA, **_AMOUNTS, **_EMAIL},
            extra={**_ONE_WINDOW_NAME, "allOf": [_ENTITY, _A_LIMIT, _ONE_LIMIT_NAME]},
        ),
    )
    name: str = Field(max_length=200)
    entity_type: str = Field(description="user, team, key, end_user, tag or global")
    entity_id: str | None = Field(default=None, max_length=256)
    monthly_limit: Decimal | None = Field(
        default=None, allow_inf_nan=False, description="the limit of a monthly budget"
    )
    limit: Decimal | None = Field(default=None, allow_inf_nan=False, description="USD per period")
    soft_limit_percent: Decimal | None = Field(default=None, allow_inf_nan=False)
    hard_limit_percent: Decimal | None = Field(default=None, allow_inf_nan=False)
    alert_email: str | None = Field(default=None, max_length=320)


class BudgetUpdate(_Window):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=refine(
            not_null=("name", "monthly_limit", "limit", "soft_limit_percent", "hard_limit_percent", *_WINDOW_FIELDS),
            not_blank=("name",),
            props={**_WINDOW_SCHEMA, **_AMOUNTS, **_EMAIL},
            extra={**_ONE_WINDOW_NAME, "allOf": [_ONE_LIMIT_NAME]},
        ),
    )
    name: str | None = Field(default=None, max_length=200)
    monthly_limit: Decimal | None = Field(default=None, allow_inf_nan=False)
    limit: Decimal | None = Field(default=None, allow_inf_nan=False)
    soft_limit_percent: Decimal | None = Field(default=None, allow_inf_nan=False)
    hard_limit_percent: Decimal | None = Field(default=None, allow_inf_nan=False)
    alert_email: str | None = Field(default=None, max_length=320)


class BudgetOut(BaseModel):
    id: str
    name: str
    entity_type: str
    entity_id: str | None
    period: str
    time_zone: str
    week_starts_on: str
    month_start_day: int
    year_start_month: int
    limit: Decimal
    monthly_limit: Decimal | None = Field(description="The limit of a monthly budget; null for other periods.")
    soft_limit_percent: Decimal
    hard_limit_percent: Decimal
    alert_email: str | None
    current_spend: Decimal
    reserved: Decimal = Field(
        description="Held for admitted requests whose spend is not recorded yet, the pooled margin included."
    )
    remaining: Decimal
    utilization: Decimal
    status: str
    period_start: datetime
    period_end: datetime
    resets_at: datetime
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
            period=b.window.cadence.value,
            time_zone=b.window.time_zone,
            week_starts_on=b.window.week_starts_on.value,
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
            status=state.status.value,
            period_start=state.period.start,
            period_end=state.period.end,
            resets_at=state.resets_at,
            created_at=b.created_at,
            updated_at=b.updated_at,
        ).model_dump()


async def _states(runtime: Runtime, session: AsyncSession, found: list[Budget], now: datetime) -> list[BudgetState]:
    return await budgets.budget_states(session, runtime.litellm, found, now, runtime.in_flight())


async def list_budgets(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await budgets.list_budgets(
            session,
            principal,
            entity_type=request.query_params.get("entity_type") or None,
            entity_id=request.query_params.get("entity_id") or None,
        )
        states = await _states(runtime, session, found, runtime.clock())
    return JSON([BudgetOut.render(s) for s in states])


async def create_budget(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, BudgetCreate)
    fields = body.model_dump(exclude=set(_Window.model_fields))
    draft = BudgetDraft(**fields, window=body.window())
    async with runtime.work() as work:
        created = await budgets.create_budget(work, principal, draft, Thresholds.from_settings(runtime.settings))
        states = await _states(runtime, work.session, [created], work.now)
    return JSON(BudgetOut.render(states[0]), status_code=201)


async def get_budget(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await budgets.get_budget(session, principal, request.path_params["budget_id"])
        states = await _states(runtime, session, [found], runtime.clock())
    return JSON(BudgetOut.render(states[0]))


async def update_budget(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, BudgetUpdate)
    given = body.model_fields_set
    for field in ("name", "monthly_limit", "limit", "soft_limit_percent", "hard_limit_percent", *_Window.model_fields):
        if field in given and getattr(body, field) is None:
            raise InvalidInput(field, "may not be null; omit it to keep the current value")
    kept = {"name", "limit", "monthly_limit", "soft_limit_percent", "hard_limit_percent", "alert_email"}
    changes = BudgetChanges(
        **{field: getattr(body, field) if field in given else KEEP for field in kept},
        window=body.window(),
    )
    async with runtime.work() as work:
        updated = await budgets.update_budget(work, principal, request.path_params["budget_id"], changes)
        states = await _states(runtime, work.session, [updated], work.now)
    return JSON(BudgetOut.render(states[0]))


async def delete_budget(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.work() as work:
        deleted = await budgets.delete_budget(work, principal, request.path_params["budget_id"])
        states = await _states(runtime, work.session, [deleted], work.now)
    return JSON(BudgetOut.render(states[0]))
