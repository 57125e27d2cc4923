"""Fixtures: every database-touching test runs on SQLite and on a real PostgreSQL (a fresh database per run).

Under CI (CI=true) an unreachable PostgreSQL fails the run instead of skipping its half of the suite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import delete, update
from sqlalchemy.engine import make_url

from graphql_api.app import create_app
from models.db import Database, asyncpg_dsn, open_database
from models.instance import FeatureSettingsRow
from models.litellm import LITELLM_TABLES
from models.migrate import upgrade
from models.tables import metadata
from resolvers.platform.config import Settings
from tests.support import Api

PG_ADMIN_URL = os.environ.get("SPENDPLANE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MASTER_KEY = "sk-master-test"
#: The tests' "now": mid-month, so "this month" and "last month" are unambiguous whatever the real date.
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


async def _create_pg_database() -> tuple[str, str]:
    name = f"spendplane_test_{uuid.uuid4().hex[:10]}"
    admin = make_url(PG_ADMIN_URL)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(admin), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL half of the suite may not be skipped)")
        pytest.skip(message)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, admin.set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(make_url(PG_ADMIN_URL)), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'spendplane.db'}"
        return
    name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


@pytest.fixture(scope="session")
async def migrated(database_url: str) -> str:
    db = open_database(database_url)
    try:
        await upgrade(db, embedded=True)
    finally:
        await db.dispose()
    return database_url


@pytest.fixture
async def db(migrated: str) -> AsyncIterator[Database]:
    """The test database, emptied of every row a previous test left behind."""
    database = open_database(migrated)
    async with database.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != FeatureSettingsRow.__tablename__:
                await conn.execute(delete(table))
        await conn.execute(
            update(FeatureSettingsRow).values(cost_tracking_enabled=True, budget_enforcement_enabled=True)
        )
        for litellm_table in LITELLM_TABLES:
            await conn.execute(delete(litellm_table))
    try:
        yield database
    finally:
        await database.dispose()


FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def settings(db: Database, tmp_path: Path) -> Settings:
    # No price-map URL: nothing in the suite touches the network. Spend refreshes quickly so tests need not wait.
    return Settings(
        database_url=db.engine.url,
        litellm_master_key=MASTER_KEY,
        embedded=True,
        price_map_cache=str(tmp_path / "price-map.json"),
        spend_refresh_seconds=0.2,
        # The suite's webhook receivers listen on 127.0.0.1 (tests/receivers.py); tests of the refusal turn it off.
        allow_private_webhooks=True,
    )


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


AppFactory = Callable[..., Any]


@pytest.fixture
async def api(settings: Settings, clock: Clock) -> AsyncIterator[Api]:
    """A running app (lifespan entered) with an HTTP client and the admin's token."""
    async with started(settings, clock) as running:
        yield running


class started:
    """`async with started(settings, clock, **overrides) as api:` runs one app instance."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime], **overrides: Any) -> None:
        self.settings = replace(settings, **overrides)
        self.app = create_app(self.settings, clock=clock, announce_admin_key=self._keep)
        self.admin_key: str | None = None

    def _keep(self, key: str) -> None:
        self.admin_key = key

    async def __aenter__(self) -> Api:
        self._lifespan = LifespanManager(self.app)
        await self._lifespan.__aenter__()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._lifespan.app), base_url="http://spendplane.test"
        )
        api = Api(self._client, self.app, self.admin_key, self._lifespan.app, self._lifespan._state)
        admin_key = self.settings.litellm_master_key or self.admin_key
        if admin_key is not None:
            api.admin_token = await api.login(admin_key)
        return api

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._lifespan.__aexit__(*exc)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
async def sla_api(settings: Settings, clock: Clock) -> AsyncIterator[Api]:
    """SLA monitoring: the app with its periodic jobs off, so each test runs the health collector itself at the
    ticks it chooses (and sends alert deliveries when it wants them)."""
    async with started(settings, clock, jobs_enabled=False) as running:
        yield running
