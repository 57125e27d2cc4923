"""Failover rules: route a model's requests to a fallback model while the model is failing.

A rule watches one trigger over its evaluation window — error_rate above, availability below, latency_p95 or
ttft_p95 above its threshold — on the primary model's rows (every provider that serves it). Each collector run:

- inactive: it activates when the primary breaches the threshold on at least SLA_MIN_REQUESTS requests, unless the
  fallback breaches the same threshold too (a failing fallback is never chosen; the rule's note says so);
- active: it deactivates when the fallback starts breaching (at once), or once the cooldown has passed and the
  primary no longer breaches. While a rule is active its primary gets (almost) no traffic from this gateway, so
  its window empties of the failures that tripped it: an empty window counts as recovered, and a primary that
  still fails trips the rule again when requests find it failing — a circuit breaker's half-open probe.

Every transition is a row in `spendplane_failover_transitions`, an alert (`failover_activated` /
`failover_deactivated`) and a `failover` event. Routes (primary → fallback, following chains of active rules,
A → B → C) live in every replica's `Enforcer.routes`: each replica reloads them on every `failover` event (other
replicas' through LISTEN/NOTIFY) and every ROUTES_RELOAD_SECONDS anyway, in case a notification was lost. Rules
never form a cycle: a change that would close one is refused, under a lock so two concurrent changes cannot
close one together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from models.sla import FailoverRuleRow, FailoverTransitionRow
from resolvers.alerts import AlertDraft, AlertType, Severity, raise_alert
from resolvers.auth import Principal, require_admin
from resolvers.platform import validation
from resolvers.platform.config import Settings
from resolvers.platform.errors import AlreadyExists, InvalidInput, NotFound
from resolvers.platform.events import Event
from resolvers.platform.work import Work
from resolvers.sla.definitions import MAX_LATENCY_MS, window_minutes
from resolvers.sla.health import Health, Metric

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime

log = logging.getLogger("spendplane.failover")

FAILOVER_TOPIC = "failover"
ROUTES_RELOAD_SECONDS = 15.0
MAX_COOLDOWN_MINUTES = 1440
MAX_TRANSITIONS = 100
#: Serialises rule changes on PostgreSQL (a transaction-scoped advisory lock); SQLite's writers already queue.
_RULES_LOCK = 0x5E1A_F00D


class TriggerCondition(StrEnum):
    ERROR_RATE = "error_rate"
    LATENCY_P95 = "latency_p95"
    TTFT_P95 = "ttft_p95"
    AVAILABILITY = "availability"

    @property
    def metric(self) -> Metric:
        return Metric(self.value)


class Transition(StrEnum):
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"


@dataclass(frozen=True)
class FailoverRuleDraft:
    primary_model: str
    fallback_model: str
    trigger_condition: str
    trigger_threshold: float
    cooldown_minutes: int = 15
    evaluation_window_minutes: int = 15


DRAFT_FIELDS = frozenset(f.name for f in fields(FailoverRuleDraft))


@dataclass(frozen=True)
class FailoverRule:
    id: str
    primary_model: str
    fallback_model: str
    trigger_condition: TriggerCondition
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

    def draft(self) -> FailoverRuleDraft:
        return FailoverRuleDraft(
            self.primary_model,
            self.fallback_model,
            self.trigger_condition.value,
            self.trigger_threshold,
            self.cooldown_minutes,
            self.evaluation_window_minutes,
        )

    @classmethod
    def from_row(cls, row: FailoverRuleRow) -> FailoverRule:
        return cls(
            id=row.id,
            primary_model=row.primary_model,
            fallback_model=row.fallback_model,
            trigger_condition=TriggerCondition(row.trigger_condition),
            trigger_threshold=row.trigger_threshold,
            cooldown_minutes=row.cooldown_minutes,
            evaluation_window_minutes=row.evaluation_window_minutes,
            active=row.active,
            activated_at=row.activated_at,
            last_measured_value=row.last_measured,
            last_evaluated_at=row.last_evaluated_at,
            note=row.note,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True)
class FailoverTransition:
    id: str
    rule_id: str
    kind: Transition
    primary_model: str
    fallback_model: str
    trigger_condition: TriggerCondition
    threshold: float
    measured_value: float | None
    reason: str
    at: datetime
    alert_id: str | None

    @classmethod
    def from_row(cls, row: FailoverTransitionRow) -> FailoverTransition:
        return cls(
            id=row.id,
            rule_id=row.rule_id,
            kind=Transition(row.kind),
            primary_model=row.primary_model,
            fallback_model=row.fallback_model,
            trigger_condition=TriggerCondition(row.trigger_condition),
            threshold=row.threshold,
            measured_value=row.measured,
            reason=row.reason,
            at=row.at,
            alert_id=row.alert_id,
        )


# ---------------------------------------------------------------------------------------------- reading


async def list_rules(session: AsyncSession) -> list[FailoverRule]:
    rows = await session.scalars(select(FailoverRuleRow).order_by(FailoverRuleRow.primary_model))
    return [FailoverRule.from_row(r) for r in rows]


async def get_rule(session: AsyncSession, rule_id: str) -> FailoverRule:
    return FailoverRule.from_row(await _row(session, rule_id))


async def transitions_of(
    session: AsyncSession, rule_ids: list[str], limit: int = 20
) -> dict[str, list[FailoverTransition]]:
    """Each rule's latest transitions, newest first."""
    if not 1 <= limit <= MAX_TRANSITIONS:
        raise InvalidInput("limit", f"must be from 1 to {MAX_TRANSITIONS}")
    found: dict[str, list[FailoverTransition]] = {rule_id: [] for rule_id in rule_ids}
    if not rule_ids:
        return found
    row = FailoverTransitionRow
    rows = await session.scalars(
        select(row).where(row.rule_id.in_(rule_ids)).order_by(row.rule_id, row.at.desc(), row.id)
    )
    for transition in rows:
        kept = found[transition.rule_id]
        if len(kept) < limit:
            kept.append(FailoverTransition.from_row(transition))
    return found


async def active_routes(session: AsyncSession) -> dict[str, str]:
    """Primary → the model to call instead: the fallback, or further along while that fallback's own rule is
    active (A → B → C). Rules never form a cycle; should one be found all the same, its models are not routed."""
    rows = await session.execute(
        select(FailoverRuleRow.primary_model, FailoverRuleRow.fallback_model).where(FailoverRuleRow.active)
    )
    return resolve_routes({primary: fallback for primary, fallback in rows})


def resolve_routes(active: Mapping[str, str]) -> dict[str, str]:
    routes: dict[str, str] = {}
    for primary, fallback in active.items():
        seen = {primary}
        target = fallback
        while target in active and target not in seen:
            seen.add(target)
            target = active[target]
        if target not in seen:
            routes[primary] = target
    return routes


# ---------------------------------------------------------------------------------------------- writing


async def create_rule(work: Work, principal: Principal, draft: FailoverRuleDraft, settings: Settings) -> FailoverRule:
    require_admin(principal, "creating a failover rule")
    valid = _validated(draft, settings)
    await _lock_rules(work)
    existing = await work.session.scalar(
        select(FailoverRuleRow.id).where(FailoverRuleRow.primary_model == valid.primary_model)
    )
    if existing is not None:
        raise AlreadyExists("primary_model", f"a failover rule for {valid.primary_model!r} exists already; update it")
    await _refuse_cycle(work.session, None, valid)
    row = FailoverRuleRow(id=str(uuid.uuid4()), active=False, created_at=work.now, updated_at=work.now)
    _assign(row, valid)
    work.session.add(row)
    await work.session.flush()
    work.emit(Event(FAILOVER_TOPIC, {"id": row.id, "change": "created"}))
    return FailoverRule.from_row(row)


async def update_rule(
    work: Work, principal: Principal, rule_id: str, changes: Mapping[str, Any], settings: Settings
) -> FailoverRule:
    """Change the given fields. An active rule whose primary model changes is deactivated (recorded and alerted);
    one whose fallback changes stays active and routes to the new fallback at once."""
    require_admin(principal, "updating a failover rule")
    unknown = sorted(set(changes) - DRAFT_FIELDS)
    if unknown:
        raise InvalidInput(unknown[0], "is not a field of a failover rule")
    await _lock_rules(work)
    row = await _row(work.session, rule_id)
    current = FailoverRule.from_row(row)
    valid = _validated(replace(current.draft(), **changes), settings)
    if valid.primary_model != current.primary_model:
        clash = await work.session.scalar(
            select(FailoverRuleRow.id).where(FailoverRuleRow.primary_model == valid.primary_model)
        )
        if clash is not None:
            raise AlreadyExists("primary_model", f"a failover rule for {valid.primary_model!r} exists already")
    await _refuse_cycle(work.session, rule_id, valid)
    if current.active and valid.primary_model != current.primary_model:
        reason = "the rule's primary model was changed"
        await _transition(work, row, Transition.DEACTIVATED, None, reason, work.now, settings.alert_webhook_url)
    _assign(row, valid)
    row.updated_at = work.now
    await work.session.flush()
    work.emit(Event(FAILOVER_TOPIC, {"id": row.id, "change": "updated"}))
    return FailoverRule.from_row(row)


async def delete_rule(work: Work, principal: Principal, rule_id: str) -> FailoverRule:
    """Delete it (with its transitions); an active rule stops routing at once."""
    require_admin(principal, "deleting a failover rule")
    await _lock_rules(work)
    row = await _row(work.session, rule_id)
    rule = FailoverRule.from_row(row)
    await work.session.delete(row)
    await work.session.flush()
    work.emit(Event(FAILOVER_TOPIC, {"id": rule.id, "change": "deleted"}))
    return rule


def _assign(row: FailoverRuleRow, valid: FailoverRuleDraft) -> None:
    for name in DRAFT_FIELDS:
        setattr(row, name, getattr(valid, name))


def _validated(draft: FailoverRuleDraft, settings: Settings) -> FailoverRuleDraft:
    primary = validation.text("primary_model", draft.primary_model, max_length=256) or ""
    fallback = validation.text("fallback_model", draft.fallback_model, max_length=256) or ""
    if primary == fallback:
        raise InvalidInput("fallback_model", "must differ from the primary model")
    try:
        condition = TriggerCondition(str(draft.trigger_condition).strip().lower())
    except ValueError:
        allowed = ", ".join(c.value for c in TriggerCondition)
        raise InvalidInput("trigger_condition", f"must be one of {allowed}") from None
    threshold = draft.trigger_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InvalidInput("trigger_threshold", "must be a number")
    if condition.metric.is_rate and not 0 <= threshold <= 1:
        raise InvalidInput("trigger_threshold", f"{condition.value} is a fraction from 0 to 1 (0.05 means 5%)")
    if not condition.metric.is_rate and not 0 < threshold <= MAX_LATENCY_MS:
        raise InvalidInput(
            "trigger_threshold", f"{condition.value} is milliseconds above 0, at most {MAX_LATENCY_MS:.0f}"
        )
    cooldown = draft.cooldown_minutes
    if isinstance(cooldown, bool) or not isinstance(cooldown, int) or not 0 <= cooldown <= MAX_COOLDOWN_MINUTES:
        raise InvalidInput("cooldown_minutes", f"must be whole minutes from 0 to {MAX_COOLDOWN_MINUTES}")
    window = window_minutes("evaluation_window_minutes", draft.evaluation_window_minutes, settings.sla)
    return FailoverRuleDraft(primary, fallback, condition.value, float(threshold), cooldown, window)


async def _refuse_cycle(session: AsyncSession, rule_id: str | None, valid: FailoverRuleDraft) -> None:
    """Each primary has one rule, so following fallbacks from the new fallback either ends or comes back."""
    rows = await session.execute(
        select(FailoverRuleRow.id, FailoverRuleRow.primary_model, FailoverRuleRow.fallback_model)
    )
    edges = {primary: fallback for found_id, primary, fallback in rows if found_id != rule_id}
    edges[valid.primary_model] = valid.fallback_model
    path = [valid.primary_model]
    model = valid.fallback_model
    while model in edges and model not in path:
        path.append(model)
        model = edges[model]
    if model == valid.primary_model:
        chain = " → ".join([*path, model])
        raise InvalidInput("fallback_model", f"would make failover rules form a cycle: {chain}")


async def _lock_rules(work: Work) -> None:
    if work.dialect == "postgresql":
        await work.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _RULES_LOCK})


async def _row(session: AsyncSession, rule_id: str) -> FailoverRuleRow:
    row = await session.get(FailoverRuleRow, rule_id) if validation.is_uuid(rule_id) else None
    if row is None:
        raise NotFound(f"no failover rule with id {rule_id!r}")
    return row


# ---------------------------------------------------------------------------------------------- judging


async def judge(
    work: Work,
    rule_id: str,
    primary: Health | None,
    fallback: Health | None,
    *,
    now: datetime,
    settings: Settings,
) -> Transition | None:
    """One run's verdict on a rule, from the figures over the rule's window of its primary and of the model its
    requests would go to: its fallback, or the end of the chain when that fallback's own rule is active."""
    row = await work.session.get(FailoverRuleRow, rule_id, with_for_update=True)
    if row is None:
        return None  # deleted since the run read it
    condition = TriggerCondition(row.trigger_condition)
    metric, threshold = condition.metric, row.trigger_threshold
    measured = primary.value(metric) if primary is not None else None
    enough = primary is not None and measured is not None and primary.sample(metric) >= settings.sla.min_requests
    primary_failing = measured is not None and metric.breached(measured, threshold)
    fallback_value = fallback.value(metric) if fallback is not None else None
    fallback_failing = (
        fallback is not None
        and fallback_value is not None
        and fallback.sample(metric) >= settings.sla.min_requests
        and metric.breached(fallback_value, threshold)
    )
    fallback_name = fallback.model if fallback is not None else row.fallback_model
    row.last_measured, row.last_evaluated_at = measured, now
    shown = metric.describe(measured) if measured is not None else "no requests"
    limit = metric.describe(threshold)
    if not row.active:
        if not (enough and primary_failing):
            row.note = None
            return None
        if fallback_failing:
            assert fallback_value is not None
            row.note = (
                f"{row.primary_model} is failing ({condition.value} {shown}, threshold {limit}) but so is "
                f"{fallback_name} ({metric.describe(fallback_value)}): not failing over"
            )
            log.warning("failover rule %s: %s", row.id, row.note)
            return None
        reason = f"{condition.value} of {row.primary_model} is {shown} (threshold {limit})"
        await _transition(work, row, Transition.ACTIVATED, measured, reason, now, settings.alert_webhook_url)
        return Transition.ACTIVATED
    if fallback_failing:
        assert fallback_value is not None
        reason = f"the fallback {fallback_name} is failing too ({condition.value} {metric.describe(fallback_value)})"
        await _transition(work, row, Transition.DEACTIVATED, measured, reason, now, settings.alert_webhook_url)
        return Transition.DEACTIVATED
    cooled = row.activated_at is None or now - row.activated_at >= timedelta(minutes=row.cooldown_minutes)
    if cooled and not primary_failing:
        reason = (
            f"{condition.value} of {row.primary_model} is back to {shown} (threshold {limit})"
            if measured is not None
            else f"no requests failed on {row.primary_model} in the last {row.evaluation_window_minutes} min"
        )
        await _transition(work, row, Transition.DEACTIVATED, measured, reason, now, settings.alert_webhook_url)
        return Transition.DEACTIVATED
    return None


async def _transition(
    work: Work,
    row: FailoverRuleRow,
    kind: Transition,
    measured: float | None,
    reason: str,
    now: datetime,
    webhook_url: str | None,
) -> None:
    transition_id = str(uuid.uuid4())
    activated = kind is Transition.ACTIVATED
    row.active = activated
    row.activated_at = now if activated else None
    row.note = None
    work.session.add(
        FailoverTransitionRow(
            id=transition_id,
            rule_id=row.id,
            kind=kind.value,
            primary_model=row.primary_model,
            fallback_model=row.fallback_model,
            trigger_condition=row.trigger_condition,
            threshold=row.trigger_threshold,
            measured=measured,
            reason=reason,
            at=now,
        )
    )
    await work.session.flush()
    message = (
        f"Failover on: requests for {row.primary_model} go to {row.fallback_model} — {reason}"
        if activated
        else f"Failover off: requests for {row.primary_model} go to {row.primary_model} again — {reason}"
    )
    alert = await raise_alert(
        work,
        AlertDraft(
            type=AlertType.FAILOVER_ACTIVATED if activated else AlertType.FAILOVER_DEACTIVATED,
            severity=Severity.CRITICAL if activated else Severity.INFO,
            message=message,
            dedupe_key=f"failover:{transition_id}",
            entity_type="model",
            entity_id=row.primary_model,
            details={
                "rule_id": row.id,
                "transition_id": transition_id,
                "primary_model": row.primary_model,
                "fallback_model": row.fallback_model,
                "trigger_condition": row.trigger_condition,
                "threshold": row.trigger_threshold,
                "measured": measured,
                "cooldown_minutes": row.cooldown_minutes,
                "window_minutes": row.evaluation_window_minutes,
                "reason": reason,
                "period_start": (now - timedelta(minutes=row.evaluation_window_minutes)).isoformat(),
                "period_end": now.isoformat(),
            },
        ),
        webhook_url=webhook_url,
    )
    if alert is not None:
        await work.session.execute(
            update(FailoverTransitionRow).where(FailoverTransitionRow.id == transition_id).values(alert_id=alert.id)
        )
    work.emit(Event(FAILOVER_TOPIC, {"id": row.id, "change": kind.value}))


# ---------------------------------------------------------------------------------------------- routes


async def reload_routes(runtime: Runtime) -> dict[str, str]:
    """Read the active routes and hand them to this replica's enforcement (one assignment: requests see the old
    routes or the new, never half of each)."""
    async with runtime.read() as session:
        routes = await active_routes(session)
    enforcer = runtime.enforcement()
    if routes != enforcer.routes:
        log.info("failover routes now %s", routes or "none")
    enforcer.routes = routes
    return routes


async def follow_routes(runtime: Runtime, stop: asyncio.Event) -> None:
    """Keep this replica's routes current: reload on every `failover` event, and every ROUTES_RELOAD_SECONDS."""
    # One reload at a time, so a slow reload that read the old state never overwrites a newer one.
    lock = asyncio.Lock()

    async def reload() -> None:
        async with lock:
            try:
                await reload_routes(runtime)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("reloading failover routes failed (will retry): %s", exc)

    async def listen() -> None:
        while True:  # a subscription the bus dropped (a slow subscriber) is renewed
            async with runtime.bus.subscribe(FAILOVER_TOPIC) as events:
                async for _ in events:
                    await reload()

    listener = asyncio.create_task(listen(), name="spendplane-failover-routes")
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ROUTES_RELOAD_SECONDS)
            if not stop.is_set():
                await reload()
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
