"""Run Alembic migrations in-process on the service's own engine (used by the CLI, the app and tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from models.db import Database

# One number for every replica: concurrent `serve` starts on PostgreSQL take turns.
_MIGRATION_LOCK = 0x5350454E44  # "SPEND"


def _script_location() -> str:
    spec = importlib.util.find_spec("migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the migrations package is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))))


def alembic_config(*, embedded: bool) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    cfg.attributes["embedded"] = embedded
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config(embedded=False)).get_current_head()
    assert head is not None
    return head


async def _run(db: Database, embedded: bool, action: str, revision: str) -> None:
    cfg = alembic_config(embedded=embedded)

    def _apply(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_apply)


async def upgrade(db: Database, *, embedded: bool, revision: str = "head") -> None:
    await _run(db, embedded, "upgrade", revision)


async def downgrade(db: Database, *, embedded: bool, revision: str = "base") -> None:
    await _run(db, embedded, "downgrade", revision)


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await current_revision_on(conn)


async def current_revision_on(conn: AsyncConnection) -> str | None:
    return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
