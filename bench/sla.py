"""Benchmark: the SLA health collector over 5 million LiteLLM spend logs on PostgreSQL, for a one-hour window.

    .venv/bin/python bench/sla.py                          # 5,000,000 rows over 30 days, 15 timed runs of each kind
    .venv/bin/python bench/sla.py --rows 500000 --runs 5   # a quicker look

It builds a dedicated database (spendplane's migrations in embedded mode create LiteLLM_SpendLogs with LiteLLM's
indexes, `"startTime"` among them) and fills it with one INSERT … SELECT generate_series shaped like LiteLLM's rows:
13 models of 5 providers (skewed), time-ordered over 30 days like an append-only log (~6,900 rows an hour), latencies
of 0.3-10 s, 35% streaming with a first-token time, 3% failures with LiteLLM's metadata.error_information.error_code
(429, 500, 503, 400, 401, 404). Then it times the collector job (`resolvers.sla.collector.collect_health`, exactly
what the scheduler runs, writes included) for one-hour windows ending at random 5-minute ticks of the 30 days:
first with nothing but the health snapshot, then with 3 SLA definitions and 2 failover rules (15-minute windows).
EXPLAIN (ANALYZE, BUFFERS) of the health query shows the startTime index reading only the window. The database is
dropped at the end (--keep keeps it). Results print as Markdown and are saved in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from models.db import asyncpg_dsn, normalize_database_url, open_database  # noqa: E402
from models.litellm import probe_litellm_schema, spend_logs  # noqa: E402
from models.migrate import upgrade  # noqa: E402
from resolvers.auth import Principal, Role, TokenService  # noqa: E402
from resolvers.platform.config import Settings  # noqa: E402
from resolvers.platform.events import InMemoryEventBus  # noqa: E402
from resolvers.platform.periods import Period  # noqa: E402
from resolvers.service.runtime import Runtime  # noqa: E402
from resolvers.sla.collector import collect_health  # noqa: E402
from resolvers.sla.definitions import SlaDefinitionDraft, create_definition  # noqa: E402
from resolvers.sla.failover import FailoverRuleDraft, create_rule  # noqa: E402
from resolvers.sla.health import measure  # noqa: E402

PG_ADMIN = os.environ.get("SPENDPLANE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
END = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)

#: (provider, model, median latency ms): the demo data's deployments.
MODELS = (
    ("openai", "gpt-4o-mini", 900),
    ("openai", "gpt-4o", 2200),
    ("anthropic", "claude-sonnet-4-5", 2600),
    ("openai", "gpt-5-mini", 1400),
    ("anthropic", "claude-haiku-4-5", 800),
    ("openai", "gpt-5", 3800),
    ("vertex_ai", "gemini-2.5-flash", 700),
    ("vertex_ai", "gemini-2.5-pro", 3400),
    ("deepseek", "deepseek-chat", 2000),
    ("openai", "o3", 9000),
    ("ollama", "llama-3.1-70b", 4000),
    ("anthropic", "claude-opus-4-5", 5200),
    ("deepseek", "deepseek-reasoner", 8000),
)

LOAD = """
INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, total_tokens, prompt_tokens,
    completion_tokens, "startTime", "endTime", "completionStartTime", request_duration_ms, model, model_id,
    model_group, custom_llm_provider, api_base, "user", metadata, cache_hit, cache_key, request_tags, team_id, status)
SELECT 'bench-' || i, 'acompletion', md5('key-' || u), CASE WHEN fail THEN 0 ELSE (pt * 0.5 + ct * 1.5) / 1e6 END,
       pt + ct, pt, ct, st, st + lat, CASE WHEN stream AND NOT fail THEN st + lat * ttft ELSE st + lat END,
       (extract(epoch FROM lat) * 1000)::int, model, 'deploy-' || m, model, provider,
       'https://' || provider || '.example.invalid/v1', 'user-' || u,
       CASE WHEN fail THEN jsonb_build_object('status', 'failure', 'error_information',
                 jsonb_build_object('error_code', code, 'error_class', 'Error', 'llm_provider', provider))
            ELSE jsonb_build_object('status', 'success') END,
       'False', '', jsonb_build_array('team:team-' || (u % 20)), 'team-' || (u % 20),
       CASE WHEN fail THEN 'failure' ELSE 'success' END
FROM (
    SELECT drawn.*,
           (CAST(:models AS text[]))[m] AS model,
           (CAST(:providers AS text[]))[m] AS provider,
           make_interval(secs => (CAST(:latency AS float8[]))[m] / 1000.0 * (0.3 + -ln(1 - r))) AS lat
    FROM (
        SELECT i,
               CAST(:start AS timestamp) + (i::float8 / CAST(:rows AS int)) * interval '1 day' * CAST(:days AS int)
                   AS st,
               1 + floor(13 * random() ^ 1.6)::int AS m,
               floor(random() ^ 2 * 500)::int AS u,
               10 + floor(random() * 2000)::int AS pt,
               1 + floor(random() * 800)::int AS ct,
               random() < 0.03 AS fail,
               random() < 0.35 AS stream,
               0.05 + random() * 0.3 AS ttft,
               (ARRAY['429', '500', '503', '400', '401', '404'])[1 + floor(random() * 6)::int] AS code,
               random() AS r
        FROM generate_series(1, CAST(:rows AS int)) AS i
    ) AS drawn
) AS shaped
"""

ADMIN = Principal(role=Role.ADMIN, subject="bench")


async def build(rows: int, days: int) -> tuple[str, str]:
    name = f"spendplane_bench_sla_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(asyncpg_dsn(make_url(PG_ADMIN)))
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    db = open_database(url)
    try:
        await upgrade(db, embedded=True)
        async with db.engine.begin() as c:
            # Load without indexes (as a restore would), then build them: far faster than maintaining them per row.
            for index in spend_logs.indexes:
                await c.execute(text(f'DROP INDEX "{index.name}"'))
            await c.execute(text('ALTER TABLE "LiteLLM_SpendLogs" DROP CONSTRAINT "LiteLLM_SpendLogs_pkey"'))
        started = time.perf_counter()
        async with db.engine.begin() as c:
            await c.execute(
                text(LOAD),
                {
                    "models": [m for _, m, _ in MODELS],
                    "providers": [p for p, _, _ in MODELS],
                    "latency": [float(ms) for _, _, ms in MODELS],
                    "start": (END - timedelta(days=days)).replace(tzinfo=None),
                    "rows": rows,
                    "days": days,
                },
            )
        print(f"loaded {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        async with db.engine.begin() as c:
            await c.execute(text('ALTER TABLE "LiteLLM_SpendLogs" ADD PRIMARY KEY (request_id)'))
            await c.run_sync(lambda sync: [index.create(sync) for index in spend_logs.indexes])
        print(f"built the primary key and LiteLLM's indexes in {time.perf_counter() - started:.1f} s", flush=True)
        async with db.engine.connect() as c:
            await c.execution_options(isolation_level="AUTOCOMMIT")
            started = time.perf_counter()
            await c.execute(text('VACUUM ANALYZE "LiteLLM_SpendLogs"'))
            print(f"VACUUM ANALYZE in {time.perf_counter() - started:.1f} s", flush=True)
            size = (
                await c.execute(text("SELECT pg_size_pretty(pg_total_relation_size('\"LiteLLM_SpendLogs\"'))"))
            ).scalar()
            print(f"LiteLLM_SpendLogs with its indexes: {size}", flush=True)
    finally:
        await db.dispose()
    return url, name


async def drop(name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(make_url(PG_ADMIN)))
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {
        "runs": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(p95, 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def timed_runs(runtime: Runtime, ticks: list[datetime]) -> list[float]:
    samples = []
    for tick in ticks:
        started = time.perf_counter()
        await collect_health(runtime, tick)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def explain(runtime: Runtime, tick: datetime) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the health query the collector sends for the window ending at `tick`."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "percentile_disc" in statement:
            captured.append((statement, parameters))

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        async with runtime.read() as session:
            await measure(session, runtime.litellm, Period(tick - timedelta(hours=1), tick))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = captured[0]
    async with runtime.db.engine.connect() as conn:
        plan = await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
        return [str(line) for (line,) in plan]


async def bench(url: str, days: int, runs: int) -> dict[str, Any]:
    settings = Settings(database_url=normalize_database_url(url), embedded=True, jobs_enabled=False)
    db = open_database(url)
    async with db.engine.connect() as conn:
        schema = await probe_litellm_schema(conn)
    runtime = Runtime(
        settings=settings, db=db, litellm=schema, bus=InMemoryEventBus(), tokens=TokenService("b" * 32, 3600)
    )
    rng = random.Random(11)
    first = END - timedelta(days=days) + timedelta(hours=2)

    def ticks(n: int) -> list[datetime]:
        steps = int((END - first).total_seconds() // 300)
        return [first + timedelta(minutes=5 * rng.randrange(steps)) for _ in range(n)]

    try:
        await timed_runs(runtime, ticks(2))  # warm-up: connections, prepared statements
        health_only = await timed_runs(runtime, ticks(runs))
        async with runtime.work() as work:
            for draft in (
                SlaDefinitionDraft("OpenAI GPT-4o", "openai", "gpt-4o*", target_p95_ms=3000, target_error_rate=0.01),
                SlaDefinitionDraft("Anthropic", "anthropic", "claude-*", target_availability=0.999),
                SlaDefinitionDraft("Everything", None, "*", target_p99_ms=30000, target_ttft_p95_ms=2000),
            ):
                await create_definition(work, ADMIN, draft, settings)
            for rule in (
                FailoverRuleDraft("gpt-4o", "claude-sonnet-4-5", "error_rate", 0.05),
                FailoverRuleDraft("gemini-2.5-pro", "gpt-5", "latency_p95", 8000),
            ):
                await create_rule(work, ADMIN, rule, settings)
        with_rules = await timed_runs(runtime, ticks(runs))
        plan = await explain(runtime, ticks(1)[0])
        async with runtime.read() as session:
            per_hour = (
                await session.execute(
                    text('SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE "startTime" >= :a AND "startTime" < :b'),
                    {"a": (END - timedelta(hours=1)).replace(tzinfo=None), "b": END.replace(tzinfo=None)},
                )
            ).scalar_one()
    finally:
        await db.dispose()
    return {
        "rows_in_the_last_hour": per_hour,
        "health_only": summary(health_only),
        "with_3_definitions_and_2_rules": summary(with_rules),
        "explain": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    # A rule whose fallback is as slow as its primary says so at every run (a warning): not what is measured here.
    logging.getLogger("spendplane").setLevel(logging.ERROR)

    async def run() -> dict[str, Any]:
        url, name = await build(args.rows, args.days)
        try:
            return await bench(url, args.days, args.runs)
        finally:
            if args.keep:
                print(f"kept {url}")
            else:
                await drop(name)
                print(f"dropped the benchmark database {name}")

    result = {"rows": args.rows, "days": args.days, **asyncio.run(run())}
    print(
        f"\n{args.rows:,} spend logs over {args.days} days; {result['rows_in_the_last_hour']:,} in a one-hour window\n"
    )
    print("| collector run (one-hour health window) | runs | median ms | p95 ms | min ms | max ms |")
    print("|---|---|---|---|---|---|")
    for label in ("health_only", "with_3_definitions_and_2_rules"):
        s = result[label]
        cells = [label.replace("_", " "), s["runs"], s["median_ms"], s["p95_ms"], s["min_ms"], s["max_ms"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print("\nEXPLAIN (ANALYZE, BUFFERS) of the health query:\n")
    print("\n".join(f"    {line}" for line in result["explain"]))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"sla-{stamp}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
