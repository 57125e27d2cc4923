"""Requests in GraphQL: `spendLogs`, the LiteLLM_SpendLogs rows behind every figure, one cursor page at a time."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from graphql_api.context import Info
from graphql_api.pagination import After, Connection, First, connection
from resolvers import requests
from resolvers.platform.pages import DEFAULT_PAGE
from resolvers.requests import RequestFilters, SpendLogEntry


@strawberry.type(name="SpendLog", description="One request as LiteLLM logged it (LiteLLM_SpendLogs).")
class SpendLogView:
    request_id: str
    call_type: str
    start_time: datetime
    end_time: datetime
    model: str = strawberry.field(description="The model LiteLLM called.")
    model_group: str | None = strawberry.field(description="The model name the client asked for.")
    provider: str | None
    team_id: str | None
    user_id: str | None = strawberry.field(description="The key owner's LiteLLM user id.")
    key_alias: str | None
    end_user: str | None = strawberry.field(description="The request's `user` field (the customer).")
    status: str = strawberry.field(description="success or failure (rows without a status count as success).")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    spend: Decimal = strawberry.field(description="USD, as LiteLLM recorded it.")
    latency_ms: int | None = strawberry.field(description="endTime - startTime (or LiteLLM's request_duration_ms).")
    time_to_first_token_ms: int | None = strawberry.field(description="Streaming calls only.")
    cache_hit: bool | None = strawberry.field(description="LiteLLM's response cache (not provider prompt caching).")
    tags: list[str]

    @classmethod
    def from_domain(cls, entry: SpendLogEntry) -> SpendLogView:
        return cls(**{name: getattr(entry, name) for name in entry.__dataclass_fields__})


@strawberry.type
class RequestQueries:
    @strawberry.field(
        description="The spend logs, newest first, a cursor page at a time. A viewer sees its own team's (or "
        "user's) requests only. `since` is inclusive, `until` exclusive; `model` matches the model or its group; "
        "`status` is success or failure."
    )
    async def spend_logs(
        self,
        info: Info,
        first: First = DEFAULT_PAGE,
        after: After = None,
        since: datetime | None = None,
        until: datetime | None = None,
        team_id: str | None = None,
        user_id: str | None = None,
        key_alias: str | None = None,
        model: str | None = None,
        status: str | None = None,
    ) -> Connection[SpendLogView]:
        runtime, principal = info.context.runtime, info.context.caller()
        filters = RequestFilters(since, until, team_id, user_id, key_alias, model, status)
        async with runtime.read() as session:
            page = await requests.spend_log_page(session, runtime.litellm, principal, filters, first=first, after=after)
        return connection(page, SpendLogView.from_domain)
