"""The requests behind every figure: LiteLLM_SpendLogs rows, newest first, one cursor page at a time.

Read where LiteLLM writes them. The page walks LiteLLM's own `("startTime", request_id)` index backwards (keyset
pagination, resolvers/platform/pages.py), so the first page and the ten-thousandth cost the same; a key-alias filter is
turned into the keys' hashes and uses the `(api_key, "startTime")` index where LiteLLM has it. A viewer sees its
own team's (or, without a team, its own user's) rows only: the same rule as the reports (`scoped_filters`).
Columns an older LiteLLM lacks come back null.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, literal, null, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from models.litellm import LiteLLMSchema, spend_logs, verification_tokens
from models.types import as_utc, float_to_usd
from resolvers.auth import Principal
from resolvers.platform import validation
from resolvers.platform.errors import InvalidInput
from resolvers.platform.pages import DEFAULT_PAGE, Keyset, Page, empty_page
from resolvers.reports import scoped_filters
from resolvers.spend import require_spend_logs

STATUSES = ("success", "failure")

KEYSET = Keyset("spend_logs", spend_logs.c.start_time, spend_logs.c.request_id)


@dataclass(frozen=True)
class RequestFilters:
    since: datetime | None = None
    until: datetime | None = None
    team_id: str | None = None
    user_id: str | None = None
    key_alias: str | None = None
    model: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class SpendLogEntry:
    request_id: str
    call_type: str
    start_time: datetime
    end_time: datetime
    model: str
    model_group: str | None
    provider: str | None
    team_id: str | None
    user_id: str | None
    key_alias: str | None
    end_user: str | None
    status: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    spend: Decimal
    latency_ms: int | None
    time_to_first_token_ms: int | None
    cache_hit: bool | None
    tags: list[str]


def _utc(field: str, value: datetime | None) -> datetime | None:
    try:
        return as_utc(value) if value is not None else None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 has no UTC time
        raise InvalidInput(field, "is out of range") from None


def _optional(schema: LiteLLMSchema, key: str) -> ColumnElement[Any]:
    column = schema.column(spend_logs, key)
    return (column if column is not None else null()).label(key)


def _status(schema: LiteLLMSchema) -> ColumnElement[Any]:
    """'failure' or anything else (NULL = success): the column, or metadata.status in older releases."""
    statuses: list[ColumnElement[Any]] = []
    if schema.has(spend_logs, "status"):
        statuses.append(spend_logs.c.status)
    if schema.has(spend_logs, "metadata"):
        statuses.append(spend_logs.c["metadata"]["status"].as_string())
    return func.coalesce(*statuses, "") if statuses else literal("")


def _alias_in_metadata(schema: LiteLLMSchema) -> ColumnElement[Any]:
    if schema.has(spend_logs, "metadata"):
        alias: ColumnElement[Any] = spend_logs.c["metadata"]["user_api_key_alias"].as_string()
        return alias.label("metadata_alias")
    return null().label("metadata_alias")


async def spend_log_page(
    session: AsyncSession,
    schema: LiteLLMSchema,
    principal: Principal,
    filters: RequestFilters,
    *,
    first: int = DEFAULT_PAGE,
    after: str | None = None,
) -> Page[SpendLogEntry]:
    require_spend_logs(schema)
    scoped = scoped_filters(principal, team_id=filters.team_id, user_id=filters.user_id, model=filters.model)
    key_alias = validation.identifier("key_alias", filters.key_alias)
    if filters.status is not None and filters.status not in STATUSES:
        raise InvalidInput("status", f"must be one of {', '.join(STATUSES)} (got {filters.status!r})")
    since, until = _utc("since", filters.since), _utc("until", filters.until)
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until", "must be after since")
    c = spend_logs.c
    query = select(
        c.request_id,
        c.call_type,
        c.start_time,
        c.end_time,
        c.model,
        _optional(schema, "model_group"),
        _optional(schema, "custom_llm_provider"),
        _optional(schema, "team_id"),
        _optional(schema, "user"),
        c.api_key,
        _optional(schema, "end_user"),
        _status(schema).label("status"),
        c.prompt_tokens,
        c.completion_tokens,
        c.total_tokens,
        c.spend,
        _optional(schema, "request_duration_ms"),
        _optional(schema, "completion_start_time"),
        _optional(schema, "cache_hit"),
        _optional(schema, "request_tags"),
        _alias_in_metadata(schema),
    )
    where: list[ColumnElement[bool]] = []
    if since is not None:
        where.append(c.start_time >= since)
    if until is not None:
        where.append(c.start_time < until)
    if scoped.team_id is not None:
        where.append(c.team_id == scoped.team_id)
    if scoped.user_id is not None:
        where.append(c.user == scoped.user_id)
    if scoped.model is not None:
        model_group = schema.column(spend_logs, "model_group")
        where.append(
            or_(c.model == scoped.model, model_group == scoped.model)
            if model_group is not None
            else (c.model == scoped.model)
        )
    if filters.status == "failure":
        where.append(_status(schema) == "failure")
    elif filters.status == "success":
        where.append(_status(schema) != "failure")
    if key_alias is not None:
        keys: list[str] = []
        if schema.has(verification_tokens, "key_alias"):
            named = verification_tokens.c.key_alias == key_alias
            keys = list(await session.scalars(select(verification_tokens.c.token).where(named)))
        if not keys:
            return empty_page()
        where.append(c.api_key.in_(keys))
    rows = (await session.execute(KEYSET.apply(query.where(and_(*where)) if where else query, first, after))).all()
    page = KEYSET.page(rows, first, lambda r: (r.start_time, r.request_id))
    aliases = await _key_aliases(session, schema, {r.api_key for r in rows if r.api_key})
    return page.map(lambda r: _entry(r, aliases))


async def _key_aliases(session: AsyncSession, schema: LiteLLMSchema, hashes: set[str]) -> dict[str, str]:
    if not hashes or not schema.has(verification_tokens, "key_alias"):
        return {}
    found = await session.execute(
        select(verification_tokens.c.token, verification_tokens.c.key_alias).where(
            verification_tokens.c.token.in_(sorted(hashes)), verification_tokens.c.key_alias.is_not(None)
        )
    )
    return {token: alias for token, alias in found.all()}


def _millis(start: datetime, end: datetime | None) -> int | None:
    return None if end is None else max(0, round((end - start).total_seconds() * 1000))


def _entry(row: Any, aliases: dict[str, str]) -> SpendLogEntry:
    start, end = as_utc(row.start_time), as_utc(row.end_time)
    first_token = as_utc(row.completion_start_time) if row.completion_start_time is not None else None
    failed = row.status == "failure"
    # LiteLLM sets completionStartTime = endTime for a non-streaming call: no time to first token then.
    ttft = _millis(start, first_token) if first_token is not None and first_token < end and not failed else None
    tags = row.request_tags if isinstance(row.request_tags, list) else []
    cache_hit = {"true": True, "false": False}.get(str(row.cache_hit or "").strip().lower())
    return SpendLogEntry(
        request_id=row.request_id,
        call_type=row.call_type,
        start_time=start,
        end_time=end,
        model=row.model,
        model_group=row.model_group or None,
        provider=row.custom_llm_provider or None,
        team_id=row.team_id or None,
        user_id=row.user or None,
        key_alias=aliases.get(row.api_key) or row.metadata_alias or None,
        end_user=row.end_user or None,
        status="failure" if failed else "success",
        prompt_tokens=int(row.prompt_tokens or 0),
        completion_tokens=int(row.completion_tokens or 0),
        total_tokens=int(row.total_tokens or 0),
        spend=float_to_usd(row.spend),
        latency_ms=int(row.request_duration_ms) if row.request_duration_ms is not None else _millis(start, end),
        time_to_first_token_ms=ttft,
        cache_hit=cache_hit,
        tags=[str(t) for t in tags],
    )
