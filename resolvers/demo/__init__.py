"""Realistic LiteLLM spend logs for trying the product (`spendplane demo-data`).

Several providers, models and aliases; users in teams with their own keys; end users; weekday seasonality and a
growth trend; provider and client failures; latencies with time-to-first-token on streaming rows. The same seed
and end time give the same rows, and re-running inserts nothing twice (ids are derived from the seed).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.sql import Insert

from models.db import Database, insert_or_ignore
from models.litellm import LiteLLMSchema, spend_logs, teams, users, verification_tokens
from resolvers.auth import hash_key
from resolvers.platform.errors import InvalidInput
from resolvers.pricing import baseline_cost

BATCH_ROWS = 2_000


@dataclass(frozen=True)
class DemoModel:
    """One deployment the demo gateway routes to."""

    model: str  # what LiteLLM logs in `model`
    provider: str  # custom_llm_provider
    price_ref: str | None  # genai-prices model id; None = self-hosted, free
    groups: tuple[str, ...]  # public names / aliases clients ask for
    weight: float  # share of traffic
    latency_ms: float  # median total latency of a ~500-token answer
    output_ratio: float  # typical output/input tokens


MODELS: tuple[DemoModel, ...] = (
    DemoModel("gpt-4o", "openai", "gpt-4o", ("gpt-4o", "smart"), 14, 2200, 0.9),
    DemoModel("gpt-4o-mini", "openai", "gpt-4o-mini", ("gpt-4o-mini", "fast", "cost-effective"), 20, 900, 0.7),
    DemoModel("gpt-5", "openai", "gpt-5", ("gpt-5", "smart"), 8, 3800, 2.0),
    DemoModel("gpt-5-mini", "openai", "gpt-5-mini", ("gpt-5-mini", "fast"), 9, 1400, 1.3),
    DemoModel("o3", "openai", "o3", ("o3", "reasoning"), 3, 9000, 4.5),
    DemoModel(
        "claude-sonnet-4-5",
        "anthropic",
        "claude-sonnet-4-5",
        ("claude-sonnet-4.5", "smart", "coding"),
        15,
        2600,
        2.0,
    ),
    DemoModel("claude-haiku-4-5", "anthropic", "claude-haiku-4-5", ("claude-haiku-4.5", "fast"), 9, 800, 1.3),
    DemoModel("claude-opus-4-5", "anthropic", "claude-opus-4-5", ("claude-opus-4.5", "powerful"), 2, 5200, 2.8),
    DemoModel("gemini-2.5-pro", "vertex_ai", "gemini-2.5-pro", ("gemini-2.5-pro", "powerful"), 4, 3400, 2.2),
    DemoModel(
        "gemini-2.5-flash",
        "vertex_ai",
        "gemini-2.5-flash",
        ("gemini-2.5-flash", "cost-effective"),
        7,
        700,
        1.2,
    ),
    DemoModel("deepseek-chat", "deepseek", "deepseek-chat", ("deepseek-coder", "coding"), 4, 2000, 1.5),
    DemoModel("deepseek-reasoner", "deepseek", "deepseek-reasoner", ("deepseek-r1", "reasoning"), 2, 8000, 4.0),
    DemoModel("llama-3.1-70b", "ollama", None, ("llama-3.1-70b", "local"), 3, 4000, 1.2),
)

# Provider price lookups in genai-prices use its own provider ids.
_PRICE_PROVIDER = {
    "openai": "openai",
    "anthropic": "anthropic",
    "vertex_ai": "google",
    "deepseek": "deepseek",
}

TEAMS: tuple[tuple[str, int, tuple[float, ...]], ...] = (
    # team id, users, model preference multipliers (same order as MODELS)
    ("engineering", 12, (1, 1, 1.4, 1, 1, 1.6, 1, 1, 1, 1, 2.0, 1, 1)),
    ("data-science", 7, (1, 0.6, 1.2, 0.8, 3.0, 1, 0.6, 2.0, 2.0, 1, 1, 3.0, 1.5)),
    ("support", 8, (0.6, 2.5, 0.3, 1.5, 0.1, 0.6, 2.5, 0.2, 0.3, 1.5, 0.2, 0.1, 0.5)),
    ("marketing", 5, (1.5, 1.2, 1.2, 1, 0.1, 1.2, 0.8, 0.5, 1, 1.2, 0.1, 0.1, 0.2)),
    ("research", 6, (0.8, 0.4, 1.5, 0.5, 3.5, 1.2, 0.3, 3.0, 2.5, 0.5, 0.8, 3.5, 2.0)),
    ("platform", 4, (1, 1, 1, 1, 0.5, 1, 1, 0.5, 1, 1, 1, 0.5, 3.0)),
)

_WEEKDAY_FACTOR = (1.0, 1.08, 1.1, 1.05, 0.92, 0.38, 0.3)  # Monday .. Sunday
_HOUR_WEIGHTS = tuple(0.25 + math.exp(-((h - 14) ** 2) / 18) * 2.2 for h in range(24))  # UTC business hours
_PROVIDER_ERRORS = (
    ("429", "RateLimitError"),
    ("500", "InternalServerError"),
    ("503", "ServiceUnavailableError"),
)
_CLIENT_ERRORS = (("400", "BadRequestError"), ("401", "AuthenticationError"), ("404", "NotFoundError"))


@dataclass(frozen=True)
class DemoKey:
    raw: str
    alias: str
    user_id: str
    team_id: str


@dataclass(frozen=True)
class DemoPlan:
    rows: int
    days: int
    end: datetime
    seed: int


@dataclass(frozen=True)
class DemoResult:
    rows_written: int
    rows_skipped: int
    keys: tuple[DemoKey, ...]
    start: datetime
    end: datetime


def demo_keys(seed: int) -> tuple[DemoKey, ...]:
    rng = random.Random(f"keys-{seed}")
    keys: list[DemoKey] = []
    n = 0
    for team, size, _ in TEAMS:
        for _i in range(size):
            n += 1
            user = f"user-{n:03d}"
            for k in range(1 + (rng.random() < 0.35)):
                keys.append(
                    DemoKey(
                        raw=f"sk-demo-{seed}-{user}-{k}",
                        alias=f"{user}-{'ci' if k else 'main'}",
                        user_id=user,
                        team_id=team,
                    )
                )
    return tuple(keys)


def _daily_weights(plan: DemoPlan) -> list[tuple[datetime, float]]:
    start_day = (plan.end - timedelta(days=plan.days)).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for d in range(plan.days + 1):
        day = start_day + timedelta(days=d)
        if day >= plan.end:
            break
        growth = 1.0 + 0.02 * (d / 7)  # +2 % a week
        share_open = min(1.0, (plan.end - day).total_seconds() / 86_400)  # the last day may be partial
        out.append((day, _WEEKDAY_FACTOR[day.weekday()] * growth * share_open))
    return out


def _rows_per_day(plan: DemoPlan) -> list[tuple[datetime, int]]:
    weights = _daily_weights(plan)
    total = sum(w for _, w in weights)
    counts = [int(plan.rows * w / total) for _, w in weights]
    for i in range(plan.rows - sum(counts)):  # hand out the rounding remainder deterministically
        counts[i % len(counts)] += 1
    return [(day, c) for (day, _), c in zip(weights, counts, strict=True)]


def generate(plan: DemoPlan) -> Iterator[dict[str, Any]]:
    """Spend-log rows (column keys of `models.litellm.spend_logs`), oldest first, none after `plan.end`."""
    rng = random.Random(plan.seed)
    keys = demo_keys(plan.seed)
    by_team: dict[str, list[DemoKey]] = {}
    for key in keys:
        by_team.setdefault(key.team_id, []).append(key)
    team_ids = [t for t, _, _ in TEAMS]
    team_weights = [size for _, size, _ in TEAMS]
    mixes = {t: [m.weight * pref for m, pref in zip(MODELS, prefs, strict=True)] for t, _, prefs in TEAMS}
    key_hashes = {k.raw: hash_key(k.raw) for k in keys}
    deployment_ids = {m.model: uuid.UUID(int=rng.getrandbits(128), version=4).hex[:16] for m in MODELS}

    for day, count in _rows_per_day(plan):
        # The last day is cut at `plan.end`: its rows fall in the hours before it.
        open_seconds = min(86_400.0, (plan.end - day).total_seconds())
        hours = range(max(1, math.ceil(open_seconds / 3600)))
        stamps = sorted(
            day
            + timedelta(
                seconds=min(
                    open_seconds - 0.001,
                    rng.choices(hours, _HOUR_WEIGHTS[: len(hours)])[0] * 3600 + rng.random() * 3600,
                )
            )
            for _ in range(count)
        )
        for start in stamps:
            call_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            team = rng.choices(team_ids, team_weights)[0]
            key = rng.choice(by_team[team])
            model = rng.choices(MODELS, mixes[team])[0]
            yield _row(rng, plan, start, call_id, team, key, key_hashes[key.raw], model, deployment_ids)


def _row(
    rng: random.Random,
    plan: DemoPlan,
    start: datetime,
    call_id: str,
    team: str,
    key: DemoKey,
    key_hash: str,
    model: DemoModel,
    deployment_ids: dict[str, str],
) -> dict[str, Any]:
    prompt = max(8, int(rng.lognormvariate(math.log(650), 0.9)))
    completion = max(1, int(prompt * model.output_ratio * rng.lognormvariate(0, 0.5)))
    stream = rng.random() < 0.35
    roll = rng.random()
    failure = (
        _PROVIDER_ERRORS[rng.randrange(3)]
        if roll < 0.025
        else (_CLIENT_ERRORS[rng.randrange(3)] if roll < 0.035 else None)
    )
    latency = model.latency_ms * rng.lognormvariate(0, 0.45) * (0.4 + completion / 900)
    if failure is not None:
        completion = 0
        latency = rng.uniform(80, 1500) if failure[0].startswith("4") else rng.uniform(500, 30000)
    end = start + timedelta(milliseconds=latency)
    ttft = None
    if stream and failure is None:
        ttft = start + timedelta(milliseconds=min(latency * 0.9, model.latency_ms * 0.18 * rng.lognormvariate(0, 0.5)))
    spend = 0.0
    if failure is None and model.price_ref is not None:
        cost = baseline_cost(model.price_ref, _PRICE_PROVIDER[model.provider], prompt, completion)
        if cost is None:
            raise LookupError(f"genai-prices has no price for demo model {model.price_ref}")
        spend = float(cost)
    group = rng.choice(model.groups)
    metadata: dict[str, Any] = {
        "user_api_key": key_hash,
        "user_api_key_alias": key.alias,
        "user_api_key_team_id": team,
        "user_api_key_user_id": key.user_id,
        "status": "failure" if failure else "success",
        "usage_object": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    if failure is not None:
        metadata["error_information"] = {
            "error_code": failure[0],
            "error_class": failure[1],
            "llm_provider": model.provider,
            "error_message": f"{failure[1]}: demo failure",
        }
    end_user = f"cust-{rng.randrange(1, 200):04d}" if team == "support" or rng.random() < 0.1 else None
    return {
        "request_id": f"demo-{call_id}",
        "call_type": "acompletion",
        "api_key": key_hash,
        "spend": spend,
        "total_tokens": prompt + completion,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "start_time": start,
        "end_time": end,
        "request_duration_ms": int(latency),
        "completion_start_time": ttft or end,
        "model": model.model,
        "model_id": deployment_ids[model.model],
        "model_group": group,
        "custom_llm_provider": model.provider,
        "api_base": f"https://{model.provider}.example.invalid/v1",
        "user": key.user_id,
        "metadata": metadata,
        "cache_hit": "False",
        "cache_key": "",
        "request_tags": [f"team:{team}", "env:prod" if rng.random() < 0.8 else "env:staging"],
        "team_id": team,
        "end_user": end_user,
        "requester_ip_address": f"10.0.{rng.randrange(0, 8)}.{rng.randrange(1, 250)}",
        "session_id": None,
        "status": "failure" if failure else "success",
        "litellm_call_id": call_id,
        "messages": {},
        "response": {},
    }


async def write_demo_data(
    db: Database,
    schema: LiteLLMSchema,
    plan: DemoPlan,
    *,
    embedded: bool,
    progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Insert the plan's rows (and its keys, users and teams) into LiteLLM's tables. Embedded mode only:
    in production those tables are LiteLLM's to write."""
    if not embedded:
        raise InvalidInput(
            "database",
            "demo data is only written in embedded mode (SPENDPLANE_EMBEDDED=true), "
            "never into a LiteLLM production database",
        )
    if plan.rows < 1 or plan.rows > 50_000_000:
        raise InvalidInput("rows", "must be from 1 to 50,000,000")
    if plan.days < 1 or plan.days > 3660:
        raise InvalidInput("days", "must be from 1 to 3660")
    keys = demo_keys(plan.seed)
    dialect = db.dialect
    written = 0
    async with db.engine.begin() as conn:
        await conn.execute(
            insert_or_ignore(dialect, verification_tokens),
            [
                {
                    "token": hash_key(k.raw),
                    "key_name": f"sk-...{k.raw[-4:]}",
                    "key_alias": k.alias,
                    "spend": 0.0,
                    "user_id": k.user_id,
                    "team_id": k.team_id,
                    "blocked": False,
                    "metadata": {},
                }
                for k in keys
            ],
        )
        await conn.execute(
            insert_or_ignore(dialect, teams),
            [
                {"team_id": t, "team_alias": t.replace("-", " ").title(), "spend": 0.0, "metadata": {}}
                for t, _, _ in TEAMS
            ],
        )
        await conn.execute(
            insert_or_ignore(dialect, users),
            [
                {"user_id": u, "user_email": f"{u}@example.com", "team_id": t, "spend": 0.0}
                for u, t in sorted({(k.user_id, k.team_id) for k in keys})
            ],
        )
    columns = {c.key for c in spend_logs.columns if schema.has(spend_logs, c.key)}
    # RETURNING counts what was really inserted (a re-run with the same seed inserts nothing).
    statement = insert_or_ignore(dialect, spend_logs).returning(spend_logs.c.request_id)
    batch: list[dict[str, Any]] = []
    produced = 0
    first: datetime | None = None
    for row in generate(plan):
        first = first or row["start_time"]
        batch.append({k: v for k, v in row.items() if k in columns})
        if len(batch) >= BATCH_ROWS:
            written += await _flush(db, statement, batch)
            produced += len(batch)
            batch = []
            if progress:
                progress(produced)
    if batch:
        written += await _flush(db, statement, batch)
        produced += len(batch)
        if progress:
            progress(produced)
    return DemoResult(written, produced - written, keys, first or plan.end, plan.end)


async def _flush(db: Database, statement: Insert, batch: list[dict[str, Any]]) -> int:
    async with db.engine.begin() as conn:
        result = await conn.execute(statement, batch)
        return len(result.all())


def default_end() -> datetime:
    """Now, cut to the minute, so two runs in the same minute with one seed write the same rows."""
    return datetime.now(UTC).replace(second=0, microsecond=0)
