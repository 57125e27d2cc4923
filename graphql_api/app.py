"""The application: `create_app(settings)` assembles GraphQL and the REST shim on one Starlette app whose
lifespan owns the database engine, the event bus, the instance secrets, the jobs and alert delivery."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypedDict

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from graphql_api.dashboard_routes import dashboard_routes, share_page_paths
from graphql_api.schema import build_schema
from graphql_api.view import GRAPHIQL_ASSETS_PACKAGE, GRAPHIQL_ASSETS_PATH, GraphQLView
from models.db import open_database
from models.litellm import probe_litellm_schema, spend_logs
from models.migrate import upgrade
from resolvers import budgets
from resolvers.alerts import ALERT_TOPIC, Alert, alert_events_since, get_alert
from resolvers.auth import TokenService, ensure_instance_secrets
from resolvers.auth.sessions import TokenGuard
from resolvers.budgets import BudgetState
from resolvers.enforcement import BUDGET_FIGURES_TOPIC, Enforcer, ledger_margin_z
from resolvers.enforcement.ledger import SETTLE_DELAY_REFRESHES, Ledger
from resolvers.instance.first_start import ensure_first_global_budget
from resolvers.notifications import DeliveryWorker
from resolvers.platform.config import Settings
from resolvers.platform.embedded import EmbeddedLock
from resolvers.platform.errors import NotFound
from resolvers.platform.events import Event, event_bus_for
from resolvers.platform.feeds import Feed
from resolvers.platform.jobs import JobRunner
from resolvers.platform.periods import utcnow
from resolvers.predictor.tokens import warm_up as warm_up_tokenizer
from resolvers.pricing import build_price_book, load_overrides
from resolvers.rollups import spend_to_date
from resolvers.service.runtime import Runtime
from resolvers.service.schedule import scheduled_jobs
from resolvers.sla.failover import follow_routes, reload_routes
from resolvers.sla.violations import SLA_VIOLATION_TOPIC, SlaViolation, get_violation
from webhook.rest import EXCEPTION_HANDLERS, MAX_BODY_BYTES, BodyLimit
from webhook.routes import routes as rest_routes
from webhook.throttle import Throttle

log = logging.getLogger("spendplane")

#: Connections of the gateway's own pool (PostgreSQL; a pre-request check needs at most one at a time).
GATEWAY_POOL_SIZE = 5


class State(TypedDict):
    runtime: Runtime
    throttle: Throttle


def _log_admin_key(key: str) -> None:
    log.warning("generated the admin key (shown once, only its hash is stored): %s", key)


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    announce_admin_key: Callable[[str], None] = _log_admin_key,
) -> Starlette:
    schema = build_schema(settings)
    graphql = GraphQLView(
        schema,
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=False,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=timedelta(seconds=10),
        allowed_origins=settings.allowed_origins,
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        max_response_bytes=settings.max_response_bytes,
    )

    throttle = Throttle.from_settings(settings)  # the REST doors that test keys (webhook/throttle.py)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        # One serving process per SQLite file: a second would hand out the same budget from its own memory.
        lock = EmbeddedLock.take(settings.database_url) if settings.embedded_lock else EmbeddedLock(None)
        db = open_database(settings.database_url)
        # The gateway's decisions have their own connections: nothing else (reports, GraphQL, /health floods) can
        # take the ones a pre-request check needs.
        gateway_db = open_database(settings.database_url, pool_size=GATEWAY_POOL_SIZE)
        bus = event_bus_for(db, clock=clock, catch_up=partial(alert_events_since, db))
        stop = asyncio.Event()
        background: list[asyncio.Task[None]] = []
        runtime: Runtime | None = None
        delivery: DeliveryWorker | None = None
        try:
            await upgrade(db, embedded=settings.embedded_mode)
            await bus.start()
            async with db.engine.connect() as conn:
                litellm = await probe_litellm_schema(conn)
            if not litellm.has_table(spend_logs):
                log.warning(
                    "LiteLLM's tables are missing from this database (no %s): spend reads as zero and /health says "
                    "degraded. Point DATABASE_URL at LiteLLM's database, or set SPENDPLANE_EMBEDDED=true",
                    spend_logs.name,
                )
            secrets = await ensure_instance_secrets(
                db, jwt_secret=settings.jwt_secret, master_key=settings.litellm_master_key, now=utcnow()
            )
            if secrets.new_admin_key is not None:
                announce_admin_key(secrets.new_admin_key)
            await ensure_first_global_budget(db, settings, clock())
            async with db.reader() as session:
                prices = build_price_book(settings, await load_overrides(session))
            tokens = TokenService(secrets.jwt_secret, settings.jwt_ttl_seconds, settings.litellm_master_key)
            runtime = Runtime(
                settings=settings,
                db=db,
                litellm=litellm,
                bus=bus,
                tokens=tokens,
                clock=clock,
                prices=prices,
                admin_key_hash=secrets.admin_key_hash,
                guard=TokenGuard(tokens, admin_key_hash=secrets.admin_key_hash),
            )
            await refresh_guard(runtime)
            warm_up_tokenizer()
            ttl = timedelta(seconds=settings.reservation_ttl_seconds)
            runtime.enforcer = Enforcer(
                settings=settings,
                db=gateway_db,
                schema=litellm,
                bus=bus,
                prices=prices,
                history=runtime.history,
                ledger=Ledger(
                    gateway_db,
                    litellm,
                    spend_to_date,
                    clock,
                    ttl,
                    margin_z=ledger_margin_z(settings),
                    settle_delay=timedelta(seconds=SETTLE_DELAY_REFRESHES * settings.spend_refresh_seconds),
                ),
                clock=clock,
                unit_of_work=runtime.work,
            )
            await runtime.enforcer.load()
            await reload_routes(runtime)  # active failover rules route from the first request on
            runtime.feeds = live_feeds(runtime)
            background += [
                asyncio.create_task(runtime.enforcer.run_background(stop)),
                asyncio.create_task(runtime.enforcer.watch_changes(stop)),
                asyncio.create_task(follow_routes(runtime, stop)),
                asyncio.create_task(guard_tokens(runtime, stop)),
                *(asyncio.create_task(feed.run(stop)) for feed in runtime.feeds.values()),
            ]
            runtime.jobs = JobRunner(runtime, scheduled_jobs(settings))
            delivery = DeliveryWorker(runtime)
            if settings.jobs_enabled:
                runtime.jobs.start()
                await delivery.start()
            # Start-up objects (schema, price book, tokenizer) live as long as the process: keep them out of the
            # garbage collector's full scans, which otherwise grow into request-latency pauses.
            gc.freeze()
            # The throttle rides in the lifespan state so the guide's optional listeners share its counts.
            yield {"runtime": runtime, "throttle": throttle}
        finally:
            stop.set()
            if delivery is not None:
                await delivery.stop()
            if runtime is not None and runtime.jobs is not None:
                await runtime.jobs.stop()
            await asyncio.gather(*background, return_exceptions=True)
            if runtime is not None and runtime.enforcer is not None:
                await runtime.enforcer.close()
            await bus.close()
            await gateway_db.dispose()
            await db.dispose()
            lock.release()

    # Outermost but for Starlette's error middleware: a body past the limit is refused before anything reads it.
    middleware = [Middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)]
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["authorization", "content-type", "x-api-key"],
            )
        )
    routes: list[BaseRoute] = [
        *share_page_paths(rest_routes()),
        Route("/graphql", graphql),
        WebSocketRoute("/graphql", graphql),
    ]
    if settings.graphiql:
        # GraphiQL's scripts and styles, vendored: the page works offline (no CDN).
        assets = StaticFiles(packages=[GRAPHIQL_ASSETS_PACKAGE])
        routes.append(Mount(GRAPHIQL_ASSETS_PATH, app=assets, name="graphiql-assets"))
    routes += dashboard_routes()  # the Admin UI at / and its page paths, last: every API route wins first
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )


#: The guide's two other services, served by extra listeners of the same process (`spendplane serve`).
PREDICTOR_PATHS = ("/predict", "/budget/check", "/pricing", "/health")
WEBHOOK_PATHS = ("/webhook/pre-request", "/alerts", "/health")


def create_listener_app(paths: tuple[str, ...], state: dict[str, Any]) -> Any:
    """An ASGI app serving exactly `paths` (as the main app does) on the main app's state: the same runtime,
    engine, jobs and caches. `state` is the main server's lifespan state, filled once that app has started."""
    wanted = set(paths)
    inner = Starlette(
        routes=[r for r in rest_routes() if r.path in wanted],
        middleware=[Middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)],
        exception_handlers=EXCEPTION_HANDLERS,
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["state"] = dict(state)
        await inner(scope, receive, send)

    return app


async def refresh_guard(runtime: Runtime) -> None:
    assert runtime.guard is not None
    await runtime.guard.refresh(runtime.db, runtime.litellm, runtime.clock())
    runtime.admin_key_hash = runtime.guard.admin_key_hash  # the gateway's shared-secret check follows a rotation


async def guard_tokens(runtime: Runtime, stop: asyncio.Event) -> None:
    """Every SPEND_REFRESH_SECONDS: admin key rotations and blocked LiteLLM keys reach this instance."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), runtime.settings.spend_refresh_seconds)
        try:
            await refresh_guard(runtime)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not refresh token revocations (will retry): %s", exc)


def live_feeds(runtime: Runtime) -> dict[str, Feed[Any]]:
    """The subscriptions' feeds: each event's row read once for every subscriber."""

    async def budget(event: Event) -> BudgetState | None:
        async with runtime.read() as session:
            found = await budgets.find_budget(session, event.payload.get("id", ""))
            if found is None:
                return None
            (state,) = await budgets.budget_states(
                session, runtime.litellm, [found], runtime.clock(), runtime.in_flight()
            )
        return state

    async def alert(event: Event) -> Alert | None:
        async with runtime.read() as session:
            return await get_alert(session, event.payload.get("id", ""))

    async def violation(event: Event) -> SlaViolation | None:
        async with runtime.read() as session:
            try:
                return await get_violation(session, event.payload.get("id", ""))
            except NotFound:
                return None

    return {
        "budgets": Feed(runtime.bus, (budgets.BUDGET_TOPIC, BUDGET_FIGURES_TOPIC), budget, "budgets"),
        "alerts": Feed(runtime.bus, (ALERT_TOPIC,), alert, "alerts"),
        "violations": Feed(runtime.bus, (SLA_VIOLATION_TOPIC,), violation, "violations"),
    }


def app_from_env() -> Starlette:
    """For `uvicorn --factory graphql_api.app:app_from_env` (several workers, or an ASGI server of your own)."""
    return create_app(Settings.from_env())
