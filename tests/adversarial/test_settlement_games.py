"""A client that games settlement: the call id is the client's (LiteLLM's `x-litellm-call-id`), so a cheap request
that fails at once can carry the call id of a dear one still running. Its spend event must not free the dear
request's hold: whatever the client sends, what runs stays held until its own spend is known."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from models.db import Database
from resolvers.platform.config import Settings
from tests.adversarial.support import FIXTURES, PATIENT, ask, budget, post_spend, spend_event
from tests.conftest import Clock, started
from tests.support import Api

pytestmark = pytest.mark.litellm_tables


def _failed(call_id: str, request_id: str) -> dict[str, object]:
    """LiteLLM's failure payload for a request that reached its provider and failed at once (no cost)."""
    event = spend_event(call_id, request_id, 0.0)
    error = {**event["error_information"], "error_code": "400", "error_class": "BadRequestError"}
    return {
        **event,
        "status": "failure",
        "error_information": {**error, "llm_provider": "openai", "error_message": "invalid request"},
        "status_fields": {"llm_api_status": "failure", "guardrail_status": "success"},
    }


def _refused(call_id: str, request_id: str) -> dict[str, object]:
    """LiteLLM's failure payload for a request a guardrail or hook refused before any provider saw it."""
    sample = json.loads((FIXTURES / "spend_post_failure_guardrail_blocked.json").read_text())["body"]
    base = spend_event(call_id, request_id, 0.0)
    keep = ("status", "error_str", "error_information", "status_fields")
    return {**base, **{k: sample[k] for k in keep}}


async def test_a_cheap_failure_with_a_dear_requests_call_id_does_not_free_its_hold(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """Five times: a dear request (10 USD) is admitted and keeps running, then a cheap one (0.01 USD) with the same
    call id, whose failure is posted at once. If that failure ended the dear request's hold, five dear requests
    would run held at nothing, and the 50 USD budget would admit four more on top. It admits none: every dear
    request still running is held."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="50")
        running = 0  # dear requests admitted and still running (each will cost 10 USD)
        for i in range(5):
            call_id = f"dear-{i}"
            status, _ = await ask(api, call_id, estimated_cost="10")
            running += status == 200
            status, _ = await ask(api, call_id, estimated_cost="0.01")
            if status == 200:
                await post_spend(api, [_failed(call_id, f"cheap-{i}")])
        await api.runtime().enforcement().refresh()
        for i in range(5):
            status, body = await ask(api, f"more-{i}", estimated_cost="10")
            assert not body.get("degraded")
            running += status == 200
        state = (await api.data("{ budgets { currentSpend reserved } }"))["budgets"][0]
    assert running * 10 <= 50, f"{running} requests of 10 USD admitted against 50 USD"
    # What is running is held: recorded spend plus holds cover it.
    assert Decimal(state["reserved"]) >= running * 10


async def test_a_cheap_success_with_a_dear_requests_call_id_settles_the_cheap_hold(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """The same with a cheap request that succeeds (0.001 USD): its spend settles one hold of the call id, and
    what stays held for the requests still running is the dear one's 10 USD, not the cheap one's 0.01."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="50")
        assert (await ask(api, "shared", estimated_cost="10"))[0] == 200
        assert (await ask(api, "shared", estimated_cost="0.01"))[0] == 200
        await post_spend(api, [spend_event("shared", "cheap", 0.001)])
        await api.runtime().enforcement().refresh()
        state = (await api.data("{ budgets { currentSpend reserved } }"))["budgets"][0]
        admitted = [(await ask(api, f"after-{i}", estimated_cost="10"))[0] for i in range(5)]
    assert Decimal(state["currentSpend"]) == Decimal("0.001")
    assert Decimal(state["reserved"]) == 10
    assert admitted.count(200) == 3  # 50 - 0.001 spent - 10 running: room for three more


async def test_spend_posted_before_a_request_was_admitted_does_not_end_its_hold(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """A refused request's failure is logged by LiteLLM with the client's call id, and no hold takes it. The client
    then sends a dear request under that call id: the old failure must not end the new hold at the next refresh
    (the request it describes ended before this one was admitted). Ten rounds against 50 USD admit five."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="50")
        running = 0
        for i in range(10):
            call_id = f"seeded-{i}"
            status, _ = await ask(api, call_id, estimated_cost="1000")  # refused: does not fit
            assert status == 429
            await post_spend(api, [_refused(call_id, f"refused-{i}")])  # LiteLLM logs the refusal as a failure
            clock.now += timedelta(seconds=5)
            status, body = await ask(api, call_id, estimated_cost="10")
            assert not body.get("degraded")
            running += status == 200
            await api.runtime().enforcement().refresh()
        state = (await api.data("{ budgets { currentSpend reserved } }"))["budgets"][0]
    assert running * 10 <= 50, f"{running} requests of 10 USD admitted against 50 USD"
    assert Decimal(state["reserved"]) == running * 10


async def test_a_refusal_under_a_running_requests_call_id_does_not_end_its_hold(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """The other order: a dear request is admitted and runs, then a request under its call id is refused (here by
    spendplane: it does not fit) and LiteLLM logs that refusal as a failure. The refused request held nothing, so
    its failure ends nothing: the dear request stays held. Ten rounds against 50 USD admit five."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="50")
        running = 0
        for i in range(10):
            call_id = f"shadowed-{i}"
            status, _ = await ask(api, call_id, estimated_cost="10")
            running += status == 200
            assert (await ask(api, call_id, estimated_cost="1000"))[0] == 429
            await post_spend(api, [_refused(call_id, f"refused-{i}")])
            await api.runtime().enforcement().refresh()
        state = (await api.data("{ budgets { currentSpend reserved } }"))["budgets"][0]
    assert running * 10 <= 50, f"{running} requests of 10 USD admitted against 50 USD"
    assert Decimal(state["reserved"]) == running * 10


def _held(api: Api) -> list[Decimal]:
    """What the instance holds for requests whose spend it does not know yet, smallest first."""
    ledger = api.runtime().enforcement().ledger
    return sorted(r.amount for r in ledger.reservations.values() if not r.settled)


async def _refresh_until_settled(clock: Clock, *apis: Api) -> None:
    """Every instance refreshes (and so bids), the bidding's delay passes, every instance refreshes again (and the
    lowest bidder claims)."""
    for api in apis:
        await api.runtime().enforcement().refresh()
    clock.now += apis[0].runtime().enforcement().ledger.settle_delay
    for api in apis:
        await api.runtime().enforcement().refresh()


async def test_a_cheap_failure_on_another_instance_does_not_free_a_dear_hold(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """The first attack spread over two instances: the dear request is held on one, the cheap one on the other, and
    the cheap one's failure is posted to the first. That instance knows only its own hold of the call id (the dear
    one); since the other instance may hold one too, it bids its hold instead of ending it, the other outbids it
    with the cheap hold, and ends that one once the bidding closes. Every dear request stays held."""
    if not db.is_postgres:
        pytest.skip("several instances share a database only on PostgreSQL; SQLite serves one process")
    async with started(settings, clock, **PATIENT) as one, started(settings, clock, **PATIENT) as two:
        await budget(one, monthlyLimit="50")
        await two.runtime().enforcement().refresh()
        running = 0
        for i in range(5):
            call_id = f"split-{i}"
            status, _ = await ask(one, call_id, estimated_cost="10")
            running += status == 200
            dear = running
            cheap = await ask(two, call_id, estimated_cost="0.01")
            if cheap[0] == 200:
                answer = await post_spend(one, [_failed(call_id, f"cheap-{i}")])
                assert answer["settled"] == 0  # not at once: the other instance may hold a smaller hold
            await _refresh_until_settled(clock, one, two)
        held = (_held(one), _held(two))
        for i in range(5):
            running += (await ask((one, two)[i % 2], f"more-{i}", estimated_cost="10"))[0] == 200
    assert running * 10 <= 50, f"{running} requests of 10 USD admitted against 50 USD"
    assert held == ([Decimal(10)] * dear, [])  # the cheap holds ended, on the instance that held them
    assert dear >= 3


async def test_a_cheap_failure_posted_to_its_own_instance_ends_its_own_hold(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """The same with the failure posted to the instance of the cheap hold: it bids, the dear hold's instance does
    not outbid it, and it ends its cheap hold once the bidding closes; the dear hold stays."""
    if not db.is_postgres:
        pytest.skip("several instances share a database only on PostgreSQL; SQLite serves one process")
    async with started(settings, clock, **PATIENT) as one, started(settings, clock, **PATIENT) as two:
        await budget(one, monthlyLimit="50")
        await two.runtime().enforcement().refresh()
        for i in range(3):
            call_id = f"own-{i}"
            assert (await ask(one, call_id, estimated_cost="10"))[0] == 200
            assert (await ask(two, call_id, estimated_cost="0.01"))[0] == 200
            assert (await post_spend(two, [_failed(call_id, f"cheap-{i}")]))["settled"] == 0
            await _refresh_until_settled(clock, one, two)
        held = (_held(one), _held(two))
    assert held == ([Decimal(10)] * 3, [])


async def test_holds_of_one_call_id_on_one_instance_settle_at_once_beside_an_idle_one(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """Both holds of a call id on one instance, the other one serving nothing on that budget: no other instance can
    hold a hold of it, so the cheap request's failure ends the smallest hold at once, as with one instance."""
    if not db.is_postgres:
        pytest.skip("several instances share a database only on PostgreSQL; SQLite serves one process")
    async with started(settings, clock, **PATIENT) as one, started(settings, clock, **PATIENT) as two:
        await budget(one, monthlyLimit="50")
        await two.runtime().enforcement().refresh()
        assert (await ask(one, "both", estimated_cost="10"))[0] == 200
        assert (await ask(one, "both", estimated_cost="0.01"))[0] == 200
        answer = await post_spend(one, [_failed("both", "cheap")])
        held = _held(one)
    assert answer["settled"] == 1
    assert held == [Decimal(10)]


async def test_one_instance_settles_at_once(settings: Settings, clock: Clock, db: Database) -> None:
    """One instance alone (both databases): a spend event ends its hold in the post's own answer, no refresh and no
    delay, and the budget's reserved figure shows it at once."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="50")
        assert (await ask(api, "alone", estimated_cost="10"))[0] == 200
        assert (await ask(api, "alone", estimated_cost="0.01"))[0] == 200
        assert (await ask(api, "single", estimated_cost="2"))[0] == 200
        answer = await post_spend(api, [_failed("alone", "cheap"), spend_event("single", "single-1", 1.5)])
        state = (await api.data("{ budgets { reserved } }"))["budgets"][0]
    assert answer["settled"] == 2
    # In flight: only the dear request of `alone` (the cheap one failed, `single`'s real cost is known).
    assert Decimal(state["reserved"]) == 10


@pytest.mark.parametrize("change", [{"period": "DAILY"}, {"timeZone": "Asia/Tokyo"}, {"monthStartDay": 10}])
async def test_a_window_change_mid_traffic_keeps_what_is_in_flight_counted(
    settings: Settings, clock: Clock, db: Database, change: dict[str, object]
) -> None:
    """Like a limit cut, a budget's new window binds the next decision with what is in flight counted: ten 1 USD
    requests running, the window changed and the limit cut to 20, at most ten more are admitted."""
    from tests.adversarial.support import UPDATE, Tally, burst

    async with started(settings, clock, **PATIENT) as api:
        created = await budget(api, monthlyLimit="1000")
        before = Tally()
        await burst([api], 10, before, estimated_cost="1")
        assert before.admitted == 10
        await api.data(UPDATE, {"id": created["id"], "input": {"limit": "20", **change}})
        after = Tally()
        for _ in range(5):
            await burst([api], 10, after, estimated_cost="1")
    assert after.admitted <= 10, after.statuses
    assert after.degraded == 0
