"""LiteLLM's real production schema (litellm-proxy-extras' migrations, the `postgresql-litellm` kind): our mapping of
its tables matches what LiteLLM creates, and spendplane's migrations in production mode leave its tables alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import Boolean, Float, Integer, String, insert, inspect, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, make_url

from models.db import Database, asyncpg_dsn, open_database
from models.litellm import LITELLM_TABLES, probe_litellm_schema, spend_logs
from models.migrate import current_revision, downgrade, head_revision, upgrade
from models.types import NaiveUTCDateTime
from resolvers.platform.config import Settings
from tests.budgets.test_budgets import create as create_budget
from tests.conftest import (
    NOW,
    Clock,
    LiteLLMTemplate,
    _create_pg_database,
    _drop_pg_database,
    fresh_pg_database,
    litellm_migrations,
    on_real_litellm_schema,
    started,
)
from tests.ledger import cents, refresh
from tests.reports.test_reports import REPORT, SUMMARY
from tests.requests.test_requests import SPEND_LOGS
from tests.support import SpendLog, as_litellm_writes

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
    async with fresh_pg_database(template=await litellm_template.get(), prefix="spendplane_litellm") as database:
        yield database


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


#: The schema LiteLLM created in March 2025 (its baseline migration, around release 1.65): no status, session_id,
#: organization_id, request_duration_ms, litellm_call_id or proxy_server_request on the spend logs.
BASELINE = "20250326162113_baseline"


@pytest.fixture
async def litellm_baseline(real: Database) -> AsyncIterator[Database]:
    """LiteLLM's real schema as of its first migration, with spendplane migrated on top in production mode."""
    name, url = await _create_pg_database(prefix="spendplane_litellm_baseline")
    database = open_database(url)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(make_url(url)), timeout=5)
        try:
            for migration in litellm_migrations():
                if migration.parent.name <= BASELINE:
                    await conn.execute(migration.read_text())
        finally:
            await conn.close()
        await upgrade(database, embedded=False)
        yield database
    finally:
        await database.dispose()
        await _drop_pg_database(name)


async def test_every_reader_works_on_the_schema_an_older_litellm_created(
    litellm_baseline: Database, settings: Settings, clock: Clock
) -> None:
    """Budgets, the request list, reports, the rollup and provider health on LiteLLM's March 2025 schema, whose
    spend logs lack the columns later releases added: figures from what is there, no error for what is not."""
    async with litellm_baseline.engine.connect() as conn:
        schema = await probe_litellm_schema(conn)
    assert {"status", "session_id", "litellm_call_id", "request_duration_ms"} <= set(schema.missing(spend_logs))
    today = NOW.replace(hour=9)
    rows = [
        as_litellm_writes(SpendLog(1.25, today, team_id="eng", user="u1").row()),
        as_litellm_writes(SpendLog(0.75, today + timedelta(minutes=5), team_id="eng", user="u2").row()),
        as_litellm_writes(SpendLog(2.0, NOW.replace(day=2), team_id="ops", model="claude-sonnet-4-5").row()),
        # A failure as such a release logged it: metadata.status only (the status column came later).
        as_litellm_writes(SpendLog(0.0, NOW.replace(day=3), team_id="ops", status="failure").row()),
    ]
    present = schema.columns[spend_logs.name]
    async with litellm_baseline.engine.begin() as conn:
        await conn.execute(
            insert(spend_logs), [{k: v for k, v in r.items() if spend_logs.c[k].name in present} for r in rows]
        )
    async with started(settings, clock, database_url=litellm_baseline.engine.url, embedded=False) as api:
        assert (await api.client.get("/health")).json()["litellm"]["embedded"] is False
        budget = await create_budget(api, entityId="eng", monthlyLimit="100")
        assert Decimal(budget["currentSpend"]) == 2
        page = (await api.data(SPEND_LOGS, {"team": "eng"}))["spendLogs"]
        assert [(e["node"]["status"], e["node"]["latencyMs"]) for e in page["edges"]] == [("success", 1000)] * 2
        await refresh(api)
        report = (await api.data(REPORT, {"period": "MONTHLY"}))["costReport"]
        assert cents(report["totalCost"]) == Decimal("4.00")
        assert (report["totalRequests"], report["totalFailedRequests"]) == (4, 1)
        failed = (await api.data(SPEND_LOGS, {"status": "failure"}))["spendLogs"]["edges"]
        assert [(e["node"]["teamId"], e["node"]["status"]) for e in failed] == [("ops", "failure")]
        assert (await api.data(SUMMARY))["dashboardSummary"]["monthCost"] == "4"
        outcome = await api.runtime().jobs.run("sla-health", tick=NOW)
        assert outcome.ran and outcome.error is None, outcome
