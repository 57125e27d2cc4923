"""Spend from LiteLLM's logging callback: captured payloads, idempotency, formats, and bad input."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models.db import Database
from models.ledger import SettlementRow
from models.litellm import spend_logs
from models.types import float_to_usd
from resolvers.auth import hash_key
from resolvers.platform.config import Settings
from tests.conftest import MASTER_KEY, Clock, started
from tests.support import Api

pytestmark = pytest.mark.litellm_tables
#: Beside LiteLLM (production mode) the rows are LiteLLM's to write; these tests read the rows spendplane wrote.
writes_rows = pytest.mark.embedded_only("spendplane writes spend-log rows from /spend/litellm in embedded mode only")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "litellm"
GATEWAY = {"x-api-key": MASTER_KEY}


def sample(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())["body"]
    return body


async def rows(db: Database) -> list[Any]:
    async with db.reader() as session:
        return list((await session.execute(select(spend_logs).order_by(spend_logs.c.request_id))).mappings().all())


@writes_rows
async def test_a_captured_success_becomes_a_litellm_compatible_row(api: Api, db: Database) -> None:
    response = await api.client.post("/spend/litellm", json=sample("spend_post_success.json"), headers=GATEWAY)
    assert response.json() == {"received": 1, "recorded": 1, "duplicates": 0, "settled": 0}
    [row] = await rows(db)
    assert row["request_id"] == "chatcmpl-347721f5-2521-4d37-9986-7eed459ab950"
    assert row["litellm_call_id"] == "b1e6a2fd-7a25-4825-b720-c02be3e0158a"
    assert (row["model"], row["model_group"], row["custom_llm_provider"]) == ("openai/gpt-4o", "gpt-4o", "openai")
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (10, 20, 30)
    assert float_to_usd(row["spend"]) == Decimal("0.000225")  # stored as LiteLLM stores it: a float
    assert row["api_key"] == hash_key(MASTER_KEY)  # LiteLLM logs its master key's requests as its sha256
    assert (row["user"], row["end_user"], row["status"]) == ("default_user_id", "alice", "success")
    assert row["start_time"].isoformat().startswith("2026-11-29T")
    assert row["metadata"]["usage_object"]["total_tokens"] == 30


@writes_rows
async def test_a_captured_failure_is_recorded_with_zero_spend(api: Api, db: Database) -> None:
    await api.client.post("/spend/litellm", json=sample("spend_post_failure_guardrail_blocked.json"), headers=GATEWAY)
    [row] = await rows(db)
    assert (row["status"], float(row["spend"]), row["end_user"]) == ("failure", 0.0, "blocked-team")
    assert row["metadata"]["error_information"]["error_class"] == "GuardrailRaisedException"
    assert "traceback" not in row["metadata"]["error_information"]


@writes_rows
async def test_posts_are_idempotent_by_id_in_every_format(api: Api, db: Database) -> None:
    one, two = sample("spend_post_success.json"), sample("spend_post_failure_guardrail_blocked.json")
    single = await api.client.post("/spend/litellm", json=one, headers=GATEWAY)
    batch = await api.client.post("/spend/litellm", json=[one, two], headers=GATEWAY)
    ndjson = await api.client.post(
        "/spend/litellm",
        content=f"{json.dumps(one)}\n{json.dumps(two)}\n",
        headers={**GATEWAY, "content-type": "application/x-ndjson"},
    )
    assert single.json()["recorded"] == 1
    assert (batch.json()["recorded"], batch.json()["duplicates"]) == (1, 1)
    assert (ndjson.json()["recorded"], ndjson.json()["duplicates"]) == (0, 2)
    assert len(await rows(db)) == 2


@writes_rows
async def test_a_raw_key_is_never_stored(api: Api, db: Database) -> None:
    event = sample("spend_post_success.json")
    event["metadata"]["user_api_key_hash"] = "sk-raw-key-that-leaked"
    await api.client.post("/spend/litellm", json=event, headers=GATEWAY)
    [row] = await rows(db)
    assert row["api_key"] == hash_key("sk-raw-key-that-leaked")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("startTime"), "body.startTime"),
        (lambda e: e.update(startTime="yesterday"), "body.startTime"),
        (lambda e: e.update(response_cost=-1), "body.response_cost"),
        (lambda e: e.update(response_cost="cheap"), "body.response_cost"),
        (lambda e: e.update(prompt_tokens=1.5), "body.prompt_tokens"),
        (lambda e: (e.pop("id"), e.pop("litellm_call_id")), "body.id"),
    ],
)
async def test_bad_events_are_refused_naming_the_field_and_nothing_is_written(
    api: Api, db: Database, mutate: Any, field: str
) -> None:
    event = sample("spend_post_success.json")
    mutate(event)
    response = await api.client.post("/spend/litellm", json=event, headers=GATEWAY)
    assert (response.status_code, response.json()["error"]["field"]) == (400, field)
    good = sample("spend_post_failure_guardrail_blocked.json")
    batch = await api.client.post("/spend/litellm", json=[good, event], headers=GATEWAY)
    assert batch.json()["error"]["field"] == field.replace("body", "body[1]")
    assert await rows(db) == []


async def test_outside_embedded_mode_only_settlements_are_recorded(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with started(settings, clock, embedded=False) as running:
        response = await running.client.post("/spend/litellm", json=sample("spend_post_success.json"), headers=GATEWAY)
    assert response.json()["recorded"] == 0
    assert await rows(db) == []  # LiteLLM's table is LiteLLM's to write in production
    async with db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(SettlementRow)) == 1


async def test_with_cost_tracking_off_no_spend_is_recorded(api: Api, db: Database) -> None:
    await api.data("mutation { updateSettings(input: {costTrackingEnabled: false}) { costTrackingEnabled } }")
    response = await api.client.post(
        "/spend/litellm", json=copy.deepcopy(sample("spend_post_success.json")), headers=GATEWAY
    )
    assert response.json()["recorded"] == 0
    assert await rows(db) == []


@writes_rows
async def test_odd_but_real_payloads_are_stored_not_refused(api: Api, db: Database) -> None:
    """What clients control (tags, metadata, ids) and what long requests produce (durations past 24 days, token
    sums past 32 bits) is made storable on both databases, never a 500 that loses the batch."""
    long_call = "c" * 300
    event = sample("spend_post_success.json")
    event.update(
        id="r" * 300,
        litellm_call_id=long_call,
        request_tags=["ok", "nul\x00tag", 7],
        prompt_tokens=2_000_000_000,
        completion_tokens=2_000_000_000,
        startTime=event["endTime"] - 30 * 86400,
    )
    event.pop("total_tokens", None)
    event["metadata"]["spend_logs_metadata"] = {"note\x00": "a\x00b", "nested": ["x\x00"]}
    twin = {**sample("spend_post_success.json"), "id": "r" * 299 + "s", "litellm_call_id": "c" * 299 + "d"}
    response = await api.client.post("/spend/litellm", json=[event, twin], headers=GATEWAY)
    assert response.status_code == 200, response.text
    assert response.json()["recorded"] == 2  # ids that share 255 characters stay apart
    row = next(r for r in await rows(db) if r["prompt_tokens"] > 10)
    assert len(row["request_id"]) == 256 and len(row["litellm_call_id"]) == 256
    assert row["request_tags"] == ["ok", "nultag", "7"]
    assert row["metadata"]["spend_logs_metadata"] == {"note": "ab", "nested": ["x"]}
    assert (row["total_tokens"], row["request_duration_ms"]) == (2**31 - 1, 2**31 - 1)
    async with db.reader() as session:
        calls = set((await session.scalars(select(SettlementRow.call_id))).all())
    assert len(calls) == 2 and all(len(c) == 256 for c in calls)
