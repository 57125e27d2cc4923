"""The admission ledger: no overspend under concurrency, crashes or hostile clients, without a database round trip
per request.

Each app instance holds an *allowance* per budget and window, granted from the database under the budget's
ledger-row lock: recorded spend (summed from the spend logs inside that transaction) plus every instance's live
allowance never exceeds the hard limit, read from the budget row itself at that moment (a limit cut binds every
grant at once). Requests *hold* their estimate from the local allowance in memory; only when it runs short does
the instance ask for more. Near the limit grants shrink to what a request needs, so the last dollars go out one
request at a time.

Holds are the ledger's own: every admission holds separately, whatever call id the client sent (LiteLLM lets
clients choose it), and a new admission never ends an open hold. A request's real spend ends exactly one hold,
with the same call id and key, on exactly one instance: each spend event (LiteLLM's spend-log id) is a settlement
row that one instance *claims* (an UPDATE that only one can win) before it touches a hold: the one holding the
smallest hold of that call id and key, cluster-wide when several instances may hold one (they bid first). A settled
hold counts the real cost until the spend-log row is visible; then it ends and takes its share of the allowance
with it (recorded spend counts that money from then on), so spend is never counted as neither hold nor recorded. A
hold that ends without spend (failed, expired after RESERVATION_TTL_SECONDS) leaves its share free.

Allowances are written with an expiry of RESERVATION_TTL_SECONDS, renewed while the instance lives. Whatever an
instance holds is inside its allowance, so a crashed instance's holds stay counted until they could have
expired (its free share with them: refusing a little more for a while, never overspending); a restart does not
reopen a budget. A clean shutdown hands back the free part and keeps the held part for the requests in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import NormalDist

from sqlalchemy import and_, case, delete, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from models.budgets import BudgetRow
from models.db import Database, insert_or_ignore
from models.ledger import AllowanceRow, BudgetLedgerRow, SettlementRow
from models.litellm import LiteLLMSchema, spend_logs
from models.types import Money, float_to_usd, whole_nanos
from resolvers.platform.memo import cached
from resolvers.platform.periods import Period
from resolvers.spend import Scope, chunks, never_ran

log = logging.getLogger("spendplane.ledger")

#: A live instance rewrites its allowance rows at least this often (their expiry moves with them).
ALLOWANCE_RENEW = timedelta(seconds=60)
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
#: A spend-log row may start a little before this instance admitted its request (clocks of two hosts).
CLOCK_SKEW = timedelta(minutes=1)
BUDGET_KEY_PREFIX = "budget:"
#: How long bidding for a contested spend event stays open, in refresh intervals (SPEND_REFRESH_SECONDS): every live
#: instance refreshes at least once in that time, with a refresh's own duration to spare.
SETTLE_DELAY_REFRESHES = 2
MEDIAN_QUANTILE = Decimal("0.5")

SpendOf = Callable[[AsyncSession, LiteLLMSchema, Iterable[Scope], Period, datetime], Awaitable[dict[Scope, Decimal]]]
AccountKey = tuple[str, str]


@dataclass(frozen=True)
class Claim:
    """One budget, in one window, that a request must fit in."""

    budget_key: str
    scope: Scope
    period: Period
    cap: Decimal  # the hard limit in USD
    #: The budget row's limit is read as `cap = limit x hard_fraction` when granting (None: not a stored budget).
    hard_fraction: Decimal | None = None

    @property
    def key(self) -> AccountKey:
        return (self.budget_key, self.period.key)


@dataclass(frozen=True)
class Refusal:
    claim: Claim
    available: Decimal
    #: Pooled holds: what the budget's margin would have grown by with this request (0 otherwise).
    margin: Decimal = Decimal(0)


_ZERO = Decimal(0)
#: Allowance rows per upsert statement (`Ledger._write_allowances`).
ALLOWANCE_CHUNK = 64


@dataclass(eq=False)
class _GrantRequest:
    needs: list[tuple[Account, Decimal]]
    #: What each account (by id) must at least gain for the request to fit.
    minimum: dict[int, Decimal]
    future: asyncio.Future[tuple[list[tuple[Account, Decimal]], Refusal | None]]


@dataclass(eq=False, slots=True)
class Reservation:
    """One admitted request's hold on every budget it fell under, until its spend is in the logs.

    One object the garbage collector tracks per hold (its budgets by key, its call's holds by id: tuples of
    strings, which the collector stops tracking): a full collection walks every open hold, and tens of thousands
    of them made it a pause of the event loop of 100 ms and more (`bench/pre_request.py --probe`)."""

    hold_id: str
    call_id: str
    #: sha256 of the key it was admitted with ('' when none): spend is matched to holds by call id and key.
    owner: str
    amount: Decimal
    created_at: datetime
    #: The budgets (`Ledger.accounts` keys) it holds on; an account lives as long as a hold on it.
    accounts: tuple[AccountKey, ...]
    settled: bool = False  # the amount is the real cost now, not the estimate
    request_id: str | None = None
    #: The estimate's variance (USD squared) for the budgets' pooled margin; 0 once settled.
    variance: Decimal = Decimal(0)
    #: Who it was admitted for, as budgets match requests (the enforcer's `identity`: strings only, so no object
    #: the collector tracks): a budget created while it runs counts it (`Ledger.adopt`).
    identity: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpendSeen:
    """A request's real spend: a settlement row, or a spend-log row (then `visible`: recorded spend has it)."""

    request_id: str
    call_id: str
    owner: str
    actual: Decimal
    failed: bool
    visible: bool = False


@dataclass(eq=False)
class Account:
    """One budget in one window, as this instance holds it. Totals are kept as reservations come and go, so a
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
    stored_held: Decimal = Decimal(0)
    stored_at: datetime | None = None
    #: Pooled margin (RESERVATION_MARGIN=pooled): the unsettled holds' summed variance (USD squared), and the
    #: margin held beside their means, z x sqrt(variance) in whole nanos (kept as holds come and go).
    z: Decimal = Decimal(0)
    variance: Decimal = Decimal(0)
    margin: Decimal = Decimal(0)

    @property
    def free(self) -> Decimal:
        return self.granted - self.held - self.margin

    @property
    def committed(self) -> Decimal:
        """Held: the holds and the margin over them."""
        return self.held + self.margin

    @property
    def in_flight(self) -> Decimal:
        """Held for requests whose real cost is not known yet (the margin over them included)."""
        return self.held - self.settled_pending + self.margin

    def margin_for(self, variance: Decimal) -> Decimal:
        if variance <= 0 or self.z <= 0:
            return Decimal(0)
        # In float (a margin is a statistic; a Decimal square root costs several microseconds), rounded up to
        # whole nanos; the same variance always gives the same margin.
        return Decimal(math.ceil(float(self.z) * math.sqrt(variance) * 1e9)).scaleb(-9)

    def need(self, amount: Decimal, variance: Decimal) -> Decimal:
        """What a new hold of `amount` with `variance` takes from the free allowance: its amount, and what the
        margin grows by (sqrt of the summed variance: n alike requests need a margin sqrt(n) times one's)."""
        if variance <= 0 or self.z <= 0:
            return amount
        return amount + self.margin_for(self.variance + variance) - self.margin

    def add_variance(self, delta: Decimal) -> None:
        self.variance = max(Decimal(0), self.variance + delta)
        self.margin = self.margin_for(self.variance)


@dataclass
class Ledger:
    db: Database
    schema: LiteLLMSchema
    spend_of: SpendOf
    clock: Callable[[], datetime]
    reservation_ttl: timedelta
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: The pooled margin's z (the standard normal quantile of RESERVATION_QUANTILE); 0: no margin.
    margin_z: Decimal = Decimal(0)
    accounts: dict[AccountKey, Account] = field(default_factory=dict)
    #: The windows (period keys) each budget has an account in: what `_inherit` looks at.
    _windows: dict[str, set[str]] = field(default_factory=dict)
    #: Open reservations by hold id, oldest first (dicts keep insertion order).
    reservations: dict[str, Reservation] = field(default_factory=dict)
    #: Unsettled reservations' hold ids by (call id, owner), oldest first: what a settlement for that call may end.
    _open_by_call: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    #: Settled reservations by the spend-log id their row will carry.
    settled_requests: dict[str, Reservation] = field(default_factory=dict)
    #: Other instances' held amounts per account, as of the last refresh.
    held_elsewhere: dict[AccountKey, Decimal] = field(default_factory=dict)
    #: How long bidding for a spend event another instance may hold a hold for stays open before the lowest bidder
    #: claims it (SETTLE_DELAY_REFRESHES refresh intervals).
    settle_delay: timedelta = timedelta(seconds=4)
    #: Settlement rows this instance bid for and has not claimed, by request id, with when it bid: withdrawn once it
    #: has no open hold of their call id and key left.
    _bids: dict[str, tuple[SpendSeen, datetime]] = field(default_factory=dict)
    _hold_ids: itertools.count[int] = field(default_factory=itertools.count)
    #: The hold made last (read right after a hold, with no await between: a decision's own).
    last_hold: Reservation | None = None
    _grant_queue: list[_GrantRequest] = field(default_factory=list)
    _granting: asyncio.Task[None] | None = None

    @cached
    def _hold_prefix(self) -> str:
        return f"{self.instance_id[:8]}-"

    def account(self, claim: Claim) -> Account:
        found = self.accounts.get(claim.key)
        if found is None:
            found = self.accounts[claim.key] = Account(claim, z=self.margin_z)
            windows = self._windows.setdefault(claim.budget_key, set())
            if windows:  # another window of this budget is open here
                self._inherit(found, windows)
            windows.add(claim.period.key)
        elif found.claim is not claim:
            if claim.cap < found.claim.cap:
                # The limit was cut: the free part of the allowance was granted under the old one. Only what
                # is held stays; the next request asks the database, which judges it on the new limit.
                found.granted = min(found.granted, whole_nanos(found.committed, up=True))
            found.claim = claim
        return found

    def _inherit(self, account: Account, windows: set[str]) -> None:
        """A new window of a budget that overlaps another window this instance holds requests on (the budget's
        window changed: cadence, zone or start): the requests admitted inside the new window and still open are
        its requests too — their spend will be logged in it — so they hold on it as well, as a limit cut keeps what
        is held. Windows that follow each other (a day, then the next) never overlap: nothing to scan."""
        claim = account.claim
        period = claim.period
        overlapping = [
            other.claim.key
            for window in windows
            if (other := self.accounts.get((claim.budget_key, window))) is not None
            and other.holds > 0
            and other.claim.period.start < period.end
            and period.start < other.claim.period.end
        ]
        if not overlapping:
            return
        for reservation in self.reservations.values():
            if claim.key in reservation.accounts or not any(k in reservation.accounts for k in overlapping):
                continue
            if not period.start <= reservation.created_at < period.end:
                continue
            _count_on(account, reservation)

    def adopt(
        self,
        wanted: Sequence[tuple[Claim, Callable[[tuple[str, ...]], bool]]],
        reservations: Iterable[Reservation] | None = None,
    ) -> list[Account]:
        """Budgets that did not exist when the requests still open here were admitted (created since, or a
        decision that straddled their creation): the open holds each one covers (`wanted`: its claim in its
        current window, and whether it covers a hold's `identity`) admitted inside that window hold on it too —
        their spend will be logged in it — as `_inherit` does for a window change. One scan of the open holds for
        all of them, when budgets are loaded, never per decision.

        The account's allowance grows to what it holds, granted or not: the requests run already, and the
        allowance row (written by `persist`, or the next reconcile) is how other instances count them."""
        if not wanted or not self.reservations:
            return []
        found: dict[AccountKey, Account] = {}
        for reservation in self.reservations.values() if reservations is None else reservations:
            for claim, covers in wanted:
                period = claim.period
                if (
                    claim.key in reservation.accounts
                    or not period.start <= reservation.created_at < period.end
                    or not covers(reservation.identity)
                ):
                    continue
                account = found.get(claim.key)
                if account is None:
                    account = found[claim.key] = self.account(claim)
                _count_on(account, reservation)
        for account in found.values():
            account.granted = max(account.granted, whole_nanos(account.committed, up=True))
        return list(found.values())

    async def persist(self, accounts: list[Account]) -> None:
        """Write these accounts' allowance rows now (`adopt`: other instances count what they hold at once)."""
        if accounts:
            await self._persist(sorted(accounts, key=lambda a: a.claim.key), self.clock())

    def _forget_window(self, key: AccountKey) -> None:
        budget_key, window = key
        windows = self._windows.get(budget_key)
        if windows is not None:
            windows.discard(window)
            if not windows:
                del self._windows[budget_key]

    def pending_for(self, key: AccountKey) -> Decimal:
        return self.figures_for(key)[0]

    def in_flight_for(self, key: AccountKey) -> Decimal:
        """Held in flight for this budget window by this instance and (as of the last refresh) every other."""
        return self.figures_for(key)[1]

    def figures_for(self, key: AccountKey) -> tuple[Decimal, Decimal]:
        """`pending_for` and `in_flight_for` in one look-up (every decision asks both of every budget)."""
        account = self.accounts.get(key)
        elsewhere = self.held_elsewhere.get(key, _ZERO)
        if account is None:
            return _ZERO, elsewhere
        return account.settled_pending, account.in_flight + elsewhere

    # ---------------------------------------------------------------------------------------------- reserving

    async def reserve(
        self,
        call_id: str,
        amount: Decimal,
        claims: Sequence[Claim],
        owner: str = "",
        variance: Decimal = Decimal(0),
        identity: tuple[str, ...] = (),
    ) -> Refusal | None:
        """Hold `amount` in every claimed budget, or in none (the refusal names the budget that is short). Every
        call is a hold of its own: a reused call id never replaces or ends an open one. With `variance` (pooled
        holds) each budget's margin grows with it: the request fits when its amount and the margin's growth do."""
        if amount <= 0 or not claims:
            return None
        refusal = await self._reserve(call_id, amount, claims, owner, variance, identity)
        return self._with_margin(refusal, amount, variance)

    async def _reserve(
        self,
        call_id: str,
        amount: Decimal,
        claims: Sequence[Claim],
        owner: str,
        variance: Decimal,
        identity: tuple[str, ...] = (),
    ) -> Refusal | None:
        accounts = [self.account(c) for c in claims]
        for _ in range(TOP_UP_ATTEMPTS):
            short = [(a, need) for a in accounts if a.free < (need := a.need(amount, variance))]
            known_short = self._known_exhausted(short)
            if known_short is not None:
                return known_short
            if not short:
                self._hold(call_id, owner, amount, accounts, variance, identity)  # no await between check and this
                return None
            refusal = await self._top_up(short)
            if refusal is not None:
                return refusal
        return Refusal(short[0][0].claim, short[0][0].free)

    def try_hold(
        self,
        call_id: str,
        amount: Decimal,
        claims: Sequence[Claim],
        owner: str = "",
        variance: Decimal = Decimal(0),
        identity: tuple[str, ...] = (),
    ) -> bool:
        """`reserve` when it needs no round trip: hold `amount` (and its margin's growth, with `variance`) at once if
        every claimed budget has it free in this instance's allowance (True; also for nothing to hold); False when
        `reserve` must ask the database."""
        if amount <= 0 or not claims:
            return True
        accounts = [self.account(c) for c in claims]
        if any(a.free < a.need(amount, variance) for a in accounts):
            return False
        self._hold(call_id, owner, amount, accounts, variance, identity)
        return True

    def need(self, claim: Claim, amount: Decimal, variance: Decimal = Decimal(0)) -> Decimal:
        """What a hold of `amount` with `variance` would take from `claim`'s budget (its margin's growth included),
        without holding anything or creating its account."""
        account = self.accounts.get(claim.key) or Account(claim, z=self.margin_z)
        return account.need(amount, variance)

    def known_exhausted(
        self, claims: Sequence[Claim], amount: Decimal, variance: Decimal = Decimal(0)
    ) -> Refusal | None:
        """A refusal this instance can give from memory: the database said a moment ago that not even this much
        is left (no round trip, whatever the request looks like)."""
        found = [
            (a, need)
            for c in claims
            if (a := self.accounts.get(c.key)) is not None and a.free < (need := a.need(amount, variance))
        ]
        return self._with_margin(self._known_exhausted(found), amount, variance)

    def _with_margin(self, refusal: Refusal | None, amount: Decimal, variance: Decimal) -> Refusal | None:
        if refusal is None or variance <= 0 or (account := self.accounts.get(refusal.claim.key)) is None:
            return refusal
        return replace(refusal, margin=account.need(amount, variance) - amount)

    def _known_exhausted(self, short: list[tuple[Account, Decimal]]) -> Refusal | None:
        now = self.clock()
        for account, need in short:
            if (
                account.exhausted is not None
                and account.exhausted_until is not None
                and now < account.exhausted_until
                and need - account.free > account.exhausted
            ):
                return Refusal(account.claim, account.free + account.exhausted)
        return None

    async def _top_up(self, short: list[tuple[Account, Decimal]]) -> Refusal | None:
        short = sorted(short, key=lambda pair: pair[0].claim.key)
        held: list[Account] = []
        for account, need in short:
            account.demand += need
        try:
            for account, _ in short:
                await account.lock.acquire()
                held.append(account)
            # Ask for what this request and every request queued behind it need (a burst gets one grant).
            lacking = [(a, need) for a, need in short if a.free < need]
            if not lacking:
                return None
            known = self._known_exhausted(lacking)
            if known is not None:  # a request ahead in the queue just heard the database say no
                return known
            needs = [(a, a.demand - a.free) for a, _ in lacking]
            granted, refusal = await self._grant(needs, minimum={id(a): need for a, need in lacking})
            for account, extra in granted:
                account.granted += extra
                account.exhausted = account.exhausted_until = None
            if refusal is not None:
                short_account = self.account(refusal.claim)
                short_account.exhausted = max(Decimal(0), refusal.available - short_account.free)
                short_account.exhausted_until = self.clock() + EXHAUSTED_FOR
            return refusal
        finally:
            for account, need in short:
                account.demand -= need
            for account in held:
                account.lock.release()

    async def _grant(
        self, needs: list[tuple[Account, Decimal]], *, minimum: dict[int, Decimal]
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
        accounts = sorted({id(a): a for r in batch for a, _ in r.needs}.values(), key=lambda a: a.claim.key)
        answers: list[tuple[list[tuple[Account, Decimal]], Refusal | None]] = []
        async with self.db.sessions() as session, session.begin():
            states = await self._locked_states(session, accounts, now)
            left: dict[int, Decimal] = {}
            for account in accounts:
                cap, recorded, others = states[id(account)]
                if cap < account.claim.cap:  # cut since this instance last loaded budgets: the free part goes
                    account.granted = min(account.granted, whole_nanos(account.committed, up=True))
                left[id(account)] = cap - recorded - others - account.granted
            extras: dict[int, Decimal] = {}
            for request in batch:
                refusal = None
                for account, _ in request.needs:
                    available = left[id(account)] - extras.get(id(account), Decimal(0))
                    if whole_nanos(available) < whole_nanos(request.minimum[id(account)] - account.free, up=True):
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
            written = [(a, a.granted + extras.get(id(a), Decimal(0))) for a in accounts]
            written = [(a, total) for a, total in written if total > 0]
            await self._write_allowances(session, written, now)
        for account, total in written:
            account.stored, account.stored_held, account.stored_at = total, _held_part(account, total), now
        for account in accounts:
            account.tight = left[id(account)] - extras.get(id(account), Decimal(0)) < account.claim.cap * TIGHT_SHARE
        return answers

    async def _locked_states(
        self, session: AsyncSession, accounts: list[Account], now: datetime
    ) -> dict[int, tuple[Decimal, Decimal, Decimal]]:
        """Lock the budgets' ledger rows (in key order), then read each one's hard limit as stored now, its
        recorded spend and the other instances' live allowances: a handful of statements however many budgets
        the batch touches."""
        keys = [
            {"budget_key": a.claim.budget_key, "period": a.claim.period.key, "recorded": 0, "reconciled_at": now}
            for a in accounts
        ]
        await session.execute(insert_or_ignore(self.db.dialect, BudgetLedgerRow.__table__), keys)  # type: ignore[arg-type]
        pairs = [a.claim.key for a in accounts]
        await session.execute(
            select(BudgetLedgerRow.budget_key)
            .where(tuple_(BudgetLedgerRow.budget_key, BudgetLedgerRow.period).in_(pairs))
            .order_by(BudgetLedgerRow.budget_key, BudgetLedgerRow.period)
            .with_for_update()
        )
        caps = await self._stored_caps(session, accounts)
        recorded: dict[tuple[Scope, str], Decimal] = {}
        by_period: dict[Period, list[Account]] = {}
        for account in accounts:
            by_period.setdefault(account.claim.period, []).append(account)
        for period, in_period in by_period.items():
            found = await self.spend_of(session, self.schema, {a.claim.scope for a in in_period}, period, now)
            recorded.update({(scope, period.key): usd for scope, usd in found.items()})
        totals = await session.execute(
            select(AllowanceRow.budget_key, AllowanceRow.period, func.sum(AllowanceRow.granted))
            .where(
                tuple_(AllowanceRow.budget_key, AllowanceRow.period).in_(pairs),
                AllowanceRow.instance_id != self.instance_id,
                AllowanceRow.expires_at > now,
            )
            .group_by(AllowanceRow.budget_key, AllowanceRow.period)
        )
        others = {(key, period): total for key, period, total in totals.all()}
        return {
            id(a): (
                min(a.claim.cap, caps.get(a.claim.budget_key, a.claim.cap)),
                recorded[(a.claim.scope, a.claim.period.key)],
                _usd(others.get(a.claim.key)),
            )
            for a in accounts
        }

    async def _stored_caps(self, session: AsyncSession, accounts: list[Account]) -> dict[str, Decimal]:
        """Hard limits of stored budgets as the database has them in this transaction (a budget deleted since:
        nothing may be granted from it). What this instance loaded may be a moment old."""
        ids = {
            a.claim.budget_key.removeprefix(BUDGET_KEY_PREFIX): a
            for a in accounts
            if a.claim.budget_key.startswith(BUDGET_KEY_PREFIX) and a.claim.hard_fraction is not None
        }
        if not ids:
            return {}
        caps = {BUDGET_KEY_PREFIX + budget_id: Decimal(0) for budget_id in ids}
        rows = await session.execute(
            select(BudgetRow.id, BudgetRow.spend_limit, BudgetRow.hard_limit_percent).where(BudgetRow.id.in_(ids))
        )
        for budget_id, limit, hard in rows.all():
            caps[BUDGET_KEY_PREFIX + budget_id] = whole_nanos(limit * hard)
        return caps

    async def _write_allowances(
        self, session: AsyncSession, grants: list[tuple[Account, Decimal]], now: datetime
    ) -> None:
        """Upsert this instance's allowance rows (renewing their expiry), ALLOWANCE_CHUNK rows per statement: building
        one statement for hundreds of rows held the event loop for 6-8 ms, a stall every decision waiting behind it
        felt (`bench/pre_request.py --probe`); between chunks the loop answers requests."""
        if not grants:
            return
        for start in range(0, len(grants), ALLOWANCE_CHUNK):
            await self._write_allowance_rows(session, grants[start : start + ALLOWANCE_CHUNK], now)

    async def _write_allowance_rows(
        self, session: AsyncSession, grants: list[tuple[Account, Decimal]], now: datetime
    ) -> None:
        expires = now + self.reservation_ttl
        rows = [
            {
                "budget_key": a.claim.budget_key,
                "period": a.claim.period.key,
                "instance_id": self.instance_id,
                "granted": granted,
                "held": _held_part(a, granted),
                "expires_at": expires,
            }
            for a, granted in grants
        ]
        insert = (postgresql.insert if self.db.is_postgres else sqlite.insert)(AllowanceRow)
        statement = insert.on_conflict_do_update(
            index_elements=["budget_key", "period", "instance_id"],
            set_={
                "granted": insert.excluded.granted,
                "held": insert.excluded.held,
                "expires_at": insert.excluded.expires_at,
            },
        )
        await session.execute(statement, rows)

    # ---------------------------------------------------------------------------------------------- holding

    def _hold(
        self,
        call_id: str,
        owner: str,
        amount: Decimal,
        accounts: list[Account],
        variance: Decimal = Decimal(0),
        identity: tuple[str, ...] = (),
    ) -> None:
        now = self.clock()
        variance = variance if self.margin_z > 0 else Decimal(0)
        hold_id = f"{self._hold_prefix}{next(self._hold_ids)}"
        keys = tuple(account.claim.key for account in accounts)
        self.last_hold = self.reservations[hold_id] = Reservation(
            hold_id, call_id, owner, amount, now, keys, variance=variance, identity=identity
        )
        pair = (call_id, owner)
        self._open_by_call[pair] = (*self._open_by_call.get(pair, ()), hold_id)
        for account in accounts:
            account.held += amount
            account.holds += 1
            if variance:
                account.add_variance(variance)
            account.active = True
            account.last_used = now

    def _settle(self, reservation: Reservation, spend: SpendSeen) -> None:
        """The request's real cost is known: its reservation counts that instead of the estimate."""
        self._unlist(reservation)
        if spend.failed and spend.actual <= 0:
            self._drop(reservation)
            return
        actual = max(spend.actual, Decimal(0))
        for account in self._accounts_of(reservation):
            account.held += actual - reservation.amount
            account.settled_pending += actual
            if reservation.variance:  # the cost is known now: its share of the margin goes
                account.add_variance(-reservation.variance)
        reservation.variance = Decimal(0)
        reservation.amount, reservation.settled, reservation.request_id = actual, True, spend.request_id
        self.settled_requests[spend.request_id] = reservation

    def _accounts_of(self, reservation: Reservation) -> list[Account]:
        return [account for key in reservation.accounts if (account := self.accounts.get(key)) is not None]

    def _unlist(self, reservation: Reservation) -> None:
        pair = (reservation.call_id, reservation.owner)
        waiting = self._open_by_call.get(pair)
        if waiting is None or reservation.hold_id not in waiting:
            return
        rest = tuple(hold for hold in waiting if hold != reservation.hold_id)
        if rest:
            self._open_by_call[pair] = rest
        else:
            del self._open_by_call[pair]

    def _drop(self, reservation: Reservation, *, recorded: bool = False) -> None:
        """End a hold. `recorded`: its spend is in the logs now, so the allowance it used is spent, not free
        again (recorded spend counts it from here on); otherwise (failed, expired) it is free again."""
        if self.reservations.pop(reservation.hold_id, None) is None:
            return
        self._unlist(reservation)
        if reservation.request_id:
            self.settled_requests.pop(reservation.request_id, None)
        for account in self._accounts_of(reservation):
            account.held -= reservation.amount
            account.holds -= 1
            if reservation.variance:
                account.add_variance(-reservation.variance)
            if reservation.settled:
                account.settled_pending -= reservation.amount
            if recorded:
                account.granted = max(Decimal(0), account.granted - reservation.amount)

    def takers(self, seen: Iterable[SpendSeen]) -> list[SpendSeen]:
        """Which of these spend events an open hold of ours could take, at most one event per hold."""
        # Only the events' own pairs are counted (a refresh must not cost more with every open hold).
        taken: dict[tuple[str, str], int] = {}
        wanted = []
        for spend in seen:
            for pair in _pairs(spend):
                if taken.get(pair, 0) < len(self._open_by_call.get(pair, ())):
                    taken[pair] = taken.get(pair, 0) + 1
                    wanted.append(spend)
                    break
        return wanted

    def apply(self, claimed: Iterable[SpendSeen]) -> int:
        """End (visible spend) or settle (spend not in the logs yet) the smallest open hold of each claimed event's
        call id and key (the oldest of equal ones). A claim that finds none (settled meanwhile) leaves its hold as
        it is: safe.

        The call id is the client's, so a spend event cannot tell which of the holds sharing it was its request's.
        Ending the smallest keeps the dearest ones held: whichever requests are still running, what stays held for
        them is at least what they were admitted with. (Ending the oldest let a cheap request that fails at once
        free the hold of a dear one still running under the same call id.)"""
        applied = 0
        for spend in claimed:
            waiting = next((w for pair in _pairs(spend) if (w := self._open_by_call.get(pair))), None)
            reservation = self._smallest(waiting) if waiting else None
            if reservation is None:
                continue
            if spend.visible:
                self._drop(reservation, recorded=True)
            else:
                self._settle(reservation, spend)
            applied += 1
        return applied

    def _smallest(self, holds: tuple[str, ...]) -> Reservation | None:
        """Of these open holds (oldest first), the smallest: the oldest of equal ones."""
        reservations = self.reservations
        if len(holds) == 1:  # the common case: a call id used once
            return reservations.get(holds[0])
        found = [r for hold in holds if (r := reservations.get(hold)) is not None]
        return min(found, key=lambda r: r.amount, default=None)

    async def _claim(self, seen: list[SpendSeen]) -> list[SpendSeen]:
        """Make these events ours, or learn another instance has them. An event only this instance can hold a hold
        for (`split`) is claimed at once: one UPDATE per chunk that only one instance can win for each row. The
        others are bid for, and claimed once the bidding closed with this instance's bid the lowest (`_bid`).
        Events not yet stored as settlements (spend-log rows) are stored first."""
        if not seen:
            return []
        by_id = {s.request_id: s for s in seen}
        claimed: list[SpendSeen] = []
        now = self.clock()
        async with self.db.sessions() as session, session.begin():
            fresh = [s for s in seen if s.visible]
            if fresh:
                await session.execute(
                    insert_or_ignore(self.db.dialect, SettlementRow.__table__),  # type: ignore[arg-type]
                    [_settlement_row(s, now) for s in fresh],
                )
            at_once, bids = await self.split(session, list(by_id.values()), now)
            for chunk in chunks(sorted(s.request_id for s in at_once)):
                won = await session.scalars(
                    update(SettlementRow)
                    .where(
                        SettlementRow.request_id.in_(chunk),
                        SettlementRow.claimed_by.is_(None),
                        or_(SettlementRow.bid_by.is_(None), SettlementRow.bid_by == self.instance_id),
                    )
                    .values(claimed_by=self.instance_id)
                    .returning(SettlementRow.request_id)
                )
                claimed.extend(by_id[r] for r in won.all())
            # One another instance already bid for is not ours alone after all: it joins the bidding.
            taken = {s.request_id for s in claimed}
            bids.update(
                {
                    s.request_id: bid
                    for s in at_once
                    if s.request_id not in taken and (bid := self._bid_of(s)) is not None
                }
            )
            won_bids = set(await self._bid(session, bids, now))
            claimed.extend(by_id[r] for r in won_bids)
        for spend in claimed:
            self._bids.pop(spend.request_id, None)
        self.remember_bids(by_id[r] for r in bids if r not in won_bids)
        return claimed

    async def split(
        self, session: AsyncSession, seen: list[SpendSeen], now: datetime
    ) -> tuple[list[SpendSeen], dict[str, Decimal]]:
        """Of these events (ones an open hold of ours could take: `takers`), those no other instance can hold a
        hold for — no other live instance has an allowance on a budget our holds of their call id and key are
        on, read in the caller's transaction — to claim and apply at once; and for the rest, what this instance
        bids: its smallest open hold of that call id and key (the next smallest for a second event of it).

        A request holds only inside its instance's allowance, and the holds of one call id and key fall under
        the same budgets (its key's, its user's, its team's), so another instance without an allowance on those
        budgets holds none of them. One instance alone (embedded SQLite, say) always applies at once."""
        waiting: list[tuple[SpendSeen, tuple[str, str]]] = []
        for spend in seen:
            pair = next((pair for pair in _pairs(spend) if self._open_by_call.get(pair)), None)
            if pair is not None:
                waiting.append((spend, pair))
        if not waiting:
            return [], {}
        accounts_of: dict[tuple[str, str], set[AccountKey]] = {}
        for _, pair in waiting:
            if pair not in accounts_of:
                accounts_of[pair] = {
                    key for hold in self._open_by_call[pair] if (r := self.reservations.get(hold)) for key in r.accounts
                }
        wanted = sorted(set().union(*accounts_of.values()))
        shared: set[AccountKey] = set()
        for start in range(0, len(wanted), ALLOWANCE_CHUNK * 8):
            rows = await session.execute(
                select(AllowanceRow.budget_key, AllowanceRow.period)
                .where(
                    tuple_(AllowanceRow.budget_key, AllowanceRow.period).in_(
                        wanted[start : start + ALLOWANCE_CHUNK * 8]
                    ),
                    AllowanceRow.instance_id != self.instance_id,
                    AllowanceRow.expires_at > now,
                    AllowanceRow.granted > 0,
                )
                .distinct()
            )
            shared.update((key, period) for key, period in rows.all())
        at_once: list[SpendSeen] = []
        bids: dict[str, Decimal] = {}
        nth: dict[tuple[str, str], int] = {}
        for spend, pair in waiting:
            if not accounts_of[pair] & shared:
                at_once.append(spend)
                continue
            # Read after an await: the holds may have ended meanwhile (then there is nothing to bid).
            amounts = sorted(
                r.amount for hold in self._open_by_call.get(pair, ()) if (r := self.reservations.get(hold))
            )
            if amounts:
                i = nth[pair] = nth.get(pair, -1) + 1
                bids[spend.request_id] = amounts[min(i, len(amounts) - 1)]
        return at_once, bids

    def _bid_of(self, spend: SpendSeen) -> Decimal | None:
        """What this instance bids for an event: its smallest open hold of the event's call id and key."""
        waiting = next((w for pair in _pairs(spend) if (w := self._open_by_call.get(pair))), None)
        smallest = self._smallest(waiting) if waiting else None
        return smallest.amount if smallest is not None else None

    def remember_bids(self, seen: Iterable[SpendSeen]) -> None:
        """Rows this instance bid for as it stored them (ingestion): withdrawn if its holds of them end first."""
        now = self.clock()
        for spend in seen:
            self._bids.setdefault(spend.request_id, (spend, now))

    async def _bid(self, session: AsyncSession, bids: dict[str, Decimal], now: datetime) -> list[str]:
        """Bid for these unclaimed rows (request id: our smallest hold of their call id and key), then claim those
        whose bidding has been open for `settle_delay` with our bid the lowest: their event goes to the instance
        holding the smallest hold of its call id and key cluster-wide, as `apply` does on one instance.

        A bid replaces none, or a higher one, or our own (our smallest hold may have changed); the first bid opens
        the bidding (`created_at`). Every statement is conditional (WHERE claimed_by IS NULL ...), so two instances
        bidding, or one bidding while another claims, serialize on the row: the claim needs the row's bid to be
        the claimer's when it commits, and a bid needs the row unclaimed."""
        if not bids:
            return []
        won: list[str] = []
        ripe = now - self.settle_delay
        t = SettlementRow
        for chunk in chunks(sorted(bids)):
            mine = case({r: literal(bids[r], Money) for r in chunk}, value=t.request_id)
            await session.execute(
                update(t)
                .where(
                    t.request_id.in_(chunk),
                    t.claimed_by.is_(None),
                    or_(t.bid_by.is_(None), t.bid_by == self.instance_id, t.bid_amount > mine),
                )
                .values(
                    bid_by=self.instance_id,
                    bid_amount=mine,
                    created_at=case((t.bid_by.is_(None), literal(now, t.created_at.type)), else_=t.created_at),
                )
                .execution_options(synchronize_session=False)
            )
            claimed = await session.scalars(
                update(t)
                .where(
                    t.request_id.in_(chunk),
                    t.claimed_by.is_(None),
                    and_(t.bid_by == self.instance_id, t.created_at <= ripe),
                )
                .values(claimed_by=self.instance_id)
                .returning(t.request_id)
                .execution_options(synchronize_session=False)
            )
            won.extend(claimed.all())
        return won

    async def _withdraw(self) -> None:
        """Withdraw our bids for rows whose call id and key we hold nothing of any more (those holds settled or
        expired): another instance's hold may take them. Withdrawing reopens the bidding (`created_at`), so every
        instance has the whole delay to bid again."""
        now = self.clock()
        stale = now - 2 * self.reservation_ttl  # pruned by then (`prune_settlements`)
        gone = [
            request_id
            for request_id, (spend, at) in self._bids.items()
            if at < stale or not any(self._open_by_call.get(pair) for pair in _pairs(spend))
        ]
        if not gone:
            return
        t = SettlementRow
        async with self.db.sessions() as session, session.begin():
            for chunk in chunks(sorted(gone)):
                await session.execute(
                    update(t)
                    .where(t.request_id.in_(chunk), t.claimed_by.is_(None), t.bid_by == self.instance_id)
                    .values(bid_by=None, bid_amount=None, created_at=now)
                    .execution_options(synchronize_session=False)
                )
        for request_id in gone:
            self._bids.pop(request_id, None)

    async def apply_settlements(self) -> int:
        """Settle our holds from settlements another instance stored (or this one bid for) and nobody claimed yet."""
        if self._bids:
            await self._withdraw()
        pairs = self._oldest_open()
        if not pairs:
            return 0
        found: list[SpendSeen] = []
        async with self.db.reader() as session:
            for chunk in chunks(sorted({call for call, _ in pairs})):
                rows = await session.scalars(
                    select(SettlementRow)
                    .where(SettlementRow.call_id.in_(chunk), SettlementRow.claimed_by.is_(None))
                    .order_by(SettlementRow.created_at)
                )
                found.extend(SpendSeen(r.request_id, r.call_id, r.api_key, r.actual, r.failed) for r in rows.all())
        return self.apply(await self._claim(self.takers(found)))

    # ---------------------------------------------------------------------------------------------- reconciling

    async def visible_spend(self, session: AsyncSession) -> list[SpendSeen]:
        """In the snapshot recorded spend is read from: spend-log rows of our settled holds' requests, and rows
        of our unsettled holds' call ids that no instance claimed yet (LiteLLM wrote them, no callback came)."""
        if not self.reservations or not self.schema.has_table(spend_logs):
            return []
        t = spend_logs.c
        seen: list[SpendSeen] = []
        settled = list(itertools.islice(self.settled_requests, CHECK_LIMIT))
        for chunk in chunks(sorted(settled)):
            rows = await session.scalars(select(t.request_id).where(t.request_id.in_(chunk)))
            seen.extend(_visible_settled(self.settled_requests[r]) for r in rows.all() if r in self.settled_requests)
        pairs = self._oldest_open()
        if not pairs:
            return seen
        by_call = self.schema.has(spend_logs, "litellm_call_id")
        call_column = t.litellm_call_id if by_call else t.request_id
        # The oldest unsettled hold bounds the search: reservations are kept oldest first, so it is the first one
        # not settled (not a scan of every open hold, which grew with the load into a stall of the loop).
        oldest = next(r.created_at for r in self.reservations.values() if not r.settled) - CLOCK_SKEW
        claimed = select(SettlementRow.request_id).where(
            SettlementRow.request_id == t.request_id, SettlementRow.claimed_by.is_not(None)
        )
        failed = t.status == "failure" if self.schema.has(spend_logs, "status") else None
        # A zero-cost failure may be a refusal that held nothing (`never_ran`): its metadata says.
        metadata = t.metadata if failed is not None and self.schema.has(spend_logs, "metadata") else None
        for chunk in chunks(sorted({call for call, _ in pairs})):
            columns = [t.request_id, call_column, t.api_key, t.spend]
            statement = (
                select(
                    *columns, *([failed] if failed is not None else []), *([metadata] if metadata is not None else [])
                )
                .where(call_column.in_(chunk), t.start_time >= oldest, ~claimed.exists())
                .order_by(t.start_time)
            )
            for row in (await session.execute(statement)).all():
                if metadata is not None and row[4] and not row[3] and _refusal_row(row[5]):
                    continue
                seen.append(
                    SpendSeen(
                        row[0],
                        row[1],
                        row[2] or "",
                        float_to_usd(row[3]),
                        bool(row[4]) if failed is not None else False,
                        visible=True,
                    )
                )
        return seen

    async def others_held(self, session: AsyncSession) -> dict[AccountKey, Decimal]:
        """Other instances' held amounts for our accounts (in-flight spend they know of)."""
        pairs = list(self.accounts)
        if not pairs:
            return {}
        rows = await session.execute(
            select(AllowanceRow.budget_key, AllowanceRow.period, func.sum(AllowanceRow.held))
            .where(
                tuple_(AllowanceRow.budget_key, AllowanceRow.period).in_(pairs),
                AllowanceRow.instance_id != self.instance_id,
                AllowanceRow.expires_at > self.clock(),
            )
            .group_by(AllowanceRow.budget_key, AllowanceRow.period)
        )
        return {(key, period): _usd(total) for key, period, total in rows.all()}

    async def reconcile(self, visible: Sequence[SpendSeen], elsewhere: dict[AccountKey, Decimal] | None = None) -> None:
        """Drop holds whose spend is in the logs (`visible`: seen in the same snapshot the recorded spend was
        read from) or that expired, hand idle allowance back, and tell the database.

        Claims come first (a database write); then memory changes with no await between reading and writing it
        (a concurrent reservation sees the old state or the new); then the database is told, under each
        account's lock, what the account holds. Allowances only ever go down here, which is always safe."""
        recorded = [s for s in visible if s.request_id in self.settled_requests]
        claimed = await self._claim(self.takers(s for s in visible if s.request_id not in self.settled_requests))
        if elsewhere is not None:
            self.held_elsewhere = elsewhere
        now = self.clock()
        for spend in recorded:
            reservation = self.settled_requests.get(spend.request_id)
            if reservation is not None:
                self._drop(reservation, recorded=True)
        self.apply(claimed)
        cutoff = now - self.reservation_ttl
        expired = []
        for reservation in self.reservations.values():  # oldest first: stop at the first one still young
            if reservation.created_at >= cutoff:
                break
            expired.append(reservation)
        for reservation in expired:
            self._drop(reservation)
        changed: list[Account] = []
        renew_after = min(ALLOWANCE_RENEW, self.reservation_ttl / 4)
        for key, account in list(self.accounts.items()):
            idle_for = now - (account.last_used or now)
            if not account.active and not account.lock.locked() and (account.tight or idle_for > IDLE_RELEASE_AFTER):
                account.granted = whole_nanos(account.committed, up=True)  # idle: hand the free part back
            account.active = False
            account.exhausted = account.exhausted_until = None
            stale = account.stored_at is None or now - account.stored_at > renew_after
            moved = account.granted != account.stored or _held_part(account, account.granted) != account.stored_held
            if moved or (account.granted > 0 and stale):
                changed.append(account)
            elif account.granted <= 0 and account.holds == 0 and not account.lock.locked():
                del self.accounts[key]
                self._forget_window(key)
        if changed:
            await self._persist(sorted(changed, key=lambda a: a.claim.key), now)

    async def _persist(self, accounts: list[Account], now: datetime) -> None:
        for account in accounts:
            await account.lock.acquire()
        try:
            async with self.db.sessions() as session, session.begin():
                await self._write_allowances(session, [(a, a.granted) for a in accounts if a.granted > 0], now)
                gone = [a.claim.key for a in accounts if a.granted <= 0]
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
                account.stored_held = _held_part(account, account.granted)
        finally:
            for account in accounts:
                account.lock.release()

    def _oldest_open(self) -> list[tuple[str, str]]:
        """The (call id, key) pairs of unsettled holds, oldest first, at most CHECK_LIMIT: what one refresh asks
        about, at the same cost however many holds are open."""
        return list(itertools.islice(self._open_by_call, CHECK_LIMIT))

    def open_calls(self) -> list[str]:
        """Call ids of unsettled holds (oldest first, at most CHECK_LIMIT)."""
        return [call for call, _ in self._oldest_open()]

    async def close(self) -> None:
        """Hand the free part of every allowance back (a clean shutdown frees it at once); what is held stays
        counted, with its expiry, for the requests still running."""
        for account in self.accounts.values():
            account.granted = whole_nanos(account.committed, up=True)
        if self.accounts:
            await self._persist(sorted(self.accounts.values(), key=lambda a: a.claim.key), self.clock())
        self.accounts.clear()
        self._windows.clear()


def margin_z(quantile: Decimal, *, pooled: bool) -> Decimal:
    """The pooled margin's z: the standard normal quantile at RESERVATION_QUANTILE (0 per request, at the median
    and at the worst case, which holds max_tokens and needs no margin)."""
    if not pooled or not MEDIAN_QUANTILE < quantile < 1:
        return Decimal(0)
    return Decimal(str(round(NormalDist().inv_cdf(float(quantile)), 6)))


def _refusal_row(metadata: object) -> bool:
    """A spend-log row's metadata says `never_ran`: a zero-cost failure refused before any provider saw it held
    nothing on this ledger (or, refused after spendplane admitted it, its hold expires with
    RESERVATION_TTL_SECONDS), so it ends no hold: its call id is the client's, and a client could give it the call
    id of a dear request still running to free that one's hold."""
    return isinstance(metadata, dict) and never_ran(metadata.get("error_information"), metadata.get("status_fields"))


def _pairs(spend: SpendSeen) -> tuple[tuple[str, str], ...]:
    """The holds a spend event may end: its call id with its key, else a hold of that call id admitted without
    any key (a gateway that sent only a user or team)."""
    return ((spend.call_id, spend.owner), (spend.call_id, "")) if spend.owner else ((spend.call_id, ""),)


def _count_on(account: Account, reservation: Reservation) -> None:
    """An open hold admitted before `account` existed counts on it from now on (`_inherit`, `adopt`)."""
    reservation.accounts = (*reservation.accounts, account.claim.key)
    account.held += reservation.amount
    account.holds += 1
    if reservation.settled:
        account.settled_pending += reservation.amount
    if reservation.variance:
        account.add_variance(reservation.variance)


def _held_part(account: Account, granted: Decimal) -> Decimal:
    """What an allowance row says is held in flight: never more than the row grants."""
    return max(Decimal(0), min(granted, whole_nanos(account.in_flight, up=True)))


def _visible_settled(reservation: Reservation) -> SpendSeen:
    return SpendSeen(
        reservation.request_id or "", reservation.call_id, reservation.owner, reservation.amount, False, visible=True
    )


def _settlement_row(spend: SpendSeen, now: datetime) -> dict[str, object]:
    return {
        "request_id": spend.request_id,
        "call_id": spend.call_id,
        "api_key": spend.owner,
        "actual": spend.actual,
        "failed": spend.failed,
        "claimed_by": None,
        "created_at": now,
    }


def _usd(value: object) -> Decimal:
    # SUM over a Money column comes back through Money's result processor (Decimal), or as 0 when empty.
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))
