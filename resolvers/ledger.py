"""The admission ledger: no overspend under concurrency, without a database round trip per request.

Each app instance holds an *allowance* per budget and month, granted from the database under the budget's
ledger-row lock: recorded spend (summed from the spend logs inside that transaction) plus every instance's live
allowance never exceeds the hard limit. Requests reserve (*hold*) their estimate from the local allowance in
memory; only when it runs short does the instance ask for more. Near the limit grants shrink to what a request
needs, so the last dollars are handed out one request at a time.

A hold settles when the request's real spend arrives (matched by call id). Once its spend-log row is visible the
hold ends and takes its share of the allowance with it (the recorded spend counts that money from then on), so
spend is never counted as neither hold nor recorded — only sometimes as both, which errs on the safe side. A hold
that ends without spend (released, failed, expired) leaves its share free for the next request. Holds expire after
RESERVATION_TTL_SECONDS; an instance's allowances expire unless renewed, so a crashed instance frees its share.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import Database, insert_or_ignore
from models.ledger import AllowanceRow, BudgetLedgerRow
from models.litellm import LiteLLMSchema, spend_logs
from models.types import whole_nanos
from resolvers.periods import Period
from resolvers.spend import Scope, chunks

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
#: An idle account hands its free allowance back after this long; near the limit ("tight": less than
#: TIGHT_SHARE of the cap was left after its last grant) it does so at the first idle refresh, so other
#: instances can use the last dollars.
IDLE_RELEASE_AFTER = timedelta(seconds=30)
TIGHT_SHARE = Decimal("0.2")

SpendOf = Callable[[AsyncSession, LiteLLMSchema, Iterable[Scope], Period, datetime], Awaitable[dict[Scope, Decimal]]]


@dataclass(frozen=True)
class Claim:
    """One budget a request must fit in."""

    budget_key: str
    scope: Scope
    period: Period
    cap: Decimal  # the hard limit in USD
    month: str = ""  # YYYY-MM of the period, filled in once (it keys every lookup)

    def __post_init__(self) -> None:
        if not self.month:
            object.__setattr__(self, "month", f"{self.period.start:%Y-%m}")


@dataclass(frozen=True)
class Refusal:
    claim: Claim
    available: Decimal


@dataclass(eq=False)
class _GrantRequest:
    needs: list[tuple[Account, Decimal]]
    minimum: Decimal
    future: asyncio.Future[tuple[list[tuple[Account, Decimal]], Refusal | None]]


@dataclass(eq=False)
class Reservation:
    """One admitted request's hold on every budget it fell under, until its spend is in the logs."""

    call_id: str
    amount: Decimal
    created_at: datetime
    accounts: list[Account]
    settled: bool = False  # the amount is the real cost now, not the estimate
    request_id: str | None = None


@dataclass(eq=False)
class Account:
    """One budget in one month, as this instance holds it. Totals are kept as reservations come and go, so a
    decision costs the same with ten open requests or ten thousand."""

    claim: Claim
    granted: Decimal = Decimal(0)
    held: Decimal = Decimal(0)
    holds: int = 0
    #: Real spend this instance knows of that the spend logs may not show yet (settled reservations).
    settled_pending: Decimal = Decimal(0)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: bool = False  # reserved something since the last reconcile
    last_used: datetime | None = None
    tight: bool = False
    #: What requests queued for a top-up need in all: one grant serves the whole queue of a burst.
    demand: Decimal = Decimal(0)
    #: What the database could still grant when it last refused, and until when that answer stands.
    exhausted: Decimal | None = None
    exhausted_until: datetime | None = None
    #: What the database holds for this account, and when it was written (to renew the expiry in time).
    stored: Decimal = Decimal(0)
    stored_at: datetime | None = None

    @property
    def free(self) -> Decimal:
        return self.granted - self.held


@dataclass
class Ledger:
    db: Database
    schema: LiteLLMSchema
    spend_of: SpendOf
    clock: Callable[[], datetime]
    reservation_ttl: timedelta
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    accounts: dict[tuple[str, str], Account] = field(default_factory=dict)
    #: Open reservations by call id, oldest first (dicts keep insertion order).
    reservations: dict[str, Reservation] = field(default_factory=dict)
    #: Settled reservations by the spend-log id their row will carry.
    settled_requests: dict[str, str] = field(default_factory=dict)
    _grant_queue: list[_GrantRequest] = field(default_factory=list)
    _granting: asyncio.Task[None] | None = None

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
        self.release(call_id)  # a retried call id replaces its earlier reservation
        accounts = [self.account(c) for c in claims]
        for _ in range(TOP_UP_ATTEMPTS):
            short = [a for a in accounts if a.free < amount]
            known_short = self._known_exhausted(short, amount)
            if known_short is not None:
                return known_short
            if not short:
                self._hold(call_id, amount, accounts)  # no await between the check above and this
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
        """Queue this request's top-up for the next grant transaction. Concurrent top-ups (a burst of new keys,
        say) share one transaction instead of queueing for the database one by one."""
        future: asyncio.Future[tuple[list[tuple[Account, Decimal]], Refusal | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._grant_queue.append(_GrantRequest(needs, minimum, future))
        if self._granting is None or self._granting.done():
            self._granting = asyncio.create_task(self._grant_queued())
        return await future

    async def _grant_queued(self) -> None:
        while self._grant_queue:
            batch, self._grant_queue = self._grant_queue, []
            try:
                answers = await self._grant_batch(batch)
            except BaseException as exc:  # the database failed: every waiting request hears it
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for request, answer in zip(batch, answers, strict=True):
                if not request.future.done():
                    request.future.set_result(answer)

    async def _grant_batch(
        self, batch: list[_GrantRequest]
    ) -> list[tuple[list[tuple[Account, Decimal]], Refusal | None]]:
        """One transaction: lock every budget involved (in key order, so instances never deadlock), then per
        request grant what it and the requests queued behind it want — at least what it lacks, at most what is
        left — or refuse it when not even that fits."""
        now = self.clock()
        accounts = sorted(
            {id(a): a for r in batch for a, _ in r.needs}.values(), key=lambda a: (a.claim.budget_key, a.claim.month)
        )
        answers: list[tuple[list[tuple[Account, Decimal]], Refusal | None]] = []
        async with self.db.sessions() as session, session.begin():
            states = await self._locked_states(session, accounts, now)
            left = {id(a): a.claim.cap - states[id(a)][0] - states[id(a)][1] - a.granted for a in accounts}
            extras: dict[int, Decimal] = {}
            for request in batch:
                refusal = None
                for account, _ in request.needs:
                    available = left[id(account)] - extras.get(id(account), Decimal(0))
                    if whole_nanos(available) < whole_nanos(request.minimum - account.free, up=True):
                        refusal = Refusal(account.claim, max(Decimal(0), available + account.free))
                        break
                if refusal is not None:
                    answers.append(([], refusal))
                    continue
                granted = []
                for account, wanted in request.needs:
                    available = left[id(account)] - extras.get(id(account), Decimal(0))
                    extra = whole_nanos(min(available, max(whole_nanos(wanted, up=True), available * GRANT_SHARE)))
                    extras[id(account)] = extras.get(id(account), Decimal(0)) + extra
                    granted.append((account, extra))
                answers.append((granted, None))
            await self._write_allowances(
                session, [(a, a.granted + extras[id(a)]) for a in accounts if extras.get(id(a), 0) > 0], now
            )
        for account in accounts:
            extra = extras.get(id(account), Decimal(0))
            if extra > 0:
                account.stored, account.stored_at = account.granted + extra, now
                account.tight = left[id(account)] - extra < account.claim.cap * TIGHT_SHARE
        return answers

    async def _locked_states(
        self, session: AsyncSession, accounts: list[Account], now: datetime
    ) -> dict[int, tuple[Decimal, Decimal]]:
        """Lock the budgets' ledger rows (in key order), then read their recorded spend and the other
        instances' live allowances: a handful of statements however many budgets the batch touches."""
        keys = [
            {"budget_key": a.claim.budget_key, "period": a.claim.month, "recorded": 0, "reconciled_at": now}
            for a in accounts
        ]
        await session.execute(insert_or_ignore(self.db.dialect, BudgetLedgerRow.__table__), keys)  # type: ignore[arg-type]
        pairs = [(a.claim.budget_key, a.claim.month) for a in accounts]
        await session.execute(
            select(BudgetLedgerRow.budget_key)
            .where(tuple_(BudgetLedgerRow.budget_key, BudgetLedgerRow.period).in_(pairs))
            .order_by(BudgetLedgerRow.budget_key, BudgetLedgerRow.period)
            .with_for_update()
        )
        recorded: dict[tuple[Scope, str], Decimal] = {}
        for month in {a.claim.month for a in accounts}:
            in_month = [a for a in accounts if a.claim.month == month]
            found = await self.spend_of(
                session, self.schema, {a.claim.scope for a in in_month}, in_month[0].claim.period, now
            )
            recorded.update({(scope, month): usd for scope, usd in found.items()})
        totals = await session.execute(
            select(AllowanceRow.budget_key, AllowanceRow.period, func.sum(AllowanceRow.granted))
            .where(
                tuple_(AllowanceRow.budget_key, AllowanceRow.period).in_(pairs),
                AllowanceRow.instance_id != self.instance_id,
                AllowanceRow.expires_at > now,
            )
            .group_by(AllowanceRow.budget_key, AllowanceRow.period)
        )
        others = {(key, month): total for key, month, total in totals.all()}
        return {
            id(a): (recorded[(a.claim.scope, a.claim.month)], _usd(others.get((a.claim.budget_key, a.claim.month))))
            for a in accounts
        }

    async def _write_allowances(
        self, session: AsyncSession, grants: list[tuple[Account, Decimal]], now: datetime
    ) -> None:
        """Upsert this instance's allowance rows (renewing their expiry) in one statement."""
        if not grants:
            return
        rows = [
            {
                "budget_key": a.claim.budget_key,
                "period": a.claim.month,
                "instance_id": self.instance_id,
                "granted": granted,
                "expires_at": now + ALLOWANCE_TTL,
            }
            for a, granted in grants
        ]
        insert = (postgresql.insert if self.db.is_postgres else sqlite.insert)(AllowanceRow)
        statement = insert.on_conflict_do_update(
            index_elements=["budget_key", "period", "instance_id"],
            set_={"granted": insert.excluded.granted, "expires_at": insert.excluded.expires_at},
        )
        await session.execute(statement, rows)

    # ---------------------------------------------------------------------------------------------- settling

    def _hold(self, call_id: str, amount: Decimal, accounts: list[Account]) -> None:
        self.reservations[call_id] = Reservation(call_id, amount, self.clock(), accounts)
        now = self.clock()
        for account in accounts:
            account.held += amount
            account.holds += 1
            account.active = True
            account.last_used = now

    def settle(self, call_id: str, actual: Decimal, *, request_id: str | None, failed: bool = False) -> int:
        """The request's real cost is known: its reservation now counts that instead of the estimate."""
        reservation = self.reservations.get(call_id)
        if reservation is None:
            return 0
        if failed and actual <= 0:
            self._drop(reservation)
            return 1
        actual = max(actual, Decimal(0))
        for account in reservation.accounts:
            account.held += actual - reservation.amount
            account.settled_pending += actual - (reservation.amount if reservation.settled else Decimal(0))
        reservation.amount, reservation.settled = actual, True
        if request_id:
            reservation.request_id = request_id
            self.settled_requests[request_id] = call_id
        return 1

    def release(self, call_id: str) -> None:
        reservation = self.reservations.get(call_id)
        if reservation is not None:
            self._drop(reservation)

    def _drop(self, reservation: Reservation, *, recorded: bool = False) -> None:
        """End a hold. `recorded`: its spend is in the logs now, so the allowance it used is spent, not free
        again (recorded spend counts it from here on); otherwise (released, failed, expired) it is free again."""
        self.reservations.pop(reservation.call_id, None)
        if reservation.request_id:
            self.settled_requests.pop(reservation.request_id, None)
        for account in reservation.accounts:
            account.held -= reservation.amount
            account.holds -= 1
            if reservation.settled:
                account.settled_pending -= reservation.amount
            if recorded:
                account.granted = max(Decimal(0), account.granted - reservation.amount)

    async def reconcile(self, visible: set[str]) -> None:
        """Drop reservations whose spend is in the logs (`visible`: ids seen in the same snapshot the recorded
        spend was read from) or that expired, hand idle allowance back, and tell the database.

        Memory changes at once, with no await between reading and writing it (a concurrent reservation sees the
        old state or the new); the database is then told, under each account's lock, what the account holds at
        that moment. Allowances only ever go down here, which is always safe."""
        now = self.clock()
        found = (self.reservations.get(i) or self.reservations.get(self.settled_requests.get(i, "")) for i in visible)
        recorded = {r for r in found if r is not None}
        cutoff = now - self.reservation_ttl
        expired = []
        for reservation in self.reservations.values():  # oldest first: stop at the first one still young
            if reservation.created_at >= cutoff:
                break
            if reservation not in recorded:
                expired.append(reservation)
        for reservation in recorded:
            self._drop(reservation, recorded=True)
        for reservation in expired:
            self._drop(reservation)
        changed: list[Account] = []
        for key, account in list(self.accounts.items()):
            idle_for = now - (account.last_used or now)
            if not account.active and not account.lock.locked() and (account.tight or idle_for > IDLE_RELEASE_AFTER):
                account.granted = whole_nanos(account.held, up=True)  # idle: hand the free part back
            account.active = False
            account.exhausted = account.exhausted_until = None
            stale = account.stored_at is None or now - account.stored_at > ALLOWANCE_TTL / 4
            if account.granted != account.stored or (account.granted > 0 and stale):
                changed.append(account)
            elif account.granted <= 0 and account.holds == 0 and not account.lock.locked():
                del self.accounts[key]
        if changed:
            await self._persist(sorted(changed, key=lambda a: (a.claim.budget_key, a.claim.month)), now)

    async def _persist(self, accounts: list[Account], now: datetime) -> None:
        for account in accounts:
            await account.lock.acquire()
        try:
            async with self.db.sessions() as session, session.begin():
                await self._write_allowances(session, [(a, a.granted) for a in accounts if a.granted > 0], now)
                gone = [(a.claim.budget_key, a.claim.month) for a in accounts if a.granted <= 0]
                if gone:
                    await session.execute(
                        delete(AllowanceRow).where(
                            tuple_(AllowanceRow.budget_key, AllowanceRow.period).in_(gone),
                            AllowanceRow.instance_id == self.instance_id,
                        )
                    )
                await session.execute(delete(AllowanceRow).where(AllowanceRow.expires_at < now - timedelta(days=1)))
            for account in accounts:
                account.stored, account.stored_at = account.granted, now
        finally:
            for account in accounts:
                account.lock.release()

    def open_calls(self, limit: int = CHECK_LIMIT) -> tuple[list[str], list[str]]:
        """Calls worth asking the database about: the oldest unsettled reservations' call ids (at most `limit`
        a round, so a backlog costs bounded work per refresh), and the spend-log ids of settled ones."""
        unsettled: list[str] = []
        for call_id, reservation in self.reservations.items():
            if len(unsettled) >= limit:
                break
            if not reservation.settled:
                unsettled.append(call_id)
        return unsettled, list(self.settled_requests)[:limit]

    async def visible_ids(self, session: AsyncSession) -> set[str]:
        """Which of our holds' requests already have their spend-log row (by request id, or by LiteLLM's call
        id where its spend logs have that column)."""
        unsettled, request_ids = self.open_calls()
        if not (unsettled or request_ids) or not self.schema.has_table(spend_logs):
            return set()
        t = spend_logs.c
        by_call = self.schema.has(spend_logs, "litellm_call_id")
        found: set[str] = set()
        for chunk in chunks(sorted(set(request_ids) | (set() if by_call else set(unsettled)))):
            found.update((await session.scalars(select(t.request_id).where(t.request_id.in_(chunk)))).all())
        if by_call:
            for chunk in chunks(sorted(unsettled)):
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
