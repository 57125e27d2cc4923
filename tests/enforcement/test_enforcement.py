"""The pre-request webhook and the Guardrail API: the guide's flow, reservations, failure modes."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from models.alerts import AlertDeliveryRow, AlertRow
from models.db import Database
from models.instance import FeatureSettingsRow
from resolvers.auth import hash_key
from resolvers.instance.features import FEATURES_TOPIC
from resolvers.platform.config import Settings
from resolvers.platform.events import Event
from tests.budgets.test_budgets import create as create_budget
from tests.conftest import MASTER_KEY, NOW, Clock, started
from tests.support import Api, SpendLog, add_spend, add_virtual_key, post_spend

pytestmark = pytest.mark.litellm_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "litellm"
GATEWAY = {"x-api-key": MASTER_KEY}


async def create(api: Api, **overrides: Any) -> dict[str, Any]:
    """Create a budget and let enforcement see it now (it also would within a moment, through the bus)."""
    budget = await create_budget(api, **overrides)
    await api.runtime().enforcement().refresh()
    return budget


def pre_request(**fields: Any) -> dict[str, Any]:
    return {
        "litellm_call_id": f"call-{time.monotonic_ns()}",
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10,
        **fields,
    }


async def ask(api: Api, **fields: Any) -> tuple[int, dict[str, Any]]:
    response = await api.client.post("/webhook/pre-request", json=pre_request(**fields), headers=GATEWAY)
    return response.status_code, response.json()


async def guardrail(api: Api, team: str, call_id: str = "g-1") -> dict[str, Any]:
    sample = json.loads((FIXTURES / "guardrail_request_custom_auth_headers.json").read_text())["body"]
    sample["request_data"]["user_api_key_team_id"] = team
    sample["litellm_call_id"] = call_id
    response = await api.client.post("/beta/litellm_basic_guardrail_api", json=sample, headers=GATEWAY)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def spend_to(db: Database, api: Api, team: str, usd: float) -> None:
    await add_spend(db, SpendLog(usd, NOW - timedelta(minutes=5), team_id=team))
    await api.runtime().enforcement().refresh()


async def alerts_of(db: Database, kind: str) -> list[AlertRow]:
    async with db.reader() as session:
        return list((await session.scalars(select(AlertRow).where(AlertRow.type == kind))).all())


async def settle_background(api: Api) -> None:
    """Let the fire-and-forget alert writes finish."""
    enforcer = api.runtime().enforcement()
    await asyncio.gather(*list(enforcer._tasks))


async def test_a_budget_walks_from_allow_to_warning_to_block(api: Api, db: Database) -> None:
    await create(api, entityId="eng", alertEmail="lead@example.com")
    await spend_to(db, api, "eng", 50)
    status, body = await ask(api, team_id="eng")
    assert (status, body["allowed"], body["action"], body["warning"]) == (200, True, "allow", None)
    assert body["budgets"][0]["spend"] == 50
    assert (await guardrail(api, "eng"))["action"] == "NONE"

    await spend_to(db, api, "eng", 35)  # 85 of 100: past the soft limit
    status, body = await ask(api, team_id="eng")
    assert (status, body["action"]) == (200, "warn")
    assert "85.0%" in body["warning"]
    await ask(api, team_id="eng")  # a second request past the soft limit raises no second alert
    await settle_background(api)
    assert len(await alerts_of(db, "approaching_limit")) == 1
    assert (await guardrail(api, "eng"))["action"] == "NONE"

    await spend_to(db, api, "eng", 15)  # 100 of 100
    status, body = await ask(api, team_id="eng")
    assert status == 429
    assert body["error"]["type"] == "budget_exceeded"
    assert body["budget"]["name"] == "Engineering Team Monthly" and body["budget"]["entity_id"] == "eng"
    verdict = await guardrail(api, "eng")
    assert verdict["action"] == "BLOCKED"
    assert verdict["blocked_reason"].startswith("budget_exceeded: team budget 'Engineering Team Monthly' (eng)")
    await settle_background(api)
    exceeded = await alerts_of(db, "budget_exceeded")
    assert [(a.severity, a.team_id) for a in exceeded] == [("critical", "eng")]
    async with db.reader() as session:
        emails = (
            await session.scalars(select(AlertDeliveryRow.target).where(AlertDeliveryRow.channel == "email"))
        ).all()
    assert emails == ["lead@example.com", "lead@example.com"]  # one per alert: soft, then hard


async def test_a_request_larger_than_what_is_left_is_blocked(api: Api, db: Database) -> None:
    await create(api, entityId="eng")
    await spend_to(db, api, "eng", 95)
    status, body = await ask(api, team_id="eng", estimated_cost="6")
    assert (status, body["error"]["type"]) == (429, "request_exceeds_budget")
    assert "5.00 USD" in body["error"]["message"]
    status, _ = await ask(api, team_id="eng", estimated_cost="4")
    assert status == 200


async def test_keys_without_a_budget_get_the_per_key_default(api: Api, db: Database) -> None:
    key_hash = await add_virtual_key(db, "sk-lonely", user_id="u1", team_id=None)
    await add_spend(db, SpendLog(99.5, NOW, api_key=key_hash))
    status, body = await ask(api, api_key="sk-lonely", estimated_cost="1")
    assert (status, body["error"]["type"]) == (429, "request_exceeds_budget")
    assert body["budget"]["name"] == "Per-key default" and body["budget"]["limit"] == 100
    await create(api, entityType="KEY", entityId="sk-lonely", monthlyLimit="500", name="Lonely's key")
    status, body = await ask(api, api_key=key_hash, estimated_cost="1")
    assert status == 200
    assert [b["name"] for b in body["budgets"]] == ["Lonely's key"]


async def test_the_keys_user_and_team_come_from_litellms_key_table(api: Api, db: Database) -> None:
    await add_virtual_key(db, "sk-member", user_id="carol", team_id="eng")
    await create(api, entityId="eng")
    await spend_to(db, api, "eng", 100)
    status, body = await ask(api, user_api_key_hash=hash_key("sk-member"))
    assert (status, body["budget"]["entity_id"]) == (429, "eng")


async def test_the_master_key_has_no_per_key_budget(api: Api) -> None:
    status, body = await ask(
        api, user_api_key_hash="litellm_proxy_master_key", user_id="default_user_id", estimated_cost="500"
    )
    assert (status, body["budgets"]) == (200, [])


async def test_with_enforcement_off_nothing_is_blocked_but_alerts_still_come(api: Api, db: Database) -> None:
    await create(api, entityId="eng")
    await spend_to(db, api, "eng", 120)
    await api.data("mutation { updateSettings(input: {budgetEnforcementEnabled: false}) { budgetEnforcementEnabled } }")
    await api.runtime().enforcement().refresh()
    status, body = await ask(api, team_id="eng", estimated_cost="10")
    assert (status, body["enforced"]) == (200, False)
    await settle_background(api)
    assert len(await alerts_of(db, "budget_exceeded")) == 1


@pytest.mark.parametrize("enabled", [False, True])
async def test_a_switch_flipped_on_another_instance_binds_the_very_next_decision(
    api: Api, db: Database, enabled: bool
) -> None:
    """The switch is read after the reload its change triggers, not before: no decision runs on the old one."""
    await create(api, entityId="eng")
    await spend_to(db, api, "eng", 120)
    async with db.sessions() as session, session.begin():  # another instance's write ...
        await session.execute(update(FeatureSettingsRow).values(budget_enforcement_enabled=not enabled))
    api.runtime().bus.deliver(Event(FEATURES_TOPIC, {"change": "updated"}))  # ... and its notification
    await api.runtime().enforcement().refresh()
    async with db.sessions() as session, session.begin():
        await session.execute(update(FeatureSettingsRow).values(budget_enforcement_enabled=enabled))
    api.runtime().bus.deliver(Event(FEATURES_TOPIC, {"change": "updated"}))
    status, body = await ask(api, team_id="eng", estimated_cost="1")
    if enabled:
        assert (status, body["error"]["type"]) == (429, "budget_exceeded")
    else:
        assert (status, body["enforced"]) == (200, False)


async def test_an_unknown_model_is_held_at_a_conservative_price_and_flagged(api: Api, db: Database) -> None:
    await create(api, entityId="eng")
    status, body = await ask(api, team_id="eng", model="in-house-llm")
    assert (status, body["price_missing"]) == (200, True)
    dearest = max(api.runtime().prices.all_prices(), key=lambda p: p.output_per_million)
    assert body["estimated_cost_usd"] >= float(dearest.output_per_million) * 5 / 1_000_000  # 55% of max_tokens=10
    await spend_to(db, api, "eng", 100)
    status, body = await ask(api, team_id="eng", model="in-house-llm")
    assert (status, body["error"]["type"]) == (429, "budget_exceeded")


async def test_the_gateway_needs_the_shared_secret(api: Api) -> None:
    for headers in ({}, {"x-api-key": "wrong"}):
        for path in ("/webhook/pre-request", "/beta/litellm_basic_guardrail_api", "/spend/litellm"):
            response = await api.client.post(path, json={}, headers=headers)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_a_configured_webhook_key_replaces_the_master_key(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock, webhook_key="svc-key-123") as running:
        ok = await running.client.post("/webhook/pre-request", json=pre_request(), headers={"x-api-key": "svc-key-123"})
        master = await running.client.post("/webhook/pre-request", json=pre_request(), headers=GATEWAY)
    assert (ok.status_code, master.status_code) == (200, 401)


# Only what the gateway itself writes can be malformed; what clients control is clipped
# (test_whatever_a_client_sends_is_checked_never_refused).
@pytest.mark.parametrize("body", [b"{", b"[]", b'{"estimated_cost": "abc"}', b'{"estimated_cost": -1}'])
async def test_malformed_webhook_requests_are_400(api: Api, body: bytes) -> None:
    response = await api.client.post(
        "/webhook/pre-request", content=body, headers={**GATEWAY, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"


async def test_the_guardrail_lets_responses_through_and_reads_every_captured_request(api: Api) -> None:
    for name in ("guardrail_request_master_key.json", "guardrail_request_custom_auth_headers.json"):
        body = json.loads((FIXTURES / name).read_text())["body"]
        assert (await api.client.post("/beta/litellm_basic_guardrail_api", json=body, headers=GATEWAY)).json() == {
            "action": "NONE"
        }
        body["input_type"] = "response"
        assert (await api.client.post("/beta/litellm_basic_guardrail_api", json=body, headers=GATEWAY)).json() == {
            "action": "NONE"
        }


# ------------------------------------------------------------------------------------------------ failure modes


async def _break_database(api: Api) -> None:
    """Point the enforcer at a database that does not answer (a port where nothing listens)."""
    from models.db import open_database

    enforcer = api.runtime().enforcement()
    enforcer.db = open_database("postgresql://nobody@127.0.0.1:9/none")
    enforcer.ledger.db = enforcer.db
    enforcer._key_owners.clear()


@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("closed", 429)])
async def test_when_the_database_is_down_the_failure_mode_decides_in_bounded_time(
    settings: Settings, clock: Clock, db: Database, mode: str, status: int
) -> None:
    await add_virtual_key(db, "sk-someone", user_id="u", team_id="t")
    async with started(settings, clock, enforcement_failure_mode=mode, enforcement_timeout_ms=300) as running:
        await _break_database(running)
        started_at = time.perf_counter()
        response = await running.client.post(
            "/webhook/pre-request", json=pre_request(api_key="sk-someone"), headers=GATEWAY
        )
        elapsed = time.perf_counter() - started_at
        guard = json.loads((FIXTURES / "guardrail_request_custom_auth_headers.json").read_text())["body"]
        guard["request_data"] = {"user_api_key_hash": hash_key("sk-someone")}  # its owner must be looked up
        verdict = (await running.client.post("/beta/litellm_basic_guardrail_api", json=guard, headers=GATEWAY)).json()
        await running.runtime().enforcement().db.dispose()
    assert response.status_code == status
    assert elapsed < 5  # bounded: never a hang (the budget is ENFORCEMENT_TIMEOUT_MS plus connection set-up)
    if mode == "open":
        assert response.json()["degraded"] is True and verdict == {"action": "NONE"}
    else:
        assert response.json()["error"]["type"] == "budget_service_unavailable" and verdict["action"] == "BLOCKED"


# ------------------------------------------------------------------------------------------------ concurrency


async def _fifty_left(api: Api, db: Database) -> None:
    await create(api, entityId="eng", monthlyLimit="100")
    await spend_to(db, api, "eng", 50)


async def _burst(apis: list[Api], n: int, prefix: str = "c") -> list[int]:
    async def one(i: int) -> int:
        api = apis[i % len(apis)]
        response = await api.client.post(
            "/webhook/pre-request",
            headers=GATEWAY,
            json=pre_request(team_id="eng", estimated_cost="1", litellm_call_id=f"{prefix}{i}"),
        )
        return response.status_code

    return await asyncio.gather(*(one(i) for i in range(n)))


# These tests are about the ledger, not the failure mode: a generous ENFORCEMENT_TIMEOUT_MS keeps a loaded CI
# machine from turning slow answers into fail-open ones (the failure mode has its own test above).
PATIENT = {"enforcement_timeout_ms": 30_000}


async def test_200_concurrent_requests_at_1_usd_with_50_left_admit_at_most_50(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with started(settings, clock, **PATIENT) as api:
        await _fifty_left(api, db)
        statuses = await _burst([api], 200)
    assert statuses.count(200) <= 50, statuses
    assert statuses.count(200) >= 45, statuses  # and the budget is actually used, not refused wholesale
    assert set(statuses) == {200, 429}


async def test_two_instances_sharing_postgresql_admit_at_most_50(
    settings: Settings, clock: Clock, db: Database
) -> None:
    if not db.is_postgres:
        pytest.skip("several app instances share a database only on PostgreSQL; SQLite runs one process")
    async with started(settings, clock, **PATIENT) as one, started(settings, clock, **PATIENT) as two:
        await _fifty_left(one, db)
        await two.runtime().enforcement().refresh()
        statuses = await _burst([one, two], 200)
    assert statuses.count(200) <= 50, statuses
    assert statuses.count(200) >= 40, statuses


ODD = {
    "user": "u" * 300,
    "end_user_id": "e\x00" * 200,
    "max_tokens": 10**12,
    "prompt": ["a", "b"],
    "litellm_call_id": "c" * 300,
    "messages": [
        {"content": "no role"},
        {"role": "r" * 100, "name": "n" * 400, "content": [{"type": "text", "text": "x\x00"}]},
        "not a message",
    ],
}


async def test_whatever_a_client_sends_is_checked_never_refused(api: Api, db: Database) -> None:
    """A 400 would let a client fail the check open (or, through the Guardrail API, into a 500): what clients
    control is clipped to what spendplane keeps, and the budget still decides."""
    await create(api, entityId="eng")
    await spend_to(db, api, "eng", 100)
    status, body = await ask(api, team_id="eng", **ODD)
    assert (status, body["error"]["type"]) == (429, "budget_exceeded")
    status, body = await ask(api, team_id="ops", **ODD)
    assert (status, len(body["call_id"]), body["price_missing"]) == (200, 256, False)
    sample = json.loads((FIXTURES / "guardrail_request_custom_auth_headers.json").read_text())["body"]
    sample["request_data"]["user_api_key_team_id"] = "eng"
    sample.update(structured_messages=ODD["messages"], texts=["t", 3], litellm_call_id="g" * 300)
    response = await api.client.post("/beta/litellm_basic_guardrail_api", json=sample, headers=GATEWAY)
    assert (response.status_code, response.json()["action"]) == (200, "BLOCKED")


async def test_a_hard_limit_with_more_places_than_money_still_blocks_and_alerts(api: Api, db: Database) -> None:
    # 100.123456789 x 0.333333 = 33.3744522218...: the cap is kept in whole nano-USD, rounded down.
    await create(api, entityId="eng", monthlyLimit="100.123456789", softLimitPercent="0.3", hardLimitPercent="0.333333")
    await spend_to(db, api, "eng", 33.4)
    status, body = await ask(api, team_id="eng")
    assert (status, body["budget"]["limit"]) == (429, 33.374452221)
    await settle_background(api)
    (alert,) = await alerts_of(db, "budget_exceeded")
    assert alert.limit_usd == Decimal("33.374452221")


async def test_spend_that_lands_uses_up_the_allowance_it_was_held_from(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """Burst, spend recorded, burst again: the second burst gets only what the first left (no allowance is
    handed out twice once the spend it held is in the logs)."""
    # No background refresh: an idle account would hand its allowance back between the steps, which steady
    # traffic never lets happen.
    async with started(settings, clock, **PATIENT, spend_refresh_seconds=3600) as api:
        await create(api, entityId="eng", monthlyLimit="100")
        first = await _burst([api], 85)
        assert first.count(200) == 85
        sample = json.loads((FIXTURES / "spend_post_success.json").read_text())["body"]
        sample["metadata"]["user_api_key_team_id"] = "eng"
        when = {"startTime": (NOW - timedelta(minutes=1)).timestamp(), "endTime": NOW.timestamp()}
        events = [
            {**sample, **when, "litellm_call_id": f"c{i}", "id": f"chatcmpl-c{i}", "response_cost": 1.0}
            for i in range(85)
        ]
        posted = await post_spend(api, events)
        assert posted["recorded"] == 85
        await api.runtime().enforcement().refresh()
        second = await _burst([api], 85, prefix="again")
        budget = (await api.data("{ budgets { currentSpend } }"))["budgets"][0]
    assert 10 <= second.count(200) <= 15, second
    assert Decimal(budget["currentSpend"]) == 85


async def test_spend_arriving_releases_the_reservation(api: Api, db: Database) -> None:
    await _fifty_left(api, db)
    status, _ = await ask(api, team_id="eng", estimated_cost="30", litellm_call_id="big-1")
    assert status == 200
    status, body = await ask(api, team_id="eng", estimated_cost="30", litellm_call_id="big-2")
    assert (status, body["error"]["type"]) == (429, "request_exceeds_budget")  # 30 held, 20 left
    sample = json.loads((FIXTURES / "spend_post_success.json").read_text())["body"]
    sample.update(litellm_call_id="big-1", id="chatcmpl-big-1", response_cost=2.0)
    sample["metadata"]["user_api_key_team_id"] = "eng"
    posted = await post_spend(api, sample)
    assert posted["settled"] == 1
    await api.runtime().enforcement().refresh()
    status, _ = await ask(api, team_id="eng", estimated_cost="30", litellm_call_id="big-3")
    assert status == 200  # 52 spent, the 30 hold released: 48 left
    budget = (await api.data("{ budgets { currentSpend } }"))["budgets"][0]
    assert Decimal(budget["currentSpend"]) == 52


@pytest.mark.real_schema_only
async def test_beside_litellm_settled_spend_counts_once_before_and_after_litellm_writes_its_row(
    api: Api, db: Database
) -> None:
    """Production: LiteLLM's callback posts the cost at once, its spend-log row lands with its batched writer
    seconds later. Between the two the settled spend still counts; once the row is in, it counts once."""
    await _fifty_left(api, db)
    assert (await ask(api, team_id="eng", estimated_cost="30", litellm_call_id="big-1"))[0] == 200
    sample = json.loads((FIXTURES / "spend_post_success.json").read_text())["body"]
    sample.update(litellm_call_id="big-1", id="chatcmpl-big-1", response_cost=2.0)
    sample["metadata"]["user_api_key_team_id"] = "eng"
    posted = await api.client.post("/spend/litellm", json=sample, headers=GATEWAY)
    assert (posted.json()["recorded"], posted.json()["settled"]) == (0, 1)  # no row yet: LiteLLM writes it
    await api.runtime().enforcement().refresh()
    assert (await ask(api, team_id="eng", estimated_cost="48.01", litellm_call_id="probe-1"))[0] == 429
    await post_spend(api, sample)  # LiteLLM's writer lands the row (the repeated post changes nothing)
    await api.runtime().enforcement().refresh()
    assert (await ask(api, team_id="eng", estimated_cost="48.01", litellm_call_id="probe-2"))[0] == 429
    assert (await ask(api, team_id="eng", estimated_cost="47.99", litellm_call_id="probe-3"))[0] == 200
    budget = (await api.data("{ budgets { currentSpend } }"))["budgets"][0]
    assert Decimal(budget["currentSpend"]) == 52


async def test_estimates_finer_than_a_nano_dollar_are_reserved_and_never_degrade(api: Api, db: Database) -> None:
    await create(api, entityId="eng")
    for i in range(3):
        status, body = await ask(api, team_id="eng", estimated_cost="0.0000000001234567", litellm_call_id=f"tiny-{i}")
        assert (status, body["degraded"]) == (200, False)
    await api.runtime().enforcement().refresh()  # an idle account hands back allowance rounded to nano-USD
