"""FOCUS 1.2 (FinOps Open Cost and Usage Specification) rows for LLM usage: one row per UTC day x provider x
model x token meter (Input Tokens, Output Tokens), every mandatory 1.2 column present.

LiteLLM logs one cost per request, not per meter, so a day's cost for a model is split between its two meters
in proportion to list prices (genai-prices' input and output price times the tokens), or to tokens when the
model has no list price; the two rows always add up to the logged cost exactly (`x_CostSplitBasis` says which).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

from models.types import nanos_to_usd
from resolvers.platform.periods import month_of
from resolvers.pricing import baseline_price
from resolvers.rollups import Totals

#: The 21 columns FOCUS 1.2 makes mandatory (specification/columns/*.md "Feature level" at tag v1.2).
MANDATORY_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)

#: Mandatory columns, then the conditional and recommended ones LLM usage fills, then our own (x_ prefixed).
COLUMNS: tuple[str, ...] = (
    *MANDATORY_COLUMNS,
    "ChargeFrequency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ListUnitPrice",
    "PricingCategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "x_CostSplitBasis",
)

PRICING_UNIT_TOKENS = 1_000_000
_MILLION = Decimal(PRICING_UNIT_TOKENS)


@dataclass(frozen=True)
class UnitPrices:
    """List USD per 1M input and output tokens."""

    input: Decimal
    output: Decimal


@lru_cache(maxsize=4096)
def list_prices(model: str, provider: str) -> UnitPrices | None:
    """genai-prices' list price for a model, trying LiteLLM's provider id first, then the model name alone."""
    price = baseline_price(model, provider or None)
    return None if price is None else UnitPrices(price.input_per_million, price.output_per_million)


def split_cost(totals: Totals, prices: UnitPrices | None) -> tuple[int, int, str]:
    """(input nano-USD, output nano-USD, basis); the parts always add up to the logged spend."""
    weight_in = weight_out = Decimal(0)
    basis = "tokens"
    if prices is not None:
        weight_in, weight_out = prices.input * totals.input_tokens, prices.output * totals.output_tokens
        basis = "list_price"
    if weight_in + weight_out == 0:
        weight_in, weight_out, basis = Decimal(totals.input_tokens), Decimal(totals.output_tokens), "tokens"
    if weight_in + weight_out == 0:
        return totals.spend_nanos, 0, basis
    part = (Decimal(totals.spend_nanos) * weight_in / (weight_in + weight_out)).quantize(
        Decimal(1), rounding=ROUND_HALF_EVEN
    )
    return int(part), totals.spend_nanos - int(part), basis


def _stamp(day: date, zone: tzinfo = UTC) -> str:
    """The first instant of a (local) day, in UTC as FOCUS wants its timestamps."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def focus_rows(
    day: date, provider: str, model: str, totals: Totals, *, team_id: str | None = None, zone: tzinfo = UTC
) -> list[dict[str, str]]:
    """The FOCUS rows of one day, provider and model: one per token meter with tokens or cost. `day` is a day in
    `zone`: its charge period runs from its local midnight to the next (UTC timestamps, 23 to 25 hours apart
    across DST), its billing period is its local calendar month."""
    provider = provider or "unknown"
    prices = list_prices(model, provider)
    input_nanos, output_nanos, basis = split_cost(totals, prices)
    billing = month_of(datetime.combine(day, time(0), tzinfo=UTC))
    common = {
        "BillingAccountId": provider,
        "BillingAccountName": f"{provider} (through LiteLLM)",
        "BillingCurrency": "USD",
        "BillingPeriodStart": _stamp(billing.start.date(), zone),
        "BillingPeriodEnd": _stamp(billing.end.date(), zone),
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": _stamp(day, zone),
        "ChargePeriodEnd": _stamp(day + timedelta(days=1), zone),
        "ConsumedUnit": "Tokens",
        "InvoiceIssuerName": provider,
        "PricingCategory": "Standard",
        "PricingUnit": f"{PRICING_UNIT_TOKENS} Tokens",
        "ProviderName": provider,
        "PublisherName": provider,
        "ResourceId": f"{provider}/{model}",
        "ResourceName": model,
        "ResourceType": "LLM Model",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": f"{provider} LLM API",
        "ServiceSubcategory": "Generative AI",
        "SubAccountId": team_id or "",
        "SubAccountName": team_id or "",
        "x_CostSplitBasis": basis,
    }
    rows = []
    for meter, tokens, nanos, unit_price in (
        ("Input Tokens", totals.input_tokens, input_nanos, prices.input if prices else None),
        ("Output Tokens", totals.output_tokens, output_nanos, prices.output if prices else None),
    ):
        if tokens == 0 and nanos == 0:
            continue
        cost = nanos_to_usd(nanos)
        list_cost = cost if unit_price is None else unit_price * tokens / _MILLION
        rows.append(
            {
                **common,
                "BilledCost": _plain(cost),
                "EffectiveCost": _plain(cost),
                "ContractedCost": _plain(cost),
                "ListCost": _plain(list_cost),
                "ListUnitPrice": "" if unit_price is None else _plain(unit_price),
                "ChargeDescription": f"{model} {meter.lower()}",
                "ConsumedQuantity": str(tokens),
                "PricingQuantity": _plain(Decimal(tokens) / _MILLION),
                "SkuId": f"{provider}:{model}:{meter.split()[0].lower()}",
                "SkuPriceId": f"{provider}:{model}:{meter.split()[0].lower()}:list",
                "SkuMeter": meter,
            }
        )
    return rows
