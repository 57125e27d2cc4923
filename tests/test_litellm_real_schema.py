"""LiteLLM's real production schema (litellm-proxy-extras' migrations, the `postgresql-litellm` kind): our mapping of
its tables matches what LiteLLM creates, and spendplane's migrations in production mode leave its tables alone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Boolean, Float, Integer, String, inspect, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from models.db import Database, open_database
from models.litellm import LITELLM_TABLES, probe_litellm_schema
from models.migrate import current_revision, downgrade, head_revision, upgrade
from models.types import NaiveUTCDateTime
from tests.conftest import LiteLLMTemplate, _create_pg_database, _drop_pg_database, on_real_litellm_schema

pytestmark = [pytest.mark.litellm_tables, pytest.mark.real_schema_only]


@pytest.fixture
def real(db: Database) -> Database:
    assert on_real_litellm_schema(db.engine.url)
    return db


def _columns(conn: Connection) -> dict[str, dict[str, dict[str, object]]]:
    inspector = inspect(conn)
    return {t.name: {c["name"]: c for c in inspector.get_columns(t.name)} for t in LITELLM_TABLES}


async def test_every_column_we_map_exists_with_the_type_litellm_gives_it(real: Database) -> None:
    async with real.engine.connect() as conn:
        schema = await probe_litellm_schema(conn)
        actual = await conn.run_sync(_columns)
    assert {t.name: schema.missing(t) for t in LITELLM_TABLES} == {t.name: [] for t in LITELLM_TABLES}
    families = (
        (NaiveUTCDateTime, "TIMESTAMP"),
        (Float, "DOUBLE"),
        (Integer, "INTEGER"),
        (String, "TEXT"),
        (Boolean, "BOOLEAN"),
    )
    for table in LITELLM_TABLES:
        for column in table.columns:
            real_type = str(actual[table.name][column.name]["type"]).upper()
            ours = column.type.dialect_impl(real.engine.dialect)
            if isinstance(ours, JSONB):
                assert real_type == "JSONB", (table.name, column.name, real_type)
                continue
            expected = next((name for kind, name in families if isinstance(column.type, kind)), None)
            assert expected is not None and real_type.startswith(expected), (table.name, column.name, real_type)


async def test_litellm_timestamps_are_naive_milliseconds(real: Database) -> None:
    async with real.engine.connect() as conn:
        kind = await conn.scalar(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = '\"LiteLLM_SpendLogs\"'::regclass AND attname = 'startTime'"
            )
        )
    assert kind == "timestamp(3) without time zone"


@pytest.fixture
async def copy_of_template(real: Database, litellm_template: LiteLLMTemplate) -> AsyncIterator[Database]:
    name, url = await _create_pg_database(template=await litellm_template.get(), prefix="spendplane_litellm")
    database = open_database(url)
    try:
        yield database
    finally:
        await database.dispose()
        await _drop_pg_database(name)


async def _litellm_tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return {n for n in names if n.startswith("LiteLLM_")}


async def test_our_migrations_down_and_up_in_production_mode_leave_litellm_s_tables_alone(
    copy_of_template: Database,
) -> None:
    before = await _litellm_tables(copy_of_template)
    assert len(before) > 90 and {t.name for t in LITELLM_TABLES} <= before
    assert await current_revision(copy_of_template) == head_revision()
    await downgrade(copy_of_template, embedded=False)
    assert await current_revision(copy_of_template) is None
    assert await _litellm_tables(copy_of_template) == before
    await upgrade(copy_of_template, embedded=False)
    assert await current_revision(copy_of_template) == head_revision()
    assert await _litellm_tables(copy_of_template) == before
