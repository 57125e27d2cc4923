"""Admission at the gateway: which budgets a request falls under, and whether it may run.

The guide's flow, per budget: below the soft limit allow; from the soft limit allow with a warning and an
`approaching_limit` alert; at or past the hard limit block (`budget_exceeded`); an estimate larger than what is
left blocks (`request_exceeds_budget`). Budgets, recorded spend and feature switches live in memory and are
refreshed in the background, so the common case never waits for the database; reservations go through the
ledger. Whatever the database does, a decision comes within ENFORCEMENT_TIMEOUT_MS (fail open or closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any

from aiodataloader import DataLoader
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from models.budgets import BudgetRow
from models.db import Database
from models.ledger import SettlementRow
from models.litellm import LiteLLMSchema, verification_tokens
from models.types import whole_nanos
from resolvers.alerts import AlertDraft, AlertType, Severity, budget_dedupe_key, raise_alert
from resolvers.auth import hash_key
from resolvers.budgets import Budget, EntityType
from resolvers.config import Settings
from resolvers.errors import InvalidInput
from resolvers.events import EventBus
from resolvers.features import FEATURES_TOPIC, get_features
from resolvers.ledger import Claim, Ledger, Refusal
from resolvers.periods import Period, month_of
from resolvers.predictor import OutputHistory, Prediction, PredictionRequest, predict
from resolvers.pricing import PriceBook
from resolvers.rollups import spend_to_date
from resolvers.runtime import Work
from resolvers.spend import Scope, ScopeKind, chunks

log = logging.getLogger("spendplane.enforcement")

MASTER_KEY_MARKER = "litellm_proxy_master_key"  # what LiteLLM sends as the key hash for its master key
KEY_OWNER_TTL = timedelta(minutes=5)
KEY_OWNER_CACHE = 50_000
BUDGET_RELOAD_SECONDS = 15.0
_HEX64 = re.compile(r"[0-9a-f]{64}")


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

    @property
    def key_hash(self) -> str | None:
        if not self.key or self.key == MASTER_KEY_MARKER:
            return None
        return self.key if _HEX64.fullmatch(self.key) else hash_key(self.key)


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


@dataclass(frozen=True)
class BudgetRule:
    """A budget as enforcement sees it: a real budget, or the per-key default for a key without one."""

    key: str  # ledger key: "budget:<id>" or "key-default:<sha256>"
    budget_id: str | None
    name: str
    entity_type: str
    entity_id: str | None
    monthly_limit: Decimal
    soft_limit_percent: Decimal
    hard_limit_percent: Decimal
    alert_email: str | None

    # Rules live as long as their budget and are consulted on every request: derive once.
    @cached_property
    def scope(self) -> Scope:
        return Scope(ScopeKind(self.entity_type), self.entity_id)

    @cached_property
    def hard_cap(self) -> Decimal:
        return whole_nanos(self.monthly_limit * self.hard_limit_percent)

    @cached_property
    def soft_cap(self) -> Decimal:
        return whole_nanos(self.monthly_limit * self.soft_limit_percent)

    @classmethod
    def from_budget(cls, budget: Budget) -> BudgetRule:
        return cls(
            f"budget:{budget.id}",
            budget.id,
            budget.name,
            budget.entity_type.value,
            budget.entity_id,
            budget.monthly_limit,
            budget.soft_limit_percent,
            budget.hard_limit_percent,
            budget.alert_email,
        )

    def describe(self) -> str:
        if self.entity_type == "global":
            return f"global budget '{self.name}'"
        return f"{self.entity_type.replace('_', ' ')} budget '{self.name}' ({self.entity_id})"


@dataclass(frozen=True)
class BudgetCheck:
    rule: BudgetRule
    spend: Decimal  # recorded + settled-but-not-yet-logged, this month

    @cached_property
    def remaining(self) -> Decimal:
        return max(Decimal(0), self.rule.hard_cap - self.spend)

    @cached_property
    def utilization(self) -> Decimal:
        return (self.spend / self.rule.monthly_limit).quantize(Decimal("0.0001"))

    @property
    def exceeded(self) -> bool:
        return self.spend >= self.rule.hard_cap

    @property
    def approaching(self) -> bool:
        return self.spend >= self.rule.soft_cap


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    call_id: str
    model: str | None
    message: str | None = None
    alert_type: AlertType | None = None
    budget: BudgetCheck | None = None  # the budget that decided (blocking, or warning)
    checks: tuple[BudgetCheck, ...] = ()
    estimated_cost: Decimal = Decimal(0)
    prediction: Prediction | None = None
    price_missing: bool = False
    enforced: bool = True
    degraded: bool = False  # the database did not answer in time; the failure mode decided

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.BLOCK


@dataclass(frozen=True)
class BudgetFit:
    remaining: Decimal | None  # what the tightest budget still allows
    within: bool
    warning: str | None
    decision: Decision


@dataclass(frozen=True)
class _Loaders:
    owners: DataLoader[str, _KeyOwner]
    spend: DataLoader[Scope, Decimal]


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
    rules: dict[tuple[str, str | None], BudgetRule] = field(default_factory=dict)
    spend: dict[Scope, Decimal] = field(default_factory=dict)
    enforcement_enabled: bool = True
    _key_owners: OrderedDict[str, _KeyOwner] = field(default_factory=OrderedDict)
    _active_keys: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _raised: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _spend_month: str = ""
    _loader_set: _Loaders | None = None
    _claims: dict[tuple[str, datetime, Decimal], Claim] = field(default_factory=dict)
    _default_rules: dict[str, BudgetRule] = field(default_factory=dict)
    #: Active failover routes, primary model -> fallback model (kept up to date by SLA monitoring).
    routes: dict[str, str] = field(default_factory=dict)

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
        self.rules = {(r.entity_type, r.entity_id or None): BudgetRule.from_budget(Budget.from_row(r)) for r in rows}
        self.enforcement_enabled = features.budget_enforcement_enabled

    async def refresh_spend(self) -> None:
        """Recorded spend this month for every scope a budget (or an active key's default budget) covers, and
        — read in the same snapshot — which held requests' spend it already contains; then the ledger drops
        exactly those holds, so no spend is ever missing from both."""
        period = month_of(self.clock())
        scopes = {rule.scope for rule in self.rules.values()}
        scopes |= {Scope(ScopeKind.KEY, key) for key in self._active_keys}
        async with self.db.reader() as session:  # one snapshot (see models.db)
            found = await spend_to_date(session, self.schema, scopes, period, self.clock()) if scopes else {}
            visible = await self.ledger.visible_ids(session)
        self.spend = found
        self._spend_month = f"{period.start:%Y-%m}"
        await self.ledger.reconcile(visible)

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
        from resolvers.budgets import BUDGET_TOPIC

        async def follow(topic: str) -> None:
            async with self.bus.subscribe(topic) as events:
                async for _ in events:
                    try:
                        await self.reload_budgets()
                    except (SQLAlchemyError, OSError) as exc:
                        log.warning("reloading budgets failed: %s", exc)

        tasks = [asyncio.create_task(follow(t)) for t in (BUDGET_TOPIC, FEATURES_TOPIC)]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def apply_settlements(self) -> None:
        """Settle our holds from settlements another instance's ingestion recorded."""
        waiting, _ = self.ledger.open_calls()
        if not waiting:
            return
        async with self.db.reader() as session:
            for chunk in chunks(sorted(waiting)):
                rows = (await session.scalars(select(SettlementRow).where(SettlementRow.call_id.in_(chunk)))).all()
                for row in rows:
                    self.ledger.settle(row.call_id, row.actual, request_id=row.request_id, failed=row.failed)

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
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
        """Would a request of this cost fit the caller's budgets now? (The predictor's within_budget.)"""
        decision = await self.check(Admission(caller, model, f"check-{uuid.uuid4()}", estimated_cost=cost))
        tightest = min(decision.checks, key=lambda c: c.remaining, default=None)
        return BudgetFit(
            remaining=tightest.remaining if tightest else None,
            within=decision.allowed,
            warning=decision.message if decision.verdict is not Verdict.ALLOW else None,
            decision=decision,
        )

    async def _decide(self, request: Admission, *, reserve: bool) -> Decision:
        model = self.route(request.model)  # a failover's fallback is what will run, and what is priced
        prediction: Prediction | None = None
        price_missing = False
        estimate = request.estimated_cost if request.estimated_cost is not None else Decimal(0)
        try:
            # Counting a huge prompt's tokens takes time too (in a worker thread): it is inside the deadline.
            async with asyncio.timeout(self.settings.enforcement_timeout_ms / 1000):
                prediction, price_missing = await self._estimate(request, model)
                if prediction is not None and request.estimated_cost is None:
                    estimate = prediction.total_cost
                base = Decision(
                    Verdict.ALLOW,
                    request.call_id,
                    model,
                    estimated_cost=estimate,
                    prediction=prediction,
                    price_missing=price_missing,
                    enforced=self.enforcement_enabled,
                )
                caller = await self._resolve(request.caller)
                rules = self.rules_for(caller)
                await self._ensure_spend(rules)
                decision = await self._judge(base, rules, estimate, reserve)
        except (TimeoutError, OperationalError, InterfaceError, SQLAlchemyTimeout, OSError) as exc:
            log.warning(
                "budget check degraded (%s): failing %s", type(exc).__name__, self.settings.enforcement_failure_mode
            )
            return self._degraded(request, estimate, prediction, price_missing)
        except Exception:  # a defect, not an outage: say so loudly, but the gateway still gets its answer
            log.exception("budget check failed unexpectedly: failing %s", self.settings.enforcement_failure_mode)
            return self._degraded(request, estimate, prediction, price_missing)
        return decision

    def _degraded(
        self, request: Admission, estimate: Decimal, prediction: Prediction | None, price_missing: bool
    ) -> Decision:
        mode = self.settings.enforcement_failure_mode
        return Decision(
            Verdict.BLOCK if mode == "closed" else Verdict.ALLOW,
            request.call_id,
            self.route(request.model),  # routes live in memory: a failover holds while the database is away
            message=f"the budget service could not decide in time; failing {mode}",
            estimated_cost=estimate,
            prediction=prediction,
            price_missing=price_missing,
            degraded=True,
        )

    def route(self, model: str | None) -> str | None:
        """The model to call: the one asked for, or its fallback while a failover rule is active for it."""
        return self.routes.get(model, model) if model is not None else None

    async def _estimate(self, request: Admission, model: str | None) -> tuple[Prediction | None, bool]:
        if model is None or request.estimated_cost is not None:
            return None, False
        try:
            return await predict(
                self.prices,
                self.history,
                PredictionRequest(model, request.messages, request.prompt, request.max_tokens),
            ), False
        except InvalidInput:
            return None, True  # decide on recorded spend alone, and say the price is missing

    async def _judge(self, base: Decision, rules: list[BudgetRule], estimate: Decimal, reserve: bool) -> Decision:
        period = month_of(self.clock())
        month = f"{period.start:%Y-%m}"
        checks = tuple(BudgetCheck(r, self._spend_of(r, month)) for r in rules)
        decision = Decision(**{**base.__dict__, "checks": checks})
        exceeded = next((c for c in checks if c.exceeded), None)
        if exceeded is not None:
            self._alert(AlertType.BUDGET_EXCEEDED, exceeded)
            if self.enforcement_enabled:
                return _with(
                    decision,
                    Verdict.BLOCK,
                    AlertType.BUDGET_EXCEEDED,
                    exceeded,
                    f"{exceeded.rule.describe()} is exhausted: {_usd(exceeded.spend)} spent of a "
                    f"{_usd(exceeded.rule.hard_cap)} limit this month",
                )
        warning = next((c for c in checks if c.approaching), None)
        if warning is not None:
            self._alert(AlertType.APPROACHING_LIMIT, warning)
        if self.enforcement_enabled and estimate > 0:
            short = next((c for c in checks if estimate > c.remaining), None)
            refusal: Refusal | None = None
            if short is None and reserve:
                refusal = await self.ledger.reserve(
                    base.call_id, estimate, [self._claim(c.rule, period) for c in checks]
                )
                short = next((c for c in checks if refusal and c.rule.key == refusal.claim.budget_key), None)
            if short is not None:
                self._alert(AlertType.REQUEST_EXCEEDS_BUDGET, short)
                left = refusal.available if refusal else short.remaining
                return _with(
                    decision,
                    Verdict.BLOCK,
                    AlertType.REQUEST_EXCEEDS_BUDGET,
                    short,
                    f"this request (estimated {_usd(estimate)}) does not fit in what is left of "
                    f"{short.rule.describe()}: {_usd(left)}",
                )
        if warning is not None:
            return _with(
                decision,
                Verdict.WARN,
                AlertType.APPROACHING_LIMIT,
                warning,
                f"{warning.rule.describe()} is at {warning.utilization * 100:.1f}% of its monthly limit "
                f"({_usd(warning.spend)} of {_usd(warning.rule.monthly_limit)})",
            )
        return decision

    async def _ensure_spend(self, rules: list[BudgetRule]) -> None:
        """A scope seen for the first time (a new key, a budget created on another replica) is read now, not at
        the next refresh, so its first request is judged on its real spend. Concurrent first requests share one
        query (a data loader batches them)."""
        missing = [r.scope for r in rules if r.scope not in self.spend]
        if missing:
            found = await self._loaders().spend.load_many(missing)
            self.spend = {**self.spend, **dict(zip(missing, found, strict=True))}

    async def _load_spend(self, scopes: list[Scope]) -> list[Decimal]:
        async with self.db.reader() as session:
            now = self.clock()
            found = await spend_to_date(session, self.schema, scopes, month_of(now), now)
        return [found[scope] for scope in scopes]

    def _spend_of(self, rule: BudgetRule, month: str) -> Decimal:
        recorded = self.spend.get(rule.scope, Decimal(0)) if month == self._spend_month else Decimal(0)
        return recorded + self.ledger.pending_for(rule.key, month)

    def _claim(self, rule: BudgetRule, period: Period) -> Claim:
        key = (rule.key, period.start, rule.hard_cap)
        claim = self._claims.get(key)
        if claim is None:
            if len(self._claims) > KEY_OWNER_CACHE:
                self._claims.clear()
            claim = self._claims[key] = Claim(rule.key, rule.scope, period, rule.hard_cap)
        return claim

    def rules_for(self, caller: Caller) -> list[BudgetRule]:
        found: list[BudgetRule] = []
        key = caller.key_hash
        if key is not None and key != self._master_hash():
            explicit = self.rules.get((EntityType.KEY.value, key))
            if explicit is not None:
                found.append(explicit)
            elif self.settings.default_key_budget > 0:
                found.append(self._default_key_rule(key))
        for entity_type, entity_id in (
            (EntityType.USER, caller.user_id),
            (EntityType.TEAM, caller.team_id),
            (EntityType.END_USER, caller.end_user),
        ):
            rule = self.rules.get((entity_type.value, entity_id)) if entity_id else None
            if rule is not None:
                found.append(rule)
        global_rule = self.rules.get((EntityType.GLOBAL.value, None))
        if global_rule is not None:
            found.append(global_rule)
        return found

    def _default_key_rule(self, key_hash: str) -> BudgetRule:
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
            self.settings.default_key_budget,
            self.settings.soft_limit_threshold,
            self.settings.hard_limit_threshold,
            None,
        )

    def _master_hash(self) -> str | None:
        master = self.settings.litellm_master_key
        return hash_key(master) if master else None

    async def _resolve(self, caller: Caller) -> Caller:
        """Fill in the key's user and team from LiteLLM's key table when the caller did not send them."""
        key = caller.key_hash
        if key is None or (caller.user_id and caller.team_id):
            return caller
        owner = await self.key_owner(key)
        return Caller(caller.key, caller.user_id or owner.user_id, caller.team_id or owner.team_id, caller.end_user)

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

    def _alert(self, kind: AlertType, check: BudgetCheck) -> None:
        """Raise once per budget, type and month, in the background: the request never waits for it."""
        rule = check.rule
        dedupe = budget_dedupe_key(rule.budget_id or rule.key, kind, month_of(self.clock()).start)
        if dedupe in self._raised:
            return
        self._raised.add(dedupe)
        severity = {AlertType.BUDGET_EXCEEDED: Severity.CRITICAL, AlertType.APPROACHING_LIMIT: Severity.WARNING}.get(
            kind, Severity.INFO
        )
        message = {
            AlertType.APPROACHING_LIMIT: f"{rule.describe()} passed its soft limit: {_usd(check.spend)} of "
            f"{_usd(rule.monthly_limit)} ({check.utilization * 100:.1f}%)",
            AlertType.BUDGET_EXCEEDED: f"{rule.describe()} reached its hard limit: {_usd(check.spend)} of "
            f"{_usd(rule.hard_cap)}; requests are blocked"
            if self.enforcement_enabled
            else f"{rule.describe()} reached its hard limit: {_usd(check.spend)} of {_usd(rule.hard_cap)} "
            "(enforcement is off: requests still run)",
            AlertType.REQUEST_EXCEEDS_BUDGET: f"a request did not fit in what is left of {rule.describe()}",
        }.get(kind, rule.describe())
        draft = AlertDraft(
            type=kind,
            severity=severity,
            message=message,
            dedupe_key=dedupe,
            budget_id=rule.budget_id,
            entity_type=rule.entity_type,
            entity_id=rule.entity_id,
            team_id=rule.entity_id if rule.entity_type == "team" else None,
            user_id=rule.entity_id if rule.entity_type == "user" else None,
            spend=check.spend,
            limit=rule.hard_cap if kind is not AlertType.APPROACHING_LIMIT else rule.monthly_limit,
            details={
                "budget_key": rule.key,
                "monthly_limit": str(rule.monthly_limit),
                "soft_limit_percent": str(rule.soft_limit_percent),
                "hard_limit_percent": str(rule.hard_limit_percent),
                "period": f"{self.clock():%Y-%m}",
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


def _with(decision: Decision, verdict: Verdict, kind: AlertType, check: BudgetCheck, message: str) -> Decision:
    return Decision(
        **{**decision.__dict__, "verdict": verdict, "alert_type": kind, "budget": check, "message": message}
    )


def _usd(value: Decimal) -> str:
    # Cents for ordinary amounts; tiny budgets (a test team's 0.001 USD) keep their significant digits.
    if abs(value) >= Decimal("0.01") or value == 0:
        return f"{value.quantize(Decimal('0.01'))} USD"
    return f"{value.quantize(Decimal('0.000001')).normalize():f} USD"


async def record_settlement(
    session: AsyncSession,
    dialect: str,
    call_id: str,
    request_id: str | None,
    actual: Decimal,
    failed: bool,
    now: datetime,
) -> None:
    from models.db import insert_or_ignore

    await session.execute(
        insert_or_ignore(dialect, SettlementRow.__table__),  # type: ignore[arg-type]
        {"call_id": call_id, "request_id": request_id, "actual": actual, "failed": failed, "created_at": now},
    )


async def prune_settlements(runtime: Any, tick: datetime) -> str:
    """Job: settlements older than twice the reservation TTL can no longer match a hold."""
    from sqlalchemy import delete

    cutoff = runtime.clock() - timedelta(seconds=2 * runtime.settings.reservation_ttl_seconds)
    async with runtime.db.sessions() as session, session.begin():
        result = await session.execute(delete(SettlementRow).where(SettlementRow.created_at < cutoff))
    return f"pruned {result.rowcount} settlements"
