"""The admission ledger on its own: two ledgers are two app instances sharing the database."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert

from models.db import Database
from models.ledger import AllowanceRow
from models.litellm import LiteLLMSchema, probe_litellm_schema
from resolvers.enforcement import record_settlements
from resolvers.enforcement.ledger import IDLE_RELEASE_AFTER, Claim, Ledger, SpendSeen
from resolvers.platform.periods import month_of
from resolvers.rollups import spend_to_date
from resolvers.spend import Scope, spend_by_scope
from tests.conftest import NOW, Clock

pytestmark = pytest.mark.litellm_tables

TTL = timedelta(minutes=15)


async def _schema(db: Database) -> LiteLLMSchema:
    async with db.engine.connect() as conn:
        return await probe_litellm_schema(conn)


def claim(cap: str = "10") -> Claim:
    return Claim("budget:test", Scope.global_(), month_of(NOW), Decimal(cap))


async def ledgers(db: Database, clock: Clock, n: int = 2) -> list[Ledger]:
    schema = await _schema(db)
    return [Ledger(db, schema, spend_to_date, clock, TTL, instance_id=f"instance-{i}") for i in range(n)]


async def test_an_idle_instance_hands_its_free_allowance_back(db: Database, clock: Clock) -> None:
    one, two = await ledgers(db, clock)
    assert await one.reserve("a", Decimal(1), [claim()]) is None
    assert one.account(claim()).granted == Decimal("2.5")  # a quarter of what was left, for the next requests
    refused = await two.reserve("b", Decimal(8), [claim()])
    assert refused is not None and refused.available == Decimal("7.5")
    await one.reconcile([])  # used a moment ago: keeps its allowance
    assert (await two.reserve("b", Decimal(8), [claim()])) is not None
    clock.now += IDLE_RELEASE_AFTER + timedelta(seconds=1)
    await one.reconcile([])
    assert one.account(claim()).granted == Decimal(1)  # only what "a" holds
    assert await two.reserve("b", Decimal(8), [claim()]) is None


async def test_a_crashed_instances_allowance_expires(db: Database, clock: Clock) -> None:
    (ledger,) = await ledgers(db, clock, 1)
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(AllowanceRow).values(
                budget_key="budget:test",
                period=month_of(NOW).key,
                instance_id="crashed",
                granted=Decimal(9),
                expires_at=NOW + timedelta(minutes=2),
            )
        )
    assert (await ledger.reserve("a", Decimal(2), [claim()])) is not None
    clock.now += timedelta(minutes=2, seconds=1)
    assert await ledger.reserve("b", Decimal(2), [claim()]) is None


async def settle(
    ledger: Ledger, db: Database, call_id: str, actual: str, request_id: str, *, failed: bool = False, owner: str = ""
) -> int:
    """What spend ingestion does: store the settlement, then claim and apply it."""
    seen = SpendSeen(request_id, call_id, owner, Decimal(actual), failed)
    mine = ledger.takers([seen])
    async with db.sessions() as session, session.begin():
        await record_settlements(session, db.dialect, [seen], NOW, claimed_by=ledger.instance_id, claimed=mine)
    return ledger.apply(mine)


async def visible(ledger: Ledger, db: Database) -> list[SpendSeen]:
    async with db.reader() as session:
        return await ledger.visible_spend(session)


async def test_reservations_expire_and_settled_ones_leave_when_their_row_is_visible(db: Database, clock: Clock) -> None:
    from tests.support import SpendLog, add_spend

    (ledger,) = await ledgers(db, clock, 1)
    await ledger.reserve("old", Decimal(3), [claim()])
    await ledger.reserve("done", Decimal(2), [claim()])
    account = ledger.account(claim())
    assert await settle(ledger, db, "done", "0.5", "chatcmpl-1") == 1
    assert (account.held, account.settled_pending) == (Decimal("3.5"), Decimal("0.5"))
    await ledger.reconcile(await visible(ledger, db))  # its row is not in the logs yet: still held
    assert (account.held, account.settled_pending) == (Decimal("3.5"), Decimal("0.5"))
    await add_spend(db, SpendLog(0.5, NOW, request_id="chatcmpl-1"))
    await ledger.reconcile(await visible(ledger, db))
    assert (account.held, account.settled_pending) == (Decimal(3), Decimal(0))
    clock.now += TTL + timedelta(seconds=1)
    await ledger.reconcile([])
    assert account.held == 0


async def test_a_refresh_finds_the_spend_of_the_oldest_open_hold_behind_newer_and_settled_ones(
    db: Database, clock: Clock
) -> None:
    """The logs are searched from the oldest unsettled hold (less the clock skew): a row that starts at that
    hold's admission is found however many holds came after it, and a settled hold does not move the bound."""
    from tests.support import SpendLog, add_spend

    (ledger,) = await ledgers(db, clock, 1)
    await ledger.reserve("first", Decimal(1), [claim()])
    assert await settle(ledger, db, "first", "0.5", "chatcmpl-first") == 1
    clock.now += timedelta(minutes=5)
    await ledger.reserve("early", Decimal(1), [claim()])
    for i in range(3):
        clock.now += timedelta(minutes=5)
        await ledger.reserve(f"late-{i}", Decimal(1), [claim()])
    await add_spend(db, SpendLog(0.25, NOW + timedelta(minutes=5), request_id="chatcmpl-early", call_id="early"))
    seen = [s for s in await visible(ledger, db) if s.call_id == "early"]
    assert [(s.request_id, s.actual) for s in seen] == [("chatcmpl-early", Decimal("0.25"))]
    await ledger.reconcile(seen)
    assert ledger.open_calls() == ["late-0", "late-1", "late-2"]


def test_takers_take_one_event_per_open_hold_of_a_call() -> None:
    """A spend event ends one hold: with two open holds of a call, two of its three events are taken."""
    ledger = Ledger(None, None, spend_to_date, lambda: NOW, TTL)  # type: ignore[arg-type]
    ledger.account(claim()).granted = Decimal(10)
    assert ledger.try_hold("twice", Decimal(1), [claim()], owner="k")
    assert ledger.try_hold("twice", Decimal(1), [claim()], owner="k")
    events = [SpendSeen(f"r{i}", "twice", "k", Decimal(1), False) for i in range(3)]
    other = SpendSeen("r9", "unknown", "k", Decimal(1), False)
    assert [e.request_id for e in ledger.takers([*events, other])] == ["r0", "r1"]


async def test_a_failed_request_releases_its_reservation_at_once(db: Database, clock: Clock) -> None:
    (ledger,) = await ledgers(db, clock, 1)
    await ledger.reserve("x", Decimal(4), [claim()])
    await settle(ledger, db, "x", "0", "x", failed=True)
    assert ledger.account(claim()).held == 0


async def test_recorded_spend_counts_against_every_grant(db: Database, clock: Clock) -> None:
    from tests.support import SpendLog, add_spend

    await add_spend(db, SpendLog(9.5, NOW - timedelta(hours=1)))
    (ledger,) = await ledgers(db, clock, 1)
    refused = await ledger.reserve("x", Decimal(1), [claim()])
    assert refused is not None and refused.available == Decimal("0.5")
    assert await ledger.reserve("y", Decimal("0.5"), [claim()]) is None


async def test_budget_spend_reads_the_rollup_for_old_days_and_the_logs_for_the_last_two(db: Database) -> None:
    """What budgets show and enforcement grants against equals the raw month, whether or not the rollup is
    built, and a late row in the last two days counts at once (the rollup has not seen it)."""
    from resolvers.rollups import refresh_rollups
    from resolvers.spend import ScopeKind
    from tests.support import SpendLog, add_spend

    await add_spend(
        db,
        *[
            SpendLog(
                1.25 + i,
                NOW - timedelta(days=i, hours=1),
                team_id=f"t{i % 3}",
                user=f"u{i % 2}",
                api_key=f"{i % 4:064x}",
            )
            for i in range(12)
        ],
    )
    schema = await _schema(db)
    scopes = [
        Scope.global_(),
        Scope(ScopeKind.TEAM, "t1"),
        Scope(ScopeKind.USER, "u0"),
        Scope(ScopeKind.KEY, f"{3:064x}"),
        Scope(ScopeKind.TEAM, "nobody"),
    ]
    period = month_of(NOW)

    async def both() -> tuple[dict[Scope, Decimal], dict[Scope, Decimal]]:
        async with db.reader() as session:
            return (
                await spend_to_date(session, schema, scopes, period, NOW),
                await spend_by_scope(session, schema, scopes, period),
            )

    rolled, raw = await both()
    assert rolled == raw
    await refresh_rollups(db, schema, NOW, recheck_days=62)
    await add_spend(db, SpendLog(100, NOW - timedelta(hours=30), team_id="t1"))  # late, in yesterday
    rolled, raw = await both()
    assert rolled == raw
    assert rolled[Scope(ScopeKind.TEAM, "t1")] > 100


async def test_try_hold_holds_within_the_allowance_and_leaves_the_rest_to_reserve(db: Database, clock: Clock) -> None:
    """The decision's no-round-trip hold: within what the instance was granted it holds at once (one hold per call,
    as `reserve` does); past it nothing is held and `reserve` asks the database."""
    (ledger,) = await ledgers(db, clock, 1)
    assert not ledger.try_hold("first", Decimal(1), [claim()])  # nothing granted yet: the database decides
    assert ledger.account(claim()).held == 0 and not ledger.reservations
    assert await ledger.reserve("first", Decimal(1), [claim()]) is None
    granted = ledger.account(claim()).granted
    assert granted == Decimal("2.5")
    assert ledger.try_hold("second", Decimal(1), [claim()], owner="k")
    assert ledger.try_hold("second", Decimal("0.5"), [claim()], owner="k")  # a reused call id is a hold of its own
    assert ledger.account(claim()).held == Decimal("2.5") and len(ledger.reservations) == 3
    assert not ledger.try_hold("third", Decimal("0.01"), [claim()])  # the allowance is used up
    assert ledger.account(claim()).held == Decimal("2.5") and ledger.account(claim()).granted == granted
    assert ledger.try_hold("nothing", Decimal(0), [claim()])  # nothing to hold
    assert len(ledger.reservations) == 3


async def post(ledger: Ledger, db: Database, call_id: str, actual: str, request_id: str) -> int:
    """What spend ingestion does on an instance that may share the call id's holds: claim what only it can hold,
    bid for the rest."""
    seen = SpendSeen(request_id, call_id, "", Decimal(actual), False)
    async with db.sessions() as session, session.begin():
        at_once, bids = await ledger.split(session, ledger.takers([seen]), ledger.clock())
        await record_settlements(
            session, db.dialect, [seen], ledger.clock(), claimed_by=ledger.instance_id, claimed=at_once, bids=bids
        )
    ledger.remember_bids(s for s in [seen] if s.request_id in bids)
    return ledger.apply(at_once)


def open_holds(ledger: Ledger) -> list[Decimal]:
    return sorted(r.amount for r in ledger.reservations.values() if not r.settled)


async def test_a_spend_event_ends_the_smallest_hold_of_its_call_across_instances(db: Database, clock: Clock) -> None:
    """A dear hold on one instance, a cheap one of the same call id on the other, the spend posted to the first: it
    bids, the other outbids it, and once the bidding closes the cheap hold ends, not the dear one."""
    one, two = await ledgers(db, clock)
    assert await one.reserve("x", Decimal(5), [claim()]) is None
    assert await two.reserve("x", Decimal("0.01"), [claim()]) is None
    assert await post(one, db, "x", "0", "cheap") == 0  # the other instance holds an allowance: bid, not applied
    for ledger in (one, two, one, two):
        assert await ledger.apply_settlements() == 0  # bidding is open
    clock.now += one.settle_delay
    assert await one.apply_settlements() == 0  # outbid
    assert await two.apply_settlements() == 1
    assert (open_holds(one), open_holds(two)) == ([Decimal(5)], [])


async def test_a_bidder_whose_hold_ended_withdraws_and_the_next_holder_takes_the_event(
    db: Database, clock: Clock
) -> None:
    """The lowest bidder's hold ends another way (it expired, say) before the bidding closes: it withdraws its bid,
    the bidding reopens, and the instance still holding a hold of the call id takes the event a delay later."""
    one, two = await ledgers(db, clock)
    assert await one.reserve("w", Decimal(5), [claim()]) is None
    assert await two.reserve("w", Decimal("0.01"), [claim()]) is None
    assert await post(one, db, "w", "4", "dear") == 0
    assert await two.apply_settlements() == 0  # outbids
    two._drop(next(iter(two.reservations.values())))  # its hold ends without this event (expired)
    clock.now += one.settle_delay
    assert await one.apply_settlements() == 0  # still the other's bid
    assert await two.apply_settlements() == 0  # withdraws: nothing of the call id held any more
    assert await one.apply_settlements() == 0  # bids again; the reopened bidding is not closed yet
    clock.now += one.settle_delay
    assert await one.apply_settlements() == 1
    assert [r.amount for r in one.reservations.values()] == [Decimal(4)]  # settled at its real cost


async def test_one_instance_alone_applies_at_once(db: Database, clock: Clock) -> None:
    """No other instance holds an allowance on the budget: the smallest hold ends in the post itself, no bid."""
    one, _ = await ledgers(db, clock)
    assert await one.reserve("y", Decimal(5), [claim()]) is None
    assert await one.reserve("y", Decimal("0.01"), [claim()]) is None
    assert await post(one, db, "y", "0", "cheap") == 1
    assert open_holds(one) == [Decimal(5)]
