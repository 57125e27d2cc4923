"""What the pre-request path remembers between decisions, attacked: a remembered answer never outlives what it was
derived from, a flood of names cannot grow it without bound, and open holds stay cheap for the garbage collector."""

from __future__ import annotations

import gc
import json
from decimal import Decimal

from sqlalchemy import select

from models.db import Database
from models.ledger import AllowanceRow
from resolvers.enforcement import BudgetCheck, BudgetRule, Decision, Verdict
from resolvers.enforcement.ledger import ALLOWANCE_CHUNK, IDLE_RELEASE_AFTER, Claim
from resolvers.platform.periods import Window, month_of
from resolvers.pricing import FOUND_CACHE, ModelPrice, PriceBook
from resolvers.spend import Scope
from tests.conftest import NOW, Clock
from tests.enforcement.test_ledger import claim, ledgers
from webhook.enforcement import render_decision


def test_a_swapped_price_layer_is_seen_by_the_next_lookup() -> None:
    book = PriceBook()
    first = book.lookup("gpt-4o")
    assert first is not None and book.lookup("gpt-4o") is first  # remembered
    cheap = ModelPrice("gpt-4o", "openai", Decimal("0.01"), Decimal("0.02"), "override")
    book.overrides = {**book.overrides, "gpt-4o": cheap}
    assert book.lookup("gpt-4o").price is cheap  # type: ignore[union-attr]
    book.overrides = {}
    assert book.lookup("gpt-4o").price == first.price  # type: ignore[union-attr]
    assert book.lookup("my-alias") is None
    book.aliases = {**book.aliases, "my-alias": ("gpt-4o",)}
    assert book.lookup("my-alias").alias == "my-alias"  # type: ignore[union-attr]
    assert book.lookup("local-llama") is None
    book.self_hosted = (("local-*", ModelPrice("local-*", None, Decimal(0), Decimal(0), "self-hosted")),)
    assert book.lookup("local-llama") is not None


def test_a_flood_of_model_names_does_not_grow_the_remembered_lookups() -> None:
    book = PriceBook()
    for i in range(FOUND_CACHE * 3):
        book.lookup(f"no-such-model-{i}")
    assert len(book._found) <= FOUND_CACHE
    assert book.lookup("gpt-4o") is not None


def test_an_answer_names_the_budget_as_it_is_now_after_a_reload() -> None:
    """The webhook builds a budget's own part of its answer once per rule; a reloaded rule (renamed, new limit) is a
    new rule and is described anew."""
    period = month_of(NOW)
    for name, limit in (("before", Decimal(100)), ("after", Decimal(250))):
        rule = BudgetRule("budget:b1", "b1", name, "team", "t1", Window(), limit, Decimal("0.8"), Decimal(1), None)
        check = BudgetCheck(rule, period, Decimal(10))
        answer = json.loads(render_decision(Decision(Verdict.ALLOW, "c", "gpt-4o", checks=(check,)), NOW, None).body)
        assert answer["budgets"][0]["name"] == name and answer["budgets"][0]["limit"] == limit
        assert answer["budgets"][0]["spend"] == 10 and answer["budgets"][0]["remaining"] == limit - 10


async def test_an_open_hold_is_one_object_for_the_garbage_collector(db: Database, clock: Clock) -> None:
    """A full collection walks every tracked object: tens of thousands of open holds at three objects each paused
    the event loop 130 ms (`bench/pre_request.py --probe`). Each hold is one tracked object now."""
    (ledger,) = await ledgers(db, clock, 1)
    assert await ledger.reserve("first", Decimal("0.001"), [claim()]) is None  # the allowance is granted
    holds = 2000
    gc.collect()
    before = len(gc.get_objects())
    for i in range(holds):
        identity = (f"key-{i}", "user", "team", "", "tag")  # built per request, as the enforcer does
        assert ledger.try_hold(f"call-{i}", Decimal("0.0001"), [claim()], owner="key", identity=identity)
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert len(ledger.reservations) == holds + 1
    assert grown <= holds * 1.05, grown
    # and they still settle and end as holds do
    assert ledger.open_calls()[:2] == ["first", "call-0"]


async def test_allowances_past_one_statements_worth_are_all_written(db: Database, clock: Clock) -> None:
    """Allowance rows are upserted ALLOWANCE_CHUNK at a time (one statement for hundreds held the loop): every
    budget's row is still written, and renewed in place."""
    (ledger,) = await ledgers(db, clock, 1)
    budgets = ALLOWANCE_CHUNK * 2 + 7
    claims = [Claim(f"budget:{i:03d}", Scope.global_(), month_of(NOW), Decimal(10)) for i in range(budgets)]
    assert await ledger.reserve("first", Decimal(1), claims) is None  # one grant transaction for them all
    await ledger.reconcile([])
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(AllowanceRow.budget_key, AllowanceRow.granted))).all()
    assert sorted(key for key, _ in rows) == [c.budget_key for c in claims]
    assert {granted for _, granted in rows} == {Decimal("2.5")}
    clock.now += IDLE_RELEASE_AFTER * 2
    await ledger.reconcile([])  # idle: each hands its free part back, and its row says so
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(AllowanceRow.budget_key, AllowanceRow.granted))).all()
    assert len(rows) == budgets and {granted for _, granted in rows} == {Decimal(1)}
