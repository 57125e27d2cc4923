"""Model prices. The offline baseline comes from the maintained `genai-prices` package (pydantic's price
database, bundled in the wheel), so prices work with no network. Every price says where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from genai_prices import Usage, calc_price
from genai_prices import data_snapshot as _snapshot

BASELINE_SOURCE = "genai-prices"


@dataclass(frozen=True)
class Cost:
    input_usd: Decimal
    output_usd: Decimal
    source: str

    @property
    def total_usd(self) -> Decimal:
        return self.input_usd + self.output_usd


def baseline_cost(model: str, provider: str | None, input_tokens: int, output_tokens: int) -> Cost | None:
    """The baseline's price for one request, or None when the baseline does not know the model."""
    try:
        priced = calc_price(
            Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            model_ref=model,
            provider_id=provider,
        )
    except LookupError:
        return None
    return Cost(Decimal(priced.input_price), Decimal(priced.output_price), BASELINE_SOURCE)


def baseline_knows(model: str, provider: str | None) -> bool:
    try:
        _snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return False
    return True
