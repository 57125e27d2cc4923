"""Spend from LiteLLM's logging callback (its StandardLoggingPayload, one object, a list, or NDJSON).

In embedded mode each payload becomes a LiteLLM-compatible spend-log row (idempotent by id); in both modes it
records the request's real cost as a settlement, so the instance holding its reservation releases it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from models.db import insert_or_ignore
from models.litellm import LiteLLMSchema, spend_logs
from models.types import float_to_usd
from resolvers.enforcement import record_settlements, spend_log_key
from resolvers.enforcement.ledger import Ledger, SpendSeen, never_ran
from resolvers.platform.errors import InvalidInput
from resolvers.platform.validation import clipped_id
from resolvers.platform.work import Work

MAX_BATCH = 5_000
#: LiteLLM's integer columns (total_tokens, request_duration_ms) are 32-bit.
MAX_INT32 = 2**31 - 1
_KEEP_METADATA = (
    "user_api_key_alias",
    "user_api_key_team_alias",
    "user_api_key_org_id",
    "user_api_key_user_email",
    "spend_logs_metadata",
    "requester_ip_address",
    "user_agent",
    "applied_guardrails",
    "usage_object",
    "additional_usage_values",
    "attempted_fallbacks",
    "original_model_group",
)


@dataclass(frozen=True)
class SpendEvent:
    request_id: str
    call_id: str
    status: str
    cost: Decimal
    cost_float: float
    row: dict[str, Any]
    #: False for a refusal that never reached a provider (`never_ran`): it ends no hold.
    ran: bool = True


@dataclass(frozen=True)
class IngestResult:
    received: int
    recorded: int
    duplicates: int
    settled: int


def parse_batch(body: Any, master_key: str | None) -> list[SpendEvent]:
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidInput("body", "no spend events in the batch")
    if len(items) > MAX_BATCH:
        raise InvalidInput("body", f"at most {MAX_BATCH} spend events per post")
    return [
        parse_event(item, master_key, f"body[{i}]" if isinstance(body, list) else "body")
        for i, item in enumerate(items)
    ]


def _event_id(value: Any) -> str | None:
    """An event's id: text, or a whole number as its text (JSON's 414.0 is the number 414, as /openapi.json's
    `integer` says); anything else is no id."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return clipped_id(value)


def parse_event(item: Any, master_key: str | None, where: str = "body") -> SpendEvent:
    if not isinstance(item, dict):
        raise InvalidInput(where, "a spend event must be a JSON object (LiteLLM's StandardLoggingPayload)")
    raw_meta = item.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    request_id = _event_id(item.get("id")) or clipped_id(item.get("litellm_call_id"))
    if not request_id:
        raise InvalidInput(f"{where}.id", "is required (the request id LiteLLM logs)")
    call_id = clipped_id(item.get("litellm_call_id")) or request_id
    start = _time(item, "startTime", where, required=True)
    end = _time(item, "endTime", where, required=True)
    assert start is not None
    assert end is not None
    first_token = _time(item, "completionStartTime", where) or end
    cost_float = _number(item, "response_cost", where)
    prompt, completion = _count(item, "prompt_tokens", where), _count(item, "completion_tokens", where)
    status = "failure" if item.get("status") == "failure" else "success"
    raw_error = item.get("error_information")
    error: dict[str, Any] | None = raw_error if isinstance(raw_error, dict) else None
    kept_meta = {k: meta[k] for k in _KEEP_METADATA if meta.get(k) is not None}
    kept_meta["status"] = status
    if error:
        kept_meta["error_information"] = {k: v for k, v in error.items() if k != "traceback"}
    status_fields = item.get("status_fields")
    if isinstance(status_fields, dict):
        kept_meta["status_fields"] = status_fields
    ran = not (status == "failure" and cost_float == 0 and never_ran(error, status_fields))
    kept_meta = _storable(kept_meta)
    tags = item.get("request_tags")
    row = {
        "request_id": request_id,
        "call_type": str(item.get("call_type") or "acompletion")[:64],
        "api_key": _key_hash(meta.get("user_api_key_hash"), master_key),
        "spend": cost_float,
        "total_tokens": _count(item, "total_tokens", where) or min(prompt + completion, MAX_INT32),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "start_time": start,
        "end_time": end,
        "request_duration_ms": min(MAX_INT32, max(0, int((end - start).total_seconds() * 1000))),
        "completion_start_time": first_token,
        "model": _str(item.get("model")),
        "model_id": _str(item.get("model_id")),
        "model_group": _str(item.get("model_group")),
        "custom_llm_provider": _str(item.get("custom_llm_provider")),
        "api_base": _str(item.get("api_base")),
        "user": _str(meta.get("user_api_key_user_id")),
        "metadata": kept_meta,
        "cache_hit": "True" if item.get("cache_hit") is True else "False",
        "cache_key": _str(item.get("cache_key")),
        "request_tags": [_str(t) for t in tags] if isinstance(tags, list) else [],
        "team_id": _str(meta.get("user_api_key_team_id")) or None,
        "organization_id": _str(meta.get("user_api_key_org_id")) or None,
        "end_user": _str(item.get("end_user")) or _str(meta.get("user_api_key_end_user_id")) or None,
        "requester_ip_address": _str(meta.get("requester_ip_address")) or None,
        "session_id": _str(item.get("session_id")) or None,
        "status": status,
        "litellm_call_id": call_id,
        "messages": {},
        "response": {},
    }
    return SpendEvent(request_id, call_id, status, float_to_usd(cost_float), cost_float, row, ran)


async def ingest(
    unit_of_work: Callable[[], AbstractAsyncContextManager[Work]],
    schema: LiteLLMSchema,
    ledger: Ledger,
    events: list[SpendEvent],
    *,
    write_rows: bool,
) -> IngestResult:
    """Write the rows (embedded mode, cost tracking on) and the settlements in one transaction, claiming those an
    open hold on this instance can take, and settle them once it commits (other instances claim the rest on
    their next refresh). A retried post changes nothing: rows and settlements are keyed by request id."""
    recorded = 0
    # A refusal that never ran ends no hold (`never_ran`): its row is recorded, no settlement is stored.
    seen = [
        SpendSeen(e.request_id, e.call_id, str(e.row["api_key"]), e.cost, e.status == "failure")
        for e in events
        if e.ran
    ]
    async with unit_of_work() as work:
        if write_rows:
            columns = {c.key for c in spend_logs.columns if schema.has(spend_logs, c.key)}
            statement = insert_or_ignore(work.dialect, spend_logs).returning(spend_logs.c.request_id)
            rows = [{k: v for k, v in e.row.items() if k in columns} for e in events]
            recorded = len((await work.session.execute(statement, rows)).all())
        unique = _first_of_each(seen)
        # Holds of this instance that these events can end are claimed in the same transaction: no other
        # instance (nor this one's background refresh) can take them first.
        mine = ledger.takers(unique)
        new = await record_settlements(
            work.session, work.dialect, unique, work.now, claimed_by=ledger.instance_id, claimed=mine
        )
    settled = ledger.apply(s for s in mine if s.request_id in new)
    return IngestResult(len(events), recorded, len(events) - recorded if write_rows else 0, settled)


def _first_of_each(seen: list[SpendSeen]) -> list[SpendSeen]:
    """One event per request id (a batch may repeat one)."""
    return list({s.request_id: s for s in reversed(seen)}.values())


def _key_hash(raw: Any, master_key: str | None) -> str:
    """What LiteLLM's spend logs hold: sha256 of the key; its master key logs as sha256(master key)."""
    return spend_log_key(raw if isinstance(raw, str) else None, master_key)


def _str(value: Any) -> str:
    # NUL cannot be stored in PostgreSQL text: LiteLLM never means it, so it is dropped rather than refused.
    return str(value)[:512].replace("\x00", "") if value is not None else ""


def _storable(value: Any) -> Any:
    """JSON as PostgreSQL's jsonb can hold it: NUL dropped from every string, keys included."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_storable(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _time(item: Mapping[str, Any], name: str, where: str, *, required: bool = False) -> datetime | None:
    value = item.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"{where}.{name}", "is required (epoch seconds or an ISO 8601 time)")
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float | Decimal):
            moment = datetime.fromtimestamp(float(value), UTC)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        else:
            raise TypeError
    except (TypeError, ValueError, OverflowError, OSError):
        raise InvalidInput(f"{where}.{name}", "must be epoch seconds or an ISO 8601 time") from None
    if not 2000 <= moment.year <= 2200:
        raise InvalidInput(f"{where}.{name}", "is not a plausible time")
    return moment


def _number(item: Mapping[str, Any], name: str, where: str) -> float:
    value = item.get(name)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidInput(f"{where}.{name}", "must be a number (USD)")
    number = float(value)
    if not 0 <= number <= 1_000_000:
        raise InvalidInput(f"{where}.{name}", "must be from 0 to 1000000 USD")
    return number


def _count(item: Mapping[str, Any], name: str, where: str) -> int:
    value = item.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2_000_000_000:
        raise InvalidInput(f"{where}.{name}", "must be a whole number of tokens from 0 to 2000000000")
    return value
