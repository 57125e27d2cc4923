"""What a key's holder reads about budgets outside its scope: the decision, never the budget's name or figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.db import Database
from resolvers.auth import hash_key
from tests.conftest import MASTER_KEY, NOW
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

CREATE = "mutation($input: BudgetInput!) { createBudget(input: $input) { id } }"
PREDICT = """query($input: PredictCostInput!) {
  predictCost(input: $input) { totalEstimatedCost budgetRemaining withinBudget warning } }"""
HELLO = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}
HIDDEN = "a budget outside this key's scope"


async def budget(api: Api, **fields: Any) -> None:
    await api.data(CREATE, {"input": {"entityId": None, **fields}})


async def alice(api: Api, db: Database) -> str:
    """Alice's key (team eng); a global budget 'Global' of 7 USD, 14.51 USD spent (2.50 by Alice)."""
    key_hash = await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await budget(api, name="Global", entityType="GLOBAL", limit="7")
    await add_spend(db, SpendLog(12.01, NOW, api_key="someone-else"), SpendLog(2.5, NOW, api_key=key_hash))
    await api.runtime().enforcement().refresh()
    return key_hash


def leaks(text: str | None) -> list[str]:
    return [word for word in ("Global", "global", "14.51", "7.00", "7 USD", "resets") if word in (text or "")]


async def test_budget_check_refuses_without_naming_the_global_budget_or_its_figures(api: Api, db: Database) -> None:
    await alice(api, db)
    body = (await api.client.post("/budget/check", json={"api_key": "sk-alice", "estimated_cost": 0.05})).json()
    assert body["allowed"] is False
    assert body["message"] == f"{HIDDEN} is exhausted"
    # The figures are the key's own (the per-key default of 100 USD), not the global budget's.
    assert (body["budget_limit"], body["current_spend"], body["remaining"]) == (100, 2.5, 97.5)


async def test_predict_with_a_key_warns_without_the_global_budgets_name_or_figures(api: Api, db: Database) -> None:
    await alice(api, db)
    body = (await api.client.post("/predict", headers={"x-api-key": "sk-alice"}, json=HELLO)).json()
    assert body["within_budget"] is False
    assert body["warning"] == f"{HIDDEN} is exhausted"
    assert body["budget_remaining_usd"] == 97.5  # the key's own budget, not the global one's 0
    assert leaks(body["warning"]) == []


async def test_a_viewers_predict_cost_in_graphql_hides_the_global_budget(api: Api, db: Database) -> None:
    await alice(api, db)
    token = await api.login("sk-alice")
    assert (await api.data("{ budgets { name } }", token=token))["budgets"] == []  # GraphQL hides it too
    assert [b["name"] for b in (await api.data("{ budgets { name } }"))["budgets"]] == ["Global"]
    data = await api.data(PREDICT, {"input": {"model": "gpt-4o", "prompt": "Hello"}}, token=token)
    prediction = data["predictCost"]
    assert (prediction["withinBudget"], prediction["warning"]) == (False, f"{HIDDEN} is exhausted")
    assert prediction["budgetRemaining"] == "97.5"


async def test_the_gateway_still_names_the_binding_budget(api: Api, db: Database) -> None:
    """The pre-request webhook's caller is the trusted gateway: its message keeps the name and figures."""
    await alice(api, db)
    response = await api.client.post(
        "/webhook/pre-request",
        json={"user_api_key_hash": "sk-alice", **HELLO},
        headers={"x-api-key": "sk-master-test"},
    )
    assert response.status_code == 429, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("global budget 'Global' is exhausted: 14.51 USD spent of a 7.00 USD limit")


async def test_a_request_too_big_for_a_hidden_budget_says_so_without_its_figures(api: Api, db: Database) -> None:
    key_hash = await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await budget(api, name="Global", entityType="GLOBAL", limit="50")
    await add_spend(db, SpendLog(20, NOW, api_key=key_hash))
    await api.runtime().enforcement().refresh()
    body = (await api.client.post("/budget/check", json={"api_key": "sk-alice", "estimated_cost": 40})).json()
    assert body["allowed"] is False
    assert body["message"] == f"this request (held at 40.00 USD) does not fit in what is left of {HIDDEN}"
    assert body["remaining"] == 80  # its own 100 USD default less its own 20


async def test_a_hidden_budget_near_its_limit_is_a_warning_without_figures(api: Api, db: Database) -> None:
    await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await budget(api, name="Global", entityType="GLOBAL", limit="10")
    await add_spend(db, SpendLog(9.5, NOW, api_key="someone-else"))
    await api.runtime().enforcement().refresh()
    body = (await api.client.post("/predict", headers={"x-api-key": "sk-alice"}, json=HELLO)).json()
    assert (body["within_budget"], body["warning"]) == (True, f"{HIDDEN} is close to its limit")


async def test_a_keys_own_team_budget_is_named_with_its_figures(api: Api, db: Database) -> None:
    await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await budget(api, name="Eng", entityType="TEAM", entityId="eng", limit="10")
    await add_spend(db, SpendLog(12, NOW, team_id="eng"))
    await api.runtime().enforcement().refresh()
    body = (await api.client.post("/budget/check", json={"api_key": "sk-alice", "estimated_cost": 0.05})).json()
    assert body["allowed"] is False
    assert body["message"].startswith("team budget 'Eng' (eng) is exhausted: 12.00 USD spent of a 10.00 USD limit")


# ------------------------------------------------------------------- what the gateway relays to its client


GATEWAY = {"x-api-key": MASTER_KEY}
GUARDRAIL_SAMPLE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "litellm" / "guardrail_request_custom_auth_headers.json"
)


async def pre_request(api: Api, **payload: Any) -> tuple[int, dict[str, Any]]:
    response = await api.client.post("/webhook/pre-request", json={**HELLO, **payload}, headers=GATEWAY)
    assert response.status_code in (200, 429), response.text
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def guardrail(api: Api, key_hash: str | None, team: str | None, cost_words: int = 1) -> dict[str, Any]:
    """LiteLLM's own guardrail request (captured from a 1.110.2 proxy), for this key and team."""
    sample = json.loads(GUARDRAIL_SAMPLE.read_text())["body"]
    data = sample["request_data"]
    data.update(user_api_key_hash=key_hash, user_api_key_team_id=team, user_api_key_user_id=None)
    data.pop("user_api_key_end_user_id", None)
    sample["structured_messages"] = [{"role": "user", "content": "word " * cost_words}]
    response = await api.client.post("/beta/litellm_basic_guardrail_api", json=sample, headers=GATEWAY)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_guardrails_blocked_reason_hides_the_global_budget_from_the_keys_holder(
    api: Api, db: Database
) -> None:
    """LiteLLM returns blocked_reason to its client (an HTTP 400 whose message it is)."""
    key_hash = await alice(api, db)
    for _ in range(2):  # the first decision reads the database, the second is refused from memory
        verdict = await guardrail(api, key_hash, "eng")
        assert verdict == {"action": "BLOCKED", "blocked_reason": f"budget_exceeded: {HIDDEN} is exhausted"}


async def test_the_webhook_gives_the_gateway_a_client_message_without_the_global_budget(api: Api, db: Database) -> None:
    await alice(api, db)
    for _ in range(2):
        status, body = await pre_request(api, user_api_key_hash="sk-alice")
        assert status == 429
        assert body["client_message"] == f"{HIDDEN} is exhausted"
        assert leaks(body["client_message"]) == []
        # The operator's part keeps the figures, and the alert type and reset time stay for the client's retry.
        assert body["error"]["message"].startswith("global budget 'Global' is exhausted: 14.51 USD")
        assert body["error"]["type"] == "budget_exceeded" and body["resets_at"] is not None


async def test_a_hidden_budget_near_its_limit_is_a_client_warning_without_figures(api: Api, db: Database) -> None:
    key_hash = await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await budget(api, name="Global", entityType="GLOBAL", limit="10")
    await add_spend(db, SpendLog(9.5, NOW, api_key="someone-else"))
    await api.runtime().enforcement().refresh()
    status, body = await pre_request(api, user_api_key_hash=key_hash)
    assert (status, body["action"]) == (200, "warn")
    assert body["client_message"] == f"{HIDDEN} is close to its limit"
    assert body["warning"].startswith("global budget 'Global' is at 95.0% of its limit")
    status, body = await pre_request(api, user_api_key_hash=key_hash, estimated_cost="0")
    assert body["client_message"] == f"{HIDDEN} is close to its limit"


async def test_a_request_too_big_for_a_hidden_budget_reaches_the_client_without_its_figures(
    api: Api, db: Database
) -> None:
    key_hash = await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await budget(api, name="Global", entityType="GLOBAL", limit="50")
    await add_spend(db, SpendLog(20, NOW, api_key=key_hash))
    await api.runtime().enforcement().refresh()
    status, body = await pre_request(api, user_api_key_hash=key_hash, estimated_cost="40")
    assert (status, body["error"]["type"]) == (429, "request_exceeds_budget")
    assert body["client_message"] == f"this request (held at 40.00 USD) does not fit in what is left of {HIDDEN}"
    assert "30.00 USD" in body["error"]["message"]  # the operator's: what is left of the global budget


async def test_the_keys_own_team_budget_reaches_the_client_named_with_its_figures(api: Api, db: Database) -> None:
    """Only the key hash arrives (the team comes from LiteLLM's key table): the team is still the holder's."""
    key_hash = await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await budget(api, name="Eng", entityType="TEAM", entityId="eng", limit="10")
    await add_spend(db, SpendLog(12, NOW, team_id="eng"))
    await api.runtime().enforcement().refresh()
    own = "team budget 'Eng' (eng) is exhausted: 12.00 USD spent of a 10.00 USD limit; it resets at "
    for _ in range(2):
        verdict = await guardrail(api, key_hash, None)
        assert verdict["action"] == "BLOCKED" and verdict["blocked_reason"].startswith(f"budget_exceeded: {own}")
        status, body = await pre_request(api, user_api_key_hash=key_hash)
        assert status == 429 and body["client_message"].startswith(own)


async def test_a_request_with_no_identity_is_told_of_no_budget_by_name(api: Api, db: Database) -> None:
    """A request with no key at all is told of no budget by name."""
    await alice(api, db)
    verdict = await guardrail(api, None, None)
    assert verdict["blocked_reason"] == f"budget_exceeded: {HIDDEN} is exhausted"
    status, body = await pre_request(api)
    assert (status, body["client_message"]) == (429, f"{HIDDEN} is exhausted")


GLOBAL_EXHAUSTED = "global budget 'Global' is exhausted: 14.51 USD spent of a 7.00 USD limit; it resets at "


async def test_the_master_keys_holder_reads_the_global_budget_by_name_with_its_figures(api: Api, db: Database) -> None:
    """LiteLLM's master key has no key row; its holder is the proxy's admin (the same key logs in as admin here):
    the global budget is within its scope, by LiteLLM's marker for the key or (custom auth) by its sha256."""
    await alice(api, db)
    for key in ("litellm_proxy_master_key", hash_key(MASTER_KEY)):
        for _ in range(2):  # read from the database, then refused from memory
            status, body = await pre_request(api, user_api_key_hash=key, user_id="default_user_id")
            assert status == 429 and body["client_message"].startswith(GLOBAL_EXHAUSTED), body["client_message"]
            verdict = await guardrail(api, key, "eng")
            assert verdict["blocked_reason"].startswith(f"budget_exceeded: {GLOBAL_EXHAUSTED}")
    # A virtual key of the same request still reads the global budget as outside its scope.
    status, body = await pre_request(api, user_api_key_hash="sk-alice")
    assert body["client_message"] == f"{HIDDEN} is exhausted"


async def test_the_master_keys_holder_reads_the_budgets_its_request_names(api: Api, db: Database) -> None:
    """The team, user, end user and tags a master-key request names are its holder's to read, like the global one."""
    await budget(api, name="Batch", entityType="TAG", entityId="batch", limit="10")
    await budget(api, name="Ops", entityType="TEAM", entityId="ops", limit="100", softLimitPercent="0.1")
    await add_spend(db, SpendLog(12, NOW, team_id="ops", tags=["batch"]))
    await api.runtime().enforcement().refresh()
    named = {"user_api_key_hash": "litellm_proxy_master_key", "team_id": "ops"}
    status, body = await pre_request(api, **named, tags=["batch"])
    assert status == 429 and body["client_message"].startswith(
        "tag budget 'Batch' (batch) is exhausted: 12.00 USD spent of a 10.00 USD limit"
    ), body["client_message"]
    status, body = await pre_request(api, **named)  # the team's warning, named with its figures
    assert (status, body["action"]) == (200, "warn")
    assert body["client_message"].startswith("team budget 'Ops' (ops) is at 12.0% of its limit"), body["client_message"]
