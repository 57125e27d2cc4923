"""Helpers the tests share: a small API client and LiteLLM spend-log rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from httpx_ws import AsyncWebSocketSession, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from sqlalchemy import insert
from sqlalchemy.engine import URL, make_url
from starlette.applications import Starlette

from models.db import Database
from models.litellm import spend_logs, verification_tokens
from resolvers.auth import hash_key

#: Databases of the `postgresql-litellm` kind (LiteLLM's real schema, spendplane in production mode) are named so.
REAL_SCHEMA_PREFIX = "spendplane_litellm"


def on_real_litellm_schema(database_url: str | URL) -> bool:
    """True for a database of the `postgresql-litellm` kind: LiteLLM's real schema, spendplane in production mode."""
    return (make_url(database_url).database or "").startswith(REAL_SCHEMA_PREFIX)


def as_litellm_stores(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its times in whole milliseconds, as LiteLLM's columns (`timestamp(3)`) hold them. In place, so
    a test's expectations computed from its rows are what the database holds."""
    for key in ("start_time", "end_time", "completion_start_time"):
        if isinstance(row.get(key), datetime):
            row[key] = row[key].replace(microsecond=row[key].microsecond // 1000 * 1000)
    return row


@dataclass
class Api:
    client: httpx.AsyncClient
    app: Starlette
    generated_admin_key: str | None
    lifespan_app: Any = None
    lifespan_state: dict[str, Any] = field(default_factory=dict)
    admin_token: str = ""

    async def login(self, api_key: str) -> str:
        response = await self.client.post("/auth/login", json={"api_key": api_key})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer"
        return str(body["access_token"])

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = "admin",
    ) -> dict[str, Any]:
        headers = {}
        if token == "admin":
            token = self.admin_token
        if token:
            headers["authorization"] = f"Bearer {token}"
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def data(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = "admin",
    ) -> dict[str, Any]:
        """The `data` of a query that must succeed."""
        result = await self.gql(query, variables, token=token)
        assert "errors" not in result, result["errors"]
        data: dict[str, Any] = result["data"]
        return data

    async def error(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = "admin",
    ) -> dict[str, Any]:
        """The single error of a query that must fail."""
        result = await self.gql(query, variables, token=token)
        assert result.get("errors"), f"expected an error, got {result}"
        assert len(result["errors"]) == 1, result["errors"]
        error: dict[str, Any] = result["errors"][0]
        return error

    def runtime(self) -> Any:
        """The running app's Runtime (from the lifespan state)."""
        from resolvers.service.runtime import Runtime

        found = [v for v in self.lifespan_state.values() if isinstance(v, Runtime)]
        return found[0]

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.admin_token}"}


@dataclass
class SpendLog:
    """One LiteLLM_SpendLogs row with sensible defaults."""

    spend: float
    start: datetime
    team_id: str | None = None
    user: str = ""
    api_key: str = ""
    model: str = "gpt-4o"
    end_user: str | None = None
    status: str | None = "success"
    prompt_tokens: int = 10
    completion_tokens: int = 20
    request_id: str = field(default_factory=lambda: f"test-{uuid.uuid4()}")
    call_id: str | None = None
    tags: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "call_type": "acompletion",
            "api_key": self.api_key,
            "spend": self.spend,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "start_time": self.start,
            "end_time": self.start + timedelta(seconds=1),
            "model": self.model,
            "model_group": self.model,
            "custom_llm_provider": "openai",
            "user": self.user,
            "team_id": self.team_id,
            "end_user": self.end_user,
            "status": self.status,
            "metadata": {},
            "litellm_call_id": self.call_id,
            "request_tags": self.tags,
        }


async def post_spend(api: Api, events: Any) -> dict[str, Any]:
    """LiteLLM's logging callback posting `events` (one or a list) to /spend/litellm, and the spend-log rows LiteLLM
    keeps for them: spendplane writes those itself in embedded mode; beside LiteLLM (on its real schema) LiteLLM's
    spend writer does, so they are inserted here (after the post, as LiteLLM's batched writer lands them), as the
    same payloads map to LiteLLM's columns."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    from resolvers.enforcement.ingestion import parse_batch

    db: Database = api.runtime().db
    master_key = api.runtime().settings.litellm_master_key
    response = await api.client.post("/spend/litellm", json=events, headers={"x-api-key": master_key})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    if on_real_litellm_schema(db.engine.url):
        assert result["recorded"] == 0, result  # production: LiteLLM's table is LiteLLM's to write
        rows = [as_litellm_stores(dict(e.row)) for e in parse_batch(events, master_key)]
        statement = pg_insert(spend_logs).on_conflict_do_nothing().returning(spend_logs.c.request_id)
        async with db.engine.begin() as conn:
            result["recorded"] = len((await conn.execute(statement, rows)).all())
    return result


def as_litellm_writes(row: dict[str, Any]) -> dict[str, Any]:
    """`row` completed with what LiteLLM's spend writer always fills (`get_logging_payload`): completionStartTime
    = endTime for a non-streamed call, request_duration_ms, cache_hit "False", the key's ids in metadata, and
    times to the millisecond."""
    end, start = row["end_time"], row["start_time"]
    metadata = {
        "user_api_key": row.get("api_key") or "",
        "user_api_key_team_id": row.get("team_id"),
        "user_api_key_user_id": row.get("user") or None,
        "status": row.get("status") or "success",
        **(row.get("metadata") or {}),
    }
    filled = {
        "completion_start_time": end,
        "request_duration_ms": int((end - start).total_seconds() * 1000),
        "cache_hit": "False",
        "cache_key": "",
        "model_id": "",
        "api_base": "https://api.openai.com/v1",
        "messages": {},
        "response": {},
        "proxy_server_request": {},
        **row,
        "metadata": metadata,
    }
    return as_litellm_stores(filled)


async def add_spend(db: Database, *logs: SpendLog) -> None:
    """The rows as LiteLLM writes them; on its real schema, with every column its writer fills."""
    rows = [log.row() for log in logs]
    if on_real_litellm_schema(db.engine.url):
        rows = [as_litellm_writes(row) for row in rows]
    async with db.engine.begin() as conn:
        await conn.execute(insert(spend_logs), rows)


async def add_virtual_key(
    db: Database,
    raw_key: str,
    *,
    user_id: str | None,
    team_id: str | None,
    blocked: bool = False,
    expires: datetime | None = None,
    alias: str | None = None,
) -> str:
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(verification_tokens).values(
                token=hash_key(raw_key),
                key_alias=alias,
                user_id=user_id,
                team_id=team_id,
                blocked=blocked,
                expires=expires,
                spend=0.0,
                metadata={},
            )
        )
    return hash_key(raw_key)


@asynccontextmanager
async def graphql_ws(api: Api) -> AsyncIterator[AsyncWebSocketSession]:
    """A graphql-transport-ws connection to the running app (not yet initialised)."""
    transport = ASGIWebSocketTransport(app=api.lifespan_app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://spendplane.test") as client,
        aconnect_ws("/graphql", client, subprotocols=["graphql-transport-ws"]) as ws,
    ):
        yield ws


@asynccontextmanager
async def served(app: Any, *, lifespan: bool = False) -> AsyncIterator[str]:
    """Serve an ASGI app on a free local port in this event loop (a real HTTP server for the code under test)."""
    import asyncio
    import socket

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on" if lifespan else "off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def watching(api: Api, feed: str, count: int = 1) -> None:
    """Wait (at most 5 s) until a live feed has `count` subscribers more than none: a subscribe message is
    registered a moment after it is sent."""
    import asyncio

    for _ in range(500):
        if api.runtime().feeds[feed].watchers >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the {feed} feed never had {count} subscribers")
