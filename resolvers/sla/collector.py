"""The health collector, a periodic job (every SLA_COLLECTOR_INTERVAL_MINUTES, and once at start-up; one replica per
tick): measure every provider and model over the health window and keep the snapshot, judge every SLA definition
and failover rule over its own window, and drop snapshots past their retention.

Each distinct window is read once (by `"startTime"`, so only the window's rows); a definition or rule that covers
several providers or models of a window gets its percentiles from one more query over exactly those rows, because
percentiles of parts do not combine. Everything a run decides is written in one transaction, whose events
(violations, failover transitions, alerts) go out once it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from models.litellm import LiteLLMSchema
from resolvers.auth import Principal, require_admin
from resolvers.platform.errors import Unavailable
from resolvers.platform.jobs import Outcome
from resolvers.platform.periods import Period
from resolvers.rollups import finish_on_cancel
from resolvers.sla import failover, violations
from resolvers.sla.definitions import SlaDefinition, list_definitions
from resolvers.sla.failover import FailoverRule, Transition, list_rules, resolve_routes
from resolvers.sla.health import Health, measure, prune_snapshots, store_run

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime

JOB_NAME = "sla-health"


@dataclass(frozen=True)
class _Plan:
    """What one run read: the health window's figures, and each definition's and rule's."""

    window: Period
    health: list[Health]
    definitions: list[tuple[SlaDefinition, Health | None]]
    #: Each rule with its primary's figures and those of every model its requests could end up at (its fallback,
    #: and down the chain of rules from there), over the rule's window.
    rules: list[tuple[FailoverRule, Health | None, dict[str, Health | None]]]


async def collect_health(runtime: Runtime, tick: datetime) -> str:
    """The job: `tick` (the scheduled minute, or now for a start-up run) ends every window."""
    async with runtime.read() as session:
        plan = await _measure(session, runtime.litellm, tick, runtime.settings.sla.health_window_minutes)
    # The writes finish even if the job is cancelled at shutdown: an abandoned SQLite write would hold its lock.
    return await finish_on_cancel(_record(runtime, plan, tick))


async def collect_now(runtime: Runtime, principal: Principal) -> Outcome:
    """Run the collector now (admin), through the job runner: never beside a run of this process, and on
    PostgreSQL never beside another replica's (that replica's run is then the answer)."""
    require_admin(principal, "running the health collector")
    if runtime.jobs is None:
        raise Unavailable("the job runner is not set up (the app lifespan does it)")
    return await runtime.jobs.run(JOB_NAME, claim=False)


async def _record(runtime: Runtime, plan: _Plan, tick: datetime) -> str:
    settings = runtime.settings
    async with runtime.work() as work:
        stored = await store_run(work.session, work.dialect, plan.window, work.now, plan.health)
        opened = resolved = activated = deactivated = 0
        for definition, health in plan.definitions:
            verdicts = await violations.judge(
                work,
                definition,
                health,
                now=tick,
                settings=settings.sla,
                webhook_url=definition.alert_webhook_url or settings.alert_webhook_url,
            )
            opened, resolved = opened + verdicts.opened, resolved + verdicts.resolved
        # A rule whose fallback has a rule of its own is judged after it (rules never form a cycle, so the one with
        # the shorter chain comes first), and against the model its requests would really reach.
        active = {r.primary_model: r.fallback_model for r, _, _ in plan.rules if r.active}
        for rule, primary, candidates in sorted(plan.rules, key=lambda judged: len(judged[2])):
            routes = resolve_routes({**active, rule.primary_model: rule.fallback_model})
            target = routes.get(rule.primary_model, rule.fallback_model)
            change = await failover.judge(work, rule.id, primary, candidates.get(target), now=tick, settings=settings)
            if change is Transition.ACTIVATED:
                activated += 1
                active[rule.primary_model] = rule.fallback_model
            elif change is Transition.DEACTIVATED:
                deactivated += 1
                active.pop(rule.primary_model, None)
        pruned = await prune_snapshots(work.session, tick - timedelta(days=settings.sla.health_retention_days))
    return (
        f"{len(plan.health)} provider/model(s), {sum(h.requests for h in plan.health)} requests"
        f"{'' if stored else ' (window already stored)'}; violations {opened} opened, {resolved} resolved; "
        f"failover {activated} on, {deactivated} off; {pruned} old run(s) pruned"
    )


async def _measure(session: AsyncSession, schema: LiteLLMSchema, end: datetime, health_minutes: int) -> _Plan:
    definitions = await list_definitions(session)
    rules = await list_rules(session)
    # Per provider and deployment: the health window and the definitions' windows (rules read by name, below).
    grouped = {health_minutes} | {d.evaluation_window_minutes for d in definitions}
    minutes = grouped | {r.evaluation_window_minutes for r in rules}
    windows = {m: Period(end - timedelta(minutes=m), end) for m in minutes}
    groups = {m: await measure(session, schema, windows[m]) for m in sorted(grouped)}

    async def combined(
        minutes: int, parts: list[Health], provider: str | None, label: tuple[str, str]
    ) -> Health | None:
        if len(parts) <= 1:
            return parts[0] if parts else None
        models = {h.model for h in parts}
        union = await measure(
            session, schema, windows[minutes], provider=provider, models=models, grouped=False, label=label
        )
        return union[0] if union else None

    judged_definitions = []
    for d in definitions:
        m = d.evaluation_window_minutes
        parts = [h for h in groups[m] if d.covers(h.provider, h.model)]
        judged_definitions.append((d, await combined(m, parts, d.provider, (d.provider or "*", d.model_pattern))))
    edges = {r.primary_model: r.fallback_model for r in rules}
    chains: dict[str, list[str]] = {}
    for rule in rules:
        chain = [rule.fallback_model]
        while chain[-1] in edges and edges[chain[-1]] not in (rule.primary_model, *chain):
            chain.append(edges[chain[-1]])
        chains[rule.id] = chain
    # What a rule routes is what clients ask for, so that is what it watches: the requests for its models by the
    # name asked (LiteLLM logs the deployment it called, e.g. openai/gpt-4o-2024-08-06 for gpt-4o, as `model`).
    # One query per rule window for every model the rules name.
    named: dict[int, set[str]] = {}
    for rule in rules:
        named.setdefault(rule.evaluation_window_minutes, set()).update((rule.primary_model, *chains[rule.id]))
    asked = {
        m: {h.model: h for h in await measure(session, schema, windows[m], requested=models)}
        for m, models in named.items()
    }
    judged_rules = []
    for rule in rules:
        seen = asked[rule.evaluation_window_minutes]
        figures: dict[str, Health | None] = {model: seen.get(model) for model in (rule.primary_model, *chains[rule.id])}
        primary = figures.pop(rule.primary_model)
        judged_rules.append((rule, primary, figures))
    return _Plan(windows[health_minutes], groups[health_minutes], judged_definitions, judged_rules)
