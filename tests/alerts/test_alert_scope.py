"""Whose budget alerts a viewer reads: only those of budgets it may see (`Principal.can_see`: its key, its user,
its team), on every face — the `alerts` query, `alertsConnection`, `GET /alerts` and `alertRaised`. A teammate's
key or user budget is outside its scope: its name, id and figures appear in no alert the viewer reads, although
the alert records the team whose key crossed it (so an admin's `?team_id=` still lists it)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from models.db import Database
from tests.conftest import MASTER_KEY, NOW
from tests.support import Api, SpendLog, add_spend, add_virtual_key, graphql_ws, watching

CREATE = "mutation($input: BudgetInput!) { createBudget(input: $input) { id } }"
ALERTS = "{ alerts(limit: 50) { budgetId entityType entityId message } }"
PAGE = "{ alertsConnection(first: 50) { edges { node { budgetId message } } } }"
HELLO = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}
SECRET = ("Bob's key budget", "Bob's user budget", "Bob's end-user budget")


async def budget(api: Api, name: str, entity_type: str, entity_id: str, limit: str = "7") -> str:
    created = await api.data(
        CREATE, {"input": {"name": name, "entityType": entity_type, "entityId": entity_id, "limit": limit}}
    )
    return str(created["createBudget"]["id"])


async def cross(api: Api, key: str, user: str, team: str, end_user: str | None = None) -> None:
    """One request through the gateway by this key's holder: every budget it names is over its limit."""
    response = await api.client.post(
        "/webhook/pre-request",
        json={"user_api_key_hash": key, "user_id": user, "team_id": team, "end_user": end_user, **HELLO},
        headers={"x-api-key": MASTER_KEY},
    )
    assert response.status_code == 429, response.text
    await asyncio.gather(*list(api.runtime().enforcement()._tasks))


async def bobs_budgets(api: Api, db: Database) -> dict[str, str]:
    """Bob (key sk-bob, team eng) crosses his key's, his user's, an end user's and his team's budgets."""
    bob = await add_virtual_key(db, "sk-bob", user_id="bob", team_id="eng")
    await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    ids = {
        "key": await budget(api, SECRET[0], "KEY", bob),
        "user": await budget(api, SECRET[1], "USER", "bob"),
        "end_user": await budget(api, SECRET[2], "END_USER", "customer-9"),
        "team": await budget(api, "Eng team", "TEAM", "eng"),
    }
    await add_spend(db, SpendLog(12.01, NOW, api_key=bob, user="bob", team_id="eng", end_user="customer-9"))
    await api.runtime().enforcement().refresh()
    await cross(api, bob, "bob", "eng", "customer-9")
    return ids


def named(alerts: list[dict[str, Any]]) -> set[str]:
    return {name for a in alerts for name in SECRET if name in a["message"]}


async def test_a_viewer_reads_no_alert_of_a_teammates_key_user_or_end_user_budget(api: Api, db: Database) -> None:
    ids = await bobs_budgets(api, db)
    everything = (await api.data(ALERTS))["alerts"]
    assert named(everything) == set(SECRET)  # the admin reads all four
    alice = await api.login("sk-alice")
    seen = (await api.data(ALERTS, token=alice))["alerts"]
    assert [a["budgetId"] for a in seen] == [ids["team"]]  # her team's budget only
    paged = (await api.data(PAGE, token=alice))["alertsConnection"]["edges"]
    assert [e["node"]["budgetId"] for e in paged] == [ids["team"]]
    rest = await api.client.get("/alerts", params={"team_id": "eng"}, headers=api.bearer(alice))
    assert rest.status_code == 200 and [a["budget_id"] for a in rest.json()] == [ids["team"]]
    # Bob reads his own key's and user's, and the team's; the end user's budget is nobody's but the admin's.
    bob = await api.login("sk-bob")
    own = {a["budgetId"] for a in (await api.data(ALERTS, token=bob))["alerts"]}
    assert own == {ids["key"], ids["user"], ids["team"]}
    # The admin's team feed keeps its members' budget alerts (the guide's GET /alerts?team_id=).
    admin = await api.client.get("/alerts", params={"team_id": "eng"}, headers=api.bearer())
    assert {a["budget_id"] for a in admin.json()} == set(ids.values())


async def test_alert_raised_tells_a_viewer_nothing_of_a_teammates_budget(api: Api, db: Database) -> None:
    bob = await add_virtual_key(db, "sk-bob", user_id="bob", team_id="eng")
    await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await budget(api, SECRET[0], "KEY", bob)
    await budget(api, SECRET[1], "USER", "bob")
    team = await budget(api, "Eng team", "TEAM", "eng", limit="9")
    await add_spend(db, SpendLog(8, NOW, api_key=bob, user="bob", team_id="eng"))
    await api.runtime().enforcement().refresh()
    alice = await api.login("sk-alice")
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {alice}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        query = "subscription { alertRaised { budgetId message } }"
        await ws.send_json({"id": "a", "type": "subscribe", "payload": {"query": query}})
        await watching(api, "alerts")
        # Bob's key and user budgets (limit 7) are exhausted; the team's (limit 9) is past its soft limit only.
        await cross(api, bob, "bob", "eng")
        heard = [(await asyncio.wait_for(ws.receive_json(), 5))["payload"]["data"]["alertRaised"]]
        with contextlib.suppress(TimeoutError):  # a second event would be a teammate's budget
            heard.append((await asyncio.wait_for(ws.receive_json(), 1))["payload"]["data"]["alertRaised"])
    assert [a["budgetId"] for a in heard] == [team]
    assert named(heard) == set()
