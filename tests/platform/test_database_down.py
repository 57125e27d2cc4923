"""With the database down, for real (a private PostgreSQL cluster this test starts and stops): spend ingestion
answers 503 with Retry-After (LiteLLM retries), REST 503, GraphQL a coded SERVICE_UNAVAILABLE, and everything works
again once the database is back."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.db import normalize_database_url, open_database
from models.migrate import upgrade
from resolvers.platform.config import Settings
from tests.conftest import FIXTURES, MASTER_KEY, Clock, started
from tests.support import Api

PG_BIN = Path("/usr/lib/postgresql/15/bin")
GATEWAY = {"x-api-key": MASTER_KEY}


class Cluster:
    """A throwaway PostgreSQL cluster on a free port (never the shared one on 5432)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="spendplane-pg-", dir="/tmp"))
        self.data = self.root / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: object) -> None:
        subprocess.run([*self.as_postgres, *map(str, args)], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l", self.root / "log", "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        subprocess.run(
            [*self.as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15's server binaries are not installed")
    running = Cluster()
    try:
        running.start()
        yield running
    finally:
        running.remove()


def spend_event() -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / "litellm" / "spend_post_success.json").read_text())["body"]
    return body


async def test_with_postgresql_down_spend_ingestion_is_503_with_retry_after_and_graphql_service_unavailable(
    cluster: Cluster, tmp_path: Path, clock: Clock
) -> None:
    database = open_database(cluster.url)
    try:
        await upgrade(database, embedded=True)
    finally:
        await database.dispose()
    settings = Settings(
        database_url=normalize_database_url(cluster.url),
        litellm_master_key=MASTER_KEY,
        embedded=True,
        price_map_cache=str(tmp_path / "price-map.json"),
        spend_refresh_seconds=0.2,
        jobs_enabled=False,
    )
    async with started(settings, clock) as api:
        cluster.stop()
        try:
            await _answers_while_down(api)
        finally:
            cluster.start()
        # Back up: the pools reconnect and the same calls succeed.
        recorded = await api.client.post("/spend/litellm", json=spend_event(), headers=GATEWAY)
        assert recorded.status_code == 200, recorded.text
        assert (await api.data("{ budgets { id } }"))["budgets"] == []


async def _answers_while_down(api: Api) -> None:
    ingest = await api.client.post("/spend/litellm", json=spend_event(), headers=GATEWAY)
    assert ingest.status_code == 503, ingest.text
    assert ingest.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert int(ingest.headers["retry-after"]) >= 1
    error = await api.error("{ budgets { id } }")
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE", error
    assert error["extensions"]["retryAfter"] >= 1
    listed = await api.client.get("/api/v1/budgets", headers=api.bearer())
    assert listed.status_code == 503 and "retry-after" in listed.headers
