"""Benchmark: the issue-9 attack on the key-testing doors, replayed against a real server at the default rates.

    .venv/bin/python bench/throttle.py                     # 3,000 wrong logins, 1,200 wrong budget checks
    .venv/bin/python bench/throttle.py --logins 500 --checks 200 --concurrency 20

It starts spendplane with uvicorn on a free 127.0.0.1 port (embedded SQLite in a temporary directory, default
throttle settings), then sends wrong keys as fast as `--concurrency` connections allow: first to POST /auth/login,
then to POST /budget/check (one client address, as in the issue's attack). It reports how many were answered 401
(the key was really looked at) and how many 429, with the Retry-After values seen. Then, on a fresh server, 60
logins with the right key one after another: all must be 200 (the throttle never slows a right key). Every loop
is bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from graphql_api.app import create_app  # noqa: E402
from models.db import normalize_database_url  # noqa: E402
from resolvers.platform.config import Settings  # noqa: E402

MASTER_KEY = "sk-bench-master-key-0123456789"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _serve(directory: Path) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    settings = Settings(
        database_url=normalize_database_url(f"sqlite:///{directory / 'spendplane.db'}"),
        litellm_master_key=MASTER_KEY,
        embedded=True,
        price_map_cache=str(directory / "price-map.json"),
        jobs_enabled=False,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started:
            break
        await asyncio.sleep(0.05)
    return server, task, f"http://127.0.0.1:{port}"


async def _flood(
    client: httpx.AsyncClient, path: str, bodies: list[dict[str, object]], concurrency: int
) -> dict[str, object]:
    statuses: collections.Counter[int] = collections.Counter()
    waits: list[int] = []
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            response = await client.post(path, json=queue.pop())
            statuses[response.status_code] += 1
            if response.status_code == 429:
                waits.append(int(response.headers["retry-after"]))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "sent": len(bodies),
        "seconds": round(time.perf_counter() - started, 2),
        "statuses": dict(sorted(statuses.items())),
        "retry_after": (min(waits), max(waits)) if waits else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=3000)
    parser.add_argument("--checks", type=int, default=1200)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server, task, url = await _serve(Path(tmp))
        try:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                logins = [{"api_key": f"sk-guess-{n:08d}-abcdef"} for n in range(args.logins)]
                results["wrong logins"] = await _flood(client, "/auth/login", logins, args.concurrency)
                checks = [{"api_key": f"sk-probe-{n:08d}-abcdef", "estimated_cost": 1} for n in range(args.checks)]
                results["wrong budget checks"] = await _flood(client, "/budget/check", checks, args.concurrency)
        finally:
            server.should_exit = True
            await task
    with tempfile.TemporaryDirectory() as tmp:
        server, task, url = await _serve(Path(tmp))
        try:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                rights = [{"api_key": MASTER_KEY} for _ in range(60)]
                results["right logins (fresh server)"] = await _flood(client, "/auth/login", rights, 1)
        finally:
            server.should_exit = True
            await task
    print("| flood | sent | seconds | statuses | Retry-After (min, max) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        assert isinstance(r, dict)
        print(f"| {name} | {r['sent']} | {r['seconds']} | {r['statuses']} | {r['retry_after']} |")


if __name__ == "__main__":
    asyncio.run(main())
