"""Admission at the gateway: which budgets a request falls under, and whether it may run.

The guide's flow, per budget and window: below the soft limit allow; from the soft limit (spend recorded plus
what is held for requests in flight) allow with a warning and an `approaching_limit` alert; at or past the hard
limit block (`budget_exceeded`); an estimate larger than what is left blocks (`request_exceeds_budget`). Every
window a request falls under is judged (a team's day and its month, each of its tags); every budget that crosses
a threshold raises its own alert, and a refusal names the binding budget — the one that frees up last — and
when it resets.

Budgets, recorded spend and feature switches live in memory and are refreshed in the background, so the common
case never waits for the database; reservations go through the ledger. A budget already exhausted in memory
refuses at once, before any token is counted. Counting is bounded by the prompt's size (past a size, an upper
bound from its length), so the failure mode — fail open or closed within ENFORCEMENT_TIMEOUT_MS — answers for a
database that does not answer, never for a big prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from aiodataloader import DataLoader
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from models.budgets import BudgetRow
from models.db import Database, insert_or_ignore
from models.ledger import SettlementRow
from models.litellm import LiteLLMSchema, verification_tokens
from models.types import whole_nanos
from resolvers.alerts import AlertDraft, AlertType, Severity, budget_dedupe_key, raise_alert
from resolvers.auth import MASTER_SUBJECT, Principal, Role, hash_key
from resolvers.budgets import BUDGET_TOPIC, Budget, EntityType, ledger_key, soft_limit_of
from resolvers.enforcement.ledger import Account, Claim, Ledger, Refusal, Reservation, SpendSeen, margin_z
from resolvers.instance.features import FEATURES_TOPIC, get_features
from resolvers.platform.config import Settings
from resolvers.platform.errors import InvalidInput
from resolvers.platform.events import Event, EventBus
from resolvers.platform.memo import cached
from resolvers.platform.periods import Period, Window
from resolvers.platform.work import Work
from resolvers.predictor import Counting, OutputHistory, Prediction, PredictionRequest, predict, unpriced_prediction
from resolvers.pricing import PriceBook
from resolvers.rollups import spend_to_date
from resolvers.spend import Scope, ScopeKind

log = logging.getLogger("spendplane.enforcement")

MASTER_KEY_MARKER = "litellm_proxy_master_key"  # what LiteLLM sends as the key hash for its master key
KEY_OWNER_TTL = timedelta(minutes=5)
KEY_OWNER_CACHE = 50_000
BUDGET_RELOAD_SECONDS = 15.0
#: budgetUpdated fires at most this often per budget when only its figures move.
FIGURES_EVERY = 1.0  # seconds
#: Events of budgets whose figures moved (spend, holds): only this process's subscribers hear them, since every
#: replica notices on its own refresh (no cross-replica traffic per spend row).
BUDGET_FIGURES_TOPIC = "budget-figures"
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: `rules` keys, as plain strings (looked up on every request).
_KEY, _USER, _TEAM, _END_USER, _TAG = (
    e.value for e in (EntityType.KEY, EntityType.USER, EntityType.TEAM, EntityType.END_USER, EntityType.TAG)
)
_GLOBAL = (EntityType.GLOBAL.value, None)
_DB_OUTAGE = (TimeoutError, OperationalError, InterfaceError, SQLAlchemyTimeout, OSError)


class Verdict(StrEnum):
    ALLOW = "allow"
    WARN = "warn"
    BLOCK = "block"


@dataclass(frozen=True)
class Caller:
    """Who is asking, as LiteLLM knows them. `key` may be a raw `sk-` key or its sha256."""

    key: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    end_user: str | None = None
    tags: tuple[str, ...] = ()

    @cached
    def key_hash(self) -> str | None:
        if not self.key or self.key == MASTER_KEY_MARKER:
            return None
        return _digest(self.key)

    def owned_by(self, user_id: str | None, team_id: str | None) -> Caller:
        """The same caller with its key's user and team filled in (its key's hash is not computed again)."""
        found = Caller(self.key, user_id, team_id, self.end_user, self.tags)
        if "key_hash" in self.__dict__:
            found.__dict__["key_hash"] = self.__dict__["key_hash"]
        return found


def spend_log_key(key: str | None, master_key: str | None) -> str:
    """The key as LiteLLM's spend logs name it: sha256 of the key; its master key logs as sha256(master key)."""
    if not key:
        return ""
    if key == MASTER_KEY_MARKER:
        return hash_key(master_key) if master_key else key
    return _digest(key)


def _digest(key: str) -> str:
    """A key's sha256 as LiteLLM stores it; a key given as its sha256 already is kept (never keep a raw key)."""
    return key if _HEX64.fullmatch(key) else hash_key(key)


@dataclass(frozen=True)
class Admission:
    caller: Caller
    model: str | None
    call_id: str
    messages: Sequence[Mapping[str, Any]] = ()
    prompt: str | None = None
    max_tokens: int | None = None
    #: A trusted caller (the gateway, authenticated by the webhook key) may send its own estimate.
    estimated_cost: Decimal | None = None
    #: A prompt given as token ids: that many input tokens.
    prompt_tokens: int = 0
    #: The gateway calls the model the decision names (a failover's fallback while a rule is on). False for one
    #: that cannot change the model (LiteLLM's Guardrail API): the model asked for runs, and is what is priced.
    routable: bool = True


@dataclass(frozen=True)
class BudgetRule:
    """A budget as enforcement sees it: a real budget, or the per-key default for a key without one."""

    key: str  # ledger key: "budget:<id>" or "key-default:<sha256>"
    budget_id: str | None
    name: str
    entity_type: str
    entity_id: str | None
    window: Window
    limit: Decimal
    soft_limit_percent: Decimal
    hard_limit_percent: Decimal
    alert_email: str | None
    #: The soft limit as set in USD (the first start's global budget), or None: limit x soft_limit_percent.
    soft_limit_usd: Decimal | None = None

    # Rules live as long as their budget and are consulted on every request: derive once.
    @cached
    def scope(self) -> Scope:
        return Scope(ScopeKind(self.entity_type), self.entity_id)

    @cached
    def hard_cap(self) -> Decimal:
        return whole_nanos(self.limit * self.hard_limit_percent)

    @cached
    def soft_cap(self) -> Decimal:
        return soft_limit_of(self.limit, self.soft_limit_percent, self.soft_limit_usd)

    @cached
    def summary(self) -> Mapping[str, Any]:
        """The budget as a gateway's answer names it (its figures beside): built once per rule, not per request. A
        reloaded budget is a new rule. Read-only: answers copy it."""
        return MappingProxyType(
            {
                "id": self.budget_id,
                "name": self.name,
                "entity_type": self.entity_type,
                "entity_id": self.entity_id,
                "period": self.window.cadence.value,
                "time_zone": self.window.time_zone,
                "limit": self.hard_cap,
            }
        )

    @classmethod
    def from_budget(cls, budget: Budget) -> BudgetRule:
        return cls(
            ledger_key(budget.id),
            budget.id,
            budget.name,
            budget.entity_type.value,
            budget.entity_id,
            budget.window,
            budget.limit,
            budget.soft_limit_percent,
            budget.hard_limit_percent,
            budget.alert_email,
            budget.soft_limit_usd,
        )

    def describe(self) -> str:
        window = "" if self.window.is_default_month else f"{self.window.describe()} "
        if self.entity_type == "global":
            return f"{window}global budget '{self.name}'"
        return f"{window}{self.entity_type.replace('_', ' ')} budget '{self.name}' ({self.entity_id})"


_BASIS_POINT = Decimal("0.0001")


@dataclass(frozen=True)
class BudgetCheck:
    rule: BudgetRule
    period: Period
    spend: Decimal  # recorded + settled-but-not-yet-logged, in this window
    #: Held for requests in flight (this instance's, and as of the last refresh every other one's).
    reserved: Decimal = Decimal(0)

    @cached
    def remaining(self) -> Decimal:
        return max(Decimal(0), self.rule.hard_cap - self.spend)

    @cached
    def utilization(self) -> Decimal:
        return (self.spend / self.rule.limit).quantize(_BASIS_POINT)

    @property
    def exceeded(self) -> bool:
        return self.spend >= self.rule.hard_cap

    @property
    def approaching(self) -> bool:
        return self.spend + self.reserved >= self.rule.soft_cap

    @property
    def resets_at(self) -> datetime:
        return self.period.end


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    call_id: str
    model: str | None
    message: str | None = None
    alert_type: AlertType | None = None
    budget: BudgetCheck | None = None  # the budget that decided: the binding block, or the first warning
    checks: tuple[BudgetCheck, ...] = ()
    #: Every budget that blocks this request (the binding one first), or that it warns about.
    crossed: tuple[BudgetCheck, ...] = ()
    estimated_cost: Decimal = Decimal(0)
    #: What was (or would be) held for the request: the estimate, or a conservative one for unpriced models.
    held_cost: Decimal = Decimal(0)
    #: Pooled holds: the held cost's variance (USD squared); each budget holds z x sqrt(sum) beside the holds.
    held_variance: Decimal = Decimal(0)
    prediction: Prediction | None = None
    price_missing: bool = False
    enforced: bool = True
    degraded: bool = False  # the database did not answer in time; the failure mode decided
    #: What is left of the binding budget when a request does not fit (the ledger's figure when it refused).
    left: Decimal | None = None
    #: Pooled holds: what the binding budget's margin would have grown by had the request been admitted.
    margin: Decimal = Decimal(0)
    #: The caller with its key's user and team filled in (None when the decision came before the look-up).
    caller: Caller | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.BLOCK

    @property
    def resets_at(self) -> datetime | None:
        return self.budget.resets_at if self.budget is not None else None


@dataclass(frozen=True)
class _Estimate:
    """What a request is expected to cost and what it holds (`Decision`'s fields of the same names)."""

    estimated_cost: Decimal = Decimal(0)
    held_cost: Decimal = Decimal(0)
    held_variance: Decimal = Decimal(0)
    prediction: Prediction | None = None
    price_missing: bool = False


@dataclass(frozen=True)
class BudgetFit:
    remaining: Decimal | None  # what the tightest budget still allows
    within: bool
    warning: str | None
    decision: Decision
    #: The checks whose figures the key's holder may see (its own key, user and team budgets).
    shown: tuple[BudgetCheck, ...] = ()


@dataclass(frozen=True)
class _Loaders:
    owners: DataLoader[str, _KeyOwner]
    spend: DataLoader[tuple[Scope, Period], Decimal]


@dataclass(frozen=True)
class _KeyOwner:
    exists: bool
    user_id: str | None
    team_id: str | None
    expires_at: datetime


@dataclass
class Enforcer:
    settings: Settings
    db: Database
    schema: LiteLLMSchema
    bus: EventBus
    prices: PriceBook
    history: OutputHistory
    ledger: Ledger
    clock: Callable[[], datetime]
    #: The runtime's unit of work (a transaction whose events are published after commit), for alerts.
    unit_of_work: Callable[[], AbstractAsyncContextManager[Work]]
    #: Where the gateway counts big prompts (its own threads: a flood of /predict cannot queue ahead of it).
    counting: Counting = field(default_factory=lambda: Counting("gateway", workers=2, queue=64))
    #: Budgets by (entity type, entity id): one per period.
    rules: dict[tuple[str, str | None], tuple[BudgetRule, ...]] = field(default_factory=dict)
    #: Recorded spend by (scope, window key).
    spend: dict[tuple[Scope, str], Decimal] = field(default_factory=dict)
    enforcement_enabled: bool = True
    _key_owners: OrderedDict[str, _KeyOwner] = field(default_factory=OrderedDict)
    _active_keys: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _raised: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _loader_set: _Loaders | None = None
    _claims: dict[tuple[str, datetime, Decimal], Claim] = field(default_factory=dict)
    #: The last claim of each rule object, with the rule and period it was made for (`_claim`'s fast path: the
    #: objects kept, so an id is never taken over while its entry lives).
    _claim_of_rule: dict[int, tuple[BudgetRule, Period, Claim]] = field(default_factory=dict)
    _default_rules: dict[str, BudgetRule] = field(default_factory=dict)
    #: What budgetUpdated last said of each budget's figures, and when (coalescing).
    _published: dict[str, tuple[Decimal, Decimal, str]] = field(default_factory=dict)
    _published_at: dict[str, float] = field(default_factory=dict)
    #: Active failover routes, primary model -> fallback model (kept up to date by SLA monitoring).
    routes: dict[str, str] = field(default_factory=dict)
    #: A budget or a switch changed (this instance's write, or another's by LISTEN/NOTIFY): the next decision
    #: reloads before it decides, so a limit cut binds it.
    _stale: bool = False
    _reloading: asyncio.Task[None] | None = None
    #: Counts the reloads that brought new budgets (a decision begun before one adopts its hold into them).
    _generation: int = 0
    _master_hashed: tuple[str | None, str | None] = (None, None)

    def __post_init__(self) -> None:
        for topic in (BUDGET_TOPIC, FEATURES_TOPIC):
            self.bus.on(topic, self._mark_stale)

    def _mark_stale(self, event: Event) -> None:
        self._stale = True

    @property
    def _outdated(self) -> bool:
        return self._stale or (self._reloading is not None and not self._reloading.done())

    async def _current(self) -> None:
        """Reload budgets now if they changed since the last load (one reload for every waiting decision), or
        wait for the reload already under way."""
        while self._outdated:
            if self._reloading is None or self._reloading.done():
                self._stale = False  # a change during the reload marks it again
                self._reloading = asyncio.create_task(self.reload_budgets())
            await asyncio.shield(self._reloading)

    # ---------------------------------------------------------------------------------------------- state

    async def load(self) -> None:
        """Budgets, feature switches and recorded spend, read once at start-up and then refreshed."""
        await self.reload_budgets()
        await self.refresh_spend()

    async def refresh(self) -> None:
        """Everything the background loop does, at once (start-up, tests, after a burst of settlements)."""
        await self.reload_budgets()
        await self.apply_settlements()
        await self.refresh_spend()

    async def reload_budgets(self) -> None:
        async with self.db.reader() as session:
            rows = (await session.scalars(select(BudgetRow))).all()
            features = await get_features(session)
        rules: dict[tuple[str, str | None], list[BudgetRule]] = {}
        for row in rows:
            rule = BudgetRule.from_budget(Budget.from_row(row))
            rules.setdefault((rule.entity_type, rule.entity_id), []).append(rule)
        known = {(r.key, r.entity_type, r.entity_id) for group in self.rules.values() for r in group}
        self.rules = {k: tuple(v) for k, v in rules.items()}
        self.enforcement_enabled = features.budget_enforcement_enabled
        # No await between the new rules and this: a hold made before them is adopted here, one made after holds
        # on them (or, its decision begun before them, is adopted by `_judge`).
        new = [r for group in self.rules.values() for r in group if (r.key, r.entity_type, r.entity_id) not in known]
        if new:
            self._generation += 1
            adopted = self._adopt(new)
            try:
                await self.ledger.persist(adopted)
            except (SQLAlchemyError, OSError) as exc:  # the next reconcile writes them
                log.warning("could not write the allowances of new budgets' holds yet: %s", exc)

    def _adopt(self, rules: Sequence[BudgetRule], reservations: Iterable[Reservation] | None = None) -> list[Account]:
        """Budgets new to this instance count the open holds of requests they cover (`Ledger.adopt`)."""
        now = self.clock()
        wanted = [(self._claim(r, r.window.period_at(now)), _covering(r)) for r in rules]
        return self.ledger.adopt(wanted, reservations)

    def _periods(self, rules: Sequence[BudgetRule], now: datetime) -> dict[BudgetRule, Period]:
        return {rule: rule.window.period_at(now) for rule in rules}

    async def refresh_spend(self) -> None:
        """Recorded spend in the current window of every budget (and active key's default budget), and — read in
        the same snapshot — which held requests' spend it already contains; then the ledger drops exactly those
        holds, so no spend is ever missing from both."""
        now = self.clock()
        rules = [r for group in self.rules.values() for r in group]
        rules += [self._default_key_rule(k, touch=False) for k in list(self._active_keys)]
        periods = self._periods(rules, now)
        by_period: dict[Period, set[Scope]] = {}
        for rule, period in periods.items():
            by_period.setdefault(period, set()).add(rule.scope)
        found: dict[tuple[Scope, str], Decimal] = {}
        async with self.db.reader() as session:  # one snapshot (see models.db)
            for period, scopes in by_period.items():
                spent = await spend_to_date(session, self.schema, scopes, period, now)
                found.update({(scope, period.key): usd for scope, usd in spent.items()})
            visible = await self.ledger.visible_spend(session)
            elsewhere = await self.ledger.others_held(session)
        self.spend = found
        await self.ledger.reconcile(visible, elsewhere)
        self._publish_figures(rules, periods)

    def _publish_figures(self, rules: Sequence[BudgetRule], periods: Mapping[BudgetRule, Period]) -> None:
        """budgetUpdated for every stored budget whose spend or in-flight holds moved, at most once a second (of
        real time: coalescing is about subscribers' load, whatever the service's clock says)."""
        now = time.monotonic()
        for rule in rules:
            if rule.budget_id is None:
                continue
            period = periods[rule]
            figures = (self._spend_of(rule, period), self.ledger.in_flight_for((rule.key, period.key)), period.key)
            last = self._published.get(rule.budget_id)
            if last == figures:
                continue
            if last is None and not figures[1]:
                # First sight (start-up, a new budget) with nothing in flight: its creation was announced already,
                # with this spend. A hold made before the first refresh saw the budget was not: it is news.
                self._published[rule.budget_id] = figures
                continue
            if now - self._published_at.get(rule.budget_id, -math.inf) < FIGURES_EVERY:
                continue
            self._published[rule.budget_id], self._published_at[rule.budget_id] = figures, now
            self.bus.deliver(Event(BUDGET_FIGURES_TOPIC, {"id": rule.budget_id, "change": "figures"}))

    async def run_background(self, stop: asyncio.Event) -> None:
        """Refresh spend, settle and reconcile every SPEND_REFRESH_SECONDS; reload budgets on their events."""
        last_budget_reload = self.clock()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.spend_refresh_seconds)
            try:
                if (self.clock() - last_budget_reload).total_seconds() >= BUDGET_RELOAD_SECONDS:
                    await self.reload_budgets()
                    last_budget_reload = self.clock()
                await self.apply_settlements()
                await self.refresh_spend()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("enforcement refresh failed (will retry): %s", exc)

    async def watch_changes(self, stop: asyncio.Event) -> None:
        """Budgets and switches changed through this (or, with a shared bus, any) instance: reload at once."""

        async def follow(topic: str) -> None:
            async with self.bus.subscribe(topic) as events:
                async for _ in events:
                    try:
                        await self._current()
                    except (SQLAlchemyError, OSError) as exc:
                        self._stale = True  # the next decision tries again
                        log.warning("reloading budgets failed: %s", exc)

        tasks = [asyncio.create_task(follow(t)) for t in (BUDGET_TOPIC, FEATURES_TOPIC)]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def apply_settlements(self) -> None:
        """Settle our holds from settlements another instance's ingestion stored."""
        await self.ledger.apply_settlements()

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.counting.close()
        try:
            await self.ledger.close()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not hand allowances back at shutdown (they expire on their own): %s", exc)

    # ---------------------------------------------------------------------------------------------- deciding

    async def admit(self, request: Admission) -> Decision:
        """The pre-request decision; an allowed request holds its estimate until its spend arrives."""
        return await self._decide(request, reserve=True)

    async def check(self, request: Admission) -> Decision:
        """The same decision without reserving anything (budget checks, the predictor's within_budget)."""
        return await self._decide(request, reserve=False)

    async def fits(self, caller: Caller, model: str | None, cost: Decimal) -> BudgetFit:
        """Would a request of this cost fit the caller's budgets now? (The predictor's within_budget, the budget
        check.) The answer is for the key's holder: figures and names of its own key, user and team budgets only;
        a budget outside that scope (the global one, a tag's, another team's) decides like any other but is
        described without its name or figures (`explain`)."""
        decision = await self.check(Admission(caller, model, f"check-{uuid.uuid4()}", estimated_cost=cost))
        viewer = await self.holder(decision.caller or caller)
        shown = [c for c in decision.checks if viewer.can_see(c.rule.entity_type, c.rule.entity_id)]
        judged = {c.rule for c in decision.checks}
        unjudged = [
            r
            for r in self.rules_for(Caller(viewer.key_hash, viewer.user_id, viewer.team_id))
            if r not in judged and viewer.can_see(r.entity_type, r.entity_id)
        ]
        if unjudged:  # refused from memory before its own budgets were read: read them for their figures
            with contextlib.suppress(*_DB_OUTAGE):
                async with asyncio.timeout(self.settings.enforcement_timeout_ms / 1000):
                    shown.extend(await self._checks(unjudged))
        tightest = min(shown, key=lambda c: c.remaining, default=None)
        return BudgetFit(
            remaining=tightest.remaining if tightest else None,
            within=decision.allowed,
            warning=explain(decision, viewer) if decision.verdict is not Verdict.ALLOW else None,
            decision=decision,
            shown=tuple(shown),
        )

    async def told_to_holder(self, decision: Decision, caller: Caller) -> str | None:
        """The decision in words for the request's key holder, the gateway's client: what LiteLLM relays to it
        (the plugin's 429, the guardrail's `blocked_reason`). `explain` with the holder as viewer: a budget outside
        the key's scopes (key, user, team) is named without name or figures. None for a plain allow."""
        if decision.message is None:
            return None
        return explain(decision, await self.holder(decision.caller or caller))

    async def holder(self, caller: Caller) -> Principal:
        """The read-only principal of the key's holder: the scopes whose figures it may see.

        LiteLLM's master key has no key row (no user or team of its own) and its holder is the proxy's admin: it
        sees the global budget and every budget the request names (its user, team, end user and tags), i.e. every
        budget the request is judged against, never "a budget outside this key's scope"."""
        if self.is_master_key(caller):
            named = {(_USER, caller.user_id), (_TEAM, caller.team_id), (_END_USER, caller.end_user)}
            named |= {(_TAG, tag) for tag in caller.tags if (_TAG, tag) in self.rules}
            scopes = frozenset({_GLOBAL, *((kind, name) for kind, name in named if name)})
            return Principal(Role.VIEWER, MASTER_SUBJECT, caller.user_id, caller.team_id, None, scopes=scopes)
        if caller.key_hash is not None and not (caller.user_id and caller.team_id):
            with contextlib.suppress(*_DB_OUTAGE):  # unresolved: fewer scopes shown, never more
                async with asyncio.timeout(self.settings.enforcement_timeout_ms / 1000):
                    caller = await self._resolve(caller)
        return Principal(Role.VIEWER, "key", caller.user_id, caller.team_id, caller.key_hash)

    async def _decide(self, request: Admission, *, reserve: bool) -> Decision:
        # A failover's fallback is what will run, and what is priced (where the gateway can call it).
        model = self.route(request.model) if request.routable else request.model
        loop = asyncio.get_running_loop()
        budget_seconds = self.settings.enforcement_timeout_ms / 1000
        caller = request.caller
        if self._outdated:  # budgets or switches changed: decide on the new ones (bounded like any database wait)
            try:
                async with asyncio.timeout(self.settings.enforcement_timeout_ms / 1000):
                    await self._current()
            except _DB_OUTAGE:
                return self._degraded(request, model, self.enforcement_enabled)
        # The switch is read once, after the reload: a switch flipped anywhere binds this very decision, and a
        # reload finishing while it awaits does not change its mind halfway (`_exhausted` and `_judge` read it
        # from the decision).
        enforced = self.enforcement_enabled
        generation = self._generation
        try:
            # Usually the key's owner and every budget's spend are in memory: then nothing is awaited, no timer.
            resolved = self._resolved_in_memory(caller)
            checks = None if resolved is None else self._checks_in_memory(self.rules_for(resolved))
            if checks is None:
                # The database will be asked; a budget exhausted as far as memory knows refuses first, at once: no
                # token counted, no database asked. (With everything in memory, `_exhausted` below does that.)
                known = self._known_checks(self.rules_for(caller))
                if any(c.exceeded for c in known):
                    early = self._exhausted(
                        Decision(Verdict.ALLOW, request.call_id, model, checks=known, enforced=enforced), caller
                    )
                    if early is not None:
                        return early
            # The deadline is the database's: looking up the key's owner and a scope's first spend.
            started = loop.time()
            if resolved is None:
                async with asyncio.timeout_at(started + budget_seconds):
                    resolved = await self._resolve(caller)
            caller = resolved
            if checks is None:
                rules = self.rules_for(caller)
                checks = self._checks_in_memory(rules)
                if checks is None:
                    async with asyncio.timeout_at(started + budget_seconds):
                        checks = await self._checks(rules)
            spent_waiting = loop.time() - started
            if any(c.exceeded for c in checks):
                decided = Decision(
                    Verdict.ALLOW, request.call_id, model, checks=checks, enforced=enforced, caller=caller
                )
                exhausted = self._exhausted(decided, caller)
                if exhausted is not None:  # refused from memory: nothing to count, nothing to ask
                    return exhausted
            # Counting is bounded by the prompt's size, not by the deadline: a big prompt is never "degraded".
            estimate = await self._estimate(request, model)
            decision = Decision(
                Verdict.ALLOW,
                request.call_id,
                model,
                checks=checks,
                enforced=enforced,
                caller=caller,
                estimated_cost=estimate.estimated_cost,
                held_cost=estimate.held_cost,
                held_variance=estimate.held_variance,
                prediction=estimate.prediction,
                price_missing=estimate.price_missing,
            )
            judged = await self._judge(decision, caller, reserve, max(0.05, budget_seconds - spent_waiting))
            if reserve and generation != self._generation and judged.allowed:
                self._adopt_late(caller, request.call_id)
            return judged
        except _DB_OUTAGE as exc:
            log.warning(
                "budget check degraded (%s): failing %s", type(exc).__name__, self.settings.enforcement_failure_mode
            )
            return self._degraded(request, model, enforced)
        except Exception:  # a defect, not an outage: say so loudly, but the gateway still gets its answer
            log.exception("budget check failed unexpectedly: failing %s", self.settings.enforcement_failure_mode)
            return self._degraded(request, model, enforced)

    def _degraded(self, request: Admission, model: str | None, enforced: bool) -> Decision:
        mode = self.settings.enforcement_failure_mode
        return Decision(
            Verdict.BLOCK if mode == "closed" else Verdict.ALLOW,
            request.call_id,
            model,
            message=f"the budget service could not decide in time; failing {mode}",
            estimated_cost=request.estimated_cost or Decimal(0),
            enforced=enforced,
            degraded=True,
        )

    def route(self, model: str | None) -> str | None:
        """The model to call: the one asked for, or its fallback while a failover rule is active for it."""
        return self.routes.get(model, model) if model is not None else None

    async def _estimate(self, request: Admission, model: str | None) -> _Estimate:
        if request.estimated_cost is not None:
            return _Estimate(request.estimated_cost, request.estimated_cost)
        if model is None:
            return _Estimate()
        wanted = PredictionRequest(model, request.messages, request.prompt, request.max_tokens, request.prompt_tokens)
        quantile = self.settings.reservation_quantile
        pooled = self.settings.reservation_margin == "pooled"
        try:
            prediction = await predict(
                self.prices, self.history, wanted, quantile=quantile, counting=self.counting, pooled=pooled
            )
        except InvalidInput:
            # No price: held at a conservative price (UNPRICED_MODEL_PRICE) and at least the range's high end.
            prediction = await unpriced_prediction(
                self.prices,
                self.history,
                wanted,
                self.settings.unpriced_model_price,
                quantile=quantile,
                counting=self.counting,
            )
            return _Estimate(
                prediction.total_cost,
                max(prediction.total_cost_high, prediction.held_cost),
                prediction=prediction,
                price_missing=True,
            )
        # The hold is the chosen quantile of the predicted cost (RESERVATION_QUANTILE), not the median estimate:
        # per request, or (pooled) the mean with its variance, each budget holding a margin over its requests.
        return _Estimate(prediction.total_cost, prediction.held_cost, prediction.held_variance, prediction)

    def _exhausted(self, decision: Decision, caller: Caller) -> Decision | None:
        exceeded = [c for c in decision.checks if c.exceeded]
        if not exceeded:
            return None
        for check in exceeded:
            self._alert(AlertType.BUDGET_EXCEEDED, check, caller)
        for check in decision.checks:
            if check.approaching and not check.exceeded:
                self._alert(AlertType.APPROACHING_LIMIT, check, caller)
        if not decision.enforced:
            return None
        binding = _binding(exceeded)
        return _explained(
            replace(
                decision,
                verdict=Verdict.BLOCK,
                alert_type=AlertType.BUDGET_EXCEEDED,
                budget=binding,
                crossed=(binding, *[c for c in exceeded if c is not binding]),
            )
        )

    async def _judge(self, decision: Decision, caller: Caller, reserve: bool, seconds: float) -> Decision:
        """Warn, refuse or hold; a hold that must ask the database waits at most `seconds` (TimeoutError)."""
        checks = decision.checks
        warnings = [c for c in checks if c.approaching]
        for check in warnings:
            self._alert(AlertType.APPROACHING_LIMIT, check, caller)
        held = decision.held_cost
        if decision.enforced and held > 0:
            short = [c for c in checks if held > c.remaining]
            refusal: Refusal | None = None
            if not short:
                claims = [self._claim(c.rule, c.period) for c in checks]
                variance = decision.held_variance
                ledger = self.ledger
                if reserve:
                    owner = self._owner(caller)
                    identity = self.identity(caller)
                    # Held at once when every allowance has it free; else `reserve` refuses from memory (a budget
                    # the database said is exhausted) or asks the database for more.
                    if not ledger.try_hold(decision.call_id, held, claims, owner, variance, identity):
                        async with asyncio.timeout(seconds):
                            refusal = await ledger.reserve(decision.call_id, held, claims, owner, variance, identity)
                else:  # a check holds nothing, but judges like a hold: after every hold in flight
                    refusal = ledger.known_exhausted(claims, held, variance) or self._short_after_holds(
                        checks, claims, held, variance
                    )
                short = [c for c in checks if refusal and c.rule.key == refusal.claim.budget_key]
            if short:
                binding = _binding(short)
                for check in short:
                    self._alert(AlertType.REQUEST_EXCEEDS_BUDGET, check, caller)
                return _explained(
                    replace(
                        decision,
                        verdict=Verdict.BLOCK,
                        alert_type=AlertType.REQUEST_EXCEEDS_BUDGET,
                        budget=binding,
                        crossed=(binding, *[c for c in short if c is not binding]),
                        left=refusal.available if refusal else binding.remaining,
                        margin=refusal.margin if refusal else Decimal(0),
                    )
                )
        if warnings:
            return _explained(
                replace(
                    decision,
                    verdict=Verdict.WARN,
                    alert_type=AlertType.APPROACHING_LIMIT,
                    budget=warnings[0],
                    crossed=tuple(warnings),
                )
            )
        return decision

    def _short_after_holds(
        self, checks: Sequence[BudgetCheck], claims: Sequence[Claim], held: Decimal, variance: Decimal
    ) -> Refusal | None:
        """The first budget whose hold this request would not fit next to the holds in flight (this instance's, and
        as of the last refresh every other one's, the pooled margin with them): what is left is the hard limit less
        the spend and `reserved`, which `reserve` would find too, without asking the database for more."""
        for check, claim in zip(checks, claims, strict=True):
            available = max(Decimal(0), check.remaining - check.reserved)
            need = self.ledger.need(claim, held, variance)
            if need > available:
                return Refusal(claim, available, need - held)
        return None

    def _checks_in_memory(self, rules: list[BudgetRule]) -> tuple[BudgetCheck, ...] | None:
        """`_checks` when every rule's current window has its spend in memory (the common case); else None."""
        now = self.clock()
        spend, ledger = self.spend, self.ledger
        checks = []
        for rule in rules:
            period = rule.window.period_at(now)
            recorded = spend.get((rule.scope, period.key))
            if recorded is None:
                return None
            pending, in_flight = ledger.figures_for((rule.key, period.key))
            checks.append(BudgetCheck(rule, period, recorded + pending, in_flight))
        return tuple(checks)

    def _known_checks(self, rules: list[BudgetRule]) -> tuple[BudgetCheck, ...]:
        """The rules whose current window's spend is in memory, judged on it."""
        now = self.clock()
        spend, pending_for = self.spend, self.ledger.pending_for
        checks = []
        for rule in rules:
            period = rule.window.period_at(now)
            recorded = spend.get((rule.scope, period.key))
            if recorded is not None:
                checks.append(BudgetCheck(rule, period, recorded + pending_for((rule.key, period.key))))
        return tuple(checks)

    async def _checks(self, rules: list[BudgetRule]) -> tuple[BudgetCheck, ...]:
        """Each rule in its current window, with its spend. A window seen for the first time (a new key, a budget
        created on another replica, a day that just began) is read now, not at the next refresh, so its first
        request is judged on its real spend; concurrent first requests share one query (a data loader)."""
        now = self.clock()
        periods = self._periods(rules, now)
        missing = list({(r.scope, p) for r, p in periods.items() if (r.scope, p.key) not in self.spend})
        if missing:
            found = await self._loaders().spend.load_many(missing)
            self.spend = {
                **self.spend,
                **{(scope, period.key): usd for (scope, period), usd in zip(missing, found, strict=True)},
            }
        return tuple(
            BudgetCheck(r, p, self._spend_of(r, p), self.ledger.in_flight_for((r.key, p.key)))
            for r, p in periods.items()
        )

    async def _load_spend(self, wanted: list[tuple[Scope, Period]]) -> list[Decimal]:
        by_period: dict[Period, set[Scope]] = {}
        for scope, period in wanted:
            by_period.setdefault(period, set()).add(scope)
        found: dict[tuple[Scope, Period], Decimal] = {}
        async with self.db.reader() as session:
            now = self.clock()
            for period, scopes in by_period.items():
                spent = await spend_to_date(session, self.schema, scopes, period, now)
                found.update({(scope, period): usd for scope, usd in spent.items()})
        return [found[item] for item in wanted]

    def _spend_of(self, rule: BudgetRule, period: Period) -> Decimal:
        recorded = self.spend.get((rule.scope, period.key), Decimal(0))
        return recorded + self.ledger.pending_for((rule.key, period.key))

    def _claim(self, rule: BudgetRule, period: Period) -> Claim:
        # Every decision asks for each of its budgets: the same rule and period objects as last time, almost always.
        last = self._claim_of_rule.get(id(rule))
        if last is not None and last[0] is rule and last[1] is period:
            return last[2]
        claim = self._claim_for(rule, period)
        if len(self._claim_of_rule) > KEY_OWNER_CACHE:
            self._claim_of_rule.clear()
        self._claim_of_rule[id(rule)] = (rule, period, claim)
        return claim

    def _claim_for(self, rule: BudgetRule, period: Period) -> Claim:
        """One Claim object per budget key, window and hard limit: the ledger tells a changed limit by a new one."""
        key = (rule.key, period.start, rule.hard_cap)
        claim = self._claims.get(key)
        if claim is None:
            if len(self._claims) > KEY_OWNER_CACHE:
                self._claims.clear()
            stored = rule.hard_limit_percent if rule.budget_id is not None else None
            claim = self._claims[key] = Claim(rule.key, rule.scope, period, rule.hard_cap, stored)
        return claim

    def rules_for(self, caller: Caller) -> list[BudgetRule]:
        found: list[BudgetRule] = []
        rules = self.rules
        key = caller.key_hash
        if key is not None and key != self._master_hash():
            explicit = rules.get((_KEY, key))
            if explicit:
                found.extend(explicit)
            elif self.settings.default_key_budget > 0:
                found.append(self._default_key_rule(key))
        for entity_type, entity_id in ((_USER, caller.user_id), (_TEAM, caller.team_id), (_END_USER, caller.end_user)):
            if entity_id:
                found.extend(rules.get((entity_type, entity_id), ()))
        if caller.tags:  # every tag, each once: the spend logs count a request against every tag it carries
            for tag in dict.fromkeys(caller.tags):
                if tag:
                    found.extend(rules.get((_TAG, tag), ()))
        found.extend(rules.get(_GLOBAL, ()))
        return found

    def identity(self, caller: Caller) -> tuple[str, ...]:
        """What `rules_for` matches a caller on, kept with its hold: the key's hash ('' for none, or the master
        key), its user, team and end user ('' for none), then its tags. Strings only: the collector tracks none."""
        key = caller.key_hash
        if key is None or key == self._master_hash():
            key = ""
        return (key, caller.user_id or "", caller.team_id or "", caller.end_user or "", *caller.tags)

    def _adopt_late(self, caller: Caller, call_id: str) -> None:
        """The decision began before a reload brought new budgets and held after it, on the budgets it read
        first: its hold counts on the new ones it falls under too."""
        reservation = self.ledger.last_hold
        if reservation is None or reservation.call_id != call_id or reservation.identity != self.identity(caller):
            return
        missing = [r for r in self.rules_for(caller) if r.budget_id is not None]
        self._adopt(missing, (reservation,))

    def _default_key_rule(self, key_hash: str, *, touch: bool = True) -> BudgetRule:
        if touch:
            if key_hash not in self._active_keys:
                self._active_keys[key_hash] = None
                while len(self._active_keys) > KEY_OWNER_CACHE:
                    dropped, _ = self._active_keys.popitem(last=False)
                    self._default_rules.pop(dropped, None)
            else:
                self._active_keys.move_to_end(key_hash)
        rule = self._default_rules.get(key_hash)
        if rule is None:
            rule = self._default_rules[key_hash] = self._new_default_rule(key_hash)
        return rule

    def _new_default_rule(self, key_hash: str) -> BudgetRule:
        return BudgetRule(
            f"key-default:{key_hash}",
            None,
            "Per-key default",
            EntityType.KEY.value,
            key_hash,
            Window(),
            self.settings.default_key_budget,
            self.settings.soft_limit_threshold,
            self.settings.hard_limit_threshold,
            None,
        )

    def is_master_key(self, caller: Caller) -> bool:
        """The request was made with LiteLLM's master key: LiteLLM's marker for it, or (custom auth) its sha256."""
        if caller.key == MASTER_KEY_MARKER:
            return True
        key = caller.key_hash
        return key is not None and key == self._master_hash()

    def _master_hash(self) -> str | None:
        master = self.settings.litellm_master_key
        if not master:
            return None
        if self._master_hashed[0] != master:  # hashed once, not on every request
            self._master_hashed = (master, hash_key(master))
        return self._master_hashed[1]

    def _owner(self, caller: Caller) -> str:
        """`spend_log_key` of the caller's key, from its hash when it has one (computed once per request)."""
        if caller.key == MASTER_KEY_MARKER:
            return self._master_hash() or caller.key
        return caller.key_hash or ""

    def _resolved_in_memory(self, caller: Caller) -> Caller | None:
        """`_resolve` when it needs no database read (the caller named its user and team, or its key's owner is
        cached); else None."""
        key = caller.key_hash
        if key is None or (caller.user_id and caller.team_id):
            return caller
        owner = self._key_owners.get(key)
        if owner is None or owner.expires_at < self.clock():
            return None
        return caller.owned_by(caller.user_id or owner.user_id, caller.team_id or owner.team_id)

    async def _resolve(self, caller: Caller) -> Caller:
        """Fill in the key's user and team from LiteLLM's key table when the caller did not send them."""
        key = caller.key_hash
        if key is None or (caller.user_id and caller.team_id):
            return caller
        owner = await self.key_owner(key)
        return caller.owned_by(caller.user_id or owner.user_id, caller.team_id or owner.team_id)

    async def key_owner(self, key_hash: str) -> _KeyOwner:
        """The key's row in LiteLLM's key table (cached for a few minutes; `exists` is False when unknown)."""
        now = self.clock()
        cached = self._key_owners.get(key_hash)
        if cached is not None and cached.expires_at >= now:
            return cached
        found: _KeyOwner = await self._loaders().owners.load(key_hash)
        self._key_owners[key_hash] = found
        while len(self._key_owners) > KEY_OWNER_CACHE:
            self._key_owners.popitem(last=False)
        return found

    async def _load_owners(self, keys: list[str]) -> list[_KeyOwner]:
        expires = self.clock() + KEY_OWNER_TTL
        rows: dict[str, tuple[str | None, str | None]] = {}
        if self.schema.has_table(verification_tokens):
            t = verification_tokens.c
            async with self.db.reader() as session:
                result = await session.execute(select(t.token, t.user_id, t.team_id).where(t.token.in_(keys)))
                rows = {token: (user, team) for token, user, team in result.all()}
        return [_KeyOwner(k in rows, *rows.get(k, (None, None)), expires) for k in keys]

    def _loaders(self) -> _Loaders:
        if self._loader_set is None:  # created on the running loop, on first use
            self._loader_set = _Loaders(
                owners=DataLoader(self._load_owners, cache=False, max_batch_size=500),
                spend=DataLoader(self._load_spend, cache=False, max_batch_size=500),
            )
        return self._loader_set

    # ---------------------------------------------------------------------------------------------- alerts

    def _alert(self, kind: AlertType, check: BudgetCheck, caller: Caller) -> None:
        """Raise once per budget, type and window, in the background: the request never waits for it."""
        rule = check.rule
        dedupe = budget_dedupe_key(rule.budget_id or rule.key, kind, check.period.start)
        if dedupe in self._raised:
            return
        self._raised.add(dedupe)
        severity = {AlertType.BUDGET_EXCEEDED: Severity.CRITICAL, AlertType.APPROACHING_LIMIT: Severity.WARNING}.get(
            kind, Severity.INFO
        )
        message = {
            AlertType.APPROACHING_LIMIT: f"{rule.describe()} passed its soft limit: {_usd(check.spend)} of "
            f"{_usd(rule.limit)} ({check.utilization * 100:.1f}%)"
            + (f", {_usd(check.reserved)} more in flight" if check.reserved else ""),
            AlertType.BUDGET_EXCEEDED: f"{rule.describe()} reached its hard limit: {_usd(check.spend)} of "
            f"{_usd(rule.hard_cap)}; requests are blocked until {check.resets_at.isoformat()}"
            if self.enforcement_enabled
            else f"{rule.describe()} reached its hard limit: {_usd(check.spend)} of {_usd(rule.hard_cap)} "
            "(enforcement is off: requests still run)",
            AlertType.REQUEST_EXCEEDS_BUDGET: f"a request did not fit in what is left of {rule.describe()}",
        }.get(kind, rule.describe())
        # An alert names the entity's team and user where they are known, so a team's alert feed shows its
        # members' budgets too (the guide's GET /alerts?team_id=...).
        team_id = rule.entity_id if rule.entity_type == "team" else caller.team_id
        user_id = rule.entity_id if rule.entity_type == "user" else caller.user_id
        if rule.entity_type in ("global", "tag"):
            team_id = user_id = None
        draft = AlertDraft(
            type=kind,
            severity=severity,
            message=message,
            dedupe_key=dedupe,
            budget_id=rule.budget_id,
            entity_type=rule.entity_type,
            entity_id=rule.entity_id,
            team_id=team_id,
            user_id=user_id,
            spend=check.spend,
            limit=rule.hard_cap if kind is not AlertType.APPROACHING_LIMIT else rule.limit,
            details={
                "budget_key": rule.key,
                "limit": str(rule.limit),
                "monthly_limit": str(rule.limit),
                "soft_limit_percent": str(rule.soft_limit_percent),
                "hard_limit_percent": str(rule.hard_limit_percent),
                "budget_period": rule.window.cadence.value,
                "time_zone": rule.window.time_zone,
                "period": rule.window.period_name(check.period),
                "period_start": check.period.start.isoformat(),
                "period_end": check.period.end.isoformat(),
                "reserved": str(check.reserved),
            },
            # The guide notifies by email at the soft and the hard limit; a refused request is only recorded.
            emails=(rule.alert_email,) if rule.alert_email and kind is not AlertType.REQUEST_EXCEEDS_BUDGET else (),
        )
        task = asyncio.create_task(self._store_alert(draft))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store_alert(self, draft: AlertDraft) -> None:
        try:
            async with self.unit_of_work() as work:
                await raise_alert(work, draft, webhook_url=self.settings.alert_webhook_url)
        except (SQLAlchemyError, OSError):
            self._raised.discard(draft.dedupe_key)  # try again on the next request that crosses it
            log.exception("could not store the %s alert %s", draft.type.value, draft.dedupe_key)


#: How a budget outside the reader's scope is named: no name, entity, window or figure.
HIDDEN_BUDGET = "a budget outside this key's scope"


def ledger_margin_z(settings: Settings) -> Decimal:
    """The ledger's pooled-margin z for these settings (0: each request holds its own quantile)."""
    return margin_z(settings.reservation_quantile, pooled=settings.reservation_margin == "pooled")


def explain(decision: Decision, viewer: Principal | None = None) -> str | None:
    """The decision in words, for `viewer` (None: a trusted reader, the gateway and its logs).

    The one place a decision's message is written. A budget the viewer may not see (`Principal.can_see`: a
    key's holder sees its own key, user and team) is named `HIDDEN_BUDGET`, with no spend, limit, share, what is
    left or when it resets; the viewer's own estimate is always shown."""
    check = decision.budget
    if decision.degraded or check is None or decision.alert_type is None:
        return decision.message
    rule = check.rule
    if viewer is not None and not viewer.can_see(rule.entity_type, rule.entity_id):
        if decision.alert_type is AlertType.BUDGET_EXCEEDED:
            return f"{HIDDEN_BUDGET} is exhausted"
        if decision.alert_type is AlertType.REQUEST_EXCEEDS_BUDGET:
            return f"this request ({_held(decision)}) does not fit in what is left of {HIDDEN_BUDGET}"
        return f"{HIDDEN_BUDGET} is close to its limit"
    resets = check.resets_at.isoformat()
    if decision.alert_type is AlertType.BUDGET_EXCEEDED:
        return (
            f"{rule.describe()} is exhausted: {_usd(check.spend)} spent of a {_usd(rule.hard_cap)} limit; "
            f"it resets at {resets}"
        )
    if decision.alert_type is AlertType.REQUEST_EXCEEDS_BUDGET:
        left = check.remaining if decision.left is None else decision.left
        return (
            f"this request ({_held(decision)}) does not fit in what is left of {rule.describe()}: {_usd(left)}; "
            f"it resets at {resets}"
        )
    return (
        f"{rule.describe()} is at {check.utilization * 100:.1f}% of its limit ({_usd(check.spend)} of "
        f"{_usd(rule.limit)}" + (f", {_usd(check.reserved)} more in flight)" if check.reserved else ")")
    )


def _covering(rule: BudgetRule) -> Callable[[tuple[str, ...]], bool]:
    """Whether a hold's `Enforcer.identity` falls under `rule`, as `Enforcer.rules_for` picks a request's budgets."""
    entity_id = rule.entity_id
    if rule.entity_type == EntityType.GLOBAL.value:
        return lambda identity: True
    if not entity_id:
        return lambda identity: False
    position = {_KEY: 0, _USER: 1, _TEAM: 2, _END_USER: 3}.get(rule.entity_type)
    if position is None:  # a tag
        return lambda identity: entity_id in identity[4:]
    return lambda identity: len(identity) > position and identity[position] == entity_id


def _held(decision: Decision) -> str:
    if decision.margin > 0:
        return (
            f"held at {_usd(decision.held_cost)}, plus {_usd(decision.margin)} of margin for the spread of the "
            "requests in flight"
        )
    return f"held at {_usd(decision.held_cost)}"


def _explained(decision: Decision) -> Decision:
    return replace(decision, message=explain(decision))


def _binding(checks: Sequence[BudgetCheck]) -> BudgetCheck:
    """Of the budgets that block a request, the one that frees up last: the request waits for its reset."""
    return max(checks, key=lambda c: c.resets_at)


def _usd(value: Decimal) -> str:
    # Cents for ordinary amounts; tiny budgets (a test team's 0.001 USD) keep their significant digits.
    if abs(value) >= Decimal("0.01") or value == 0:
        return f"{value.quantize(Decimal('0.01'))} USD"
    return f"{value.quantize(Decimal('0.000001')).normalize():f} USD"


async def record_settlements(
    session: AsyncSession,
    dialect: str,
    events: Sequence[SpendSeen],
    now: datetime,
    *,
    claimed_by: str | None = None,
    claimed: Iterable[SpendSeen] = (),
    bids: Mapping[str, Decimal] | None = None,
) -> set[str]:
    """Store spend events as settlements (one per request id; LiteLLM's retries are ignored), the `claimed` ones
    already claimed by `claimed_by` (the instance storing them, which settles its own holds with them once this
    commits), those in `bids` (request id: its smallest hold of the event's call id and key) bid for by it, the
    bidding opened now (`Ledger.split`). Returns the request ids that were new."""
    if not events:
        return set()
    mine = {e.request_id for e in claimed}
    bids = bids or {}
    statement = insert_or_ignore(dialect, SettlementRow.__table__).returning(SettlementRow.request_id)  # type: ignore[arg-type]
    rows = [
        {
            "request_id": e.request_id,
            "call_id": e.call_id,
            "api_key": e.owner,
            "actual": e.actual,
            "failed": e.failed,
            "claimed_by": claimed_by if e.request_id in mine else None,
            "bid_by": claimed_by if e.request_id in bids and e.request_id not in mine else None,
            "bid_amount": bids.get(e.request_id) if e.request_id not in mine else None,
            "created_at": now,
        }
        for e in events
    ]
    return set((await session.scalars(statement, rows)).all())


async def prune_settlements(runtime: Any, tick: datetime) -> str:
    """Job: settlements older than twice the reservation TTL can no longer match a hold."""
    from sqlalchemy import delete

    cutoff = runtime.clock() - timedelta(seconds=2 * runtime.settings.reservation_ttl_seconds)
    async with runtime.db.sessions() as session, session.begin():
        result = await session.execute(delete(SettlementRow).where(SettlementRow.created_at < cutoff))
    return f"pruned {result.rowcount} settlements"
