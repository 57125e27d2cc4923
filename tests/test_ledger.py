"""The admission ledger on its own: two ledgers are two app instances sharing the database."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import insert

from models.db import Database
from models.ledger import AllowanceRow
from models.litellm import LiteLLMSchema, probe_litellm_schema
from resolvers.ledger import IDLE_RELEASE_AFTER, Claim, Ledger
from resolvers.periods import month_of
from resolvers.spend import Scope, spend_by_scope
from tests.conftest import NOW, Clock

TTL = timedelta(minutes=15)


async def _schema(db: Database) -> LiteLLMSchema:
    async with db.engine.connect() as conn:
        return await probe_litellm_schema(conn)


def claim(cap: str = "10") -> Claim:
    return Claim("budget:test", Scope.global_(), month_of(NOW), Decimal(cap))


async def ledgers(db: Database, clock: Clock, n: int = 2) -> list[Ledger]:
    schema = await _schema(db)
    return [Ledger(db, schema, spend_by_scope, clock, TTL, instance_id=f"instance-{i}") for i in range(n)]


async def test_an_idle_instance_hands_its_free_allowance_back(db: Database, clock: Clock) -> None:
    one, two = await ledgers(db, clock)
    assert await one.reserve("a", Decimal(1), [claim()]) is None
    assert one.account(claim()).granted == Decimal("2.5")  # a quarter of what was left, for the next requests
    refused = await two.reserve("b", Decimal(8), [claim()])
    assert refused is not None and refused.available == Decimal("7.5")
    await one.reconcile(set())  # used a moment ago: keeps its allowance
    assert (await two.reserve("b", Decimal(8), [claim()])) is not None
    clock.now += IDLE_RELEASE_AFTER + timedelta(seconds=1)
    await one.reconcile(set())
    assert one.account(claim()).granted == Decimal(1)  # only what "a" holds
    assert await two.reserve("b", Decimal(8), [claim()]) is None


async def test_a_crashed_instances_allowance_expires(db: Database, clock: Clock) -> None:
    (ledger,) = await ledgers(db, clock, 1)
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(AllowanceRow).values(
                budget_key="budget:test",
                period="2026-11",
                instance_id="crashed",
                granted=Decimal(9),
                expires_at=NOW + timedelta(minutes=2),
            )
        )
    assert (await ledger.reserve("a", Decimal(2), [claim()])) is not None
    clock.now += timedelta(minutes=2, seconds=1)
    assert await ledger.reserve("b", Decimal(2), [claim()]) is None


async def test_reservations_expire_and_settled_ones_leave_when_their_row_is_visible(db: Database, clock: Clock) -> None:
    (ledger,) = await ledgers(db, clock, 1)
    await ledger.reserve("old", Decimal(3), [claim()])
    await ledger.reserve("done", Decimal(2), [claim()])
    account = ledger.account(claim())
    assert ledger.settle("done", Decimal("0.5"), request_id="chatcmpl-1") == 1
    assert (account.held, account.settled_pending) == (Decimal("3.5"), Decimal("0.5"))
    await ledger.reconcile({"chatcmpl-1"})
    assert (account.held, account.settled_pending) == (Decimal(3), Decimal(0))
    clock.now += TTL + timedelta(seconds=1)
    await ledger.reconcile(set())
    assert account.held == 0


async def test_a_failed_request_releases_its_reservation_at_once(db: Database, clock: Clock) -> None:
    (ledger,) = await ledgers(db, clock, 1)
    await ledger.reserve("x", Decimal(4), [claim()])
    ledger.settle("x", Decimal(0), request_id="x", failed=True)
    assert ledger.account(claim()).held == 0


async def test_recorded_spend_counts_against_every_grant(db: Database, clock: Clock) -> None:
    from tests.support import SpendLog, add_spend

    await add_spend(db, SpendLog(9.5, NOW - timedelta(hours=1)))
    (ledger,) = await ledgers(db, clock, 1)
    refused = await ledger.reserve("x", Decimal(1), [claim()])
    assert refused is not None and refused.available == Decimal("0.5")
    assert await ledger.reserve("y", Decimal("0.5"), [claim()]) is None
