"""The cost predictor's REST face: POST /predict, POST /budget/check, GET /pricing (the guide's shapes)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from resolvers.enforcement import BudgetFit, Caller
from resolvers.platform.errors import InvalidInput, NotFound, Unauthenticated
from resolvers.predictor import Prediction, PredictionRequest, predict
from resolvers.pricing import ModelPrice
from resolvers.service.runtime import Runtime
from webhook.rest import JSON, read_model, runtime_of
from webhook.throttle import client_address, throttle_of


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(min_length=1, max_length=64)
    content: str | list[dict[str, Any]] | None = None
    name: str | None = Field(default=None, max_length=256)


class PredictRequest(BaseModel):
    # Whole OpenAI request bodies are welcome: fields the predictor does not use are ignored. Something to price is
    # required: chat messages or a text prompt.
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "anyOf": [
                {"required": ["messages"], "properties": {"messages": {"minItems": 1}}},
                {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
            ]
        },
    )
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(default_factory=list, max_length=10_000)
    prompt: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=10_000_000)

    def to_domain(self) -> PredictionRequest:
        if not self.messages and self.prompt is None:
            raise InvalidInput("messages", "give the chat messages (or a text prompt) to price")
        return PredictionRequest(
            self.model,
            [m.model_dump(exclude_none=True) for m in self.messages],
            self.prompt,
            self.max_tokens or self.max_completion_tokens,
        )


class PredictResponse(BaseModel):
    model: str
    input_tokens: int
    estimated_output_tokens: int
    input_cost_usd: Decimal
    estimated_output_cost_usd: Decimal
    total_estimated_cost_usd: Decimal
    budget_remaining_usd: Decimal | None = Field(description="With X-Api-Key: what that key may still spend.")
    within_budget: bool | None
    warning: str | None
    resolved_model: str = Field(description="The priced model (an alias resolves to its dearest member).")
    provider: str | None
    price_source: str = Field(description="override, self-hosted, litellm-config, litellm-price-map or genai-prices")
    input_token_count: str = Field(description="exact (the model's own tokenizer) or approximate")
    estimate_method: str = Field(description="learned (from this gateway's spend logs) or profile (the guide's)")
    verbosity_profile: str
    estimated_output_tokens_high: int = Field(description="The high end of the range (90th percentile or max_tokens).")
    total_estimated_cost_high_usd: Decimal
    history_requests: int | None = Field(description="How many recent requests the learned estimate rests on.")
    held_quantile: Decimal | None = Field(
        description="The quantile a reservation holds (RESERVATION_QUANTILE): of the learned output length when "
        "RESERVATION_MARGIN is per_request; pooled (the default), of the sum in flight on each budget, the "
        "request holding its mean and the budget a margin over its requests' spread (heldStdDev); "
        "null when no history is learned for the model and the profile's estimate is held."
    )
    held_output_tokens: int = Field(description="The output tokens a reservation for this request holds.")
    held_cost_usd: Decimal = Field(description="What a reservation for this request holds on its budgets.")
    held_std_dev_usd: Decimal = Field(
        description="Pooled holds: the held cost's standard deviation, from the learned output lengths; each budget "
        "holds z x the square root of its requests' summed variances beside their means (0: held per request)."
    )


async def _known_key(request: Request, runtime: Runtime, raw_key: str) -> Caller:
    """The caller proves it holds a LiteLLM key by sending the key itself: a sha256 (what spend logs and
    LiteLLM's tables show) is refused, or anyone who saw a hash could read that key's budget. Wrong keys are
    throttled like logins (webhook/throttle.py): this door tells a valid key from an invalid one."""
    caller = Caller(key=raw_key.strip())
    with throttle_of(request).checking_key(client_address(request), caller.key or raw_key):
        if caller.key_hash is None or caller.key_hash == caller.key:
            raise Unauthenticated("send the LiteLLM key itself (sk-...), not its hash")
        if not (await runtime.enforcement().key_owner(caller.key_hash)).exists:
            raise Unauthenticated("the api key is not a LiteLLM key this gateway knows")
    return caller


async def predict_cost(request: Request) -> Response:
    throttle_of(request).count_request(client_address(request))
    body = await read_model(request, PredictRequest)
    runtime = runtime_of(request)
    api_key = request.headers.get("x-api-key")
    # The key first: a wrong or throttled one costs no token counting.
    key = await _known_key(request, runtime, api_key) if api_key else None
    prediction = await predict(
        runtime.prices,
        runtime.history,
        body.to_domain(),
        quantile=runtime.settings.reservation_quantile,
        counting=runtime.predictor_counting,
        pooled=runtime.settings.reservation_margin == "pooled",
    )
    fit = None
    if key is not None:
        # Judged on what admission would hold, so within_budget says what the gateway will decide.
        fit = await runtime.enforcement().fits(key, body.model, prediction.held_cost)
    return JSON(render_prediction(prediction, fit))


def render_prediction(p: Prediction, fit: BudgetFit | None) -> dict[str, Any]:
    return PredictResponse(
        model=p.model,
        input_tokens=p.input_tokens,
        estimated_output_tokens=p.estimated_output_tokens,
        input_cost_usd=p.input_cost,
        estimated_output_cost_usd=p.output_cost,
        total_estimated_cost_usd=p.total_cost,
        budget_remaining_usd=fit.remaining if fit else None,
        within_budget=fit.within if fit else None,
        warning=fit.warning if fit else None,
        resolved_model=p.resolved_model,
        provider=p.provider,
        price_source=p.price_source,
        input_token_count=p.token_count,
        estimate_method=p.method,
        verbosity_profile=p.profile,
        estimated_output_tokens_high=p.output_tokens_high,
        total_estimated_cost_high_usd=p.total_cost_high,
        history_requests=p.history_requests,
        held_quantile=p.held_quantile,
        held_output_tokens=p.held_output_tokens,
        held_cost_usd=p.held_cost,
        held_std_dev_usd=p.held_std_dev,
    ).model_dump()


class BudgetCheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=1, max_length=1024, description="A LiteLLM virtual key (sk-...).")
    estimated_cost: Decimal = Field(ge=0, le=1_000_000, allow_inf_nan=False)
    model: str | None = Field(default=None, max_length=256)


class BudgetCheckResponse(BaseModel):
    allowed: bool
    budget_limit: Decimal | None = Field(description="The key's monthly limit (its own budget or the per-key default).")
    current_spend: Decimal | None
    remaining: Decimal | None
    message: str | None


async def check_budget(request: Request) -> Response:
    throttle_of(request).count_request(client_address(request))
    body = await read_model(request, BudgetCheckRequest)
    runtime = runtime_of(request)
    fit = await runtime.enforcement().fits(
        await _known_key(request, runtime, body.api_key), body.model, body.estimated_cost
    )
    shown = fit.shown  # the key's own key, user and team budgets: never a figure of a budget outside its scope
    own = next((c for c in shown if c.rule.entity_type == "key"), None) or min(
        shown, key=lambda c: c.remaining, default=None
    )
    return JSON(
        BudgetCheckResponse(
            allowed=fit.within,
            budget_limit=own.rule.limit if own else None,
            current_spend=own.spend if own else None,
            remaining=own.remaining if own else None,
            message=fit.warning,
        ).model_dump()
    )


class PriceOut(BaseModel):
    model: str
    provider: str | None
    input_cost_per_million: Decimal
    output_cost_per_million: Decimal
    source: str

    @classmethod
    def render(cls, price: ModelPrice) -> dict[str, Any]:
        return cls(
            model=price.model,
            provider=price.provider,
            input_cost_per_million=price.input_per_million,
            output_cost_per_million=price.output_per_million,
            source=price.source,
        ).model_dump()


class PricingResponse(BaseModel):
    count: int
    models: list[PriceOut]
    alias: str | None = None
    price_map_origin: str | None
    price_map_loaded_at: datetime | None


async def pricing(request: Request) -> Response:
    runtime = runtime_of(request)
    book = runtime.prices
    wanted = request.query_params.get("model")
    alias = None
    if wanted:
        match = book.lookup(wanted)
        if match is None:
            raise NotFound(f"no price is known for {wanted!r}", field="model")
        prices = list(match.candidates) or [match.price]
        alias = match.alias
    else:
        prices = book.all_prices()
    return JSON(
        {
            "count": len(prices),
            "models": [PriceOut.render(p) for p in prices],
            "alias": alias,
            "price_map_origin": book.price_map.origin,
            "price_map_loaded_at": book.price_map.loaded_at,
        }
    )
