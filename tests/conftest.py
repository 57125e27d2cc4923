"""Fixtures: every database-touching test runs on SQLite and on a real PostgreSQL (a fresh database per run), both in
embedded mode, where our migrations create copies of LiteLLM's tables. Tests marked `litellm_tables` run a third
time, on `postgresql-litellm`: LiteLLM's real production schema, built once per session from the migration SQL
that LiteLLM ships (litellm-proxy-extras), with our migrations on top in production mode, as spendplane runs
beside a LiteLLM proxy.

Under CI (CI=true) an unreachable PostgreSQL fails the run instead of skipping its half of the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

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
from tests.support import REAL_SCHEMA_PREFIX, Api, on_real_litellm_schema

PG_ADMIN_URL = os.environ.get("SPENDPLANE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MASTER_KEY = "sk-master-test"
#: The tests' "now": mid-month, so "this month" and "last month" are unambiguous whatever the real date.
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the PostgreSQL half of the suite may not be skipped)")
    pytest.skip(message)


async def _create_pg_database(*, template: str | None = None, prefix: str = "spendplane_test") -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_url(PG_ADMIN_URL)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(admin), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    return name, admin.set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(make_url(PG_ADMIN_URL)), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_pg_database(*, template: str | None = None, prefix: str = "spendplane_test") -> AsyncIterator[Database]:
    """A PostgreSQL database of its own (empty, or a copy of `template`), dropped afterwards."""
    name, url = await _create_pg_database(template=template, prefix=prefix)
    database = open_database(url)
    try:
        yield database
    finally:
        await database.dispose()
        await _drop_pg_database(name)


#: The release of LiteLLM's migrations the real-schema kind is built from (LiteLLM 1.108.7 / 1.110.2 install it).
LITELLM_PROXY_EXTRAS = "0.4.110"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """SQLite and PostgreSQL for every database test; LiteLLM's real schema too for those marked `litellm_tables`
    (skipped there, with its reason, when also marked `embedded_only`)."""
    if "database_url" not in metafunc.fixturenames:
        return
    kinds: list[Any] = [] if metafunc.definition.get_closest_marker("real_schema_only") else ["sqlite", "postgresql"]
    if metafunc.definition.get_closest_marker("litellm_tables"):
        embedded_only = metafunc.definition.get_closest_marker("embedded_only")
        marks = (
            []
            if embedded_only is None
            else [pytest.mark.skip(reason=f"not on LiteLLM's real schema: {embedded_only.args[0]}")]
        )
        kinds.append(pytest.param("postgresql-litellm", marks=marks))
    metafunc.parametrize("database_url", kinds, indirect=True, scope="session")


def litellm_migrations() -> list[Path]:
    """The migration.sql files litellm-proxy-extras ships, in the order prisma applies them (directory names)."""
    spec = importlib.util.find_spec("litellm_proxy_extras")
    if spec is None or not spec.submodule_search_locations:
        _unavailable(f"litellm-proxy-extras=={LITELLM_PROXY_EXTRAS} is not installed (./scripts/install installs it)")
    root = Path(next(iter(spec.submodule_search_locations))) / "migrations"
    found = [d / "migration.sql" for d in root.iterdir() if (d / "migration.sql").is_file()]
    return sorted(found, key=lambda f: f.parent.name)


async def _build_litellm_template() -> str:
    """A template database holding LiteLLM's real production schema: LiteLLM's own migrations (each migration.sql
    as one simple-protocol query, as `psql -f` and prisma run them), the two spend-log indexes LiteLLM builds
    after migrating (`request_log_indexes`), then spendplane's migrations in production mode."""
    from litellm_proxy_extras.request_log_indexes import REQUEST_LOG_INDEXES

    migrations = litellm_migrations()
    name, url = await _create_pg_database(prefix=f"{REAL_SCHEMA_PREFIX}_template")
    try:
        conn = await asyncpg.connect(asyncpg_dsn(make_url(url)), timeout=5)
        try:
            for migration in migrations:
                try:
                    await conn.execute(migration.read_text())
                except asyncpg.PostgresError as exc:
                    raise RuntimeError(f"LiteLLM migration {migration.parent.name} failed: {exc}") from exc
            for index in REQUEST_LOG_INDEXES:
                await conn.execute(f'CREATE INDEX IF NOT EXISTS "{index.name}" ON "{index.table}" {index.definition}')
        finally:
            await conn.close()
        db = open_database(url)
        try:
            await upgrade(db, embedded=False)
        finally:
            await db.dispose()
    except BaseException:
        await _drop_pg_database(name)
        raise
    return name


class LiteLLMTemplate:
    """Built on first use, once per session; each `postgresql-litellm` database is a copy of it."""

    def __init__(self) -> None:
        self.name: str | None = None

    async def get(self) -> str:
        if self.name is None:
            self.name = await _build_litellm_template()
        return self.name


@pytest.fixture(scope="session")
def litellm_template() -> Iterator[LiteLLMTemplate]:
    template = LiteLLMTemplate()
    yield template
    if template.name is not None:
        asyncio.run(_drop_pg_database(template.name))


@pytest.fixture(scope="session")
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, litellm_template: LiteLLMTemplate
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'spendplane.db'}"
        return
    if request.param == "postgresql-litellm":
        template = await litellm_template.get()
        name, url = await _create_pg_database(template=template, prefix=REAL_SCHEMA_PREFIX)
    else:
        name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


@pytest.fixture(scope="session")
async def migrated(database_url: str) -> str:
    db = open_database(database_url)
    try:
        await upgrade(db, embedded=not on_real_litellm_schema(database_url))
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
        # Production mode on LiteLLM's real schema: spendplane reads LiteLLM's tables and never writes them.
        embedded=not on_real_litellm_schema(db.engine.url),
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
