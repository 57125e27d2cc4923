"""GET /health: liveness and readiness (database reachable in bounded time, LiteLLM's tables, migrations)."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from models.litellm import spend_logs
from models.migrate import current_revision, head_revision
from webhook.rest import JSON, runtime_of

CHECK_TIMEOUT_SECONDS = 2.0


def _version() -> str:
    try:
        return version("spendplane")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0+source"


async def health(request: Request) -> Response:
    runtime = runtime_of(request)
    started = time.perf_counter()
    database: dict[str, object] = {"dialect": runtime.db.dialect}
    ready = True
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            async with runtime.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            revision = await current_revision(runtime.db)
        database.update(reachable=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))
        migrations = {"current": revision, "head": head_revision()}
        ready = revision == migrations["head"]
    except Exception as exc:  # noqa: BLE001 - health reports any failure; it never raises
        database.update(reachable=False, error=f"{type(exc).__name__}: {exc}"[:300])
        migrations = {"current": None, "head": head_revision()}
        ready = False
    body = {
        "status": "ok" if ready else "unavailable",
        "version": _version(),
        "database": database,
        "migrations": migrations,
        "litellm": {
            "spend_logs": runtime.litellm.has_table(spend_logs),
            "spend_logs_missing_columns": runtime.litellm.missing(spend_logs),
            "embedded": runtime.settings.embedded_mode,
        },
    }
    return JSON(body, status_code=200 if ready else 503)
