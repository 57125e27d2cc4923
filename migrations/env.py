"""Alembic environment: runs on a connection handed in by `models.migrate`, or on DATABASE_URL from the CLI."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator

from models.db import normalize_database_url, open_database
from models.tables import include_name, metadata

config = context.config


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    # Revisions store the plain column type (BIGINT for Money, ...), not our Python-side decorators.
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        include_name=include_name,
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_environment() -> None:
    url = normalize_database_url(os.environ.get("DATABASE_URL", "sqlite:///./spendplane.db"))
    config.attributes.setdefault("embedded", url.get_backend_name() == "sqlite")
    db = open_database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(do_run_migrations)
    finally:
        await db.dispose()


connection = config.attributes.get("connection")
if connection is None:
    asyncio.run(_run_from_environment())
else:
    do_run_migrations(connection)
