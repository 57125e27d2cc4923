"""Provider health from LiteLLM_SpendLogs: exact nearest-rank percentiles on both databases, who is at fault for
a failure, only the window's rows, and the collector's snapshots behind providerHealth and its history."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from models.db import Database
from models.litellm import LiteLLMSchema, spend_logs
from resolvers.platform.periods import Period
from resolvers.sla.health import measure, nearest_rank
from resolvers.spend import never_ran, never_ran_sql
from tests import support
from tests.conftest import MASTER_KEY, NOW
from tests.support import Api, add_virtual_key, as_litellm_stores, on_real_litellm_schema

pytestmark = pytest.mark.litellm_tables

HOUR = Period(NOW - timedelta(hours=1), NOW)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "litellm"
GATEWAY = {"x-api-key": MASTER_KEY}


def call(
    start: datetime,
    *,
    provider: str = "openai",
    model: str = "gpt-4o",
    latency_ms: float = 1000.0,
    ttft_ms: float | None = None,
    status: str | None = "success",
    code: str | None = None,
    metadata_status: str | None = None,
) -> dict[str, Any]:
    """One LiteLLM_SpendLogs row as LiteLLM writes it: a failure carries metadata.error_information.error_code;
    a non-streaming call has completionStartTime = endTime."""
    end = start + timedelta(milliseconds=latency_ms)
    metadata: dict[str, Any] = {}
    if metadata_status is not None:
        metadata["status"] = metadata_status
    if code is not None:
        metadata["error_information"] = {"error_code": code, "error_class": "Error", "llm_provider": provider}
    return {
        "request_id": f"sla-{uuid.uuid4()}",
        "call_type": "acompletion",
        "api_key": "",
        "spend": 0.0,
        "total_tokens": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "start_time": start,
        "end_time": end,
        "completion_start_time": start + timedelta(milliseconds=ttft_ms) if ttft_ms is not None else end,
        "model": model,
        "model_group": model,
        "custom_llm_provider": provider,
        "user": "",
        "status": status,
        "metadata": metadata,
    }


def traffic(
    start: datetime,
    count: int,
    *,
    failures: int = 0,
    code: str = "500",
    spacing: timedelta = timedelta(seconds=10),
    **fields: Any,
) -> list[dict[str, Any]]:
    """`count` calls from `start`, the first `failures` of them failing with `code`."""
    return [
        call(
            start + i * spacing,
            status="failure" if i < failures else "success",
            code=code if i < failures else None,
            **fields,
        )
        for i in range(count)
    ]


def logged(sample: str, start: datetime, **fields: Any) -> dict[str, Any]:
    """A logging payload captured from a real LiteLLM proxy (tests/fixtures/litellm) as a new request at `start`,
    one second long, for Anthropic's claude-sonnet-4-5 (the blocked sample's model), `fields` set over it."""
    body: dict[str, Any] = json.loads((FIXTURES / sample).read_text())["body"]
    request = f"sla-{uuid.uuid4()}"
    end = (start + timedelta(seconds=1)).timestamp()
    body.update(id=request, litellm_call_id=request, startTime=start.timestamp(), endTime=end, completionStartTime=end)
    body.update(model="anthropic/claude-sonnet-4-5", model_group="claude-sonnet-4.5", custom_llm_provider="anthropic")
    body.update(fields)
    return body


def answered(start: datetime) -> dict[str, Any]:
    return logged("spend_post_success.json", start)


def blocked(start: datetime) -> dict[str, Any]:
    """A request a guardrail refused (spendplane's budget refusal, as LiteLLM logged it): LiteLLM still names the
    provider and model asked for; `status_fields.guardrail_status` and the error's empty `llm_provider` say no
    provider was called."""
    return logged("spend_post_failure_guardrail_blocked.json", start)


def provider_failed(start: datetime) -> dict[str, Any]:
    """A request Anthropic failed: the guardrail let it through, the provider answered a 500."""
    return logged(
        "spend_post_failure_guardrail_blocked.json",
        start,
        status_fields={"llm_api_status": "failure", "guardrail_status": "success"},
        error_information={
            "error_code": "500",
            "error_class": "InternalServerError",
            "llm_provider": "anthropic",
            "error_message": "AnthropicException - Internal server error",
        },
        guardrail_information=None,
    )


async def post_spend(api: Api, events: list[dict[str, Any]]) -> None:
    """LiteLLM's logging callback posting `events`, and their rows (spendplane's own ingestion writes them in
    embedded mode, LiteLLM beside it)."""
    assert (await support.post_spend(api, events))["recorded"] == len(events)


async def add_calls(db: Database, rows: list[dict[str, Any]]) -> None:
    """The rows as LiteLLM stores them: on its real schema, times in whole milliseconds (rounded in place)."""
    if on_real_litellm_schema(db.engine.url):
        for row in rows:
            as_litellm_stores(row)
    async with db.engine.begin() as conn:
        await conn.execute(insert(spend_logs), rows)


async def collect(api: Api, tick: datetime) -> str:
    """One collector run for `tick`, as the scheduler would make it (claimed, so a tick runs once)."""
    outcome = await api.runtime().jobs.run("sla-health", tick=tick)
    assert outcome.ran and outcome.error is None, outcome
    return outcome.summary or ""


async def measured(db: Database, window: Period = HOUR, **kwargs: Any) -> dict[tuple[str, str], Any]:
    schema = LiteLLMSchema({spend_logs.name: frozenset(c.name for c in spend_logs.columns)})
    async with db.reader() as session:
        return {(h.provider, h.model): h for h in await measure(session, schema, window, **kwargs)}


async def test_percentiles_are_nearest_rank_to_the_microsecond_on_both_databases(db: Database) -> None:
    rng = random.Random(5)
    rows = []
    for provider, model, n in (("openai", "gpt-4o", 137), ("anthropic", "claude-sonnet-4-5", 41)):
        for i in range(n):
            stream = i % 3 == 0
            rows.append(
                call(
                    HOUR.start + timedelta(seconds=rng.uniform(0, 3599)),
                    provider=provider,
                    model=model,
                    latency_ms=round(rng.lognormvariate(7, 0.6), 3) + rng.randrange(1000) / 1000_000,
                    ttft_ms=round(rng.uniform(50, 400), 3) if stream else None,
                    status="failure" if i % 17 == 5 else "success",
                    code="500" if i % 17 == 5 else None,
                )
            )
    await add_calls(db, rows)
    found = await measured(db)
    assert set(found) == {("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5")}
    for (provider, model), health in found.items():
        assert health.model == model
        mine = [r for r in rows if r["custom_llm_provider"] == provider and r["status"] == "success"]
        latencies = sorted((r["end_time"] - r["start_time"]) // timedelta(microseconds=1) for r in mine)
        streamed = [r for r in mine if r["completion_start_time"] < r["end_time"]]
        ttfts = sorted((r["completion_start_time"] - r["start_time"]) // timedelta(microseconds=1) for r in streamed)
        assert (health.latency_p50_us, health.latency_p95_us, health.latency_p99_us) == tuple(
            nearest_rank(latencies, p) for p in (0.5, 0.95, 0.99)
        )
        assert (health.ttft_p50_us, health.ttft_p95_us) == (nearest_rank(ttfts, 0.5), nearest_rank(ttfts, 0.95))
        assert health.streaming_requests == len(streamed)
        assert health.latency_p95_ms == health.latency_p95_us / 1000


def test_nearest_rank_is_the_value_at_rank_ceil_p_times_n() -> None:
    values = list(range(1, 101))  # 1..100
    assert [nearest_rank(values, p) for p in (0.5, 0.95, 0.99, 0.001)] == [50, 95, 99, 1]
    assert nearest_rank([7], 0.99) == 7
    assert nearest_rank([], 0.5) is None
    assert nearest_rank([10, 20, 30], 0.5) == 20  # ceil(1.5) = 2


async def test_client_errors_are_not_the_providers_fault_but_429s_and_5xx_are(db: Database) -> None:
    t = HOUR.start + timedelta(minutes=1)
    await add_calls(
        db,
        [
            call(t),
            call(t, status="failure", code="400"),
            call(t, status="failure", code="401"),
            call(t, status="failure", code="422"),
            call(t, status="failure", code="429"),
            call(t, status="failure", code="503"),
            call(t, status="failure"),  # an older row without error information: counted against the provider
            call(t, status=None, metadata_status="failure", code="500"),  # status column NULL: metadata decides
            call(t, status=None),  # NULL and no metadata status: success (older LiteLLM)
            call(t, provider=""),  # refused before any provider was called (auth, budget, guardrail)
            call(HOUR.start - timedelta(seconds=1)),  # outside the window
            call(HOUR.end, status="failure", code="500"),  # the window ends before its end
        ],
    )
    (health,) = (await measured(db)).values()
    assert (health.requests, health.failures, health.client_errors, health.rate_limited) == (9, 7, 3, 1)
    assert (health.valid_requests, health.good_requests) == (6, 2)
    assert health.error_rate == 7 / 9
    assert health.availability == 2 / 6
    assert health.latency_p50_us == 1_000_000


async def test_a_selection_of_several_models_is_measured_as_one(db: Database) -> None:
    t = HOUR.start + timedelta(minutes=1)
    await add_calls(
        db,
        traffic(t, 10, model="gpt-4o", latency_ms=100)
        + traffic(t, 10, failures=10, model="gpt-4o-mini", latency_ms=900)
        + traffic(t, 5, model="gpt-4o", provider="azure", latency_ms=300),
    )
    (union,) = (
        await measured(
            db, provider="openai", models={"gpt-4o", "gpt-4o-mini"}, grouped=False, label=("openai", "gpt-4o*")
        )
    ).values()
    assert (union.provider, union.model, union.requests, union.failures) == ("openai", "gpt-4o*", 20, 10)
    assert union.latency_p99_us == 100_000  # only successes have a latency
    assert await measured(db, models=set()) == {}


async def test_the_collector_keeps_snapshots_for_provider_health_and_its_history(sla_api: Api, db: Database) -> None:
    api = sla_api
    await add_calls(db, traffic(NOW - timedelta(minutes=50), 30, failures=3, latency_ms=800))
    await add_calls(db, traffic(NOW - timedelta(minutes=20), 10, provider="anthropic", model="claude-haiku-4-5"))
    await collect(api, NOW - timedelta(minutes=5))
    assert "2 provider/model(s)" in await collect(api, NOW)

    health = (
        await api.data(
            "{ providerHealth { provider model requests failures errorRate availability latencyP95Ms "
            "windowMinutes windowEnd } }"
        )
    )["providerHealth"]
    assert [(h["provider"], h["model"], h["requests"]) for h in health] == [
        ("anthropic", "claude-haiku-4-5", 10),
        ("openai", "gpt-4o", 30),
    ]
    assert health[1]["errorRate"] == 0.1 and health[1]["latencyP95Ms"] == 800.0 and health[1]["windowMinutes"] == 60

    history = (await api.data("{ providerHealthHistory(hours: 24) { provider windowEnd requests } }"))[
        "providerHealthHistory"
    ]
    assert len(history) == 4 and history[0]["windowEnd"] < history[-1]["windowEnd"]

    rest = await api.client.get("/api/v1/sla/health", headers=api.bearer())
    assert rest.status_code == 200
    openai = rest.json()[1]
    assert (openai["provider"], openai["requests"], openai["error_rate"], openai["availability"]) == (
        "openai",
        30,
        0.1,
        0.9,
    )
    hist = await api.client.get("/api/v1/sla/health/history", params={"hours": 24}, headers=api.bearer())
    assert hist.status_code == 200 and len(hist.json()) == 4
    bad = await api.client.get("/api/v1/sla/health/history", params={"hours": 0}, headers=api.bearer())
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "hours"
    error = await api.error("{ providerHealthHistory(hours: 100000) { provider } }")
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "hours"}


async def test_a_run_that_sees_no_traffic_leaves_no_stale_current_health(sla_api: Api, db: Database) -> None:
    api = sla_api
    await add_calls(db, traffic(NOW - timedelta(minutes=50), 5))
    await collect(api, NOW)
    assert len((await api.data("{ providerHealth { model } }"))["providerHealth"]) == 1
    await collect(api, NOW + timedelta(hours=2))  # the traffic has left the window
    assert (await api.data("{ providerHealth { model } }"))["providerHealth"] == []


async def test_an_admin_runs_the_collector_on_demand(sla_api: Api, db: Database) -> None:
    api = sla_api
    await add_calls(db, traffic(NOW - timedelta(minutes=30), 12, failures=3))
    found = (await api.data("mutation { collectProviderHealth { provider model requests failures } }"))[
        "collectProviderHealth"
    ]
    assert found == [{"provider": "openai", "model": "gpt-4o", "requests": 12, "failures": 3}]
    rest = await api.client.post("/api/v1/sla/health/collect", headers=api.bearer())
    assert (rest.status_code, [h["requests"] for h in rest.json()]) == (200, [12])
    await add_virtual_key(db, "sk-viewer", user_id="carol", team_id="eng")
    viewer = await api.login("sk-viewer")
    error = await api.error("mutation { collectProviderHealth { model } }", token=viewer)
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_refusals_before_any_provider_call_are_not_the_providers_requests(api: Api, db: Database) -> None:
    """LiteLLM logs a request a guardrail blocked (a budget refusal of spendplane's among them) with the provider
    and model asked for: its error says no provider was called, and it is neither a request nor a failure of
    that provider. A failure the provider answered still counts."""
    t = HOUR.start + timedelta(minutes=1)
    await post_spend(api, [answered(t + timedelta(seconds=i)) for i in range(8)])
    await post_spend(api, [blocked(t + timedelta(seconds=i)) for i in range(12)])
    (health,) = (await measured(db)).values()
    assert (health.provider, health.model) == ("anthropic", "anthropic/claude-sonnet-4-5")
    assert (health.requests, health.failures, health.error_rate, health.availability) == (8, 0, 0.0, 1.0)

    await post_spend(api, [provider_failed(t + timedelta(seconds=30))])
    (health,) = (await measured(db)).values()
    assert (health.requests, health.failures, health.client_errors) == (9, 1, 0)
    assert health.error_rate == 1 / 9


async def test_refusals_are_read_from_the_metadata_litellm_writes(db: Database) -> None:
    """LiteLLM's own rows carry `metadata.error_information` (not `status_fields`): an empty or null
    `llm_provider` there is a refusal; an older error without the key, or a guardrail that let the request through
    (masked it), is the provider's."""
    t = HOUR.start + timedelta(minutes=1)

    def failure(error: dict[str, Any] | None, **metadata: Any) -> dict[str, Any]:
        row = call(t, status="failure")
        row["metadata"] = {**({"error_information": error} if error is not None else {}), **metadata}
        return row

    masked = call(t)
    masked["metadata"] = {"status_fields": {"llm_api_status": "success", "guardrail_status": "guardrail_intervened"}}
    await add_calls(
        db,
        [
            call(t),
            masked,  # a guardrail that masked the prompt: the provider answered
            failure({"error_code": "400", "error_class": "GuardrailRaisedException", "llm_provider": ""}),
            failure({"error_code": "429", "error_class": "BudgetExceededError", "llm_provider": None}),
            failure(None, status_fields={"llm_api_status": "failure", "guardrail_status": "guardrail_intervened"}),
            failure({"error_code": "500", "error_class": "InternalServerError", "llm_provider": "openai"}),
            failure({"error_code": "503", "error_class": "Error"}),  # no llm_provider: not known to be a refusal
            failure(None),
        ],
    )
    (health,) = (await measured(db)).values()
    assert (health.requests, health.failures, health.client_errors, health.rate_limited) == (5, 3, 0, 0)


async def test_the_sql_rule_reads_metadata_as_never_ran_does(db: Database) -> None:
    """One rule on both sides: the health query's SQL and the ledger's Python agree on every shape of metadata."""
    shapes: list[dict[str, Any] | None] = [
        None,
        {},
        {"error_information": {"llm_provider": ""}},
        {"error_information": {"llm_provider": None}},
        {"error_information": {"llm_provider": "anthropic"}},
        {"error_information": {"error_code": "500"}},
        {"error_information": "not an object"},
        {
            "error_information": {"llm_provider": "openai"},
            "status_fields": {"guardrail_status": "guardrail_intervened"},
        },
        {"status_fields": {"guardrail_status": "success"}},
        {"status_fields": "guardrail_intervened"},
    ]
    rows = []
    for i, shape in enumerate(shapes):
        row = call(HOUR.start, status="failure")
        row["request_id"], row["metadata"] = f"shape-{i}", shape
        rows.append(row)
    await add_calls(db, rows)
    schema = LiteLLMSchema({spend_logs.name: frozenset(c.name for c in spend_logs.columns)})
    async with db.reader() as session:
        rule = never_ran_sql(schema, session.get_bind().dialect.name)
        found = {r[0]: r[1] for r in await session.execute(select(spend_logs.c.request_id, rule))}
    expected = {
        f"shape-{i}": isinstance(s, dict) and never_ran(s.get("error_information"), s.get("status_fields"))
        for i, s in enumerate(shapes)
    }
    assert {k: bool(v) for k, v in found.items()} == expected
    assert sum(expected.values()) == 3
