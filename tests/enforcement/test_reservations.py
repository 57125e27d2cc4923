"""Calibrated holds: a reservation holds RESERVATION_QUANTILE of the request's predicted cost (learned output
lengths per model), the predictor says which quantile it holds, and a burst at the calibrated quantile stays
within its overshoot bound where the median's does not."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event

from models.db import Database
from resolvers.enforcement.ledger import margin_z
from resolvers.platform.config import Settings
from resolvers.predictor import OutputStats, refresh_output_history
from tests.budgets.test_budgets import create as create_budget
from tests.conftest import MASTER_KEY, NOW, Clock, started
from tests.support import Api, SpendLog, add_spend, post_spend

pytestmark = pytest.mark.litellm_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "litellm"
GATEWAY = {"x-api-key": MASTER_KEY}
PATIENT = {"enforcement_timeout_ms": 30_000}  # a loaded machine must not turn decisions into fail-open ones
HI = [{"role": "user", "content": "hi"}]
#: gpt-4o's baseline price: USD per token.
GPT_4O_IN, GPT_4O_OUT = Decimal("2.5") / 10**6, Decimal(10) / 10**6
MEDIAN_OUTPUT, SIGMA, MAX_TOKENS = 600, 0.8, 4096


def lengths(n: int, seed: int) -> list[int]:
    """Completion lengths: log-normal around 600 tokens, capped at max_tokens (a long right tail)."""
    rng = random.Random(seed)
    return [max(1, min(MAX_TOKENS, round(rng.lognormvariate(0, SIGMA) * MEDIAN_OUTPUT))) for _ in range(n)]


async def learn(api: Api, db: Database, history: list[int]) -> None:
    await add_spend(
        db,
        *[
            SpendLog(0.001, NOW - timedelta(minutes=10 * (i + 1)), model="gpt-4o", completion_tokens=n)
            for i, n in enumerate(history)
        ],
    )
    await refresh_output_history(api.runtime(), NOW)


async def predicted(api: Api, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/predict", json={"model": "gpt-4o", "messages": HI, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def held_tokens_expected(history: list[int], quantile: float) -> int:
    """numpy's linear-interpolation quantile (an independent computation), rounded as token counts are."""
    return round(float(np.quantile(np.array(history), quantile, method="linear")))


@pytest.mark.parametrize("quantile", ["0.5", "0.9", "0.95", "0.99"])
async def test_the_hold_is_the_configured_quantile_of_the_learned_output_lengths(
    settings: Settings, clock: Clock, db: Database, quantile: str
) -> None:
    history = lengths(400, seed=3)
    margin = {"reservation_margin": "per_request"}
    async with started(settings, clock, reservation_quantile=Decimal(quantile), **margin) as api:
        await learn(api, db, history)
        body = await predicted(api, max_tokens=MAX_TOKENS)
        tokens = held_tokens_expected(history, float(quantile))
        assert (body["estimate_method"], Decimal(str(body["held_quantile"]))) == ("learned", Decimal(quantile))
        assert body["held_output_tokens"] == tokens
        assert body["estimated_output_tokens"] == held_tokens_expected(history, 0.5)  # the estimate stays the median
        held = Decimal(body["input_tokens"]) * GPT_4O_IN + tokens * GPT_4O_OUT
        assert Decimal(str(body["held_cost_usd"])) == held
        # predictCost says the same, and the gateway holds exactly that on the budget.
        data = await api.data(
            """query($input: PredictCostInput!) { predictCost(input: $input) {
            heldQuantile heldOutputTokens heldCost totalEstimatedCost } }""",
            {"input": {"model": "gpt-4o", "maxTokens": MAX_TOKENS, "messages": HI}},
        )
        view = data["predictCost"]
        assert (Decimal(view["heldQuantile"]), view["heldOutputTokens"]) == (Decimal(quantile), tokens)
        assert Decimal(view["heldCost"]) == held
        await create_budget(api, entityId="eng", monthlyLimit="100")
        await api.runtime().enforcement().refresh()
        answer = await api.client.post(
            "/webhook/pre-request",
            headers=GATEWAY,
            json={
                "litellm_call_id": "q-1",
                "model": "gpt-4o",
                "messages": HI,
                "max_tokens": MAX_TOKENS,
                "team_id": "eng",
            },
        )
        assert answer.status_code == 200, answer.text
        assert Decimal(str(answer.json()["held_cost_usd"])) == held
        budget = (await api.data("{ budgets { reserved } }"))["budgets"][0]
        assert Decimal(budget["reserved"]) == held


async def test_quantile_one_is_the_worst_case_max_tokens_as_litellm_holds(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with started(settings, clock, reservation_quantile=Decimal(1)) as api:
        await learn(api, db, lengths(400, seed=4))
        body = await predicted(api, max_tokens=3000)
        assert (body["held_output_tokens"], Decimal(str(body["held_quantile"]))) == (3000, 1)
        unlearned = (
            await api.client.post("/predict", json={"model": "gpt-5", "messages": HI, "max_tokens": 700})
        ).json()
        assert (unlearned["estimate_method"], unlearned["held_output_tokens"]) == ("profile", 700)


async def test_a_hold_never_exceeds_max_tokens_and_an_unlearned_model_holds_its_estimate(
    api: Api, db: Database
) -> None:
    await learn(api, db, lengths(400, seed=5))
    capped = await predicted(api, max_tokens=200)
    assert capped["held_output_tokens"] == 200  # the 95th percentile is far beyond 200 tokens
    unlearned = (await api.client.post("/predict", json={"model": "gpt-5", "messages": HI, "max_tokens": 1000})).json()
    # No distribution to take a quantile of: the profile's estimate is held, and the answer says no quantile.
    assert (unlearned["held_quantile"], unlearned["held_output_tokens"]) == (None, unlearned["estimated_output_tokens"])


def test_learned_quantiles_are_precomputed_per_mille() -> None:
    history = lengths(1000, seed=6)
    stats = OutputStats.learn(history)
    assert len(stats.per_mille) == 1000
    assert stats.at(Decimal("0.5")) == stats.median == held_tokens_expected(history, 0.5)
    assert stats.at(Decimal("0.9")) == stats.p90 == held_tokens_expected(history, 0.9)
    assert stats.at(Decimal("0.975")) == held_tokens_expected(history, 0.975)
    assert stats.at(Decimal(1)) == max(history)
    assert list(stats.per_mille) == sorted(stats.per_mille)


@pytest.mark.parametrize("raw", ["0.4", "1.01", "median", "nan", "-1"])
def test_a_reservation_quantile_outside_half_to_one_is_refused_with_what_is_accepted(raw: str) -> None:
    with pytest.raises(ValueError, match=r"RESERVATION_QUANTILE.*from 0\.5 \(the median\) to 1"):
        Settings.from_env({"RESERVATION_QUANTILE": raw})


async def _burst_and_settle(api: Api, outputs: list[int]) -> tuple[int, Decimal]:
    """200 concurrent requests for team eng; every admitted one then spends its real cost (output tokens drawn
    from the learned distribution). Returns how many were admitted and the budget's final spend."""

    async def one(i: int) -> bool:
        response = await api.client.post(
            "/webhook/pre-request",
            headers=GATEWAY,
            json={
                "litellm_call_id": f"b{i}",
                "model": "gpt-4o",
                "messages": HI,
                "max_tokens": MAX_TOKENS,
                "team_id": "eng",
            },
        )
        assert response.status_code in (200, 429), response.text
        return response.status_code == 200

    admitted = [i for i, ok in enumerate(await asyncio.gather(*(one(i) for i in range(len(outputs))))) if ok]
    prompt = (await predicted(api))["input_tokens"]
    sample = json.loads((FIXTURES / "spend_post_success.json").read_text())["body"]
    sample["metadata"]["user_api_key_team_id"] = "eng"
    when = {"startTime": (NOW - timedelta(minutes=1)).timestamp(), "endTime": NOW.timestamp()}
    events = [
        {
            **sample,
            **when,
            "litellm_call_id": f"b{i}",
            "id": f"chatcmpl-b{i}",
            "completion_tokens": outputs[i],
            "response_cost": float(prompt * GPT_4O_IN + outputs[i] * GPT_4O_OUT),
        }
        for i in admitted
    ]
    await post_spend(api, events)
    await api.runtime().enforcement().refresh()
    budget = (await api.data("{ budgets { currentSpend reserved } }"))["budgets"][0]
    assert Decimal(budget["reserved"]) == 0  # every hold ended with its spend
    return len(admitted), Decimal(budget["currentSpend"])


@pytest.mark.parametrize(
    ("quantile", "margin", "within_bound"),
    [
        ("default", "default", True),
        ("0.9", "pooled", True),
        ("0.95", "per_request", True),
        ("0.5", "per_request", False),
    ],
)
async def test_a_burst_at_the_calibrated_quantile_stays_within_one_percent_of_the_limit(
    settings: Settings, clock: Clock, db: Database, quantile: str, margin: str, within_bound: bool
) -> None:
    """200 requests at once against a 1 USD budget: holding the default quantile (or a higher one), what was
    admitted spends at most 1% beyond the limit once it lands; holding the median (the old policy) overshoots:
    the long tail of output lengths is not paid for."""
    chosen = Settings.from_env({}).reservation_quantile if quantile == "default" else Decimal(quantile)
    assert quantile != "default" or chosen > Decimal("0.5")  # the default is not the median
    how = Settings.from_env({}).reservation_margin if margin == "default" else margin
    async with started(settings, clock, **PATIENT, reservation_quantile=chosen, reservation_margin=how) as api:
        await learn(api, db, lengths(600, seed=7))
        await create_budget(api, entityId="eng", monthlyLimit="1")
        await api.runtime().enforcement().refresh()
        admitted, spent = await _burst_and_settle(api, lengths(200, seed=8))
    assert admitted >= 20  # the budget is used, not refused wholesale
    assert (spent <= Decimal("1.01")) is within_bound, (admitted, spent)


@pytest.mark.parametrize("margin", ["per_request", "pooled"])
async def test_holding_a_quantile_costs_no_database_round_trip_per_decision(
    settings: Settings, clock: Clock, db: Database, margin: str
) -> None:
    """The quantiles are learned once per model (the hourly job); a decision picks one from memory. After the
    first request has its allowance, 30 more admissions at the calibrated quantile send no SQL at all."""
    async with started(settings, clock, **PATIENT, spend_refresh_seconds=3600, reservation_margin=margin) as api:
        await learn(api, db, lengths(400, seed=9))
        await create_budget(api, entityId="eng", monthlyLimit="100")
        enforcer = api.runtime().enforcement()
        await enforcer.refresh()
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        async def admit(i: int) -> None:
            response = await api.client.post(
                "/webhook/pre-request",
                headers=GATEWAY,
                json={
                    "litellm_call_id": f"m{i}",
                    "model": "gpt-4o",
                    "messages": HI,
                    "max_tokens": MAX_TOKENS,
                    "team_id": "eng",
                },
            )
            assert response.status_code == 200, response.text

        await admit(0)  # the first one may ask for an allowance
        event.listen(enforcer.db.engine.sync_engine, "before_cursor_execute", seen)
        try:
            for i in range(1, 31):
                await admit(i)
            assert statements == []
            await enforcer.refresh()
            assert statements  # the listener does see the gateway's database traffic
        finally:
            event.remove(enforcer.db.engine.sync_engine, "before_cursor_execute", seen)
        budget = (await api.data("{ budgets { reserved } }"))["budgets"][0]
        body = await predicted(api, max_tokens=MAX_TOKENS)
        held, spread = Decimal(str(body["held_cost_usd"])), Decimal(str(body["held_std_dev_usd"]))
        # 31 holds, and pooled the margin over them: z x sqrt(31) x one request's spread (shown rounded up).
        z = margin_z(Settings.from_env({}).reservation_quantile, pooled=margin == "pooled")
        extra = z * Decimal(31).sqrt() * spread
        assert (spread > 0) is (margin == "pooled")
        assert extra - Decimal("1e-8") <= Decimal(budget["reserved"]) - 31 * held <= extra + Decimal("1e-8")
