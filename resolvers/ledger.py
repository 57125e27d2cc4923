"""The admission ledger: no overspend under concurrency, without a database round trip per request.

Each app instance holds an *allowance* per budget and month, granted from the database under the budget's
ledger-row lock: recorded spend (summed from the spend logs inside that transaction) plus every instance's live
allowance never exceeds the hard limit. Requests reserve (*hold*) their estimate from the local allowance in
memory; only when it runs short does the instance ask for more. Near the limit grants shrink to what a request
needs, so the last dollars are handed out one request at a time.

A hold settles when the request's real spend arrives (matched by call id) and leaves the allowance once its
spend-log row is visible, so spend is never counted neither as hold nor as recorded — only sometimes as both,
which errs on the safe side. Holds expire after RESERVATION_TTL_SECONDS; an instance's allowances expire unless
renewed, so a crashed instance frees its share.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import Database, insert_or_ignore
from models.ledger import AllowanceRow, BudgetLedgerRow
from models.litellm import LiteLLMSchema, spend_logs
from resolvers.periods import Period
from resolvers.spend import Scope

log = logging.getLogger("spendplane.ledger")

ALLOWANCE_TTL = timedelta(seconds=120)
#: After the database said a budget has nothing left to grant, requests that need more are refused from memory
#: for this long (or until the next reconcile), instead of queueing for the database one by one.
EXHAUSTED_FOR = timedelta(seconds=1)
#: A grant takes at most this share of what is left, so other instances keep headroom.
GRANT_SHARE = Decimal("0.25")
TOP_UP_ATTEMPTS = 4
#: How many open calls one refresh asks the database about (oldest first).
CHECK_LIMIT = 2000

SpendOf = Callable[[AsyncSession, LiteLLMSchema, Scope, Period], Awaitable[Decimal]]


@dataclass(frozen=True)
class Claim:
    """One budget a request must fit in."""

    budget_key: str
    scope: Scope
    period: Period
    cap: Decimal  # the hard limit in USD

    @property
    def month(self) -> str:
        return f"{self.period.start:%Y-%m}"


@dataclass(frozen=True)
class Refusal:
    claim: Claim
    available: Decimal


@dataclass
class Hold:
    amount: Decimal
    created_at: datetime
    settled: bool = False
    request_id: str | None = None


@dataclass
class Account:
    """One budget in one month, as this instance holds it. Totals are kept as holds come and go, so a decision
    costs the same with ten holds or ten thousand."""

    claim: Claim
    granted: Decimal = Decimal(0)
    holds: dict[str, Hold] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: bool = False  # reserved something since the last reconcile
    #: What requests queued for a top-up need in all: one grant serves the whole queue of a burst.
    demand: Decimal = Decimal(0)
    #: What the database could still grant when it last refused, and until when that answer stands.
    exhausted: Decimal | None = None
    exhausted_until: datetime | None = None
    held: Decimal = Decimal(0)
    #: Real spend this instance knows of that the spend logs may not show yet (settled holds).
    settled_pending: Decimal = Decimal(0)

    @property
    def free(self) -> Decimal:
        return self.granted - self.held

    def add(self, call_id: str, hold: Hold) -> None:
        self.remove(call_id)
        self.holds[call_id] = hold
        self.held += hold.amount

    def remove(self, call_id: str) -> None:
        hold = self.holds.pop(call_id, None)
        if hold is not None:
            self.held -= hold.amount
            if hold.settled:
                self.settled_pending -= hold.amount

    def settle(self, call_id: str, actual: Decimal, request_id: str | None) -> None:
        hold = self.holds[call_id]
        if hold.settled:
            self.settled_pending -= hold.amount
        self.held += actual - hold.amount
        hold.amount, hold.settled, hold.request_id = actual, True, request_id
        self.settled_pending += actual


@dataclass
class Ledger:
    db: Database
    schema: LiteLLMSchema
    spend_of: SpendOf
    clock: Callable[[], datetime]
    reservation_ttl: timedelta
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    accounts: dict[tuple[str, str], Account] = field(default_factory=dict)
    #: Which accounts hold a call, so settling costs the same with one budget or thousands of keys.
    holders: dict[str, list[Account]] = field(default_factory=dict)

    def account(self, claim: Claim) -> Account:
        key = (claim.budget_key, claim.month)
        found = self.accounts.get(key)
        if found is None:
            found = self.accounts[key] = Account(claim)
        else:
            found.claim = claim  # limits may have changed
        return found

    def pending_for(self, budget_key: str, month: str) -> Decimal:
        account = self.accounts.get((budget_key, month))
        return account.settled_pending if account else Decimal(0)

    # ---------------------------------------------------------------------------------------------- reserving

    async def reserve(self, call_id: str, amount: Decimal, claims: Sequence[Claim]) -> Refusal | None:
        """Hold `amount` in every claimed budget, or in none (the refusal names the budget that is short)."""
        if amount <= 0 or not claims:
            return None
        accounts = [self.account(c) for c in claims]
        for _ in range(TOP_UP_ATTEMPTS):
            short = [a for a in accounts if a.free < amount]
            known_short = self._known_exhausted(short, amount)
            if known_short is not None:
                return known_short
            if not short:
                now = self.clock()
                for account in accounts:  # no await between the check above and these holds
                    account.add(call_id, Hold(amount, now))
                    account.active = True
                self.holders[call_id] = accounts
                return None
            refusal = await self._top_up(short, amount)
            if refusal is not None:
                return refusal
        return Refusal(short[0].claim, short[0].free)

    def _known_exhausted(self, short: list[Account], amount: Decimal) -> Refusal | None:
        now = self.clock()
        for account in short:
            if (
                account.exhausted is not None
                and account.exhausted_until is not None
                and now < account.exhausted_until
                and amount - account.free > account.exhausted
            ):
                return Refusal(account.claim, account.free + account.exhausted)
        return None

    async def _top_up(self, short: list[Account], amount: Decimal) -> Refusal | None:
        short = sorted(short, key=lambda a: (a.claim.budget_key, a.claim.month))
        held: list[Account] = []
        for account in short:
            account.demand += amount
        try:
            for account in short:
                await account.lock.acquire()
                held.append(account)
            # Ask for what this request and every request queued behind it need (a burst gets one grant).
            needs = [(a, a.demand - a.free) for a in short if a.free < amount]
            if not needs:
                return None
            known = self._known_exhausted([a for a, _ in needs], amount)
            if known is not None:  # a request ahead in the queue just heard the database say no
                return known
            granted, refusal = await self._grant(needs, minimum=amount)
            for account, extra in granted:
                account.granted += extra
                account.exhausted = account.exhausted_until = None
            if refusal is not None:
                short_account = self.account(refusal.claim)
                short_account.exhausted = max(Decimal(0), refusal.available - short_account.free)
                short_account.exhausted_until = self.clock() + EXHAUSTED_FOR
            return refusal
        finally:
            for account in short:
                account.demand -= amount
            for account in held:
                account.lock.release()

    async def _grant(
        self, needs: list[tuple[Account, Decimal]], *, minimum: Decimal
    ) -> tuple[list[tuple[Account, Decimal]], Refusal | None]:
        """One transaction: for each budget, grant what the queue wants (at least what this request lacks,
        at most what is left), or refuse when not even this request fits."""
        now = self.clock()
        granted: list[tuple[Account, Decimal]] = []
        async with self.db.sessions() as session, session.begin():
            for account, wanted in needs:
                claim = account.claim
                recorded, others = await self._locked_state(session, claim, now)
                available = claim.cap - recorded - others - account.granted
                if available < minimum - account.free:
                    await session.rollback()
                    return [], Refusal(claim, max(Decimal(0), available + account.free))
                extra = min(available, max(wanted, available * GRANT_SHARE))
                await self._write_allowance(session, claim, account.granted + extra, now)
                granted.append((account, extra))
        return granted, None

    async def _locked_state(self, session: AsyncSession, claim: Claim, now: datetime) -> tuple[Decimal, Decimal]:
        """Lock the budget's ledger row, then read recorded spend and the other instances' live allowances."""
        await session.execute(
            insert_or_ignore(self.db.dialect, BudgetLedgerRow.__table__),  # type: ignore[arg-type]
            {"budget_key": claim.budget_key, "period": claim.month, "recorded": 0, "reconciled_at": now},
        )
        await session.execute(
            select(BudgetLedgerRow.budget_key)
            .where(BudgetLedgerRow.budget_key == claim.budget_key, BudgetLedgerRow.period == claim.month)
            .with_for_update()
        )
        recorded = await self.spend_of(session, self.schema, claim.scope, claim.period)
        others = await session.scalar(
            select(func.coalesce(func.sum(AllowanceRow.granted), 0)).where(
                AllowanceRow.budget_key == claim.budget_key,
                AllowanceRow.period == claim.month,
                AllowanceRow.instance_id != self.instance_id,
                AllowanceRow.expires_at > now,
            )
        )
        await session.execute(
            update(BudgetLedgerRow)
            .where(
                BudgetLedgerRow.budget_key == claim.budget_key,
                BudgetLedgerRow.period == claim.month,
            )
            .values(recorded=recorded, reconciled_at=now)
        )
        return recorded, _usd(others)

    async def _write_allowance(self, session: AsyncSession, claim: Claim, granted: Decimal, now: datetime) -> None:
        key = {"budget_key": claim.budget_key, "period": claim.month, "instance_id": self.instance_id}
        row = await session.get(AllowanceRow, (claim.budget_key, claim.month, self.instance_id))
        if row is None:
            session.add(AllowanceRow(**key, granted=granted, expires_at=now + ALLOWANCE_TTL))
        else:
            row.granted, row.expires_at = granted, now + ALLOWANCE_TTL
        await session.flush()

    # ---------------------------------------------------------------------------------------------- settling

    def settle(self, call_id: str, actual: Decimal, *, request_id: str | None, failed: bool = False) -> int:
        """The request's real cost is known: its holds now count that instead of the estimate."""
        accounts = self.holders.get(call_id, [])
        for account in accounts:
            if call_id not in account.holds:
                continue
            if failed and actual <= 0:
                account.remove(call_id)
            else:
                account.settle(call_id, max(actual, Decimal(0)), request_id)
        if failed and actual <= 0:
            self.holders.pop(call_id, None)
        return len(accounts)

    def release(self, call_id: str) -> None:
        for account in self.holders.pop(call_id, []):
            account.remove(call_id)

    async def reconcile(self, visible: set[str]) -> None:
        """Drop holds whose spend is in the logs (`visible`: ids seen in the same snapshot the recorded spend was
        read from) or that expired, hand back unused allowance, and renew what this instance keeps.

        The local change happens at once, with no await between reading and writing memory (so a concurrent
        reservation sees either the old or the new state); the database is then told, under each account's
        lock, the allowance the account holds at that moment. Allowances only ever go down here: always safe."""
        now = self.clock()
        touched: list[Account] = []
        for key, account in list(self.accounts.items()):
            for call_id, hold in list(account.holds.items()):
                if (
                    call_id in visible
                    or (hold.request_id is not None and hold.request_id in visible)
                    or hold.created_at < now - self.reservation_ttl
                ):
                    account.remove(call_id)
                    if not any(call_id in other.holds for other in self.holders.get(call_id, [])):
                        self.holders.pop(call_id, None)
            if not account.active and not account.lock.locked():
                account.granted = account.held  # idle: hand the free part back to the other instances
            elif account.held > account.granted:
                account.granted = account.held
            account.active = False
            account.exhausted = account.exhausted_until = None
            touched.append(account)
            if account.granted <= 0 and not account.holds and not account.lock.locked():
                del self.accounts[key]
        if touched:
            await self._persist(sorted(touched, key=lambda a: (a.claim.budget_key, a.claim.month)), now)

    async def _persist(self, accounts: list[Account], now: datetime) -> None:
        for account in accounts:
            await account.lock.acquire()
        try:
            async with self.db.sessions() as session, session.begin():
                for account in accounts:
                    claim = account.claim
                    if account.granted > 0:
                        await self._write_allowance(session, claim, account.granted, now)  # renews the expiry too
                    else:
                        await session.execute(
                            delete(AllowanceRow).where(
                                AllowanceRow.budget_key == claim.budget_key,
                                AllowanceRow.period == claim.month,
                                AllowanceRow.instance_id == self.instance_id,
                            )
                        )
                await session.execute(delete(AllowanceRow).where(AllowanceRow.expires_at < now - timedelta(days=1)))
        finally:
            for account in accounts:
                account.lock.release()

    def open_calls(self, limit: int = CHECK_LIMIT) -> tuple[list[str], list[str]]:
        """Calls worth asking the database about: the request ids of settled holds, and the oldest unsettled
        holds' call ids (at most `limit` per round, so a backlog costs bounded work each refresh)."""
        settled: list[str] = []
        unsettled: list[tuple[datetime, str]] = []
        for call_id, accounts in self.holders.items():
            hold = next((a.holds[call_id] for a in accounts if call_id in a.holds), None)
            if hold is None:
                continue
            if hold.settled and hold.request_id:
                settled.append(hold.request_id)
            else:
                unsettled.append((hold.created_at, call_id))
        unsettled.sort()
        return [c for _, c in unsettled[:limit]], settled[:limit]

    async def visible_ids(self, session: AsyncSession) -> set[str]:
        """Which of our holds' requests already have their spend-log row (by request id, or by LiteLLM's call
        id where its spend logs have that column)."""
        unsettled, request_ids = self.open_calls()
        if not (unsettled or request_ids) or not self.schema.has_table(spend_logs):
            return set()
        t = spend_logs.c
        by_call = self.schema.has(spend_logs, "litellm_call_id")
        found: set[str] = set()
        for chunk in _chunks(sorted(set(request_ids) | (set() if by_call else set(unsettled))), 500):
            found.update((await session.scalars(select(t.request_id).where(t.request_id.in_(chunk)))).all())
        if by_call:
            for chunk in _chunks(sorted(unsettled), 500):
                rows = await session.scalars(select(t.litellm_call_id).where(t.litellm_call_id.in_(chunk)))
                found.update(r for r in rows.all() if r)
        return found

    async def close(self) -> None:
        """Hand every allowance back (a clean shutdown frees its share at once, not after the TTL)."""
        async with self.db.sessions() as session, session.begin():
            await session.execute(delete(AllowanceRow).where(AllowanceRow.instance_id == self.instance_id))
        self.accounts.clear()


def _usd(value: object) -> Decimal:
    # SUM over a Money column comes back through Money's result processor (Decimal), or as 0 when empty.
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
