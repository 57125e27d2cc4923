"""The application: `create_app(settings)` assembles GraphQL and the REST shim on one Starlette app whose
lifespan owns the database engine, the event bus, the instance secrets, the jobs and alert delivery."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import TypedDict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route, WebSocketRoute
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from graphql_api.schema import build_schema
from graphql_api.view import GraphQLView
from models.db import open_database
from models.litellm import probe_litellm_schema
from models.migrate import upgrade
from resolvers.alerts import alert_events_since
from resolvers.auth import TokenService, ensure_instance_secrets
from resolvers.config import Settings
from resolvers.delivery import DeliveryWorker
from resolvers.enforcement import Enforcer
from resolvers.events import event_bus_for
from resolvers.jobs import JobRunner
from resolvers.ledger import Ledger
from resolvers.periods import utcnow
from resolvers.pricing import build_price_book, load_overrides
from resolvers.rollups import spend_to_date
from resolvers.runtime import Runtime
from resolvers.schedule import scheduled_jobs
from resolvers.sla.failover import follow_routes, reload_routes
from resolvers.tokens import warm_up as warm_up_tokenizer
from webhook.rest import EXCEPTION_HANDLERS
from webhook.routes import routes as rest_routes

log = logging.getLogger("spendplane")

#: Backstop for every request body, GraphQL included (REST routes have their own, JSON-speaking limit).
MAX_BODY_BYTES = 32 * 1024 * 1024


class State(TypedDict):
    runtime: Runtime


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
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        db = open_database(settings.database_url)
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
            secrets = await ensure_instance_secrets(
                db, jwt_secret=settings.jwt_secret, master_key=settings.litellm_master_key, now=utcnow()
            )
            if secrets.new_admin_key is not None:
                announce_admin_key(secrets.new_admin_key)
            async with db.reader() as session:
                prices = build_price_book(settings, await load_overrides(session))
            runtime = Runtime(
                settings=settings,
                db=db,
                litellm=litellm,
                bus=bus,
                tokens=TokenService(secrets.jwt_secret, settings.jwt_ttl_seconds),
                clock=clock,
                prices=prices,
                admin_key_hash=secrets.admin_key_hash,
            )
            warm_up_tokenizer()
            runtime.enforcer = Enforcer(
                settings=settings,
                db=db,
                schema=litellm,
                bus=bus,
                prices=prices,
                history=runtime.history,
                ledger=Ledger(db, litellm, spend_to_date, clock, timedelta(seconds=settings.reservation_ttl_seconds)),
                clock=clock,
                unit_of_work=runtime.work,
            )
            await runtime.enforcer.load()
            await reload_routes(runtime)  # active failover rules route from the first request on
            background += [
                asyncio.create_task(runtime.enforcer.run_background(stop)),
                asyncio.create_task(runtime.enforcer.watch_changes(stop)),
                asyncio.create_task(follow_routes(runtime, stop)),
            ]
            runtime.jobs = JobRunner(runtime, scheduled_jobs(settings))
            delivery = DeliveryWorker(runtime)
            if settings.jobs_enabled:
                runtime.jobs.start()
                await delivery.start()
            # Start-up objects (schema, price book, tokenizer) live as long as the process: keep them out of the
            # garbage collector's full scans, which otherwise grow into request-latency pauses.
            gc.freeze()
            yield {"runtime": runtime}
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
            await db.dispose()

    middleware = []
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["authorization", "content-type", "x-api-key"],
            )
        )
    return Starlette(
        routes=[*rest_routes(), Route("/graphql", graphql), WebSocketRoute("/graphql", graphql)],
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )


def app_from_env() -> Starlette:
    """For `uvicorn --factory graphql_api.app:app_from_env` (several workers, or an ASGI server of your own)."""
    return create_app(Settings.from_env())
