"""`instance`: the Settings page's panel (version, database, migrations, rollup watermark), for admins only."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import text

from models.db import Database
from models.migrate import head_revision
from resolvers.rollups import refresh_rollups
from tests.conftest import NOW
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

INSTANCE = """query { instance { version databaseDialect migrationRevision migrationHead migrationsCurrent
  rollupWatermark startedAt } }"""


async def test_the_instance_panel_names_version_database_and_migrations(api: Api, db: Database) -> None:
    before = datetime.now().astimezone()
    found = (await api.data(INSTANCE))["instance"]
    assert found["databaseDialect"] == db.engine.dialect.name
    assert found["migrationRevision"] == found["migrationHead"] == head_revision()
    assert found["migrationsCurrent"] is True
    assert found["version"]
    assert found["rollupWatermark"] is None  # nothing rolled up yet
    started = datetime.fromisoformat(found["startedAt"])
    assert started.utcoffset() == timedelta(0)
    assert before - timedelta(minutes=5) < started <= datetime.now().astimezone()


async def test_the_rollup_watermark_follows_the_rollup(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(1.0, NOW - timedelta(days=3), team_id="eng"))
    await refresh_rollups(db, api.runtime().litellm, NOW, recheck_days=7)
    assert (await api.data(INSTANCE))["instance"]["rollupWatermark"] == date(2026, 11, 15).isoformat()


async def test_a_database_behind_the_code_is_not_current(api: Api, db: Database) -> None:
    head = head_revision()
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0007'"))
    try:
        found = (await api.data(INSTANCE))["instance"]
        assert (found["migrationRevision"], found["migrationHead"], found["migrationsCurrent"]) == ("0007", head, False)
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})


async def test_a_viewer_may_not_read_the_instance_panel(api: Api, db: Database) -> None:
    await add_virtual_key(db, "sk-viewer", user_id="u", team_id="eng")
    token = await api.login("sk-viewer")
    error = await api.error(INSTANCE, token=token)
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert (await api.error(INSTANCE, token=None))["extensions"]["code"] == "UNAUTHENTICATED"
