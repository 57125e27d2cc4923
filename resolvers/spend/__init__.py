"""Spend per scope and period, read from LiteLLM_SpendLogs with exact (integer nano-USD) sums."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, cast, false, func, literal_column, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from models.litellm import LiteLLMSchema, spend_logs
from models.types import NANOS_PER_USD, nanos_to_usd
from resolvers.platform.errors import Unavailable
from resolvers.platform.periods import Period


class ScopeKind(StrEnum):
    """What a spend figure is about. Values match budget entity types where they overlap."""

    USER = "user"
    TEAM = "team"
    KEY = "key"
    END_USER = "end_user"
    TAG = "tag"
    GLOBAL = "global"


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    id: str | None = None

    @classmethod
    def global_(cls) -> Scope:
        return cls(ScopeKind.GLOBAL, None)


# The spend-log column each scope is keyed by (LiteLLM's `user` is the key owner's internal user id).
_SCOPE_COLUMN = {
    ScopeKind.USER: "user",
    ScopeKind.TEAM: "team_id",
    ScopeKind.KEY: "api_key",
    ScopeKind.END_USER: "end_user",
}


def spend_nanos(column: ColumnElement[float] = spend_logs.c.spend) -> ColumnElement[int]:
    """Sum of LiteLLM's float `spend`, each row rounded to nano-USD first, so the sum is an exact integer."""
    return func.coalesce(func.sum(cast(func.round(column * NANOS_PER_USD), BigInteger)), 0)


def require_spend_logs(schema: LiteLLMSchema) -> None:
    if not schema.has_table(spend_logs):
        raise Unavailable(
            "LiteLLM_SpendLogs was not found in this database: point DATABASE_URL at the database LiteLLM "
            "uses, or run embedded (SQLite) mode"
        )


async def spend_by_scope(
    session: AsyncSession, schema: LiteLLMSchema, scopes: Iterable[Scope], period: Period
) -> dict[Scope, Decimal]:
    """Spend in `period` for each scope: one grouped query per scope kind, whatever the number of scopes."""
    require_spend_logs(schema)
    wanted: dict[ScopeKind, set[str]] = defaultdict(set)
    result: dict[Scope, Decimal] = {}
    for scope in scopes:
        result[scope] = Decimal(0)
        if scope.kind is not ScopeKind.GLOBAL and scope.id is not None:
            wanted[scope.kind].add(scope.id)
    in_period = (spend_logs.c.start_time >= period.start, spend_logs.c.start_time < period.end)

    if Scope.global_() in result:
        total = (await session.execute(select(spend_nanos()).where(*in_period))).scalar_one()
        result[Scope.global_()] = nanos_to_usd(int(total))
    for kind, ids in wanted.items():
        if kind is ScopeKind.TAG:
            result.update(await _tag_spend(session, schema, sorted(ids), in_period))
            continue
        column = spend_logs.c[_SCOPE_COLUMN[kind]]
        for chunk in chunks(sorted(ids)):
            rows = await session.execute(
                select(column, spend_nanos()).where(*in_period, column.in_(chunk)).group_by(column)
            )
            for key, nanos in rows:
                result[Scope(kind, key)] = nanos_to_usd(int(nanos))
    return result


def tag_values(session: AsyncSession) -> Any:
    """The tags of each spend-log row as a table (`value`): LiteLLM's `request_tags` JSON array."""
    column = spend_logs.c.request_tags
    if session.get_bind().dialect.name == "postgresql":
        return func.jsonb_array_elements_text(cast(column, JSONB)).table_valued("value").render_derived("tag")
    return func.json_each(column).table_valued("value").alias("tag")  # json_each's own `value` column


async def _tag_spend(
    session: AsyncSession, schema: LiteLLMSchema, tags: list[str], in_period: tuple[ColumnElement[bool], ...]
) -> dict[Scope, Decimal]:
    """Spend of requests carrying each tag: a request with several tags counts fully in each (once per tag)."""
    out: dict[Scope, Decimal] = {}
    if not schema.has(spend_logs, "request_tags"):
        return out
    tag = tag_values(session)
    row_nanos = cast(func.round(spend_logs.c.spend * NANOS_PER_USD), BigInteger)
    for chunk in chunks(tags):
        per_request = (
            select(tag.c.value.label("tag"), spend_logs.c.request_id, func.max(row_nanos).label("nanos"))
            .select_from(spend_logs.join(tag, true()))
            .where(*in_period, tag.c.value.in_(chunk))
            .group_by(tag.c.value, spend_logs.c.request_id)
            .subquery()
        )
        rows = await session.execute(
            select(per_request.c.tag, func.sum(per_request.c.nanos)).group_by(per_request.c.tag)
        )
        for name, nanos in rows:
            out[Scope(ScopeKind.TAG, name)] = nanos_to_usd(int(nanos or 0))
    return out


def requested_model(schema: LiteLLMSchema) -> ColumnElement[str]:
    """The model name a request was made for: LiteLLM's `model_group` (the public name or alias the client asked
    for), else `model` (older releases, or rows without a group); '' when neither. What reports group models by
    and failover rules watch."""
    c = spend_logs.c
    # Inline '' (no bind): the expression appears in SELECT and GROUP BY, and asyncpg would bind it twice.
    empty: ColumnElement[str] = literal_column("''")
    if not schema.has(spend_logs, "model_group"):
        return func.coalesce(c.model, empty)
    return func.coalesce(func.nullif(c.model_group, empty), c.model, empty)


GUARDRAIL_INTERVENED = "guardrail_intervened"


def never_ran(error_information: object, status_fields: object = None) -> bool:
    """A failure LiteLLM logged for a request refused before any provider saw it: by a guardrail or a pre-call hook
    (spendplane's own refusals among them) or by the proxy's own checks. LiteLLM still names the provider and model
    the request was for, so only its error says so: the guardrail intervened (`status_fields.guardrail_status`), or
    the error names no provider (`error_information.llm_provider` present and empty). Such a failure ends no hold
    on the ledger and says nothing about the provider's health; `never_ran_sql` is the same rule over a spend-log
    row's `metadata`."""
    if isinstance(status_fields, dict) and status_fields.get("guardrail_status") == GUARDRAIL_INTERVENED:
        return True
    return (
        isinstance(error_information, dict)
        and "llm_provider" in error_information
        and not (error_information["llm_provider"])
    )


def never_ran_sql(schema: LiteLLMSchema, dialect: str) -> ColumnElement[bool]:
    """`never_ran` in SQL over a spend-log row's `metadata` (JSONB on PostgreSQL, JSON text on SQLite), where
    LiteLLM and spendplane's ingestion write `error_information` and `status_fields`: never NULL (a NULL would
    drop the row from both sides of a NOT); false without a metadata column. `llm_provider` counts as empty when
    it is "" or JSON null (present: a missing key says nothing)."""
    if not schema.has(spend_logs, "metadata"):
        return false()
    m = spend_logs.c.metadata
    intervened = func.coalesce(m[("status_fields", "guardrail_status")].as_string(), "") == GUARDRAIL_INTERVENED
    provider = m[("error_information", "llm_provider")]
    # JSON null and a missing key both read as SQL NULL: only the JSON value's type tells them apart.
    kind = (
        func.jsonb_typeof(provider)
        if dialect == "postgresql"
        else func.json_type(m, literal_column("'$.error_information.llm_provider'"))
    )
    nameless = or_(func.coalesce(provider.as_string(), "-") == "", func.coalesce(kind, "") == "null")
    return or_(intervened, nameless)


#: Ids per `IN (...)` list: well below both databases' bind-parameter limits.
IN_CHUNK = 500


def chunks(items: list[str], size: int = IN_CHUNK) -> Iterable[list[str]]:
    """`items` in lists of at most `size`, for IN clauses over any number of ids."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
