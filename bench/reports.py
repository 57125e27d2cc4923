"""Benchmark: a monthly costReport (totals and all three breakdowns) through GraphQL, from the daily rollup and
from a raw scan of LiteLLM_SpendLogs, in the same run, on a dedicated benchmark database (never the tests').

    .venv/bin/python bench/reports.py --dialect postgresql --rows 5000000
    .venv/bin/python bench/reports.py --dialect sqlite --rows 1000000

Builds the spend logs in bulk inside the database (PostgreSQL: INSERT ... SELECT generate_series; SQLite: a
recursive CTE, MATERIALIZED so each row's random draws are made once), 90 days ending at 2026-11-15 12:00 UTC,
500 users in 20 teams, 50 models from 5 providers, two keys per user, end users on one team, 2% failures.
Then it rolls the rollup up (timed: quarter-hour buckets, daily rows, summaries), and times, through the GraphQL
endpoint of an in-process app (httpx + ASGI, lifespan on): MONTHLY (November to date: 14 closed days from the
rollup + the open day from the raw logs) and CUSTOM October (31 closed days) in UTC; the same in Asia/Tokyo,
Asia/Kathmandu (+05:45) and America/Los_Angeles (the UTC days between the nearest midnights from the daily tables,
plus and minus the offset's pieces from the quarter-hour buckets); and a 30-day costTrend in UTC and in Asia/Tokyo
(each local day its UTC day, plus and minus 9 hours of buckets; in the organisation's zone, --org-zone, from its
own daily summary; Asia/Seoul, at Tokyo's offset, the pieces). The
raw variant is the same app with SPENDPLANE_REPORTS_FROM_RAW=true; rollup and raw totals must agree exactly.
Reports are timed round robin (each once per round), so load changes weigh on all alike. It prints a markdown
table and drops the database afterwards (--keep keeps it; --reuse times the reports again on a kept database
without refilling it, e.g. with another worktree's code for a before/after on the same data).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select, text

from graphql_api.app import create_app
from models.db import asyncpg_dsn, normalize_database_url, open_database
from models.litellm import probe_litellm_schema
from models.migrate import upgrade
from models.rollups import CostSummaryDailyRow, CostTrackingBucketRow, CostTrackingDailyRow, CostZoneDailyRow
from resolvers.platform.config import Settings
from resolvers.rollups import refresh_rollups

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
START = "2026-08-17 12:00:00"  # NOW - 90 days
MASTER_KEY = "sk-bench-master"
PG_ADMIN = os.environ.get("SPENDPLANE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROW = "key cost requests inputTokens outputTokens share"
QUERY = f"""query($period: ReportPeriod!, $start: Date, $end: Date, $zone: String) {{
  costReport(period: $period, startDate: $start, endDate: $end, timeZone: $zone) {{
    startDate endDate totalCost totalRequests totalInputTokens totalOutputTokens
    breakdownByModel {{ {ROW} }} breakdownByUser {{ {ROW} }} breakdownByTeam {{ {ROW} }} }} }}"""
TREND = """query($zone: String) { costTrend(days: 30, timeZone: $zone) { changePercent points { date cost } } }"""
REPORTS: dict[str, dict[str, Any]] = {
    "monthly (Nov 1-15, open day raw)": {"period": "MONTHLY"},
    "custom October (31 closed days)": {"period": "CUSTOM", "start": "2026-10-01", "end": "2026-10-31"},
    # Local days: UTC days from the daily tables, plus and minus quarter-hour buckets at both ends.
    "monthly, Asia/Tokyo": {"period": "MONTHLY", "zone": "Asia/Tokyo"},
    "custom October, Asia/Kathmandu": {
        "period": "CUSTOM",
        "start": "2026-10-01",
        "end": "2026-10-31",
        "zone": "Asia/Kathmandu",
    },
    "custom October, America/Los_Angeles": {
        "period": "CUSTOM",
        "start": "2026-10-01",
        "end": "2026-10-31",
        "zone": "America/Los_Angeles",
    },
    # Figures per local day: each the UTC day it overlaps most, plus and minus the offset's pieces of buckets.
    "costTrend 30 days, UTC": {"query": TREND, "zone": "UTC"},
    "costTrend 30 days, Asia/Tokyo": {"query": TREND, "zone": "Asia/Tokyo"},
    # The same offset as Tokyo (+09:00, no DST) but not the organisation's zone: the offset pieces, as before the
    # zone's own daily summary (the "before" of the same run).
    "costTrend 30 days, Asia/Seoul": {"query": TREND, "zone": "Asia/Seoul"},
}

PG_FILL = """
INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, total_tokens, prompt_tokens,
  completion_tokens, "startTime", "endTime", model, model_group, custom_llm_provider, "user", team_id, end_user,
  status, metadata)
SELECT 'bench-' || i, 'acompletion', md5('key-' || u || '-' || k),
  CASE WHEN failed THEN 0 ELSE (pt * 0.5 + ct * 1.5) / 1e6 * (1 + m % 10) END,
  pt + ct, pt, CASE WHEN failed THEN 0 ELSE ct END, st, st + interval '2 seconds',
  'model-' || lpad(m::text, 2, '0'),
  CASE WHEN m % 3 = 0 THEN 'alias-' || (m % 6) ELSE 'model-' || lpad(m::text, 2, '0') END,
  (ARRAY['openai', 'anthropic', 'vertex_ai', 'deepseek', 'bedrock'])[1 + m % 5],
  'user-' || lpad(u::text, 3, '0'), 'team-' || lpad((u % 20)::text, 2, '0'),
  CASE WHEN u % 20 = 3 THEN 'cust-' || (i % 10) END,
  CASE WHEN failed THEN 'failure' ELSE 'success' END, '{}'::jsonb
FROM (SELECT i, timestamp '2026-08-17 12:00:00' + (i::float8 / $1) * interval '90 days' AS st, u,
             (u * 7 + floor(random() ^ 2 * 5)::int) % 50 AS m, (random() < 0.2)::int AS k,
             10 + floor(random() * 2000)::int AS pt, 1 + floor(random() * 800)::int AS ct, random() < 0.02 AS failed
      FROM (SELECT i, floor(random() ^ 2 * 500)::int AS u FROM generate_series(1, $1::int) i) g) s
"""

SQLITE_FILL = """
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :n),
g AS MATERIALIZED (SELECT i, (abs(random()) % 1000000) / 1000000.0 AS r1, (abs(random()) % 1000000) / 1000000.0 AS r2,
             abs(random()) % 5 AS k5, 10 + abs(random()) % 2000 AS pt, 1 + abs(random()) % 800 AS ct,
             (abs(random()) % 100) < 2 AS failed FROM seq),
s AS MATERIALIZED (SELECT i, CAST(r1 * r1 * 500 AS INTEGER) AS u, pt, ct, failed, k5 < 1 AS k,
             strftime('%Y-%m-%d %H:%M:%S', :start, '+' || CAST(i * 7776000 / :n AS INTEGER) || ' seconds')
               || '.000000' AS st, r2 FROM g)
INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, total_tokens, prompt_tokens,
  completion_tokens, "startTime", "endTime", model, model_group, custom_llm_provider, "user", team_id, end_user,
  status, metadata)
SELECT 'bench-' || i, 'acompletion', 'key-' || u || '-' || k,
  CASE WHEN failed THEN 0 ELSE (pt * 0.5 + ct * 1.5) / 1e6 * (1 + m % 10) END,
  pt + ct, pt, CASE WHEN failed THEN 0 ELSE ct END, st, st,
  'model-' || printf('%02d', m), CASE WHEN m % 3 = 0 THEN 'alias-' || (m % 6) ELSE 'model-' || printf('%02d', m) END,
  CASE m % 5 WHEN 0 THEN 'openai' WHEN 1 THEN 'anthropic' WHEN 2 THEN 'vertex_ai' WHEN 3 THEN 'deepseek'
    ELSE 'bedrock' END,
  'user-' || printf('%03d', u), 'team-' || printf('%02d', u % 20),
  CASE WHEN u % 20 = 3 THEN 'cust-' || (i % 10) END,
  CASE WHEN failed THEN 'failure' ELSE 'success' END, '{}'
FROM (SELECT *, (u * 7 + CAST(r2 * r2 * 5 AS INTEGER)) % 50 AS m FROM s)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def create_database(dialect: str, rows: int) -> tuple[str, str]:
    """A fresh benchmark database: (url, name)."""
    if dialect == "sqlite":
        path = Path(tempfile.gettempdir()) / f"spendplane_bench_{rows}.db"
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        return f"sqlite:///{path}", str(path)
    name = f"spendplane_bench_{rows}"
    conn = await asyncpg.connect(asyncpg_dsn(normalize_database_url(PG_ADMIN)))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return normalize_database_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False), name


def reused_database(dialect: str, rows: int) -> tuple[str, str]:
    """The database a `--keep` run left: (url, name)."""
    if dialect == "sqlite":
        path = Path(tempfile.gettempdir()) / f"spendplane_bench_{rows}.db"
        return f"sqlite:///{path}", str(path)
    name = f"spendplane_bench_{rows}"
    return normalize_database_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False), name


async def drop_database(dialect: str, name: str) -> None:
    if dialect == "sqlite":
        for leftover in Path(name).parent.glob(Path(name).name + "*"):
            leftover.unlink()
        return
    conn = await asyncpg.connect(asyncpg_dsn(normalize_database_url(PG_ADMIN)))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def fill(dialect: str, url: str, rows: int) -> float:
    started = time.perf_counter()
    if dialect == "sqlite":
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        with conn:
            conn.execute(SQLITE_FILL, {"n": rows, "start": START})
        conn.execute("ANALYZE")
        conn.close()
    else:
        conn = await asyncpg.connect(asyncpg_dsn(normalize_database_url(url)))
        try:
            await conn.execute(PG_FILL, rows)
            await conn.execute('VACUUM ANALYZE "LiteLLM_SpendLogs"')
        finally:
            await conn.close()
    return time.perf_counter() - started


async def time_reports(settings: Settings, repetitions: int) -> dict[str, list[float]]:
    app = create_app(settings, clock=lambda: NOW)
    timings: dict[str, list[float]] = {}
    async with LifespanManager(app, startup_timeout=120) as running:  # a loaded machine starts slowly
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            login = await client.post("/auth/login", json={"api_key": MASTER_KEY})
            headers = {"authorization": f"Bearer {login.json()['access_token']}"}
            # Round robin (every report once per round), so a change in the machine's load between rounds
            # weighs on every report alike and the ratios within a run hold; the first round warms caches.
            bodies: dict[str, Any] = {}
            for n in range(repetitions + 1):
                for label, variables in REPORTS.items():
                    query = variables.get("query", QUERY)
                    values = {k: v for k, v in variables.items() if k != "query"}
                    started = time.perf_counter()
                    response = await client.post(
                        "/graphql", json={"query": query, "variables": values}, headers=headers
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                    bodies[label] = body = response.json()
                    assert "errors" not in body, body
                    if n:
                        timings.setdefault(label, []).append(elapsed)
            for label, body in bodies.items():
                data = body["data"]
                if "costReport" in data:
                    timings[label + " total"] = [float(data["costReport"]["totalCost"])]
                else:
                    timings[label + " total"] = [float(sum(Decimal(p["cost"]) for p in data["costTrend"]["points"]))]
    return timings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialect", choices=["postgresql", "sqlite"], required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--raw-repetitions", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="time the reports on the database a --keep run left (migrated to head, rollup refreshed, no refill)",
    )
    parser.add_argument(
        "--org-zone",
        default="Asia/Tokyo",
        help="SPENDPLANE_TIME_ZONE for the rollup: its local days get their own daily summary (UTC: none)",
    )
    parser.add_argument(
        "--switch-zone",
        default="",
        help="after the reports, time the rollup refresh switching to this zone and back (the zone table's refill)",
    )
    parser.add_argument("--only", default="", help="comma-separated parts of report labels: time only those")
    args = parser.parse_args()
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    for label in [label for label in REPORTS if wanted and not any(w in label for w in wanted)]:
        del REPORTS[label]

    if args.reuse:
        url, name = reused_database(args.dialect, args.rows)
        args.keep = True
    else:
        url, name = await create_database(args.dialect, args.rows)
    try:
        db = open_database(url)
        await upgrade(db, embedded=True)
        fill_seconds = 0.0 if args.reuse else await fill(args.dialect, url, args.rows)
        async with db.engine.connect() as conn:
            schema = await probe_litellm_schema(conn)
        started = time.perf_counter()
        status = await refresh_rollups(db, schema, NOW, recheck_days=62, zone=args.org_zone)
        build_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await refresh_rollups(db, schema, NOW, recheck_days=62, zone=args.org_zone)
        recheck_seconds = time.perf_counter() - started
        async with db.reader() as session:
            rollup_rows = int(await session.scalar(select(func.count()).select_from(CostTrackingDailyRow)) or 0)
            bucket_rows = int(await session.scalar(select(func.count()).select_from(CostTrackingBucketRow)) or 0)
            zone_rows = int(await session.scalar(select(func.count()).select_from(CostZoneDailyRow)) or 0)
            summary_rows = int(await session.scalar(select(func.count()).select_from(CostSummaryDailyRow)) or 0)
            october = int(
                await session.scalar(
                    select(func.count())
                    .select_from(CostTrackingDailyRow)
                    .where(text("day >= '2026-10-01' AND day < '2026-11-01'"))
                )
                or 0
            )
        await db.dispose()
        base = Settings(
            database_url=normalize_database_url(url),
            litellm_master_key=MASTER_KEY,
            embedded=True,
            jobs_enabled=False,
            time_zone=args.org_zone,
        )
        rolled = await time_reports(base, args.repetitions)
        raw = await time_reports(replace(base, reports_from_raw=True), args.raw_repetitions)
        if args.switch_zone:
            db = open_database(url)
            for zone in (args.switch_zone, args.org_zone):
                started = time.perf_counter()
                await refresh_rollups(db, schema, NOW, recheck_days=62, zone=zone)
                print(f"refresh switching the zone table to {zone}: {time.perf_counter() - started:.1f} s")
            await db.dispose()
    finally:
        if not args.keep:
            await drop_database(args.dialect, name)

    result: dict[str, Any] = {
        "dialect": args.dialect,
        "rows": args.rows,
        "fill_seconds": round(fill_seconds, 1),
        "rollup_build_seconds": round(build_seconds, 1),
        "rollup_days": status.days_rebuilt,
        "rollup_rows": rollup_rows,
        "bucket_rows": bucket_rows,
        "october_rollup_rows": october,
        "org_zone": args.org_zone,
        "summary_daily_rows": summary_rows,
        "zone_daily_rows": zone_rows,
        "recheck_seconds": round(recheck_seconds, 2),
        "reports": {},
    }
    print(
        f"\n{args.dialect}, {args.rows:,} spend logs: filled in {fill_seconds:.1f} s; rollup built in "
        f"{build_seconds:.1f} s ({status.days_rebuilt} days, {rollup_rows:,} rows; October {october:,}; "
        f"{bucket_rows:,} quarter-hour bucket rows; daily summary {summary_rows:,} rows, in {args.org_zone} "
        f"{zone_rows:,}); "
        f"a no-change refresh (62-day recount) {recheck_seconds * 1000:.0f} ms\n"
    )
    print("| report | rollup median / p95 (ms) | raw scan median / p95 (ms) | raw / rollup |")
    print("|---|---|---|---|")
    for label in REPORTS:
        r, w = rolled[label], raw[label]
        assert rolled[label + " total"] == raw[label + " total"], "rollup and raw totals differ"
        median_r, median_w = statistics.median(r), statistics.median(w)
        result["reports"][label] = {
            "rollup_ms": [round(x, 1) for x in r],
            "raw_ms": [round(x, 1) for x in w],
            "total_cost": rolled[label + " total"][0],
        }
        print(
            f"| {label} | {median_r:.1f} / {percentile(r, 0.95):.1f} | {median_w:.0f} / {percentile(w, 0.95):.0f} "
            f"| {median_w / median_r:.1f}x |"
        )
    save(result, f"reports_{args.dialect}_{args.rows}.json")


def save(result: dict[str, Any], name: str) -> None:
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
