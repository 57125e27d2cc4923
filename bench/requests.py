"""Benchmark: `spendLogs` pages (the Requests page) on millions of LiteLLM_SpendLogs rows, on PostgreSQL.

    .venv/bin/python bench/requests.py --rows 5000000                  # LiteLLM's own schema (production)
    .venv/bin/python bench/requests.py --rows 5000000 --embedded       # our embedded copy of the table

By default the database is built with LiteLLM's real production schema (/work/shared/tools/litellm-schema/build.sh,
the migration SQL LiteLLM ships: its indexes, its column types); `--embedded` builds it with spendplane's own
migrations instead (the LiteLLM-compatible copy of embedded mode). Either way it writes the spend logs in bulk inside
the database (INSERT ... SELECT generate_series; 90 days ending 2026-11-15 12:00 UTC, 500 users in 20 teams, two
keys per user with aliases in LiteLLM_VerificationToken, 50 models, 2% failures), then times, through the GraphQL
endpoint of an in-process app (httpx + ASGI, lifespan on) with an admin token, the first page and a deep page
(a cursor 80% of the way down the table: about 4 M rows back) with and without filters. Each case runs
`--repetitions` times after one warm-up; it prints median and p95 in ms, then PostgreSQL's EXPLAIN (ANALYZE,
BUFFERS) plan of the exact statement the app sent for the deep pages. The database is dropped afterwards
(--keep keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import event, text

from graphql_api.app import create_app
from models.db import asyncpg_dsn, normalize_database_url, open_database
from models.migrate import upgrade
from resolvers.platform.config import Settings
from resolvers.requests import KEYSET

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
MASTER_KEY = "sk-bench-master"
PG_ADMIN = os.environ.get("SPENDPLANE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
LITELLM_SCHEMA = Path("/work/shared/tools/litellm-schema/build.sh")

PG_FILL = """
INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, total_tokens, prompt_tokens,
  completion_tokens, "startTime", "endTime", model, model_group, custom_llm_provider, "user", team_id, end_user,
  status, metadata, request_tags, cache_hit)
SELECT 'bench-' || i, 'acompletion', md5('key-' || u || '-' || k),
  CASE WHEN failed THEN 0 ELSE (pt * 0.5 + ct * 1.5) / 1e6 * (1 + m % 10) END,
  pt + ct, pt, CASE WHEN failed THEN 0 ELSE ct END, st, st + interval '2 seconds',
  'model-' || lpad(m::text, 2, '0'),
  CASE WHEN m % 3 = 0 THEN 'alias-' || (m % 6) ELSE 'model-' || lpad(m::text, 2, '0') END,
  (ARRAY['openai', 'anthropic', 'vertex_ai', 'deepseek', 'bedrock'])[1 + m % 5],
  'user-' || lpad(u::text, 3, '0'), 'team-' || lpad((u % 20)::text, 2, '0'),
  CASE WHEN u % 20 = 3 THEN 'cust-' || (i % 10) END,
  CASE WHEN failed THEN 'failure' ELSE 'success' END,
  jsonb_build_object('user_api_key_alias', 'key-' || u || '-' || k), '["bench"]'::jsonb, 'False'
FROM (SELECT i, timestamp '2026-08-17 12:00:00' + (i::float8 / $1) * interval '90 days' AS st, u,
             (u * 7 + floor(random() ^ 2 * 5)::int) % 50 AS m, (random() < 0.2)::int AS k,
             10 + floor(random() * 2000)::int AS pt, 1 + floor(random() * 800)::int AS ct, random() < 0.02 AS failed
      FROM (SELECT i, floor(random() ^ 2 * 500)::int AS u FROM generate_series(1, $1::int) i) g) s
"""
PG_KEYS = """
INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, user_id, team_id, spend)
SELECT md5('key-' || u || '-' || k), 'key-' || u || '-' || k, 'user-' || lpad(u::text, 3, '0'),
       'team-' || lpad((u % 20)::text, 2, '0'), 0
FROM generate_series(0, 499) u, generate_series(0, 1) k
"""

QUERY = """query($first: Int!, $after: String, $since: DateTime, $until: DateTime, $team: String, $user: String,
    $alias: String, $model: String, $status: String) {
  spendLogs(first: $first, after: $after, since: $since, until: $until, teamId: $team, userId: $user,
            keyAlias: $alias, model: $model, status: $status) {
    edges { cursor node { requestId startTime model teamId userId keyAlias status spend latencyMs tags } }
    pageInfo { hasNextPage endCursor } } }"""

FILTERS: dict[str, dict[str, Any]] = {
    "no filter": {},
    "team (1 of 20)": {"team": "team-07"},
    "model (1 of 50)": {"model": "model-12"},
    "status failure (2%)": {"status": "failure"},
    "key alias (one key)": {"alias": "key-3-0"},
    "one day (since/until)": {"since": "2026-10-01T00:00:00Z", "until": "2026-10-02T00:00:00Z"},
    # The worst case: a filter no row matches walks the whole index before it can answer "no more rows".
    "team with no rows (worst case)": {"team": "team-none"},
}
FIRST_PAGE_ONLY = ("one day (since/until)", "team with no rows (worst case)")


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(normalize_database_url(PG_ADMIN)))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(rows: int, embedded: bool) -> tuple[str, str]:
    name = f"spendplane_bench_requests_{rows}_{'embedded' if embedded else 'litellm'}"
    await _admin(PG_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    url = normalize_database_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    if embedded:
        await _admin(PG_ADMIN, f'CREATE DATABASE "{name}"')
    else:
        base = PG_ADMIN.split("?")[0].rsplit("/", 1)[0]  # the server, without a database
        command = [str(LITELLM_SCHEMA), name, base]
        await asyncio.to_thread(subprocess.run, command, check=True, timeout=600)
    return url, name


async def fill(url: str, rows: int) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(asyncpg_dsn(normalize_database_url(url)))
    try:
        await conn.execute(PG_FILL, rows)
        await conn.execute(PG_KEYS)
        await conn.execute('VACUUM ANALYZE "LiteLLM_SpendLogs"')
        await conn.execute('VACUUM ANALYZE "LiteLLM_VerificationToken"')
    finally:
        await conn.close()
    return time.perf_counter() - started


async def deep_cursor(url: str, rows: int) -> str:
    """The cursor of the row 80% of the way down (newest first): a page about 4 M rows deep on 5 M."""
    conn = await asyncpg.connect(asyncpg_dsn(normalize_database_url(url)))
    try:
        found = await conn.fetchrow(
            'SELECT "startTime", request_id FROM "LiteLLM_SpendLogs" '
            'ORDER BY "startTime" DESC, request_id DESC OFFSET $1 LIMIT 1',
            int(rows * 0.8),
        )
    finally:
        await conn.close()
    assert found is not None
    return KEYSET.encode(found["startTime"].replace(tzinfo=UTC), found["request_id"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--embedded", action="store_true", help="spendplane's embedded copy, not LiteLLM's schema")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    args = parser.parse_args()

    url, name = await create_database(args.rows, args.embedded)
    try:
        if args.embedded:
            db = open_database(url)
            await upgrade(db, embedded=True)
            await db.dispose()
        fill_seconds = await fill(url, args.rows)
        deep = await deep_cursor(url, args.rows)
        settings = Settings(
            database_url=normalize_database_url(url),
            litellm_master_key=MASTER_KEY,
            embedded=args.embedded,
            jobs_enabled=False,
        )
        app = create_app(settings, clock=lambda: NOW)
        statements: dict[str, tuple[str, Any]] = {}
        results: list[tuple[str, str, float, float, int]] = []
        async with LifespanManager(app) as running:
            runtime = next(iter(running._state.values()))
            engine = runtime.db.engine.sync_engine
            label = ""

            @event.listens_for(engine, "before_cursor_execute")
            def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
                if '"LiteLLM_SpendLogs"' in statement and label:
                    statements[label] = (statement, parameters)

            transport = httpx.ASGITransport(app=running.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                login = await client.post("/auth/login", json={"api_key": MASTER_KEY})
                headers = {"authorization": f"Bearer {login.json()['access_token']}"}
                # The floor: a query that reads nothing (login checks, GraphQL parsing and validation, HTTP).
                floor = []
                for n in range(args.repetitions + 1):
                    started = time.perf_counter()
                    response = await client.post("/graphql", json={"query": "{ me { role } }"}, headers=headers)
                    assert "errors" not in response.json()
                    if n:
                        floor.append((time.perf_counter() - started) * 1000)
                floor_row = ("(floor: `me`, no database)", "-", statistics.median(floor), percentile(floor, 0.95), 0)
                results.append(floor_row)
                for filter_name, filters in FILTERS.items():
                    for page in ("first page", "deep page"):
                        after = deep if page == "deep page" else None
                        if page == "deep page" and filter_name in FIRST_PAGE_ONLY:
                            continue  # a day is ~55 k rows, and nothing has no deep page: the first page is the case
                        variables = {"first": 50, "after": after, **filters}
                        label = f"{filter_name} / {page}"
                        timings = []
                        for n in range(args.repetitions + 1):
                            started = time.perf_counter()
                            response = await client.post(
                                "/graphql", json={"query": QUERY, "variables": variables}, headers=headers
                            )
                            elapsed = (time.perf_counter() - started) * 1000
                            body = response.json()
                            assert "errors" not in body, body
                            if n:
                                timings.append(elapsed)
                        count = len(body["data"]["spendLogs"]["edges"])
                        results.append(
                            (filter_name, page, statistics.median(timings), percentile(timings, 0.95), count)
                        )
                label = ""
            plans = {}
            async with runtime.db.engine.connect() as conn:
                for key in (
                    "no filter / deep page",
                    "team (1 of 20) / deep page",
                    "key alias (one key) / first page",
                    "one day (since/until) / first page",
                ):
                    statement, parameters = statements[key]
                    plan = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                    plans[key] = "\n".join(row[0] for row in plan.all())
                indexes = await conn.execute(
                    text("SELECT indexdef FROM pg_indexes WHERE tablename = 'LiteLLM_SpendLogs' ORDER BY indexname")
                )
                index_list = [row[0] for row in indexes.all()]
    finally:
        if not args.keep:
            await _admin(PG_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    schema = "spendplane's embedded copy" if args.embedded else "LiteLLM's production schema"
    print(f"\n{args.rows:,} rows, PostgreSQL, {schema}; fill {fill_seconds:.0f} s; {args.repetitions} runs each\n")
    print("| filter | page | median ms | p95 ms | rows |")
    print("|---|---|---:|---:|---:|")
    for filter_name, page, median, p95, count in results:
        print(f"| {filter_name} | {page} | {median:.1f} | {p95:.1f} | {count} |")
    print("\nIndexes on LiteLLM_SpendLogs:\n")
    for index in index_list:
        print(f"    {index}")
    for key, plan in plans.items():
        print(f"\nEXPLAIN (ANALYZE, BUFFERS), {key}:\n")
        print("\n".join("    " + line for line in plan.splitlines()))


if __name__ == "__main__":
    asyncio.run(main())
