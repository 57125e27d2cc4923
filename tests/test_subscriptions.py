"""Live budget updates over graphql-transport-ws, scoped by the subscriber's token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from httpx_ws import AsyncWebSocketSession

from models.db import Database
from tests.budgets.test_budgets import create
from tests.support import Api, add_virtual_key, graphql_ws, watching

pytestmark = pytest.mark.litellm_tables

SUBSCRIBE = "subscription($id: ID) { budgetUpdated(id: $id) { id name monthlyLimit status } }"


@asynccontextmanager
async def subscribed(api: Api, token: str, variables: dict[str, Any]) -> AsyncIterator[AsyncWebSocketSession]:
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        await ws.send_json({"id": "s1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": variables}})
        await watching(api, "budgets")
        yield ws


async def test_an_update_reaches_its_subscriber(api: Api) -> None:
    budget = await create(api)
    async with subscribed(api, api.admin_token, {"id": budget["id"]}) as ws:
        await api.data(
            'mutation($id: ID!) { updateBudget(id: $id, input: {monthlyLimit: "250"}) { id } }',
            {"id": budget["id"]},
        )
        message = await asyncio.wait_for(ws.receive_json(), 5)
    assert message["type"] == "next"
    assert message["payload"]["data"]["budgetUpdated"]["monthlyLimit"] == "250"


async def test_a_viewer_hears_only_budgets_of_its_scope(api: Api, db: Database) -> None:
    await add_virtual_key(db, "sk-eng", user_id="alice", team_id="engineering")
    token = await api.login("sk-eng")
    engineering = await create(api)
    marketing = await create(api, entityId="marketing", name="Marketing")
    async with subscribed(api, token, {}) as ws:
        for budget in (marketing, engineering):
            await api.data(
                'mutation($id: ID!) { updateBudget(id: $id, input: {name: "renamed"}) { id } }',
                {"id": budget["id"]},
            )
        message = await asyncio.wait_for(ws.receive_json(), 5)
    assert message["payload"]["data"]["budgetUpdated"]["id"] == engineering["id"]
