"""GET /health: liveness and readiness (database reachable in bounded time, LiteLLM's tables, migrations)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from models.litellm import spend_logs
from models.migrate import current_revision_on, head_revision
from resolvers.service.runtime import Runtime
from webhook.rest import JSON, runtime_of

CHECK_TIMEOUT_SECONDS = 2.0


def _version() -> str:
    try:
        return version("spendplane")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0+source"


#: A probe's answer is reused this long: a flood of GET /health costs one database round trip per second, and
#: never takes more than one pooled connection at a time (concurrent callers share the probe in flight).
PROBE_CACHE_SECONDS = 1.0


@dataclass
class _Probe:
    body: dict[str, object]
    ready: bool
    at: float


@dataclass
class HealthProbe:
    """The last probe's answer and the one in flight (kept on the runtime: one per app)."""

    last: _Probe | None = None
    running: asyncio.Task[_Probe] | None = None
    probes: int = 0


async def health(request: Request) -> Response:
    runtime = runtime_of(request)
    state = runtime.caches.setdefault("health", HealthProbe())
    assert isinstance(state, HealthProbe)
    probe = state.last
    if probe is None or time.monotonic() - probe.at > PROBE_CACHE_SECONDS:
        if state.running is None or state.running.done():
            state.running = asyncio.ensure_future(_probe(runtime))
            state.probes += 1
        probe = state.last = await asyncio.shield(state.running)
    return JSON(probe.body, status_code=200 if probe.ready else 503)


async def _probe(runtime: Runtime) -> _Probe:
    started = time.perf_counter()
    database: dict[str, object] = {"dialect": runtime.db.dialect}
    ready = True
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            async with runtime.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                revision = await current_revision_on(conn)
        database.update(reachable=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))
        migrations = {"current": revision, "head": head_revision()}
        ready = revision == migrations["head"]
    except Exception as exc:  # noqa: BLE001 - health reports any failure; it never raises
        database.update(reachable=False, error=f"{type(exc).__name__}: {exc}"[:300])
        migrations = {"current": None, "head": head_revision()}
        ready = False
    # Serving, but without LiteLLM's spend logs every figure is zero: ready, yet not ok.
    status = ("ok" if runtime.litellm.has_table(spend_logs) else "degraded") if ready else "unavailable"
    body: dict[str, object] = {
        "status": status,
        "version": _version(),
        "database": database,
        "migrations": migrations,
        "litellm": {
            "spend_logs": runtime.litellm.has_table(spend_logs),
            "spend_logs_missing_columns": runtime.litellm.missing(spend_logs),
            "embedded": runtime.settings.embedded_mode,
        },
    }
    return _Probe(body, ready, time.monotonic())
