"""SLA monitoring in GraphQL: provider health (current and history), SLA definitions, violations, failover rules,
their mutations, and the slaViolationRaised subscription. Reads need a token; changes need the admin role."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import fields
from datetime import datetime
from typing import Any

import strawberry
from strawberry.types.unset import UNSET, UnsetType

from graphql_api.context import Info
from graphql_api.pagination import After, Connection, First, connection
from graphql_api.subscriptions import still_valid, subscription
from resolvers.platform.pages import DEFAULT_PAGE
from resolvers.sla import collector, definitions, failover, health, violations
from resolvers.sla.definitions import SlaDefinition, SlaDefinitionDraft
from resolvers.sla.failover import FailoverRule, FailoverRuleDraft, FailoverTransition, Transition, TriggerCondition
from resolvers.sla.health import Health, Metric
from resolvers.sla.violations import Resolution, SlaViolation

strawberry.enum(Metric, name="SlaMetric", description="What an SLA target measures.")
strawberry.enum(
    TriggerCondition,
    name="FailoverTrigger",
    description="What trips a failover rule: error_rate or latency_p95 / ttft_p95 (ms) above its threshold, "
    "availability below it.",
)
strawberry.enum(Transition, name="FailoverTransitionKind")
strawberry.enum(Resolution, name="SlaResolution", description="How a violation was resolved.")


@strawberry.type(
    name="ProviderHealth",
    description="A provider and model over one collector run's window. Failures: LiteLLM's status (or "
    "metadata.status) is failure. Availability = good / valid requests: failures with error code 400, 401, 403, "
    "404 or 422 are the caller's fault and not valid requests; 429s, 5xx and failures without a code count against "
    "the provider. Latencies are nearest-rank percentiles of endTime - startTime over successful requests; time to "
    "first token over successful streaming requests only.",
)
class ProviderHealthView:
    provider: str
    model: str
    window_start: datetime
    window_end: datetime
    window_minutes: int
    requests: int
    successes: int
    failures: int
    client_errors: int = strawberry.field(description="Failures that were the caller's fault (400/401/403/404/422).")
    rate_limited: int = strawberry.field(description="Failures with error code 429 (provider capacity).")
    streaming_requests: int = strawberry.field(description="Successful streaming requests (those with a TTFT).")
    valid_requests: int
    good_requests: int
    error_rate: float | None = strawberry.field(description="failures / requests (0.1 = 10%).")
    availability: float | None = strawberry.field(description="good / valid requests (0.999 = 99.9%).")
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None

    @classmethod
    def from_domain(cls, h: Health) -> ProviderHealthView:
        return cls(
            provider=h.provider,
            model=h.model,
            window_start=h.window_start,
            window_end=h.window_end,
            window_minutes=h.window_minutes,
            requests=h.requests,
            successes=h.successes,
            failures=h.failures,
            client_errors=h.client_errors,
            rate_limited=h.rate_limited,
            streaming_requests=h.streaming_requests,
            valid_requests=h.valid_requests,
            good_requests=h.good_requests,
            error_rate=h.error_rate,
            availability=h.availability,
            latency_p50_ms=h.latency_p50_ms,
            latency_p95_ms=h.latency_p95_ms,
            latency_p99_ms=h.latency_p99_ms,
            ttft_p50_ms=h.ttft_p50_ms,
            ttft_p95_ms=h.ttft_p95_ms,
        )


@strawberry.type(
    name="SlaDefinition",
    description="Targets for one provider's models matching a glob (or every provider's), judged by the health "
    "collector over the evaluation window.",
)
class SlaDefinitionView:
    id: strawberry.ID
    name: str
    provider: str | None = strawberry.field(description="custom_llm_provider, e.g. openai; null: every provider.")
    model_pattern: str = strawberry.field(description="A glob over the model LiteLLM logs, e.g. gpt-4o*.")
    target_p50_ms: float | None
    target_p95_ms: float | None
    target_p99_ms: float | None
    target_ttft_p95_ms: float | None
    target_error_rate: float | None = strawberry.field(description="Highest acceptable error rate (0.01 = 1%).")
    target_availability: float | None = strawberry.field(description="Lowest acceptable availability (0.999).")
    evaluation_window_minutes: int
    alert_emails: list[str] = strawberry.field(description="Empty for a non-admin (alertTargetsRedacted).")
    alert_webhook_url: str | None = strawberry.field(
        description="Where violations are POSTed; null: ALERT_WEBHOOK_URL (if set). Null for a non-admin."
    )
    created_at: datetime
    updated_at: datetime
    alert_targets_redacted: bool = strawberry.field(
        description="True when alertEmails and alertWebhookUrl were withheld: only admins read them."
    )

    @classmethod
    def from_domain(cls, d: SlaDefinition) -> SlaDefinitionView:
        return cls(
            id=strawberry.ID(d.id),
            name=d.name,
            provider=d.provider,
            model_pattern=d.model_pattern,
            target_p50_ms=d.target_p50_ms,
            target_p95_ms=d.target_p95_ms,
            target_p99_ms=d.target_p99_ms,
            target_ttft_p95_ms=d.target_ttft_p95_ms,
            target_error_rate=d.target_error_rate,
            target_availability=d.target_availability,
            evaluation_window_minutes=d.evaluation_window_minutes,
            alert_emails=list(d.alert_emails),
            alert_webhook_url=d.alert_webhook_url,
            created_at=d.created_at,
            updated_at=d.updated_at,
            alert_targets_redacted=d.alert_targets_redacted,
        )


@strawberry.input(description="A new SLA definition: at least one target; rates from 0 to 1, latencies in ms above 0.")
class SlaDefinitionInput:
    name: str
    provider: str | None = None
    model_pattern: str = "*"
    target_p50_ms: float | None = None
    target_p95_ms: float | None = None
    target_p99_ms: float | None = None
    target_ttft_p95_ms: float | None = None
    target_error_rate: float | None = None
    target_availability: float | None = None
    evaluation_window_minutes: int = strawberry.field(
        default=60, description="At least SLA_COLLECTOR_INTERVAL_MINUTES, at most 1440."
    )
    alert_emails: list[str] = strawberry.field(default_factory=list)
    alert_webhook_url: str | None = None


@strawberry.input(description="Changes to an SLA definition; omitted fields stay, null clears an optional one.")
class SlaDefinitionUpdateInput:
    name: str | None = UNSET
    provider: str | None = UNSET
    model_pattern: str | None = UNSET
    target_p50_ms: float | None = UNSET
    target_p95_ms: float | None = UNSET
    target_p99_ms: float | None = UNSET
    target_ttft_p95_ms: float | None = UNSET
    target_error_rate: float | None = UNSET
    target_availability: float | None = UNSET
    evaluation_window_minutes: int | None = UNSET
    alert_emails: list[str] | None = UNSET
    alert_webhook_url: str | None = UNSET


@strawberry.type(
    name="SlaViolation",
    description="A definition's target breached over its window: one open violation per definition and metric. "
    "Resolved by hand, or automatically after SLA_HEALTHY_WINDOWS_TO_RESOLVE healthy collector runs in a row.",
)
class SlaViolationView:
    id: strawberry.ID
    definition_id: strawberry.ID | None = strawberry.field(description="Null once the definition was deleted.")
    definition_name: str
    provider: str | None
    model_pattern: str
    metric: Metric
    target_value: float = strawberry.field(description="The target (ms for latencies, a fraction for rates).")
    measured_value: float = strawberry.field(description="What the run that opened it measured.")
    last_measured_value: float = strawberry.field(description="What the latest run with enough requests measured.")
    requests: int = strawberry.field(description="Requests behind the opening measurement.")
    window_minutes: int
    window_start: datetime
    window_end: datetime
    opened_at: datetime
    last_breached_at: datetime
    healthy_windows: int = strawberry.field(description="Healthy runs in a row since the last breach.")
    active: bool
    resolved_at: datetime | None
    resolution: Resolution | None
    resolved_by: str | None
    alert_id: strawberry.ID | None

    @classmethod
    def from_domain(cls, v: SlaViolation) -> SlaViolationView:
        return cls(
            id=strawberry.ID(v.id),
            definition_id=strawberry.ID(v.definition_id) if v.definition_id else None,
            definition_name=v.definition_name,
            provider=v.provider,
            model_pattern=v.model_pattern,
            metric=v.metric,
            target_value=v.target_value,
            measured_value=v.measured_value,
            last_measured_value=v.last_measured_value,
            requests=v.requests,
            window_minutes=v.window_minutes,
            window_start=v.window_start,
            window_end=v.window_end,
            opened_at=v.opened_at,
            last_breached_at=v.last_breached_at,
            healthy_windows=v.healthy_windows,
            active=v.active,
            resolved_at=v.resolved_at,
            resolution=v.resolution,
            resolved_by=v.resolved_by,
            alert_id=strawberry.ID(v.alert_id) if v.alert_id else None,
        )


@strawberry.type(name="FailoverTransition", description="A failover rule turning on or off, and why.")
class FailoverTransitionView:
    id: strawberry.ID
    kind: Transition
    primary_model: str
    fallback_model: str
    trigger_condition: TriggerCondition
    threshold: float
    measured_value: float | None
    reason: str
    at: datetime

    @classmethod
    def from_domain(cls, t: FailoverTransition) -> FailoverTransitionView:
        return cls(
            id=strawberry.ID(t.id),
            kind=t.kind,
            primary_model=t.primary_model,
            fallback_model=t.fallback_model,
            trigger_condition=t.trigger_condition,
            threshold=t.threshold,
            measured_value=t.measured_value,
            reason=t.reason,
            at=t.at,
        )


@strawberry.type(
    name="FailoverRule",
    description="While active, the gateway routes requests for the primary model to the fallback (the pre-request "
    "webhook answers the model to call). Activates when the primary breaches the threshold over the evaluation "
    "window, unless the fallback breaches it too; stays active at least the cooldown; deactivates when the primary "
    "is healthy again (or the fallback starts failing).",
)
class FailoverRuleView:
    id: strawberry.ID
    primary_model: str
    fallback_model: str
    trigger_condition: TriggerCondition
    trigger_threshold: float = strawberry.field(description="A fraction for rates, milliseconds for latencies.")
    cooldown_minutes: int
    evaluation_window_minutes: int
    active: bool
    activated_at: datetime | None
    last_measured_value: float | None = strawberry.field(description="The primary's figure at the latest run.")
    last_evaluated_at: datetime | None
    note: str | None = strawberry.field(description="Why an inactive rule whose primary fails did not activate.")
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="Its latest transitions, newest first.")
    async def transitions(self, info: Info, limit: int = 20) -> list[FailoverTransitionView]:
        async with info.context.runtime.read() as session:
            found = await failover.transitions_of(session, [str(self.id)], limit)
        return [FailoverTransitionView.from_domain(t) for t in found[str(self.id)]]

    @classmethod
    def from_domain(cls, r: FailoverRule) -> FailoverRuleView:
        return cls(
            id=strawberry.ID(r.id),
            primary_model=r.primary_model,
            fallback_model=r.fallback_model,
            trigger_condition=r.trigger_condition,
            trigger_threshold=r.trigger_threshold,
            cooldown_minutes=r.cooldown_minutes,
            evaluation_window_minutes=r.evaluation_window_minutes,
            active=r.active,
            activated_at=r.activated_at,
            last_measured_value=r.last_measured_value,
            last_evaluated_at=r.last_evaluated_at,
            note=r.note,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


@strawberry.input(description="A new failover rule.")
class FailoverRuleInput:
    primary_model: str
    fallback_model: str
    trigger_condition: TriggerCondition
    trigger_threshold: float
    cooldown_minutes: int = 15
    evaluation_window_minutes: int = strawberry.field(
        default=15, description="At least SLA_COLLECTOR_INTERVAL_MINUTES, at most 1440."
    )


@strawberry.input(description="Changes to a failover rule; omitted fields stay as they are.")
class FailoverRuleUpdateInput:
    primary_model: str | None = UNSET
    fallback_model: str | None = UNSET
    trigger_condition: TriggerCondition | None = UNSET
    trigger_threshold: float | None = UNSET
    cooldown_minutes: int | None = UNSET
    evaluation_window_minutes: int | None = UNSET


def given(update: object) -> dict[str, Any]:
    """The fields an update input set (null included), enums as their values."""
    found: dict[str, Any] = {}
    for field in fields(update):  # type: ignore[arg-type]
        value = getattr(update, field.name)
        if not isinstance(value, UnsetType):
            found[field.name] = getattr(value, "value", value)
    return found


@strawberry.type
class SlaQueries:
    @strawberry.field(description="Every SLA definition.")
    async def sla_definitions(self, info: Info) -> list[SlaDefinitionView]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await definitions.definitions_for(session, principal)
        return [SlaDefinitionView.from_domain(d) for d in found]

    @strawberry.field(description="Each provider and model at the latest collector run (every 5 minutes).")
    async def provider_health(self, info: Info) -> list[ProviderHealthView]:
        runtime = info.context.runtime
        info.context.caller()
        async with runtime.read() as session:
            found = await health.current_health(session)
        return [ProviderHealthView.from_domain(h) for h in found]

    @strawberry.field(description="Every collector run's figures of the last `hours` (1-720), oldest first.")
    async def provider_health_history(
        self, info: Info, hours: int = 24, provider: str | None = None, model: str | None = None
    ) -> list[ProviderHealthView]:
        runtime = info.context.runtime
        info.context.caller()
        async with runtime.read() as session:
            found = await health.health_history(session, runtime.clock(), hours, provider=provider, model=model)
        return [ProviderHealthView.from_domain(h) for h in found]

    @strawberry.field(description="SLA violations, newest first; activeOnly: only those not resolved yet.")
    async def sla_violations(self, info: Info, active_only: bool = False, limit: int = 100) -> list[SlaViolationView]:
        runtime = info.context.runtime
        info.context.caller()
        async with runtime.read() as session:
            found = await violations.list_violations(session, active_only=active_only, limit=limit)
        return [SlaViolationView.from_domain(v) for v in found]

    @strawberry.field(description="`slaViolations` a cursor page at a time (newest first).")
    async def sla_violations_connection(
        self, info: Info, first: First = DEFAULT_PAGE, after: After = None, active_only: bool = False
    ) -> Connection[SlaViolationView]:
        runtime = info.context.runtime
        info.context.caller()
        async with runtime.read() as session:
            page = await violations.violation_page(session, active_only=active_only, first=first, after=after)
        return connection(page, SlaViolationView.from_domain)

    @strawberry.field(description="Every failover rule, with whether it is routing now.")
    async def failover_rules(self, info: Info) -> list[FailoverRuleView]:
        runtime = info.context.runtime
        info.context.caller()
        async with runtime.read() as session:
            found = await failover.list_rules(session)
        return [FailoverRuleView.from_domain(r) for r in found]


@strawberry.type
class SlaMutations:
    @strawberry.mutation(description="Create an SLA definition (admin).")
    async def create_sla_definition(self, info: Info, input: SlaDefinitionInput) -> SlaDefinitionView:
        runtime, principal = info.context.runtime, info.context.caller()
        draft = SlaDefinitionDraft(**{f.name: getattr(input, f.name) for f in fields(SlaDefinitionDraft)})
        async with runtime.work() as work:
            created = await definitions.create_definition(work, principal, draft, runtime.settings)
        return SlaDefinitionView.from_domain(created)

    @strawberry.mutation(description="Change an SLA definition (admin).")
    async def update_sla_definition(
        self, info: Info, id: strawberry.ID, input: SlaDefinitionUpdateInput
    ) -> SlaDefinitionView:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            updated = await definitions.update_definition(work, principal, str(id), given(input), runtime.settings)
        return SlaDefinitionView.from_domain(updated)

    @strawberry.mutation(description="Delete an SLA definition (admin); its violations are kept, open ones resolved.")
    async def delete_sla_definition(self, info: Info, id: strawberry.ID) -> SlaDefinitionView:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            deleted = await definitions.delete_definition(work, principal, str(id))
        return SlaDefinitionView.from_domain(deleted)

    @strawberry.mutation(
        description="Run the health collector now (admin) instead of waiting for its next tick (every "
        "SLA_COLLECTOR_INTERVAL_MINUTES): health, violations and failover rules are judged at once. Returns the "
        "health it measured (or, if a run was already under way, the latest)."
    )
    async def collect_provider_health(self, info: Info) -> list[ProviderHealthView]:
        runtime, principal = info.context.runtime, info.context.caller()
        await collector.collect_now(runtime, principal)
        async with runtime.read() as session:
            found = await health.current_health(session)
        return [ProviderHealthView.from_domain(h) for h in found]

    @strawberry.mutation(description="Resolve a violation by hand (admin).")
    async def resolve_sla_violation(self, info: Info, id: strawberry.ID) -> SlaViolationView:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            resolved = await violations.resolve_violation(work, principal, str(id))
        return SlaViolationView.from_domain(resolved)

    @strawberry.mutation(description="Create a failover rule (admin).")
    async def create_failover_rule(self, info: Info, input: FailoverRuleInput) -> FailoverRuleView:
        runtime, principal = info.context.runtime, info.context.caller()
        draft = FailoverRuleDraft(
            primary_model=input.primary_model,
            fallback_model=input.fallback_model,
            trigger_condition=input.trigger_condition.value,
            trigger_threshold=input.trigger_threshold,
            cooldown_minutes=input.cooldown_minutes,
            evaluation_window_minutes=input.evaluation_window_minutes,
        )
        async with runtime.work() as work:
            created = await failover.create_rule(work, principal, draft, runtime.settings)
        return FailoverRuleView.from_domain(created)

    @strawberry.mutation(description="Change a failover rule (admin).")
    async def update_failover_rule(
        self, info: Info, id: strawberry.ID, input: FailoverRuleUpdateInput
    ) -> FailoverRuleView:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            updated = await failover.update_rule(work, principal, str(id), given(input), runtime.settings)
        return FailoverRuleView.from_domain(updated)

    @strawberry.mutation(description="Delete a failover rule (admin); an active one stops routing at once.")
    async def delete_failover_rule(self, info: Info, id: strawberry.ID) -> FailoverRuleView:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            deleted = await failover.delete_rule(work, principal, str(id))
        return FailoverRuleView.from_domain(deleted)


@strawberry.type
class SlaSubscriptions:
    @strawberry.subscription(description="SLA violations as they are opened, across every replica.")
    async def sla_violation_raised(self, info: Info) -> AsyncGenerator[SlaViolationView, None]:
        async with subscription(info) as principal, info.context.runtime.feeds["violations"].watch() as found:
            async for violation in found:
                still_valid(info, principal)
                yield SlaViolationView.from_domain(violation)
