"""Migrations: upgrade, downgrade and upgrade again on both databases; models and migrations agree; LiteLLM's
tables are created only in embedded mode and never diffed; older LiteLLM schemas are tolerated."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from models.db import Database, open_database
from models.litellm import probe_litellm_schema, spend_logs
from models.migrate import current_revision, downgrade, head_revision, upgrade
from models.tables import include_name, metadata
from resolvers.platform.periods import month_of
from resolvers.spend import Scope, ScopeKind, spend_by_scope
from tests.conftest import NOW, fresh_pg_database


@pytest.fixture
async def empty_db(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """A database with nothing in it, of the same kind as the parametrized one."""
    if database_url.startswith("sqlite"):
        database = open_database(f"sqlite:///{tmp_path_factory.mktemp('empty') / 'empty.db'}")
        yield database
        await database.dispose()
        return
    async with fresh_pg_database() as database:
        yield database


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"include_name": include_name, "compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_upgrade_downgrade_upgrade(empty_db: Database) -> None:
    await upgrade(empty_db, embedded=True)
    assert await current_revision(empty_db) == head_revision()
    ours = {t.name for t in metadata.sorted_tables}
    assert ours | {"LiteLLM_SpendLogs", "LiteLLM_VerificationToken"} <= await _tables(empty_db)
    await downgrade(empty_db, embedded=True)
    assert await current_revision(empty_db) is None
    assert not (ours | {"LiteLLM_SpendLogs"}) & await _tables(empty_db)
    await upgrade(empty_db, embedded=True)
    assert await current_revision(empty_db) == head_revision()


async def test_models_and_migrations_agree(empty_db: Database) -> None:
    await upgrade(empty_db, embedded=True)
    async with empty_db.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_outside_embedded_mode_litellm_tables_are_neither_created_nor_dropped(
    empty_db: Database,
) -> None:
    async with empty_db.engine.begin() as conn:
        await conn.execute(text('CREATE TABLE "LiteLLM_SpendLogs" (request_id TEXT PRIMARY KEY, spend FLOAT)'))
    await upgrade(empty_db, embedded=False)
    await downgrade(empty_db, embedded=False)
    assert "LiteLLM_SpendLogs" in await _tables(empty_db)
    await upgrade(empty_db, embedded=False)
    async with empty_db.engine.connect() as conn:
        schema = await probe_litellm_schema(conn)
    assert schema.columns["LiteLLM_SpendLogs"] == {"request_id", "spend"}


async def test_spend_reads_tolerate_an_older_litellm_schema(empty_db: Database) -> None:
    """A SpendLogs table as an early-2025 LiteLLM created it: no status, session_id, litellm_call_id,
    organization_id, request_duration_ms or proxy_server_request columns."""
    timestamp = "TIMESTAMP(3)" if empty_db.is_postgres else "DATETIME"
    async with empty_db.engine.begin() as conn:
        await conn.execute(
            text(f"""CREATE TABLE "LiteLLM_SpendLogs" (
            "request_id" TEXT PRIMARY KEY, "call_type" TEXT NOT NULL, "api_key" TEXT NOT NULL DEFAULT '',
            "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0, "total_tokens" INTEGER NOT NULL DEFAULT 0,
            "prompt_tokens" INTEGER NOT NULL DEFAULT 0, "completion_tokens" INTEGER NOT NULL DEFAULT 0,
            "startTime" {timestamp} NOT NULL, "endTime" {timestamp} NOT NULL, "completionStartTime" {timestamp},
            "model" TEXT NOT NULL DEFAULT '', "model_id" TEXT DEFAULT '', "model_group" TEXT DEFAULT '',
            "custom_llm_provider" TEXT DEFAULT '', "api_base" TEXT DEFAULT '', "user" TEXT DEFAULT '',
            "cache_hit" TEXT DEFAULT '', "cache_key" TEXT DEFAULT '', "team_id" TEXT, "end_user" TEXT,
            "requester_ip_address" TEXT)""")
        )
        await conn.execute(
            text("""INSERT INTO "LiteLLM_SpendLogs" ("request_id", "call_type", "spend",
            "startTime", "endTime", "team_id") VALUES ('r1', 'acompletion', 1.25, :t, :t, 'eng')"""),
            {"t": NOW.replace(tzinfo=None)},
        )
    await upgrade(empty_db, embedded=False)
    async with empty_db.engine.connect() as conn:
        schema = await probe_litellm_schema(conn)
    assert {"status", "session_id", "litellm_call_id"} <= set(schema.missing(spend_logs))
    assert not schema.has(spend_logs, "status")
    async with empty_db.reader() as session:
        spend = await spend_by_scope(session, schema, [Scope(ScopeKind.TEAM, "eng"), Scope.global_()], month_of(NOW))
    assert spend[Scope(ScopeKind.TEAM, "eng")] == spend[Scope.global_()] == 1.25


async def test_existing_budgets_become_monthly_utc_budgets_with_unchanged_figures(empty_db: Database) -> None:
    """A budget made before windows existed (revision 0006) is, after the upgrade, a monthly budget in UTC
    starting on the 1st with the same limit; downgrading keeps it, and refuses while a daily budget exists."""
    from datetime import timedelta
    from decimal import Decimal

    from sqlalchemy import select

    from models.budgets import BudgetRow
    from resolvers.budgets import Budget
    from resolvers.platform.periods import Cadence, Window

    await upgrade(empty_db, embedded=True, revision="0006")
    async with empty_db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO spendplane_budgets (id, name, entity_type, entity_id, monthly_limit, soft_limit_percent,"
                " hard_limit_percent, alert_email, created_at, updated_at) VALUES ('00000000-0000-4000-8000-"
                "000000000001', 'Eng', 'team', 'eng', 500000000000, 800000, 1000000, NULL, :t, :t)"
            ),
            {"t": NOW},
        )
    await upgrade(empty_db, embedded=True)
    async with empty_db.reader() as session:
        (row,) = (await session.scalars(select(BudgetRow))).all()
        budget = Budget.from_row(row)
    assert budget.window == Window() and budget.window.cadence is Cadence.MONTHLY
    assert (budget.limit, budget.monthly_limit, budget.hard_limit) == (Decimal(500), Decimal(500), Decimal(500))
    async with empty_db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO spendplane_budgets (id, name, entity_type, entity_id, period, spend_limit,"
                " soft_limit_percent, hard_limit_percent, created_at, updated_at) VALUES ('00000000-0000-4000-8000-"
                "000000000002', 'Eng daily', 'team', 'eng', 'daily', 50000000000, 800000, 1000000, :t, :t)"
            ),
            {"t": NOW + timedelta(seconds=1)},
        )
    with pytest.raises(RuntimeError, match="not calendar-month UTC budgets"):
        await downgrade(empty_db, embedded=True, revision="0006")
    async with empty_db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM spendplane_budgets WHERE period = 'daily'"))
    await downgrade(empty_db, embedded=True, revision="0006")
    async with empty_db.engine.connect() as conn:
        kept = (await conn.execute(text("SELECT name, monthly_limit FROM spendplane_budgets"))).all()
    assert [(name, int(limit)) for name, limit in kept] == [("Eng", 500_000_000_000)]


async def test_the_first_starts_global_budget_gets_its_soft_limit_amount_back(empty_db: Database) -> None:
    """A global budget a first start created before 0013 (soft $1,000 of $1,500 stored as 0.666666: it warned at
    $999.999) warns at $1,000 after the upgrade; one the admin edited is left as it is."""
    from decimal import Decimal

    from sqlalchemy import select

    from models.budgets import BudgetRow
    from resolvers.budgets import Budget

    await upgrade(empty_db, embedded=True, revision="0012_zones")
    insert = (
        "INSERT INTO spendplane_budgets (id, name, entity_type, entity_id, period, spend_limit, soft_limit_percent,"
        " hard_limit_percent, created_at, updated_at) VALUES (:id, :name, 'global', '', :period, :limit, 666666,"
        " 1000000, :t, :t)"
    )
    async with empty_db.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO spendplane_instance_secrets (name, value, created_at) VALUES (:n, :v, :t)"),
            {"n": "first_global_budget", "v": "1500/1000", "t": NOW},
        )
        for budget_id, name, period, limit in (
            ("00000000-0000-4000-8000-000000000001", "Global Monthly Budget", "monthly", 1_500_000_000_000),
            ("00000000-0000-4000-8000-000000000002", "Global Monthly Budget", "weekly", 2_000_000_000_000),
        ):
            await conn.execute(
                text(insert), {"id": budget_id, "name": name, "period": period, "limit": limit, "t": NOW}
            )
    await upgrade(empty_db, embedded=True)
    async with empty_db.reader() as session:
        rows = (await session.scalars(select(BudgetRow).order_by(BudgetRow.id))).all()
        budgets = [Budget.from_row(row) for row in rows]
    assert [(b.soft_limit, b.soft_limit_percent) for b in budgets] == [
        (Decimal(1000), Decimal("0.666666")),
        (Decimal("1333.332"), Decimal("0.666666")),  # not as the first start made it: left alone
    ]
    await downgrade(empty_db, embedded=True, revision="0012_zones")
    await upgrade(empty_db, embedded=True)
