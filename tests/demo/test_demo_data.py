"""`spendplane demo-data`: realistic, deterministic LiteLLM spend logs for trying the product."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from models.db import Database
from models.litellm import LiteLLMSchema, probe_litellm_schema, spend_logs, verification_tokens
from resolvers.auth import hash_key
from resolvers.demo import DemoPlan, generate, write_demo_data
from resolvers.platform.errors import InvalidInput

pytestmark = pytest.mark.litellm_tables

END = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
PLAN = DemoPlan(rows=6000, days=56, end=END, seed=7)


def test_the_same_seed_gives_the_same_rows() -> None:
    assert list(generate(PLAN))[:50] == list(generate(PLAN))[:50]
    assert next(iter(generate(PLAN))) != next(iter(generate(DemoPlan(rows=6000, days=56, end=END, seed=8))))


def test_rows_look_like_a_real_gateways_traffic() -> None:
    rows = list(generate(PLAN))
    assert len(rows) == PLAN.rows
    assert all(r["start_time"] < END for r in rows)
    assert len({r["custom_llm_provider"] for r in rows}) >= 5
    assert len({r["model"] for r in rows}) >= 10
    assert {"fast", "smart", "powerful", "reasoning", "coding", "cost-effective"} <= {r["model_group"] for r in rows}
    assert len({r["team_id"] for r in rows}) == 6 and len({r["user"] for r in rows}) >= 30
    weekdays = Counter(r["start_time"].weekday() for r in rows)
    assert statistics.mean(weekdays[d] for d in range(5)) > 2 * statistics.mean(weekdays[d] for d in (5, 6))
    weeks = Counter((r["start_time"] - rows[0]["start_time"]).days // 7 for r in rows)
    assert weeks[6] > weeks[1]  # growth
    failures = [r for r in rows if r["status"] == "failure"]
    assert 0.02 < len(failures) / len(rows) < 0.06
    assert all(r["spend"] == 0 and r["metadata"]["error_information"]["error_code"] for r in failures)
    streaming = [r for r in rows if r["completion_start_time"] < r["end_time"]]
    assert 0.25 < len(streaming) / len(rows) < 0.45
    assert all(r["start_time"] < r["completion_start_time"] for r in streaming)
    free = [r for r in rows if r["custom_llm_provider"] == "ollama" and r["status"] == "success"]
    assert free and all(r["spend"] == 0 for r in free)
    assert all(r["spend"] > 0 for r in rows if r["status"] == "success" and r["custom_llm_provider"] != "ollama")


async def _schema(db: Database) -> LiteLLMSchema:
    async with db.engine.connect() as conn:
        return await probe_litellm_schema(conn)


async def test_written_rows_are_counted_once_and_keys_can_log_in(db: Database) -> None:
    schema = await _schema(db)
    seen: list[int] = []
    first = await write_demo_data(
        db, schema, DemoPlan(rows=2500, days=20, end=END, seed=3), embedded=True, progress=seen.append
    )
    assert seen[-1] == 2500
    again = await write_demo_data(db, schema, DemoPlan(rows=2500, days=20, end=END, seed=3), embedded=True)
    async with db.reader() as session:
        count = await session.scalar(select(func.count()).select_from(spend_logs))
        token = await session.scalar(
            select(verification_tokens.c.user_id).where(verification_tokens.c.token == hash_key(first.keys[0].raw))
        )
    assert count == 2500
    assert first.rows_written == 2500
    assert (again.rows_written, again.rows_skipped) == (0, 2500)
    assert token == first.keys[0].user_id


async def test_demo_data_never_writes_outside_embedded_mode(db: Database) -> None:
    with pytest.raises(InvalidInput):
        await write_demo_data(db, await _schema(db), PLAN, embedded=False)
