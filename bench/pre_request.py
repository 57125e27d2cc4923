"""Benchmark: the pre-request webhook against a bare Starlette endpoint that parses the same JSON, in one run.

    .venv/bin/python bench/pre_request.py                  # SQLite and PostgreSQL, 32 and 64 connections
    .venv/bin/python bench/pre_request.py --db sqlite --duration 5
    .venv/bin/python bench/pre_request.py --probe          # and what made the paced run's tail (bench/tail_probe.py)

For each database it builds a fresh database (21 budgets, 300 LiteLLM keys, 50,000 spend-log rows), starts
spendplane with uvicorn (1 worker, uvloop, httptools) and the bare app beside it, and drives both with wrk
(Debian's `wrk`): closed-loop saturation at 32 and 64 connections, and a paced run at 500 requests/s for latency
under a realistic load (wrk's per-connection delay; latencies exclude the pacing). Every request carries a new
call id, one of 300 keys, a chat message of ~60 tokens and max_tokens, so the predictor tokenizes and the ledger
reserves on each one. Server CPU per request comes from /proc. Results print as a Markdown table and are saved in
bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from models.budgets import BudgetRow  # noqa: E402
from models.db import asyncpg_dsn, open_database  # noqa: E402
from models.litellm import probe_litellm_schema, verification_tokens  # noqa: E402
from models.migrate import upgrade  # noqa: E402
from resolvers.auth import hash_key  # noqa: E402
from resolvers.demo import DemoPlan, write_demo_data  # noqa: E402

PG_ADMIN = os.environ.get("SPENDPLANE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
WEBHOOK_KEY = "bench-webhook-key"
KEYS = [f"sk-bench-{i:03d}" for i in range(300)]
TEAMS = [f"team-{i:02d}" for i in range(20)]
PAYLOAD = {
    "model": "gpt-4o-mini",
    "max_tokens": 256,
    "messages": [
        {"role": "system", "content": "You are a helpful assistant for an internal engineering team."},
        {
            "role": "user",
            "content": "Summarise the following incident report in three bullet points and "
            "suggest one follow-up action for the on-call engineer: the payment service returned elevated 502s "
            "for twelve minutes after a configuration change to the connection pool.",
        },
    ],
}
LUA = """
counter = 0
local keys = {%(keys)s}
local template = %(template)s
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "%(secret)s"
request = function()
  counter = counter + 1
  local body = string.gsub(template, "CALL_ID", tostring(counter) .. "-" .. tostring(math.random(1, 1000000000)))
  body = string.gsub(body, "API_KEY", keys[(counter %% #keys) + 1])
  return wrk.format(nil, "/webhook/pre-request", nil, body)
end
%(delay)s
"""


@dataclass
class Run:
    database: str
    endpoint: str
    connections: int
    mode: str  # saturation | paced-500
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    server_cpu_us_per_request: float | None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def build_database(kind: str, workdir: Path) -> tuple[str, str | None]:
    """A fresh database with budgets, keys and spend; returns its URL and (PostgreSQL) the database name."""
    name = None
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        import asyncpg

        name = f"spendplane_bench_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(asyncpg_dsn(make_url(PG_ADMIN)))
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    db = open_database(url)
    try:
        await upgrade(db, embedded=True)
        async with db.engine.connect() as conn:
            schema = await probe_litellm_schema(conn)
        await write_demo_data(db, schema, DemoPlan(rows=50_000, days=30, end=datetime.now(UTC), seed=7), embedded=True)
        now = datetime.now(UTC)
        async with db.engine.begin() as conn:
            await conn.execute(
                insert(verification_tokens),
                [
                    {
                        "token": hash_key(k),
                        "user_id": f"bench-user-{i % 100:03d}",
                        "team_id": TEAMS[i % len(TEAMS)],
                        "spend": 0.0,
                        "blocked": False,
                        "metadata": {},
                    }
                    for i, k in enumerate(KEYS)
                ],
            )
            budgets = [{"entity_type": "team", "entity_id": t, "spend_limit": Decimal(1_000_000)} for t in TEAMS]
            budgets.append({"entity_type": "global", "entity_id": "", "spend_limit": Decimal(10_000_000)})
            await conn.execute(
                insert(BudgetRow),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "name": f"bench {b['entity_type']} {b['entity_id']}",
                        **b,
                        "soft_limit_percent": Decimal("0.8"),
                        "hard_limit_percent": Decimal(1),
                        "alert_email": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for b in budgets
                ],
            )
    finally:
        await db.dispose()
    return url, name


async def drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(make_url(PG_ADMIN)))
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def start_server(target: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        *target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
        "--workers",
        "1",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server {target} did not start")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def cpu_ticks(pid: int) -> int:
    """utime + stime of the process and its children (uvicorn runs the app in the process itself)."""
    total = 0
    for path in [Path(f"/proc/{pid}/stat"), *Path(f"/proc/{pid}/task").glob("*/stat")][:1]:
        fields = path.read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def wrk(port: int, script: Path, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": latency("50"),
        "p99": latency("99"),
        "requests": requests,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def lua(workdir: Path, delay_ms: float | None) -> Path:
    template = json.dumps({**PAYLOAD, "litellm_call_id": "CALL_ID", "api_key": "API_KEY"})
    script = workdir / f"body-{delay_ms or 0}.lua"
    script.write_text(
        LUA
        % {
            "keys": ", ".join(f'"{k}"' for k in KEYS),
            "template": json.dumps(template),
            "secret": WEBHOOK_KEY,
            "delay": f"function delay() return {delay_ms} end" if delay_ms else "",
        }
    )
    return script


def prime(port: int) -> None:
    """One request per key first, as the keys' first requests after a start would come: each key's allowance
    is granted once (a database transaction), then it lives in memory. The table measures the steady state."""
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": WEBHOOK_KEY}) as client:
        for i, key in enumerate(KEYS):
            client.post("/webhook/pre-request", json={**PAYLOAD, "litellm_call_id": f"prime-{i}", "api_key": key})


def probe(port: int, *, reset: bool) -> dict[str, object]:
    """bench/tail_probe.py's report of the window since its last reset (and a new window, with `reset`)."""
    import httpx

    answer = httpx.get(f"http://127.0.0.1:{port}/bench/tail", params={"reset": "1"} if reset else {}, timeout=30)
    answer.raise_for_status()
    return dict(answer.json())


def measure(
    database: str, endpoint: str, port: int, pid: int, workdir: Path, seconds: int, probed: bool = False
) -> tuple[list[Run], dict[str, object] | None]:
    runs = []
    saturate = lua(workdir, None)
    prime(port)
    wrk(port, saturate, 32, 3)  # warm-up (tokenizer, caches)
    for connections in (32, 64):
        before = cpu_ticks(pid)
        result = wrk(port, saturate, connections, seconds)
        cpu = (cpu_ticks(pid) - before) / os.sysconf("SC_CLK_TCK") * 1e6 / max(result["requests"], 1)
        runs.append(
            Run(
                database,
                endpoint,
                connections,
                "saturation",
                result["rps"],
                result["p50"],
                result["p99"],
                int(result["non_2xx"]),
                round(cpu, 1),
            )
        )
    paced = lua(workdir, 32 * 1000 / 500)  # 32 connections, one request per 64 ms each: 500 requests/s
    if probed:
        probe(port, reset=True)
    before = cpu_ticks(pid)
    result = wrk(port, paced, 32, seconds)
    report = probe(port, reset=False) if probed else None
    cpu = (cpu_ticks(pid) - before) / os.sysconf("SC_CLK_TCK") * 1e6 / max(result["requests"], 1)
    runs.append(
        Run(
            database,
            endpoint,
            32,
            "paced-500",
            result["rps"],
            result["p50"],
            result["p99"],
            int(result["non_2xx"]),
            round(cpu, 1),
        )
    )
    return runs, report


def bench_database(kind: str, seconds: int, probed: bool = False) -> tuple[list[Run], dict[str, object] | None]:
    workdir = Path(tempfile.mkdtemp(prefix=f"spendplane-bench-{kind}-"))
    url, name = asyncio.run(build_database(kind, workdir))
    env = {
        "DATABASE_URL": url,
        "SPENDPLANE_WEBHOOK_KEY": WEBHOOK_KEY,
        "LITELLM_MASTER_KEY": "bench-master",
        "LITELLM_PRICE_MAP_URL": "off",
        "SPENDPLANE_LOG_LEVEL": "warning",
        "SPENDPLANE_EMBEDDED": "true",
        "LITELLM_PRICE_MAP_CACHE": str(workdir / "prices.json"),
    }
    runs: list[Run] = []
    report = None
    target = "bench.tail_probe:app_from_env" if probed else "graphql_api.app:app_from_env"
    try:
        spend_port, bare_port = free_port(), free_port()
        spendplane = start_server(["--factory", target], spend_port, env)
        bare = start_server(["bench.bare_app:app"], bare_port, {})
        try:
            for endpoint, port, process in (
                ("bare Starlette", bare_port, bare),
                ("spendplane webhook", spend_port, spendplane),
            ):
                measured, found = measure(
                    kind, endpoint, port, process.pid, workdir, seconds, probed and port == spend_port
                )
                runs += measured
                report = found or report
        finally:
            stop_server(spendplane)
            stop_server(bare)
    finally:
        if name:
            asyncio.run(drop_database(name))
        shutil.rmtree(workdir, ignore_errors=True)
    return runs, report


def table(runs: list[Run]) -> str:
    lines = [
        "| database | endpoint | load | req/s | p50 ms | p99 ms | non-2xx | server CPU µs/req | vs bare |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    bare = {(r.database, r.connections, r.mode): r.requests_per_second for r in runs if r.endpoint.startswith("bare")}
    for r in runs:
        ratio = r.requests_per_second / bare[(r.database, r.connections, r.mode)]
        load = f"{r.connections} conn" if r.mode == "saturation" else "500 req/s paced"
        lines.append(
            f"| {r.database} | {r.endpoint} | {load} | {r.requests_per_second:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.non_2xx} | {r.server_cpu_us_per_request} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def causes(database: str, report: dict[str, Any]) -> str:
    """The paced run's tail causes in a few lines (the whole report is saved beside the table)."""
    requests = report["requests"]
    lines = [
        f"{database}, paced run ({report['seconds']} s): {report['stalls_over_5ms']} loop stalls > 5 ms "
        f"({report['stalls_over_5ms_per_10s']} per 10 s, longest {report['stall_ms_max']} ms); busy (the loop ran "
        f"> 5 ms of CPU): {report['busy_stalls_over_5ms']} ({report['busy_stalls_over_5ms_per_10s']} per 10 s, "
        f"{report['busy_stall_cpu_ms_total']} ms CPU in all, longest {report['busy_stall_cpu_ms_max']} ms)",
        f"  busy stalls by cause: {report['busy_stall_causes']}",
        f"  gc by generation: {report['gc']}; collections since the server started (gen 0, 1, 2): "
        f"{report['gc_since_start']}, thresholds {report['gc_thresholds']}; {report['objects']}",
        f"  background work: {report['background']}",
        f"  requests by path: {requests['by_path']}; over 5 ms: {requests['over_5ms_by_path']}, "
        f"while: {requests['over_5ms_during']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--probe", action="store_true", help="report the paced run's tail causes (loop stalls, gc)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/pre_request.py needs wrk: apt-get install wrk")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    runs: list[Run] = []
    reports: dict[str, Any] = {}
    for kind in kinds:
        measured, report = bench_database(kind, args.duration, args.probe)
        runs += measured
        if report is not None:
            reports[kind] = report
    print(table(runs))
    for kind, report in reports.items():
        print(causes(kind, report))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"webhook-{stamp}.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    if reports:
        (results / f"webhook-tail-{stamp}.json").write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
