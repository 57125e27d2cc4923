"""LiteLLM's tables, mapped with their exact (mixed-case, quoted) names in a MetaData of their own.

spendplane reads them where LiteLLM writes them (its PostgreSQL database). Only in embedded mode do our
migrations create LiteLLM-compatible copies, so the same queries run on SQLite. Older LiteLLM releases lack
some columns; `LiteLLMSchema` records which ones exist so queries can leave missing ones out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    inspect,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from models.base import litellm_metadata
from models.types import NaiveUTCDateTime

Json = JSON().with_variant(JSONB(), "postgresql")

spend_logs = Table(
    "LiteLLM_SpendLogs",
    litellm_metadata,
    Column("request_id", String, primary_key=True),
    Column("call_type", String, nullable=False),
    Column("api_key", String, nullable=False, server_default=""),
    Column("spend", Float, nullable=False, server_default="0"),
    Column("total_tokens", Integer, nullable=False, server_default="0"),
    Column("prompt_tokens", Integer, nullable=False, server_default="0"),
    Column("completion_tokens", Integer, nullable=False, server_default="0"),
    Column("startTime", NaiveUTCDateTime, nullable=False, key="start_time"),
    Column("endTime", NaiveUTCDateTime, nullable=False, key="end_time"),
    Column("request_duration_ms", Integer),
    Column("completionStartTime", NaiveUTCDateTime, key="completion_start_time"),
    Column("model", String, nullable=False, server_default=""),
    Column("model_id", String, server_default=""),
    Column("model_group", String, server_default=""),
    Column("custom_llm_provider", String, server_default=""),
    Column("api_base", String, server_default=""),
    Column("user", String, server_default=""),
    Column("metadata", Json),
    Column("cache_hit", String, server_default=""),
    Column("cache_key", String, server_default=""),
    Column("request_tags", Json),
    Column("team_id", String),
    Column("organization_id", String),
    Column("end_user", String),
    Column("requester_ip_address", String),
    Column("messages", Json),
    Column("response", Json),
    Column("session_id", String),
    Column("status", String),
    Column("proxy_server_request", Json),
    Column("litellm_call_id", String),
    Index("LiteLLM_SpendLogs_startTime_idx", "start_time"),
    Index("LiteLLM_SpendLogs_startTime_request_id_idx", "start_time", "request_id"),
    Index("LiteLLM_SpendLogs_end_user_idx", "end_user"),
    Index("LiteLLM_SpendLogs_api_key_startTime_idx", "api_key", "start_time"),
    Index("LiteLLM_SpendLogs_litellm_call_id_idx", "litellm_call_id"),
)

verification_tokens = Table(
    "LiteLLM_VerificationToken",
    litellm_metadata,
    Column("token", String, primary_key=True),
    Column("key_name", String),
    Column("key_alias", String),
    Column("spend", Float, nullable=False, server_default="0"),
    Column("expires", NaiveUTCDateTime),
    Column("user_id", String),
    Column("team_id", String),
    Column("blocked", Boolean),
    Column("max_budget", Float),
    Column("budget_duration", String),
    Column("metadata", Json),
    Column("created_at", NaiveUTCDateTime),
)

teams = Table(
    "LiteLLM_TeamTable",
    litellm_metadata,
    Column("team_id", String, primary_key=True),
    Column("team_alias", String),
    Column("max_budget", Float),
    Column("soft_budget", Float),
    Column("spend", Float, nullable=False, server_default="0"),
    Column("metadata", Json),
)

users = Table(
    "LiteLLM_UserTable",
    litellm_metadata,
    Column("user_id", String, primary_key=True),
    Column("user_alias", String),
    Column("user_email", String),
    Column("team_id", String),
    Column("max_budget", Float),
    Column("spend", Float, nullable=False, server_default="0"),
)

LITELLM_TABLES = (spend_logs, verification_tokens, teams, users)


@dataclass(frozen=True)
class LiteLLMSchema:
    """Which LiteLLM tables and columns this database actually has (names as in the database)."""

    columns: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def has_table(self, table: Table) -> bool:
        return table.name in self.columns

    def has(self, table: Table, column_key: str) -> bool:
        return table.c[column_key].name in self.columns.get(table.name, frozenset())

    def column(self, table: Table, column_key: str) -> ColumnElement[object] | None:
        """The column when this release of LiteLLM has it, else None (callers pick a fallback)."""
        return table.c[column_key] if self.has(table, column_key) else None

    def missing(self, table: Table) -> list[str]:
        present = self.columns.get(table.name, frozenset())
        return [c.name for c in table.columns if c.name not in present]


async def probe_litellm_schema(conn: AsyncConnection) -> LiteLLMSchema:
    def _probe(sync_conn: object) -> dict[str, frozenset[str]]:
        inspector = inspect(sync_conn)
        existing = set(inspector.get_table_names())
        return {
            t.name: frozenset(c["name"] for c in inspector.get_columns(t.name))
            for t in LITELLM_TABLES
            if t.name in existing
        }

    return LiteLLMSchema(columns=await conn.run_sync(_probe))


def create_embedded_tables(sync_conn: object) -> None:
    """Embedded mode only: create LiteLLM-compatible tables, and add columns a newer mapping knows.

    Idempotent, so a later migration can call it again after the mapping grows a column.
    """
    from sqlalchemy import text
    from sqlalchemy.engine import Connection

    assert isinstance(sync_conn, Connection)
    litellm_metadata.create_all(sync_conn, checkfirst=True)
    inspector = inspect(sync_conn)
    preparer = sync_conn.dialect.identifier_preparer
    for table in LITELLM_TABLES:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                ddl_type = column.type.compile(dialect=sync_conn.dialect)
                sync_conn.execute(
                    text(
                        f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {preparer.quote(column.name)} {ddl_type}"
                    )
                )


def drop_embedded_tables(sync_conn: object) -> None:
    from sqlalchemy.engine import Connection

    assert isinstance(sync_conn, Connection)
    litellm_metadata.drop_all(sync_conn, checkfirst=True)
