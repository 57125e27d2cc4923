"""A token carries its key's team and user as they were at login. When LiteLLM moves the key to another team (or
user) afterwards, the token's reading of its old team's budgets, spend and alerts ends within a refresh, as it
does for a key blocked or deleted: its holder logs in again and reads the new team's."""

from __future__ import annotations

import asyncio

import pytest
from httpx_ws import WebSocketDisconnect
from sqlalchemy import update

from models.db import Database
from models.litellm import verification_tokens
from resolvers.auth import hash_key
from tests.support import Api, add_virtual_key, graphql_ws

BUDGET = "mutation($input: BudgetInput!) { createBudget(input: $input) { id } }"


@pytest.mark.parametrize(("column", "value"), [("team_id", "ops"), ("user_id", "bob"), ("team_id", None)])
async def test_a_key_moved_after_login_loses_its_old_scope(
    api: Api, db: Database, column: str, value: str | None
) -> None:
    await add_virtual_key(db, "sk-viewer", user_id="alice", team_id="eng")
    input_ = {"name": "Eng", "entityType": "TEAM", "entityId": "eng", "limit": "10"}
    await api.data(BUDGET, {"input": input_})
    token = await api.login("sk-viewer")
    assert len((await api.client.get("/api/v1/budgets", headers=api.bearer(token))).json()) == 1
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        async with db.engine.begin() as conn:
            await conn.execute(
                update(verification_tokens)
                .where(verification_tokens.c.token == hash_key("sk-viewer"))
                .values({column: value})
            )
        await asyncio.sleep(api.runtime().settings.spend_refresh_seconds * 5)
        refused = await api.client.get("/api/v1/budgets", headers=api.bearer(token))
        assert refused.status_code == 401, refused.text
        assert "log in" in refused.json()["error"]["message"]
        assert (await api.gql("{ budgets { id } }", token=token))["errors"][0]["extensions"]["code"] == (
            "UNAUTHENTICATED"
        )
        with pytest.raises(WebSocketDisconnect) as closed:  # the socket of the old token is closed too
            await asyncio.wait_for(ws.receive_json(), 5)
        assert closed.value.code == 4401
    fresh = await api.login("sk-viewer")
    expected = 0 if column == "team_id" else 1
    assert len((await api.client.get("/api/v1/budgets", headers=api.bearer(fresh))).json()) == expected
