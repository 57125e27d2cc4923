"""The guide's SLA API (JWT): /api/v1/sla/definitions, /health (and /history), /violations (/active, /{id}/resolve)
and /failover-rules, snake_case JSON, on the same domain functions as GraphQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from resolvers.platform.errors import InvalidInput
from resolvers.sla import collector, definitions, failover, health, violations
from resolvers.sla.definitions import MAX_LATENCY_MS, MAX_WINDOW_MINUTES, SlaDefinition, SlaDefinitionDraft
from resolvers.sla.failover import FailoverRule, FailoverRuleDraft, FailoverTransition, TriggerCondition
from resolvers.sla.health import Health
from resolvers.sla.violations import SlaViolation
from webhook.downloads import query_int
from webhook.openapi import choice, refine
from webhook.rest import JSON, Text, caller, read_model, runtime_of

# strict: true and false are no figures (lax pydantic read false as 0.0).
_Latency = Field(
    default=None,
    allow_inf_nan=False,
    strict=True,
    description="milliseconds above 0",
    json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_LATENCY_MS},
)
_Rate = Field(
    default=None,
    allow_inf_nan=False,
    strict=True,
    description="a fraction from 0 to 1",
    json_schema_extra={"minimum": 0, "maximum": 1},
)
#: Where alerts are POSTed: an http(s) URL with a host (or blank: none).
_URL = {"alert_webhook_url": {"pattern": r"^(\s*[hH][tT][tT][pP][sS]?://[^/?#\s].*|\s*)$"}}
#: An evaluation window's bounds; its minimum is SLA_COLLECTOR_INTERVAL_MINUTES, which `with_collector_interval`
#: writes into the document the server publishes (1 is the least that setting can be).
_WINDOW = {"evaluation_window_minutes": {"minimum": 1, "maximum": MAX_WINDOW_MINUTES}}
_WINDOW_MODELS = ("SlaDefinitionCreate", "SlaDefinitionUpdate", "FailoverRuleCreate", "FailoverRuleUpdate")


def with_collector_interval(document: dict[str, Any], minutes: int) -> dict[str, Any]:
    """The OpenAPI document with the SLA and failover windows' minimum set to this server's
    SLA_COLLECTOR_INTERVAL_MINUTES (`resolvers.sla.definitions.window_minutes` refuses a shorter one)."""
    schemas = document["components"]["schemas"]
    for name in _WINDOW_MODELS:
        prop = schemas[name]["properties"]["evaluation_window_minutes"]
        for option in [prop, *prop.get("anyOf", ())]:
            if option.get("type") == "integer":
                option["minimum"] = minutes
    return document


#: An SLA needs at least one target.
_SOME_TARGET = {
    "anyOf": [
        {"required": [name], "properties": {name: {"type": "number"}}}
        for name in (
            "target_p50_ms",
            "target_p95_ms",
            "target_p99_ms",
            "target_ttft_p95_ms",
            "target_error_rate",
            "target_availability",
        )
    ]
}


class SlaDefinitionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=refine(not_blank=("name",), props={**_URL, **_WINDOW}, extra=_SOME_TARGET)
    )
    name: Text = Field(max_length=200)
    provider: Text | None = Field(default=None, max_length=64, description="custom_llm_provider; null: every one")
    model_pattern: Text = Field(default="*", max_length=200, description="a glob, e.g. gpt-4o*")
    target_p50_ms: float | None = _Latency
    target_p95_ms: float | None = _Latency
    target_p99_ms: float | None = _Latency
    target_ttft_p95_ms: float | None = _Latency
    target_error_rate: float | None = _Rate
    target_availability: float | None = _Rate
    evaluation_window_minutes: int = Field(default=60, description="at least the collector interval, at most 1440")
    alert_emails: list[Text] = Field(default_factory=list, max_length=20)
    alert_webhook_url: Text | None = Field(default=None, max_length=2000)


class SlaDefinitionUpdate(BaseModel):
    """Only the fields sent change; null clears an optional one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=refine(
            # A definition always has a window: it may be changed, not cleared.
            not_null=("name", "model_pattern", "evaluation_window_minutes"),
            not_blank=("name", "model_pattern"),
            props={**_URL, **_WINDOW},
        ),
    )
    name: Text | None = Field(default=None, max_length=200)
    provider: Text | None = Field(default=None, max_length=64)
    model_pattern: Text | None = Field(default=None, max_length=200)
    target_p50_ms: float | None = _Latency
    target_p95_ms: float | None = _Latency
    target_p99_ms: float | None = _Latency
    target_ttft_p95_ms: float | None = _Latency
    target_error_rate: float | None = _Rate
    target_availability: float | None = _Rate
    evaluation_window_minutes: int | None = None
    alert_emails: list[Text] | None = Field(default=None, max_length=20)
    alert_webhook_url: Text | None = Field(default=None, max_length=2000)


class SlaDefinitionOut(BaseModel):
    id: str
    name: str
    provider: str | None
    model_pattern: str
    target_p50_ms: float | None
    target_p95_ms: float | None
    target_p99_ms: float | None
    target_ttft_p95_ms: float | None
    target_error_rate: float | None
    target_availability: float | None
    evaluation_window_minutes: int
    alert_emails: list[str] = Field(description="Empty for a non-admin reader (alert_targets_redacted).")
    alert_webhook_url: str | None = Field(description="Null for a non-admin reader (alert_targets_redacted).")
    created_at: datetime
    updated_at: datetime
    alert_targets_redacted: bool = Field(
        description="True when alert_emails and alert_webhook_url were withheld: only admins read them."
    )

    @classmethod
    def render(cls, found: SlaDefinition) -> dict[str, Any]:
        return cls.model_validate(found, from_attributes=True).model_dump()


class ProviderHealthOut(BaseModel):
    provider: str
    model: str
    window_start: datetime
    window_end: datetime
    requests: int
    successes: int
    failures: int
    client_errors: int = Field(description="failures that were the caller's fault (400/401/403/404/422)")
    rate_limited: int = Field(description="failures with error code 429")
    streaming_requests: int
    valid_requests: int
    good_requests: int
    error_rate: float | None
    availability: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None

    @classmethod
    def render(cls, found: Health) -> dict[str, Any]:
        return cls.model_validate(found, from_attributes=True).model_dump()


class SlaViolationOut(BaseModel):
    id: str
    definition_id: str | None
    definition_name: str
    provider: str | None
    model_pattern: str
    metric: str
    target_value: float
    measured_value: float
    last_measured_value: float
    requests: int
    window_minutes: int
    window_start: datetime
    window_end: datetime
    opened_at: datetime
    last_breached_at: datetime
    healthy_windows: int
    active: bool
    resolved_at: datetime | None
    resolution: str | None
    resolved_by: str | None
    alert_id: str | None

    @classmethod
    def render(cls, found: SlaViolation) -> dict[str, Any]:
        return cls.model_validate(found, from_attributes=True).model_dump()


class FailoverRuleCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=refine(
            not_blank=("primary_model", "fallback_model"),
            props={"trigger_condition": choice(*TriggerCondition), **_WINDOW},
        ),
    )
    primary_model: Text = Field(max_length=256)
    fallback_model: Text = Field(max_length=256)
    trigger_condition: Text = Field(max_length=32, description="error_rate, latency_p95, ttft_p95 or availability")
    trigger_threshold: float = Field(allow_inf_nan=False, description="a fraction for rates, ms for latencies")
    cooldown_minutes: int = 15
    evaluation_window_minutes: int = 15


class FailoverRuleUpdate(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=refine(props=_WINDOW))
    primary_model: Text | None = Field(default=None, max_length=256)
    fallback_model: Text | None = Field(default=None, max_length=256)
    trigger_condition: Text | None = Field(default=None, max_length=32)
    trigger_threshold: float | None = Field(default=None, allow_inf_nan=False)
    cooldown_minutes: int | None = None
    evaluation_window_minutes: int | None = None


class FailoverTransitionOut(BaseModel):
    id: str
    kind: str
    primary_model: str
    fallback_model: str
    trigger_condition: str
    threshold: float
    measured_value: float | None
    reason: str
    at: datetime

    @classmethod
    def render(cls, found: FailoverTransition) -> dict[str, Any]:
        return cls.model_validate(found, from_attributes=True).model_dump()


class FailoverRuleOut(BaseModel):
    id: str
    primary_model: str
    fallback_model: str
    trigger_condition: str
    trigger_threshold: float
    cooldown_minutes: int
    evaluation_window_minutes: int
    active: bool
    activated_at: datetime | None
    last_measured_value: float | None
    last_evaluated_at: datetime | None
    note: str | None
    created_at: datetime
    updated_at: datetime
    transitions: list[FailoverTransitionOut] = Field(default=[], description="the latest transitions, newest first")

    @classmethod
    def render(cls, rule: FailoverRule, transitions: list[FailoverTransition]) -> dict[str, Any]:
        found = cls.model_validate(rule, from_attributes=True)
        found.transitions = [FailoverTransitionOut.model_validate(t, from_attributes=True) for t in transitions]
        return found.model_dump()


def _bool_param(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "false").lower()
    if raw not in {"true", "false", "1", "0"}:
        raise InvalidInput(name, "must be true or false")
    return raw in {"true", "1"}


# ---------------------------------------------------------------------------------------------- definitions


async def list_definitions(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await definitions.definitions_for(session, principal)
    return JSON([SlaDefinitionOut.render(d) for d in found])


async def create_definition(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, SlaDefinitionCreate)
    draft = SlaDefinitionDraft(**body.model_dump())
    async with runtime.work() as work:
        created = await definitions.create_definition(work, principal, draft, runtime.settings)
    return JSON(SlaDefinitionOut.render(created), status_code=201)


async def get_definition(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await definitions.get_definition(session, request.path_params["definition_id"], principal)
    return JSON(SlaDefinitionOut.render(found))


async def update_definition(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, SlaDefinitionUpdate)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    async with runtime.work() as work:
        updated = await definitions.update_definition(
            work, principal, request.path_params["definition_id"], changes, runtime.settings
        )
    return JSON(SlaDefinitionOut.render(updated))


async def delete_definition(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.work() as work:
        deleted = await definitions.delete_definition(work, principal, request.path_params["definition_id"])
    return JSON(SlaDefinitionOut.render(deleted))


# ---------------------------------------------------------------------------------------------- health


async def current_health(request: Request) -> Response:
    runtime, _ = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await health.current_health(session)
    return JSON([ProviderHealthOut.render(h) for h in found])


async def collect_health(request: Request) -> Response:
    await collector.collect_now(runtime_of(request), caller(request))
    return await current_health(request)


async def health_history(request: Request) -> Response:
    runtime, _ = runtime_of(request), caller(request)
    hours = query_int(request.query_params.get("hours"), "hours", 24)
    params = request.query_params
    async with runtime.read() as session:
        found = await health.health_history(
            session, runtime.clock(), hours, provider=params.get("provider") or None, model=params.get("model") or None
        )
    return JSON([ProviderHealthOut.render(h) for h in found])


# ---------------------------------------------------------------------------------------------- violations


async def list_violations(request: Request) -> Response:
    runtime, _ = runtime_of(request), caller(request)
    active_only = _bool_param(request, "active_only")
    limit = query_int(request.query_params.get("limit"), "limit", 100)
    async with runtime.read() as session:
        found = await violations.list_violations(session, active_only=active_only, limit=limit)
    return JSON([SlaViolationOut.render(v) for v in found])


async def active_violations(request: Request) -> Response:
    runtime, _ = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await violations.list_violations(session, active_only=True, limit=violations.MAX_LIST)
    return JSON([SlaViolationOut.render(v) for v in found])


async def resolve_violation(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.work() as work:
        resolved = await violations.resolve_violation(work, principal, request.path_params["violation_id"])
    return JSON(SlaViolationOut.render(resolved))


# ---------------------------------------------------------------------------------------------- failover rules


async def list_rules(request: Request) -> Response:
    runtime, _ = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await failover.list_rules(session)
        transitions = await failover.transitions_of(session, [r.id for r in found])
    return JSON([FailoverRuleOut.render(r, transitions[r.id]) for r in found])


async def create_rule(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, FailoverRuleCreate)
    async with runtime.work() as work:
        created = await failover.create_rule(work, principal, FailoverRuleDraft(**body.model_dump()), runtime.settings)
    return JSON(FailoverRuleOut.render(created, []), status_code=201)


async def get_rule(request: Request) -> Response:
    runtime, _ = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await failover.get_rule(session, request.path_params["rule_id"])
        transitions = await failover.transitions_of(session, [found.id])
    return JSON(FailoverRuleOut.render(found, transitions[found.id]))


async def update_rule(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, FailoverRuleUpdate)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    async with runtime.work() as work:
        updated = await failover.update_rule(work, principal, request.path_params["rule_id"], changes, runtime.settings)
        transitions = await failover.transitions_of(work.session, [updated.id])
    return JSON(FailoverRuleOut.render(updated, transitions[updated.id]))


async def delete_rule(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.work() as work:
        deleted = await failover.delete_rule(work, principal, request.path_params["rule_id"])
    return JSON(FailoverRuleOut.render(deleted, []))
