"""Faults against the no-overspend promise: real `spendplane serve` processes killed with SIGKILL, and a private
PostgreSQL cluster stopped or frozen (SIGSTOP) mid-traffic. Prints one table: case, requests, admitted, what the
budget allows, degraded answers, spend recorded, spend lost.

    .venv/bin/python bench/faults.py                 # every case (about 6 minutes: two cases wait 130 s)
    .venv/bin/python bench/faults.py --case frozen   # one case

Each case acts as LiteLLM would: it asks /webhook/pre-request for every request (1 USD each, as the gateway's
trusted estimate), and posts the spend of every admitted one to /spend/litellm, retrying a 503 with backoff as
LiteLLM's logging callback does. "lost" counts admitted requests whose spend never made it into the spend logs.
The PostgreSQL cases use a private cluster (initdb + pg_ctl on a free port under /tmp), never the shared one;
the SQLite case a file under /tmp. Traffic goes to 127.0.0.1 only, every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

MASTER_KEY = "sk-bench-faults"
GATEWAY = {"x-api-key": MASTER_KEY}
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SPENDPLANE = str(Path(sys.executable).with_name("spendplane"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------------------------- the pieces


class Cluster:
    """A private PostgreSQL 15 cluster on a free port, owned by the postgres user (initdb refuses root)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="spendplane-faults-pg-"))
        self.port = free_port()
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")

    def _as_postgres(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], check=check, capture_output=True, text=True
        )

    def start(self) -> None:
        if not self.data.exists():
            self._as_postgres(
                str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start"
        )

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def pids(self) -> list[int]:
        found = subprocess.run(["pgrep", "-f", str(self.data)], capture_output=True, text=True)
        postmaster = [int(p) for p in found.stdout.split()]
        children = subprocess.run(
            ["pgrep", "-P", ",".join(map(str, postmaster)) or "0"], capture_output=True, text=True
        )
        return postmaster + [int(p) for p in children.stdout.split()]

    def freeze(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def url(self, database: str = "bench") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str = "bench") -> None:
        self._as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def remove(self) -> None:
        self.thaw()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """One `spendplane serve` process."""

    def __init__(self, database_url: str, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_PRICE_MAP_URL": "off",
            "LITELLM_PRICE_MAP_CACHE": str(workdir / "prices.json"),
            "SPENDPLANE_EMBEDDED": "true",
            "SPENDPLANE_JOBS": "false",
            "SPENDPLANE_LOG_LEVEL": "error",
            "DEFAULT_KEY_BUDGET_USD": "0",
            **env,
        }
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for over HTTP below
            [SPENDPLANE, "serve", "--port", str(self.port)],
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/health", timeout=2)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"spendplane serve on {self.url} did not come up")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Row:
    case: str
    requests: int = 0
    admitted: int = 0
    allowed: int = 0
    degraded: int = 0
    recorded: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)


async def create_budget(server: Server, limit: int) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        token = (await client.post("/auth/login", json={"api_key": MASTER_KEY})).json()["access_token"]
        body = {"name": "Eng", "entity_type": "team", "entity_id": "eng", "monthly_limit": limit}
        created = await client.post("/api/v1/budgets", json=body, headers={"authorization": f"Bearer {token}"})
        if created.status_code != 201:
            raise RuntimeError(f"could not create the budget: {created.text}")


class Gateway:
    """LiteLLM's side: asks before every request, posts the spend of admitted ones (with LiteLLM's retries)."""

    def __init__(self, row: Row) -> None:
        self.row = row
        self.client = httpx.AsyncClient(timeout=15)
        self.spend_owed: list[tuple[str, str]] = []  # (server url, call id) of admitted requests
        self.posted: set[str] = set()

    async def ask(self, server: Server, call_id: str) -> None:
        self.row.requests += 1
        try:
            response = await self.client.post(
                f"{server.url}/webhook/pre-request",
                headers=GATEWAY,
                json={"litellm_call_id": call_id, "team_id": "eng", "model": "gpt-4o", "estimated_cost": "1"},
            )
        except httpx.HTTPError:
            self.row.notes.append("a request found no server")  # LiteLLM's unreachable_fallback decides then
            return
        if response.status_code == 200:
            self.row.admitted += 1
            self.row.degraded += bool(response.json().get("degraded"))
            self.spend_owed.append((server.url, call_id))

    async def burst(self, servers: list[Server], n: int, prefix: str, concurrency: int = 10) -> None:
        for start in range(0, n, concurrency):
            await asyncio.gather(
                *(
                    self.ask(servers[i % len(servers)], f"{prefix}-{i}")
                    for i in range(start, min(n, start + concurrency))
                )
            )

    async def post_spend(self, servers: list[Server], *, patience: float = 60) -> None:
        """Every admitted request's spend (1 USD), to any live server, retrying 503s and refused connections."""
        deadline = time.monotonic() + patience
        for _, call_id in self.spend_owed:
            if call_id in self.posted:
                continue
            now = datetime.now(UTC).timestamp()
            event = {
                "id": f"chatcmpl-{call_id}",
                "litellm_call_id": call_id,
                "call_type": "acompletion",
                "status": "success",
                "startTime": now - 1,
                "endTime": now,
                "model": "gpt-4o",
                "model_group": "gpt-4o",
                "custom_llm_provider": "openai",
                "response_cost": 1.0,
                "prompt_tokens": 10,
                "completion_tokens": 20,
                "total_tokens": 30,
                "metadata": {"user_api_key_team_id": "eng", "user_api_key_hash": "litellm_proxy_master_key"},
            }
            delay = 0.5
            while time.monotonic() < deadline:
                server = servers[len(self.posted) % len(servers)]
                try:
                    response = await self.client.post(f"{server.url}/spend/litellm", headers=GATEWAY, json=[event])
                    if response.status_code == 200:
                        self.posted.add(call_id)
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    async def count_recorded(self, server: Server) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            token = (await client.post("/auth/login", json={"api_key": MASTER_KEY})).json()["access_token"]
            budgets = (await client.get("/api/v1/budgets", headers={"authorization": f"Bearer {token}"})).json()
        self.row.recorded = round(sum(b["current_spend"] for b in budgets if b["entity_id"] == "eng"))
        self.row.lost = self.row.admitted - self.row.recorded

    async def close(self) -> None:
        await self.client.aclose()


@contextlib.asynccontextmanager
async def workdir() -> AsyncIterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spendplane-faults-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- the cases


async def kill_sqlite(wait: float) -> Row:
    """kill -9 mid-burst, restart, burst again after `wait` s (beyond the 120 s an allowance used to live)."""
    row = Row("SQLite: kill -9 mid-burst, restart, burst again after 130 s", allowed=50)
    async with workdir() as tmp:
        url = f"sqlite:///{tmp / 'spendplane.db'}"
        server = Server(url, tmp)
        await server.start()
        await create_budget(server, 50)
        gateway = Gateway(row)
        burst = asyncio.create_task(gateway.burst([server], 100, "first"))
        while row.admitted < 30:  # noqa: ASYNC110 - the burst's counter, polled until mid-burst
            await asyncio.sleep(0.01)
        server.kill()
        await asyncio.gather(burst, return_exceptions=True)
        restarted = Server(url, tmp)
        await restarted.start()
        await asyncio.sleep(wait)
        await gateway.burst([restarted], 100, "second")
        await gateway.post_spend([restarted])
        await asyncio.sleep(3)
        await gateway.count_recorded(restarted)
        restarted.stop()
        await gateway.close()
    return row


async def kill_one_of_two_postgres(cluster: Cluster, wait: float) -> Row:
    row = Row("PostgreSQL, 2 instances: one killed (-9) mid-burst, burst again after 130 s", allowed=50)
    cluster.create_database("kill")
    async with workdir() as tmp:
        one, two = Server(cluster.url("kill"), tmp), Server(cluster.url("kill"), tmp)
        await one.start()
        await two.start()
        await create_budget(one, 50)
        await asyncio.sleep(1)
        gateway = Gateway(row)
        burst = asyncio.create_task(gateway.burst([one, two], 100, "first"))
        while row.admitted < 30:  # noqa: ASYNC110 - the burst's counter, polled until mid-burst
            await asyncio.sleep(0.01)
        two.kill()
        await asyncio.gather(burst, return_exceptions=True)
        await asyncio.sleep(wait)
        await gateway.burst([one], 100, "second")
        await gateway.post_spend([one])
        await asyncio.sleep(3)
        await gateway.count_recorded(one)
        one.stop()
        await gateway.close()
    return row


async def database_away(cluster: Cluster, how: str, mode: str) -> Row:
    """The database stops (pg_ctl stop -m immediate) or freezes (SIGSTOP on every backend) while traffic flows;
    after 20 s it comes back. Degraded answers follow ENFORCEMENT_FAILURE_MODE; spend posted meanwhile is
    refused with 503 and retried until it lands."""
    name = f"{how}_{mode}"
    row = Row(f"PostgreSQL {how} for 20 s mid-traffic, ENFORCEMENT_FAILURE_MODE={mode}", allowed=50)
    cluster.create_database(name)
    async with workdir() as tmp:
        server = Server(cluster.url(name), tmp, ENFORCEMENT_FAILURE_MODE=mode)
        await server.start()
        await create_budget(server, 50)
        gateway = Gateway(row)
        await gateway.burst([server], 20, "before")
        await gateway.post_spend([server])
        if how == "stopped":
            cluster.stop()
        else:
            cluster.freeze()
        away = time.monotonic()
        await gateway.burst([server], 40, "away")
        spend_while_away = asyncio.create_task(gateway.post_spend([server], patience=120))
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - away)))
        if how == "stopped":
            cluster.start()
        else:
            cluster.thaw()
        await spend_while_away
        await asyncio.sleep(5)  # the instance reconnects and re-reads recorded spend
        await gateway.burst([server], 60, "after")
        await gateway.post_spend([server], patience=60)
        await asyncio.sleep(3)
        await gateway.count_recorded(server)
        server.stop()
        await gateway.close()
    row.allowed = 50 + (row.degraded if mode == "open" else 0)
    row.notes.append(f"allowed = 50 + the {row.degraded} failing-open admissions" if mode == "open" else "")
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["kill-sqlite", "kill-postgres", "stopped", "frozen", "all"], default="all")
    parser.add_argument("--wait", type=float, default=130.0, help="seconds before the burst after a kill")
    args = parser.parse_args()
    rows: list[Row] = []
    cluster = Cluster() if args.case != "kill-sqlite" else None
    try:
        if cluster is not None:
            cluster.start()
        if args.case in ("kill-sqlite", "all"):
            rows.append(await kill_sqlite(args.wait))
        if cluster is not None and args.case in ("kill-postgres", "all"):
            rows.append(await kill_one_of_two_postgres(cluster, args.wait))
        for how in ("stopped", "frozen"):
            if cluster is not None and args.case in (how, "all"):
                for mode in ("open", "closed"):
                    rows.append(await database_away(cluster, how, mode))
    finally:
        if cluster is not None:
            cluster.remove()
    print("| case | requests | admitted | allowed by the budget | degraded | spend recorded (USD) | lost |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row.case} | {row.requests} | {row.admitted} | {row.allowed} | {row.degraded} | {row.recorded} | "
            f"{row.lost} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
