"""The cost predictor: the guide's example, verbosity profiles, learned output lengths, the key's budget."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from models.db import Database
from resolvers.auth import hash_key
from resolvers.predictor import refresh_output_history
from resolvers.predictor.tokens import count_messages
from tests.budgets.test_budgets import create as create_budget
from tests.conftest import MASTER_KEY, NOW
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

GUIDE_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Explain quantum computing in one paragraph."},
]


async def test_the_guides_example_comes_out_as_written(api: Api) -> None:
    response = await api.client.post(
        "/predict", json={"model": "claude-sonnet-4.5", "messages": GUIDE_MESSAGES, "max_tokens": 500}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    tokens = count_messages("claude-sonnet-4.5", GUIDE_MESSAGES).tokens
    assert body["model"] == "claude-sonnet-4.5"
    assert body["input_tokens"] == tokens
    assert body["estimated_output_tokens"] == 275
    assert body["estimated_output_cost_usd"] == 0.004125
    assert Decimal(str(body["input_cost_usd"])) == Decimal(tokens) * Decimal("0.000003")
    assert Decimal(str(body["total_estimated_cost_usd"])) == Decimal(tokens) * Decimal("0.000003") + Decimal("0.004125")
    assert (body["budget_remaining_usd"], body["within_budget"], body["warning"]) == (None, None, None)
    assert (body["input_token_count"], body["estimate_method"], body["verbosity_profile"]) == (
        "approximate",
        "profile",
        "standard",
    )
    assert body["estimated_output_tokens_high"] == 500


@pytest.mark.parametrize(
    ("model", "max_tokens", "expected"),
    [
        ("o3", 1000, 875),
        ("claude-opus-4.5", 1000, 675),
        ("gpt-5", 1000, 550),
        ("gpt-5-mini", 1000, 375),
        ("claude-haiku-4.5", 200, 75),
        ("fast", 1000, 375),
        ("reasoning", 100, 88),
    ],
)
async def test_verbosity_profiles_use_the_guides_share_of_max_tokens(
    api: Api, model: str, max_tokens: int, expected: int
) -> None:
    body = (
        await api.client.post(
            "/predict",
            json={"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "Hello"}]},
        )
    ).json()
    assert body["estimated_output_tokens"] == expected


async def test_without_max_tokens_the_output_input_ratio_applies(api: Api) -> None:
    body = (
        await api.client.post("/predict", json={"model": "gpt-4", "messages": [{"role": "user", "content": "Hello"}]})
    ).json()
    assert body["input_token_count"] == "exact"  # gpt-4 uses cl100k_base, which ships offline
    assert body["input_tokens"] == count_messages("gpt-4", [{"role": "user", "content": "Hello"}]).tokens
    assert body["estimated_output_tokens"] == body["input_tokens"] * 2


async def test_a_models_own_history_replaces_the_profile(api: Api, db: Database) -> None:
    lengths = [100 + i for i in range(61)] + [900] * 10  # median 135, a long tail
    await add_spend(
        db,
        *[
            SpendLog(0.001, NOW - timedelta(hours=i), model="gpt-4o", completion_tokens=n)
            for i, n in enumerate(lengths)
        ],
    )
    await refresh_output_history(api.runtime(), NOW)
    body = (
        await api.client.post(
            "/predict",
            json={"model": "gpt-4o", "max_tokens": 2000, "messages": [{"role": "user", "content": "Summarise this."}]},
        )
    ).json()
    assert (body["estimate_method"], body["history_requests"]) == ("learned", 71)
    assert body["estimated_output_tokens"] == 135
    assert body["estimated_output_tokens_high"] == 900
    capped = (
        await api.client.post(
            "/predict",
            json={"model": "gpt-4o", "max_tokens": 120, "messages": [{"role": "user", "content": "Summarise this."}]},
        )
    ).json()
    assert (capped["estimated_output_tokens"], capped["estimated_output_tokens_high"]) == (120, 120)
    other = (
        await api.client.post(
            "/predict", json={"model": "gpt-5", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}
        )
    ).json()
    assert other["estimate_method"] == "profile"  # no history for it


async def test_an_api_key_adds_its_budget(api: Api, db: Database) -> None:
    key_hash = await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await add_spend(db, SpendLog(42.58, NOW, api_key=key_hash))
    await api.runtime().enforcement().refresh()
    body = (
        await api.client.post(
            "/predict",
            headers={"x-api-key": "sk-alice"},
            json={"model": "gpt-5", "messages": [{"role": "user", "content": "Hello"}]},
        )
    ).json()
    assert (body["budget_remaining_usd"], body["within_budget"], body["warning"]) == (57.42, True, None)
    unknown = await api.client.post(
        "/predict",
        headers={"x-api-key": "sk-nobody"},
        json={"model": "gpt-5", "messages": [{"role": "user", "content": "Hello"}]},
    )
    assert unknown.status_code == 401


async def test_within_budget_counts_the_holds_in_flight_like_the_gateway(api: Api, db: Database) -> None:
    """50 of the team's 100 USD are spent and the other 50 are held by requests in flight: the gateway refuses the
    next request, so /predict's within_budget and /budget/check's allowed say no as well (they said yes)."""
    await add_virtual_key(db, "sk-alice", user_id="alice", team_id="eng")
    await create_budget(api, entityId="eng", monthlyLimit="100")
    await add_spend(db, SpendLog(50, NOW, team_id="eng"))
    await api.runtime().enforcement().refresh()
    gateway = {"x-api-key": MASTER_KEY}
    hello = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}

    async def hold(usd: str) -> int:
        body = {"team_id": "eng", "estimated_cost": usd}
        return (await api.client.post("/webhook/pre-request", json=body, headers=gateway)).status_code

    async def predicted() -> dict[str, Any]:
        body: dict[str, Any] = (await api.client.post("/predict", headers={"x-api-key": "sk-alice"}, json=hello)).json()
        return body

    assert await hold("40") == 200
    assert (await predicted())["within_budget"] is True  # 10 USD left after the holds
    assert await hold("10") == 200
    body = await predicted()
    assert body["within_budget"] is False
    assert body["warning"].startswith("this request (held at "), body["warning"]
    assert body["warning"].endswith(
        "does not fit in what is left of team budget 'Engineering Team Monthly' (eng): 0.00 USD; "
        "it resets at 2026-12-01T00:00:00+00:00"
    ), body["warning"]
    checked = (await api.client.post("/budget/check", json={"api_key": "sk-alice", "estimated_cost": 0.05})).json()
    assert checked["allowed"] is False
    # The gateway agrees: the request /predict judged is refused.
    assert await hold(str(body["held_cost_usd"])) == 429


async def test_budget_check_answers_as_the_guide_shows(api: Api, db: Database) -> None:
    key_hash = await add_virtual_key(db, "sk-team-key", user_id="alice", team_id="eng")
    await add_spend(db, SpendLog(42.58, NOW, api_key=key_hash), SpendLog(5, NOW - timedelta(days=40), api_key=key_hash))
    await api.runtime().enforcement().refresh()
    response = await api.client.post("/budget/check", json={"api_key": "sk-team-key", "estimated_cost": 0.05})
    assert response.json() == {
        "allowed": True,
        "budget_limit": 100,
        "current_spend": 42.58,
        "remaining": 57.42,
        "message": None,
    }
    too_much = (await api.client.post("/budget/check", json={"api_key": "sk-team-key", "estimated_cost": 60})).json()
    assert too_much["allowed"] is False
    assert "does not fit" in too_much["message"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": "no-such-model-xyz", "messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
        ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
        ({"model": "gpt-4o"}, 400, "messages"),
        ({"model": "gpt-4o", "messages": "hello"}, 400, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}, 400, "max_tokens"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}, 400, "max_tokens"),
        ({"model": 7, "messages": []}, 400, "model"),
    ],
)
async def test_bad_predict_requests_are_4xx_naming_the_problem(api: Api, body: object, status: int, field: str) -> None:
    response = await api.client.post("/predict", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"].split(".")[0] == field


async def test_budget_check_refuses_unknown_keys_and_bad_amounts(api: Api, db: Database) -> None:
    unknown = await api.client.post("/budget/check", json={"api_key": "sk-nope", "estimated_cost": 1})
    assert unknown.status_code == 401
    await add_virtual_key(db, "sk-known", user_id=None, team_id="eng")
    known = await api.client.post("/budget/check", json={"api_key": "sk-known", "estimated_cost": 1})
    assert known.status_code == 200
    as_hash = {"api_key": hash_key("sk-known"), "estimated_cost": 1}  # a hash proves nothing: spend logs show it
    assert (await api.client.post("/budget/check", json=as_hash)).status_code == 401
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "Hello"}]}
    predicted = await api.client.post("/predict", json=body, headers={"x-api-key": hash_key("sk-known")})
    assert predicted.status_code == 401
    for cost in (-1, "lots", None):
        bad = await api.client.post("/budget/check", json={"api_key": "sk-nope", "estimated_cost": cost})
        assert (bad.status_code, bad.json()["error"]["field"]) == (400, "estimated_cost")


async def test_predict_cost_in_graphql_matches_rest(api: Api) -> None:
    data = await api.data(
        """query($input: PredictCostInput!) { predictCost(input: $input) {
        model estimatedOutputTokens estimatedOutputCost inputTokens inputCost totalEstimatedCost priceSource } }""",
        {"input": {"model": "claude-sonnet-4.5", "maxTokens": 500, "messages": GUIDE_MESSAGES}},
    )
    prediction = data["predictCost"]
    assert (prediction["estimatedOutputTokens"], prediction["estimatedOutputCost"]) == (275, "0.004125")
    assert prediction["priceSource"] == "genai-prices"
    error = await api.error('{ predictCost(input: {model: "nope-model", prompt: "x"}) { model } }')
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "model"}
