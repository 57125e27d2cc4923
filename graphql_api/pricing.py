"""Prices and the cost predictor in GraphQL: `pricing`, `predictCost`, `setModelPrice`, `deleteModelPrice`."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from graphql_api.context import Info
from resolvers import pricing
from resolvers.enforcement import Caller
from resolvers.platform.errors import NotFound
from resolvers.predictor import PredictionRequest, predict
from resolvers.pricing import ModelPrice


@strawberry.type(name="ModelPrice", description="A model's price per million tokens, and where it came from.")
class ModelPriceView:
    model: str
    provider: str | None
    input_per_million: Decimal
    output_per_million: Decimal
    source: str = strawberry.field(
        description="override, self-hosted, litellm-config, litellm-price-map or genai-prices (offline baseline)"
    )

    @classmethod
    def from_domain(cls, p: ModelPrice) -> ModelPriceView:
        return cls(
            model=p.model,
            provider=p.provider,
            input_per_million=p.input_per_million,
            output_per_million=p.output_per_million,
            source=p.source,
        )


@strawberry.input(description="One chat message, as in an OpenAI request.")
class ChatMessageInput:
    role: str
    content: str | None = None
    name: str | None = None
    parts: JSON | None = strawberry.field(default=None, description="OpenAI content parts, instead of content.")


@strawberry.input(description="The request to price: the guide's /predict body.")
class PredictCostInput:
    model: str
    messages: list[ChatMessageInput] = strawberry.field(default_factory=list)
    prompt: str | None = None
    max_tokens: int | None = None


@strawberry.type(name="CostPrediction", description="What a request will cost before it runs.")
class CostPredictionView:
    model: str
    resolved_model: str
    provider: str | None
    price_source: str
    input_tokens: int
    input_token_count: str = strawberry.field(description="exact or approximate")
    estimated_output_tokens: int
    estimated_output_tokens_high: int
    input_cost: Decimal
    estimated_output_cost: Decimal
    total_estimated_cost: Decimal
    total_estimated_cost_high: Decimal
    estimate_method: str = strawberry.field(description="learned (from the spend logs) or profile (the guide's)")
    verbosity_profile: str
    history_requests: int | None
    held_quantile: Decimal | None = strawberry.field(
        description="The quantile a reservation holds (RESERVATION_QUANTILE): of the learned output length when "
        "RESERVATION_MARGIN is per_request; pooled (the default), of the sum in flight on each budget, the "
        "request holding its mean and the budget a margin over its requests' spread (heldStdDev); "
        "null when no history is learned for the model and the profile's estimate is held."
    )
    held_output_tokens: int = strawberry.field(description="The output tokens a reservation for this request holds.")
    held_cost: Decimal = strawberry.field(description="What a reservation for this request holds on its budgets.")
    held_std_dev: Decimal = strawberry.field(
        description="Pooled holds: the held cost's standard deviation, from the learned output lengths; each budget "
        "holds z x the square root of its requests' summed variances beside their means (0: held per request)."
    )
    budget_remaining: Decimal | None = strawberry.field(
        description="For a key's token: what its tightest budget still allows."
    )
    within_budget: bool | None
    warning: str | None


@strawberry.input(description="An admin's price for a model, on top of every other source.")
class ModelPriceInput:
    model: str
    input_per_million: Decimal
    output_per_million: Decimal
    provider: str | None = None


@strawberry.type
class PricingQueries:
    @strawberry.field(description="Prices per million tokens: every model, or one model or alias (resolved).")
    def pricing(self, info: Info, model: str | None = None) -> list[ModelPriceView]:
        info.context.caller()
        book = info.context.runtime.prices
        if model is None:
            return [ModelPriceView.from_domain(p) for p in book.all_prices()]
        match = book.lookup(model)
        if match is None:
            raise NotFound(f"no price is known for {model!r}", field="model")
        return [ModelPriceView.from_domain(p) for p in (match.candidates or (match.price,))]

    @strawberry.field(description="The cost predictor (POST /predict). A key's token also gets its budget check.")
    async def predict_cost(self, info: Info, input: PredictCostInput) -> CostPredictionView:
        runtime, principal = info.context.runtime, info.context.caller()
        messages = [
            {
                k: v
                for k, v in (
                    ("role", m.role),
                    ("content", m.parts if m.parts is not None else m.content),
                    ("name", m.name),
                )
                if v is not None
            }
            for m in input.messages
        ]
        request = PredictionRequest(input.model, messages, input.prompt, input.max_tokens)
        p = await predict(
            runtime.prices,
            runtime.history,
            request,
            quantile=runtime.settings.reservation_quantile,
            counting=runtime.predictor_counting,
            pooled=runtime.settings.reservation_margin == "pooled",
        )
        fit = None
        if principal.key_hash is not None:
            caller = Caller(principal.key_hash, principal.user_id, principal.team_id)
            fit = await runtime.enforcement().fits(caller, input.model, p.held_cost)
        return CostPredictionView(
            model=p.model,
            resolved_model=p.resolved_model,
            provider=p.provider,
            price_source=p.price_source,
            input_tokens=p.input_tokens,
            input_token_count=p.token_count,
            estimated_output_tokens=p.estimated_output_tokens,
            estimated_output_tokens_high=p.output_tokens_high,
            input_cost=p.input_cost,
            estimated_output_cost=p.output_cost,
            total_estimated_cost=p.total_cost,
            total_estimated_cost_high=p.total_cost_high,
            estimate_method=p.method,
            verbosity_profile=p.profile,
            history_requests=p.history_requests,
            held_quantile=p.held_quantile,
            held_output_tokens=p.held_output_tokens,
            held_cost=p.held_cost,
            held_std_dev=p.held_std_dev,
            budget_remaining=fit.remaining if fit else None,
            within_budget=fit.within if fit else None,
            warning=fit.warning if fit else None,
        )


@strawberry.type
class PricingMutations:
    @strawberry.mutation(description="Set a model's price (admin); it overrides every other source.")
    async def set_model_price(self, info: Info, input: ModelPriceInput) -> ModelPriceView:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            price = await pricing.set_model_price(
                work,
                principal,
                model=input.model,
                provider=input.provider,
                input_per_million=input.input_per_million,
                output_per_million=input.output_per_million,
            )
        runtime.prices.overrides = {**runtime.prices.overrides, price.model: price}
        return ModelPriceView.from_domain(price)

    @strawberry.mutation(description="Remove an admin price override (admin); the model falls back to the others.")
    async def delete_model_price(self, info: Info, model: str) -> bool:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            await pricing.delete_model_price(work, principal, model)
        runtime.prices.overrides = {k: v for k, v in runtime.prices.overrides.items() if k != model}
        return True
