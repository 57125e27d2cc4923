"""Prices: the offline baseline, LiteLLM's price map (file and URL, cached), self-hosted models, LiteLLM's
config.yaml aliases and deployment prices, and admin overrides, each price naming its source."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from resolvers.platform.config import Settings
from resolvers.pricing import refresh_price_map
from tests.conftest import Clock, started
from tests.support import Api, served

pytestmark = pytest.mark.litellm_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PRICE_MAP = FIXTURES / "litellm_price_map.json"


async def prices(api: Api, model: str | None = None) -> dict[str, Any]:
    response = await api.client.get("/pricing", params={"model": model} if model else None)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_pricing_works_offline_from_the_baseline(api: Api) -> None:
    body = await prices(api)
    assert body["count"] > 1000
    by_model = {m["model"]: m for m in body["models"]}
    assert by_model["gpt-4o"] == {
        "model": "gpt-4o",
        "provider": "openai",
        "input_cost_per_million": 2.5,
        "output_cost_per_million": 10,
        "source": "genai-prices",
    }
    assert body["price_map_origin"] is None


async def test_an_alias_resolves_to_its_dearest_member(api: Api) -> None:
    body = await prices(api, "fast")
    assert body["alias"] == "fast"
    assert {m["model"] for m in body["models"]} == {"gpt-5-mini", "claude-haiku-4-5"}
    missing = await api.client.get("/pricing", params={"model": "no-such-model"})
    assert (missing.status_code, missing.json()["error"]["field"]) == (404, "model")


async def test_litellms_price_map_from_a_file_wins_over_the_baseline(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock, price_map_url=str(PRICE_MAP)) as running:
        await refresh_price_map(running.runtime(), clock.now)
        body = await prices(running, "acme-large")
        assert body["models"][0]["source"] == "litellm-price-map"
        assert (body["models"][0]["input_cost_per_million"], body["models"][0]["output_cost_per_million"]) == (4, 20)
        assert (await prices(running, "gpt-4o"))["models"][0]["source"] == "litellm-price-map"


async def test_the_price_map_is_fetched_cached_and_survives_a_failed_refresh(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    state = {"fail": False}

    async def price_map(request: Request) -> Response:
        if state["fail"]:
            return Response("upstream down", status_code=503)
        return JSONResponse(json.loads(PRICE_MAP.read_text()))

    cache = tmp_path / "cache.json"
    async with served(Starlette(routes=[Route("/prices.json", price_map)])) as base:
        async with started(
            settings, clock, price_map_url=f"{base}/prices.json", price_map_cache=str(cache), jobs_enabled=False
        ) as one:
            outcome = await one.runtime().jobs.run("price-map")
            assert outcome.summary == f"3 models from {base}/prices.json"  # image and sample entries skipped
            assert cache.exists()
            state["fail"] = True
            failed = await one.runtime().jobs.run("price-map")
            assert failed.error is not None and "503" in failed.error
            assert (await prices(one, "acme-large"))["models"][0]["source"] == "litellm-price-map"
        # A restart with the upstream still down starts from the cache, with no network at all.
        async with started(settings, clock, price_map_url=None, price_map_cache=str(cache)) as two:
            body = await prices(two, "acme-large")
            assert body["models"][0]["source"] == "litellm-price-map"
            assert body["price_map_origin"] == f"cache:{cache}"


async def test_self_hosted_models_and_litellm_config_prices(settings: Settings, clock: Clock) -> None:
    async with started(
        settings,
        clock,
        self_hosted_models=(("llama-3.1-*", Decimal(0), Decimal(0)), ("mistral-7b", Decimal("0.2"), Decimal("0.6"))),
        litellm_config_path=str(FIXTURES / "litellm_config.yaml"),
    ) as running:
        llama = (await prices(running, "llama-3.1-70b"))["models"][0]
        assert (llama["source"], llama["input_cost_per_million"], llama["output_cost_per_million"]) == (
            "self-hosted",
            0,
            0,
        )
        assert (await prices(running, "mistral-7b"))["models"][0]["output_cost_per_million"] == 0.6
        in_house = (await prices(running, "in-house"))["models"][0]
        assert (in_house["source"], in_house["input_cost_per_million"]) == ("litellm-config", 0.1)
        team_default = await prices(running, "team-default")  # model_list alias -> openai/gpt-4o-mini
        assert (team_default["alias"], team_default["models"][0]["model"]) == ("team-default", "gpt-4o-mini")
        best = await prices(running, "best")  # router_settings.model_group_alias, two hops
        assert best["models"][0]["model"] == "claude-sonnet-4-5"
        predicted = (await running.client.post("/predict", json={"model": "llama-3.1-8b", "prompt": "hi"})).json()
        assert predicted["total_estimated_cost_usd"] == 0


async def test_an_admin_override_wins_and_can_be_removed(api: Api) -> None:
    set_price = """mutation($input: ModelPriceInput!) { setModelPrice(input: $input) {
        model inputPerMillion outputPerMillion source } }"""
    # Looked up before the override: the price book remembers lookups, and must forget them when it changes.
    assert (await prices(api, "openai/gpt-4o"))["models"][0]["source"] == "genai-prices"
    data = await api.data(
        set_price,
        {"input": {"model": "gpt-4o", "inputPerMillion": "1.25", "outputPerMillion": "5", "provider": "openai"}},
    )
    assert data["setModelPrice"] == {
        "model": "gpt-4o",
        "inputPerMillion": "1.25",
        "outputPerMillion": "5",
        "source": "override",
    }
    assert (await prices(api, "openai/gpt-4o"))["models"][0]["source"] == "override"
    listed = await api.data('{ pricing(model: "gpt-4o") { source inputPerMillion } }')
    assert listed["pricing"] == [{"source": "override", "inputPerMillion": "1.25"}]
    error = await api.error(set_price, {"input": {"model": "gpt-4o", "inputPerMillion": "-1", "outputPerMillion": "5"}})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "inputPerMillion"}
    assert await api.data('mutation { deleteModelPrice(model: "gpt-4o") }') == {"deleteModelPrice": True}
    assert (await prices(api, "gpt-4o"))["models"][0]["source"] == "genai-prices"
    gone = await api.error('mutation { deleteModelPrice(model: "gpt-4o") }')
    assert gone["extensions"]["code"] == "NOT_FOUND"


async def test_only_admins_set_prices(api: Api, db: Any) -> None:
    from tests.support import add_virtual_key

    await add_virtual_key(db, "sk-viewer", user_id="v", team_id="t")
    token = await api.login("sk-viewer")
    error = await api.error(
        'mutation { setModelPrice(input: {model: "x", inputPerMillion: "1", outputPerMillion: "1"}) { model } }',
        token=token,
    )
    assert error["extensions"]["code"] == "FORBIDDEN"
