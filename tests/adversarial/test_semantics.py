"""What the decision says, to whom, and for how long a token counts: every crossed budget alerts, holds in flight
warn, budgetUpdated follows spend, and a rotated admin key or a blocked LiteLLM key stops working everywhere."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from httpx_ws import WebSocketDisconnect
from sqlalchemy import select, update

from models.alerts import AlertRow
from models.db import Database
from models.litellm import verification_tokens
from resolvers.auth import hash_key, rotate_admin_key
from resolvers.platform.config import Settings
from tests.adversarial.support import (
    CREATE,
    PATIENT,
    Tally,
    ask,
    budget,
    burst,
    post_spend,
    spend_event,
)
from tests.conftest import Clock, started
from tests.support import Api, SpendLog, add_spend, add_virtual_key, graphql_ws, watching

pytestmark = pytest.mark.litellm_tables


async def _alerts(db: Database) -> list[tuple[str, str | None, str | None]]:
    async with db.reader() as session:
        rows = (await session.scalars(select(AlertRow))).all()
    return sorted((r.type, r.entity_type, r.entity_id) for r in rows)


async def _settled(api: Api) -> None:
    await asyncio.gather(*list(api.runtime().enforcement()._tasks))


async def test_every_budget_that_crosses_a_threshold_raises_its_own_alert(api: Api, db: Database) -> None:
    """A request past its user's soft limit and its team's raises both warnings; past the global hard limit it
    is refused naming the global budget, and the global budget's own alert goes out too."""
    await budget(api, name="Alice", entityType="USER", entityId="alice", monthlyLimit="100")
    await budget(api, name="Eng", monthlyLimit="100")
    await add_spend(db, SpendLog(85, api.runtime().clock(), team_id="eng", user="alice"))
    await api.runtime().enforcement().refresh()
    status, body = await ask(api, "both-soft", user_id="alice")
    assert (status, body["action"]) == (200, "warn")
    assert {b["entity_type"] for b in body["warned_by"]} == {"user", "team"}
    await budget(api, name="Platform", entityType="GLOBAL", entityId=None, monthlyLimit="80")
    status, body = await ask(api, "past-global", user_id="alice")
    await _settled(api)
    assert (status, body["error"]["type"]) == (429, "budget_exceeded")
    assert body["budget"]["entity_type"] == "global"
    assert [b["entity_type"] for b in body["blocked_by"]] == ["global"]
    assert await _alerts(db) == [
        ("approaching_limit", "team", "eng"),
        ("approaching_limit", "user", "alice"),
        ("budget_exceeded", "global", None),
    ]


async def test_a_burst_held_past_the_soft_limit_warns_before_spend_is_logged(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """Nothing recorded yet, 85 USD held for requests in flight against a 100 USD budget: the next request is
    warned and the approaching_limit alert goes out, without waiting for the spend logs."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="100")
        tally = Tally()
        await burst([api], 85, tally, estimated_cost="1")
        status, body = await ask(api, "after-burst", estimated_cost="1")
        await _settled(api)
        assert (status, body["action"]) == (200, "warn")
        assert "in flight" in body["warning"]
        assert ("approaching_limit", "team", "eng") in await _alerts(db)
        state = (await api.data("{ budgets { status reserved currentSpend } }"))["budgets"][0]
    assert (state["status"], state["currentSpend"]) == ("WARNING", "0")
    assert Decimal(state["reserved"]) == 86


SUBSCRIBE = "subscription { budgetUpdated { id currentSpend reserved status } }"


async def test_budget_updated_fires_when_spend_moves_a_budget_at_most_once_a_second(api: Api, db: Database) -> None:
    created = await budget(api, monthlyLimit="100")
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        await ws.send_json({"id": "b", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
        await watching(api, "budgets")
        status, _ = await ask(api, "spent-1", estimated_cost="2")
        assert status == 200
        await post_spend(api, [spend_event("spent-1", "chatcmpl-spent-1", 2.5)])
        seen: list[dict[str, str]] = []
        for _ in range(5):  # five more spend events in quick succession: coalesced
            await post_spend(api, [spend_event(f"x-{len(seen)}-{_}", f"chatcmpl-x-{_}", 1.0)])
        deadline = asyncio.get_running_loop().time() + 3
        while asyncio.get_running_loop().time() < deadline:
            try:
                message = await asyncio.wait_for(ws.receive_json(), 0.5)
            except TimeoutError:
                continue
            seen.append(message["payload"]["data"]["budgetUpdated"])
    assert seen, "no budgetUpdated after spend arrived"
    assert all(s["id"] == created["id"] for s in seen)
    assert Decimal(seen[-1]["currentSpend"]) == Decimal("7.5")
    assert len(seen) <= 4  # ~3 s of events at most one a second (plus the first change)


async def test_a_rotated_admin_key_stops_working_everywhere_within_a_refresh(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """No master key: the generated admin key. `spendplane rotate-admin-key` (another process, same database):
    within SPEND_REFRESH_SECONDS the old key no longer opens the webhook, the tokens minted with it are refused,
    and the new key works at the gateway."""
    async with started(settings, clock, litellm_master_key=None) as api:
        old_key = api.generated_admin_key
        assert old_key is not None
        old_token = api.admin_token
        assert (await api.client.get("/api/v1/budgets", headers=api.bearer(old_token))).status_code == 200
        await asyncio.sleep(1.1)  # tokens carry whole seconds: the old one is from an earlier second
        new_key = await rotate_admin_key(db, datetime.now(UTC))  # as `spendplane rotate-admin-key` does
        await asyncio.sleep(settings.spend_refresh_seconds * 5)
        gateway_old = await api.client.post("/webhook/pre-request", headers={"x-api-key": old_key}, json={})
        gateway_new = await api.client.post("/webhook/pre-request", headers={"x-api-key": new_key}, json={})
        rest_old = await api.client.get("/api/v1/budgets", headers=api.bearer(old_token))
        graphql_old = await api.gql("{ budgets { id } }", token=old_token)
        login_old = await api.client.post("/auth/login", json={"api_key": old_key})
        new_token = await api.login(new_key)
        rest_new = await api.client.get("/api/v1/budgets", headers=api.bearer(new_token))
    assert gateway_old.status_code == 401
    assert gateway_new.status_code == 200
    assert rest_old.status_code == 401
    assert graphql_old["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert login_old.status_code == 401
    assert rest_new.status_code == 200


async def test_a_key_blocked_after_login_loses_its_tokens_access(api: Api, db: Database) -> None:
    await add_virtual_key(db, "sk-viewer", user_id="alice", team_id="eng")
    token = await api.login("sk-viewer")
    assert (await api.client.get("/api/v1/budgets", headers=api.bearer(token))).status_code == 200
    async with db.engine.begin() as conn:
        await conn.execute(
            update(verification_tokens).where(verification_tokens.c.token == hash_key("sk-viewer")).values(blocked=True)
        )
    await asyncio.sleep(api.runtime().settings.spend_refresh_seconds * 5)
    refused = await api.client.get("/api/v1/budgets", headers=api.bearer(token))
    assert refused.status_code == 401
    assert "blocked" in refused.json()["error"]["message"]
    assert (await api.gql("{ me { role } }", token=token))["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_websocket_whose_token_expires_is_closed(settings: Settings, clock: Clock, db: Database) -> None:
    async with started(settings, clock, jwt_ttl_seconds=2) as api, graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        await ws.send_json({"id": "b", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
        try:
            while True:
                await asyncio.wait_for(ws.receive_json(), 10)
        except WebSocketDisconnect as closed:
            code = closed.code
    assert code == 4401


async def test_budget_updated_fires_for_a_hold_made_before_a_refresh_first_saw_the_budget(api: Api) -> None:
    """A request held on a budget created a moment before, ahead of the first refresh that reads its figures: that
    refresh is the hold's news (the creation announced nothing in flight), not a baseline to stay quiet about."""
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        await ws.send_json({"id": "b", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
        await watching(api, "budgets")
        values = {"name": "Eng", "entityType": "TEAM", "entityId": "eng", "monthlyLimit": "100"}
        created = (await api.data(CREATE, {"input": values}))["createBudget"]  # no refresh in between
        status, _ = await ask(api, "held-first", estimated_cost="2")
        assert status == 200
        await api.runtime().enforcement().refresh_spend()
        seen: list[dict[str, str]] = []
        deadline = asyncio.get_running_loop().time() + 3
        while asyncio.get_running_loop().time() < deadline and not any(Decimal(s["reserved"]) > 0 for s in seen):
            try:
                message = await asyncio.wait_for(ws.receive_json(), 0.5)
            except TimeoutError:
                continue
            seen.append(message["payload"]["data"]["budgetUpdated"])
    held = [s for s in seen if s["id"] == created["id"] and Decimal(s["reserved"]) > 0]
    assert held, f"no budgetUpdated showed the hold in flight: {seen}"
