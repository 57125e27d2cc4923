"""What LiteLLM calls: the pre-request budget webhook, its Generic Guardrail API, and spend ingestion.

All three authenticate with the shared secret in `x-api-key` and run on the same decision engine. The webhook
answers 200 (allow, with a warning past the soft limit) or 429 (block) with the budget named; the Guardrail API
always answers 200 with NONE or BLOCKED, because any other status reaches LiteLLM's client as an HTTP 500.

What LiteLLM relays to its client (the key's holder) is written for that holder (`Enforcer.told_to_holder`, i.e.
`explain` with the holder as viewer): the guardrail's `blocked_reason` and the webhook's `client_message`, which
the plugin puts in the client's 429. The webhook's other fields (`warning`, `error.message`, the budgets with
their figures) are the operator's: the gateway reads them with the webhook key and never forwards them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from starlette.requests import Request
from starlette.responses import Response

from resolvers.alerts import AlertType
from resolvers.enforcement import Admission, BudgetCheck, Caller, Decision, Verdict
from resolvers.enforcement.ingestion import ingest, parse_batch
from resolvers.instance.features import get_features
from resolvers.platform.validation import clipped, clipped_id
from webhook.machines import require_gateway
from webhook.rest import JSON, parse_json, read_json, read_model, runtime_of


def _prompt(value: Any) -> str | int | None:
    """OpenAI's completions take a string, a list of strings, or token ids (a list of them, or a list of such
    lists): the text, or for token ids how many there are (each one an input token the provider bills)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    if isinstance(value, list):
        ids = [v for v in value if _token_id(v)] + [i for v in value if isinstance(v, list) for i in v if _token_id(i)]
        return len(ids) or None
    return None


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _max_tokens(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return min(value, 10_000_000)


def _messages(value: Any) -> list[dict[str, Any]] | None:
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else None


def _texts(value: Any) -> list[str] | None:
    return [t for t in value if isinstance(t, str)] if isinstance(value, list) else None


def tags_of(*sources: Any) -> tuple[str, ...]:
    """Request tags as LiteLLM carries them: a list (`tags`, `metadata.tags`, `request_tags`) or the
    `x-litellm-tags` header's comma-separated text; clipped, deduplicated, in order. None is dropped: the spend
    logs count a request against every tag it carries, so every one is judged (a tag budget's tag sent after
    many others would otherwise escape its budget)."""
    found: dict[str, None] = {}
    for source in sources:
        values = source.split(",") if isinstance(source, str) else source if isinstance(source, list) else []
        for value in values:
            tag = clipped(value.strip()) if isinstance(value, str) else None
            if tag:
                found[tag] = None
    return tuple(found)


# What a client controls reaches these models through the gateway, so nothing in it is refused (a 400 would let a
# client fail the check open): names are clipped, odd values left out. Only the gateway's own fields are strict.
# The document says so: any JSON value is accepted in these fields.
_ANY = WithJsonSchema({"description": "any JSON value; one of the expected type is read, anything else ignored"})
Name = Annotated[str | None, BeforeValidator(clipped), _ANY]
CallId = Annotated[str | None, BeforeValidator(clipped_id), _ANY]
KeyText = Annotated[str | None, BeforeValidator(lambda v: clipped(v, limit=1024)), _ANY]
Prompt = Annotated[str | int | None, BeforeValidator(_prompt), _ANY]
MaxTokens = Annotated[int | None, BeforeValidator(_max_tokens), _ANY]
Messages = Annotated[list[dict[str, Any]] | None, BeforeValidator(_messages), _ANY]
Texts = Annotated[list[str] | None, BeforeValidator(_texts), _ANY]


class PreRequest(BaseModel):
    """LiteLLM's pre-call data, as spendplane's plugin (or any gateway) sends it. Every field is optional: a
    request with no identity falls under the global budget only. Client-supplied values are clipped, never
    refused (ids and names to 256 characters, max_tokens to 10 million)."""

    model_config = ConfigDict(extra="ignore")
    litellm_call_id: CallId = None
    call_id: CallId = None
    request_id: CallId = None
    api_key: KeyText = Field(default=None, description="The raw key or its sha256.")
    api_key_hash: Name = None
    user_api_key_hash: Name = None
    user_id: Name = None
    user: Name = None
    team_id: Name = None
    end_user_id: Name = None
    end_user: Name = None
    model: Name = None
    messages: Messages = Field(default=None, description="OpenAI chat messages, as the client sent them.")
    prompt: Prompt = None
    max_tokens: MaxTokens = None
    tools: Any = Field(default=None, description="The request's tool definitions (counted as input).")
    functions: Any = Field(default=None, description="Legacy function definitions (counted as input).")
    estimated_cost: Decimal | None = Field(default=None, ge=0, le=1_000_000, allow_inf_nan=False)
    tags: Any = Field(default=None, description="Request tags (a list, or comma-separated text).")
    request_tags: Any = None
    metadata: Any = Field(default=None, description="LiteLLM's request metadata; its `tags` are read.")
    headers: Any = Field(default=None, description="The client's request headers; `x-litellm-tags` is read.")

    def admission(self) -> Admission:
        metadata = self.metadata if isinstance(self.metadata, dict) else {}
        headers = self.headers if isinstance(self.headers, dict) else {}
        caller = Caller(
            key=self.api_key or self.api_key_hash or self.user_api_key_hash,
            user_id=_identity(self.user_id or self.user),
            team_id=self.team_id,
            end_user=self.end_user_id or self.end_user,
            tags=tags_of(self.tags, self.request_tags, metadata.get("tags"), headers.get("x-litellm-tags")),
        )
        return Admission(
            caller,
            self.model,
            self.litellm_call_id or self.call_id or self.request_id or _new_id(),
            with_tools(self.messages or [], self.tools, self.functions),
            self.prompt if isinstance(self.prompt, str) else None,
            self.max_tokens,
            self.estimated_cost,
            self.prompt if isinstance(self.prompt, int) else 0,
        )


def with_tools(messages: list[dict[str, Any]], *definitions: Any) -> list[dict[str, Any]]:
    """The messages, and the request's tool definitions as one more to count: a provider bills them as input, so
    a client could otherwise hide any amount of prompt in a tool's description."""
    given = [d for d in definitions if d]
    return [*messages, {"tools": given}] if given else messages


def _identity(user_id: str | None) -> str | None:
    # LiteLLM names requests made with its master key "default_user_id": that is not a person with a budget.
    return None if user_id in (None, "", "default_user_id") else user_id


def _new_id() -> str:
    return f"spendplane-{uuid.uuid4()}"


class AdmissionBudget(BaseModel):
    id: str | None
    name: str
    entity_type: str
    entity_id: str | None
    period: str = Field(description="daily, weekly, monthly, quarterly or yearly")
    time_zone: str
    spend: Decimal
    reserved: Decimal = Field(
        description="Held for admitted requests whose spend is not recorded yet, the pooled margin included."
    )
    limit: Decimal
    remaining: Decimal
    utilization: Decimal
    period_start: datetime
    resets_at: datetime


#: Describes `client_message` in the OpenAPI document.
CLIENT_MESSAGE = (
    "The decision in words for the request's key holder, the gateway's client: a budget outside its key, user and "
    "team is described without name or figures. The only text a gateway should relay to its client."
)


class PreRequestAllowed(BaseModel):
    allowed: bool
    action: str = Field(description="allow, or warn past a soft limit")
    warning: str | None = Field(description="For the operator: the binding budget named, with its figures.")
    client_message: str | None = Field(description=CLIENT_MESSAGE + " Null when there is no warning.")
    model: str | None = Field(description="The model to call (the one asked for, or a failover's fallback).")
    call_id: str
    estimated_cost_usd: Decimal
    held_cost_usd: Decimal = Field(
        description="What the request holds on its budgets until its spend arrives: RESERVATION_QUANTILE of its "
        "predicted cost (or the gateway's own estimate when it sent one)."
    )
    price_missing: bool = Field(
        description="No price is known for the model: held at UNPRICED_MODEL_PRICE, a conservative price."
    )
    enforced: bool = Field(description="False when budget enforcement is switched off in the settings.")
    degraded: bool = Field(description="True when the database did not answer in time and the failure mode decided.")
    budgets: list[AdmissionBudget]
    warned_by: list[AdmissionBudget] = Field(description="Every budget past its soft limit.")


class PreRequestError(BaseModel):
    type: str
    code: str
    message: str


class PreRequestBlocked(BaseModel):
    allowed: bool
    action: str
    call_id: str
    error: PreRequestError = Field(description="For the operator: `message` names the budget, with its figures.")
    client_message: str = Field(description=CLIENT_MESSAGE)
    budget: AdmissionBudget | None = Field(description="The binding budget: of those that block, the last to reset.")
    resets_at: datetime | None = Field(
        description="When the binding budget's window resets (Retry-After counts to it)."
    )
    blocked_by: list[AdmissionBudget] = Field(
        description="Every budget that blocks the request, the binding one first."
    )
    estimated_cost_usd: Decimal
    held_cost_usd: Decimal = Field(description="What the request would have held on its budgets.")
    budgets: list[AdmissionBudget]


def retry_after(decision: Decision, now: datetime) -> int:
    """Seconds until the binding budget's window resets (LiteLLM's Retry-After), or 60 for a request that did
    not fit (it may fit once requests in flight settle) and for an unavailable check."""
    if decision.alert_type is AlertType.BUDGET_EXCEEDED and decision.resets_at is not None:
        return max(1, int((decision.resets_at - now).total_seconds()))
    return 60


async def pre_request(request: Request) -> Response:
    require_gateway(request)
    body = await read_model(request, PreRequest)
    runtime = runtime_of(request)
    admission = body.admission()
    enforcer = runtime.enforcement()
    decision = await enforcer.admit(admission)
    told = None if decision.message is None else await enforcer.told_to_holder(decision, admission.caller)
    return render_decision(decision, runtime.clock(), told)


def render_decision(decision: Decision, now: datetime, client_message: str | None) -> Response:
    """The webhook's answer: `client_message` is the decision for the request's key holder (`told_to_holder`),
    the rest is the operator's. Built as plain dicts on this hot path; the pydantic models above document the same
    shapes in the OpenAPI document (and the schemathesis suite checks the answers against them)."""
    budgets = [_budget(c) for c in decision.checks]
    if decision.allowed:
        return JSON(
            {
                "allowed": True,
                "action": "warn" if decision.verdict is Verdict.WARN else "allow",
                "warning": decision.message if decision.verdict is Verdict.WARN or decision.degraded else None,
                "client_message": client_message if decision.verdict is Verdict.WARN or decision.degraded else None,
                "model": decision.model,
                "call_id": decision.call_id,
                "estimated_cost_usd": decision.estimated_cost,
                "held_cost_usd": decision.held_cost,
                "price_missing": decision.price_missing,
                "enforced": decision.enforced,
                "degraded": decision.degraded,
                "budgets": budgets,
                "warned_by": [_budget(c) for c in decision.crossed],
            }
        )
    kind = decision.alert_type.value if decision.alert_type else "budget_service_unavailable"
    return JSON(
        {
            "allowed": False,
            "action": "block",
            "call_id": decision.call_id,
            "error": {"type": kind, "code": kind.upper(), "message": decision.message or kind},
            "client_message": client_message or kind,
            "budget": _budget(decision.budget) if decision.budget else None,
            "resets_at": decision.resets_at,
            "blocked_by": [_budget(c) for c in decision.crossed],
            "estimated_cost_usd": decision.estimated_cost,
            "held_cost_usd": decision.held_cost,
            "budgets": budgets,
        },
        status_code=429,
        headers={"retry-after": str(retry_after(decision, now))},
    )


def _budget(check: BudgetCheck) -> dict[str, Any]:
    return {
        **check.rule.summary,
        "spend": check.spend,
        "reserved": check.reserved,
        "remaining": check.remaining,
        "utilization": check.utilization,
        "period_start": check.period.start,
        "resets_at": check.resets_at,
    }


# ------------------------------------------------------------------------------------- the Generic Guardrail API


class GuardrailRequest(BaseModel):
    """LiteLLM's GenericGuardrailAPIRequest (all 13 keys optional: older releases send fewer). Lenient like the
    webhook: any answer but 200 reaches LiteLLM's client as an HTTP 500."""

    model_config = ConfigDict(extra="ignore")
    input_type: Name = None
    litellm_call_id: CallId = None
    litellm_trace_id: CallId = None
    structured_messages: Messages = None
    texts: Texts = None
    tools: Any = Field(default=None, description="The request's tool definitions (counted as input).")
    tool_calls: Any = Field(default=None, description="Tool calls in the request (counted as input).")
    request_data: dict[str, Any] | None = None
    model: Name = None

    def admission(self) -> Admission:
        data = self.request_data or {}
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        caller = Caller(
            key=clipped(data.get("user_api_key_hash")),
            user_id=_identity(clipped(data.get("user_api_key_user_id"))),
            team_id=clipped(data.get("user_api_key_team_id")),
            end_user=clipped(data.get("user_api_key_end_user_id")),
            tags=tags_of(data.get("tags"), metadata.get("tags") if isinstance(metadata, dict) else None),
        )
        messages = self.structured_messages or []
        prompt = None if messages else "\n".join(self.texts or []) or None
        if prompt is not None and (self.tools or self.tool_calls):
            messages, prompt = [{"content": prompt}], None  # one count for the texts and the tools
        # Tool calls already in the messages are counted there; the separate list is LiteLLM's copy of them.
        extra = (self.tools,) if self.structured_messages else (self.tools, self.tool_calls)
        messages = with_tools(messages, *extra)
        # The guardrail cannot change the model: the one asked for runs, whatever failover rule is on.
        return Admission(caller, self.model, self.litellm_call_id or _new_id(), messages, prompt, routable=False)


class GuardrailResponse(BaseModel):
    action: str = Field(description="NONE (let it run) or BLOCKED")
    blocked_reason: str | None = None


async def guardrail(request: Request) -> Response:
    require_gateway(request)
    body = await read_model(request, GuardrailRequest)
    if body.input_type not in (None, "request"):
        return JSON({"action": "NONE"})  # a post_call check of the response: nothing to decide here
    admission = body.admission()
    enforcer = runtime_of(request).enforcement()
    decision = await enforcer.admit(admission)
    if decision.allowed:
        return JSON({"action": "NONE"})
    kind = decision.alert_type.value if decision.alert_type else "budget_service_unavailable"
    # LiteLLM hands blocked_reason to its client as the error message: written for the key's holder.
    told = await enforcer.told_to_holder(decision, admission.caller) or kind
    return JSON(GuardrailResponse(action="BLOCKED", blocked_reason=f"{kind}: {told}").model_dump())


# ------------------------------------------------------------------------------------------------ spend ingestion


class IngestResponse(BaseModel):
    received: int
    recorded: int = Field(description="Spend-log rows written (embedded mode, cost tracking on).")
    duplicates: int = Field(description="Events already recorded (LiteLLM retried a post).")
    settled: int = Field(description="Reservations on this instance released at once.")


async def _spend_body(request: Request) -> Any:
    """One StandardLoggingPayload, a JSON list of them, or NDJSON (LiteLLM's three log formats)."""
    if "ndjson" in request.headers.get("content-type", ""):
        raw = (await request.body()).decode("utf-8", errors="replace")
        return [parse_json(line) for line in raw.splitlines() if line.strip()]
    return await read_json(request)


async def ingest_spend(request: Request) -> Response:
    require_gateway(request)
    runtime = runtime_of(request)
    events = parse_batch(await _spend_body(request), runtime.settings.litellm_master_key)
    async with runtime.read() as session:
        tracking = (await get_features(session)).cost_tracking_enabled
    result = await ingest(
        runtime.work,
        runtime.litellm,
        runtime.enforcement().ledger,
        events,
        write_rows=runtime.settings.embedded_mode and tracking,
    )
    return JSON(
        IngestResponse(
            received=result.received, recorded=result.recorded, duplicates=result.duplicates, settled=result.settled
        ).model_dump()
    )
