"""The cost predictor: exact (or labelled approximate) input tokens, expected output tokens, price.

Output length comes from the guide's verbosity profiles (share of max_tokens, or an output/input ratio without
it), or — where the spend logs hold enough recent history for the model — from that history: the median as the
estimate and the 90th percentile as the high end of the range. The answer says which method it used.

What a reservation holds is a chosen quantile of the predicted cost (RESERVATION_QUANTILE): the learned
distribution's quantiles are precomputed per model, per mille, when output lengths are learned, so choosing one
is an index, not a sort, on the hot path. Quantile 1 is the worst case (max_tokens when the request sets it, as
LiteLLM holds). A model without learned history holds the profile's estimate (no distribution to take a
quantile of), except at quantile 1.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.litellm import LiteLLMSchema, spend_logs
from models.types import whole_nanos
from resolvers.platform.errors import InvalidInput, Unavailable
from resolvers.predictor.tokens import (
    TokenCount,
    bound_messages,
    bound_text,
    count_messages,
    count_text,
    text_size,
)
from resolvers.pricing import MILLION, ModelPrice, PriceBook

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime

#: Below this many recent successful requests, a model's own history is not trusted over the profile.
MIN_HISTORY = 50
HISTORY_DAYS = 30
HISTORY_SAMPLE = 2000
#: Prompts longer than this are tokenized on a worker thread (tiktoken releases the GIL) instead of the loop.
THREAD_THRESHOLD_CHARS = 64_000
#: Prompts longer than this are not tokenized at all: their count is bounded by their UTF-8 length (no token is
#: shorter than a byte), in linear time that no prompt can stretch. Far beyond any context window anyway.
COUNT_LIMIT_CHARS = 400_000

T = TypeVar("T")


class Counting:
    """A small pool of threads that counts big prompts for one kind of caller, with a bounded queue: the gateway
    has its own, so a flood of /predict calls cannot queue ahead of a pre-request check; a caller that finds
    its pool full is told to come back (SERVICE_UNAVAILABLE) instead of waiting without bound."""

    def __init__(self, name: str, *, workers: int, queue: int) -> None:
        self.name = name
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"spendplane-count-{name}")
        self._busy = 0

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        if self._busy >= self.capacity:
            raise Unavailable(f"too many long prompts are being counted ({self.name}); try again in a moment")
        self._busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self._busy -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Profile:
    """The guide's verbosity profiles (the middle of each range)."""

    name: str
    share_of_max_tokens: Decimal
    output_input_ratio: Decimal


REASONING = Profile("reasoning", Decimal("0.875"), Decimal("4.5"))
POWERFUL = Profile("powerful", Decimal("0.675"), Decimal("2.75"))
STANDARD = Profile("standard", Decimal("0.55"), Decimal("2"))
FAST = Profile("fast", Decimal("0.375"), Decimal("1.35"))

_ALIAS_PROFILES = {
    "reasoning": REASONING,
    "powerful": POWERFUL,
    "fast": FAST,
    "cost-effective": FAST,
    "smart": STANDARD,
    "coding": STANDARD,
}
_PATTERNS = (
    (REASONING, re.compile(r"(^|[/._-])o[1-9](-pro|-mini)?($|[._-])|reasoner|(^|[/._-])r1($|[._-])|thinking")),
    (FAST, re.compile(r"(^|[/._-])(mini|nano|lite|small|[1-9]b)($|[/._-])|haiku|flash")),
    (POWERFUL, re.compile(r"opus|gpt-5\.[2-9]|gpt-4\.5|(^|[/-])gemini-[0-9.]+-pro|405b|ultra|large")),
)


@lru_cache(maxsize=1024)  # every prediction asks, for a handful of model names (clients choose them: bounded)
def profile_for(*names: str) -> Profile:
    for name in names:
        lowered = name.lower()
        if lowered in _ALIAS_PROFILES:
            return _ALIAS_PROFILES[lowered]
    for name in names:
        lowered = name.lower()
        for profile, pattern in _PATTERNS:
            if pattern.search(lowered):
                return profile
    return STANDARD


#: Learned quantiles are kept per mille (0.001 ... 0.999), plus the maximum.
QUANTILE_STEPS = 1000
#: Capped moments kept per learned model (distinct max_tokens values seen).
CAPPED_CACHE = 64
MEDIAN = Decimal("0.5")
WORST_CASE = Decimal(1)
#: Variances (USD squared) are kept to this many places: sums and differences of them stay exact.
VARIANCE_QUANTUM = Decimal("1e-20")


@dataclass(frozen=True)
class OutputStats:
    requests: int
    median: int
    p90: int
    #: Completion tokens at each quantile k/1000 for k = 1 ... 999 (inclusive method), then the maximum.
    per_mille: tuple[int, ...] = ()
    #: Mean and variance of the completion tokens (what a pooled hold needs).
    mean: float = 0.0
    variance: float = 0.0
    _capped: dict[int, tuple[float, float]] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def learn(cls, lengths: Sequence[int]) -> OutputStats:
        cuts = statistics.quantiles(lengths, n=QUANTILE_STEPS, method="inclusive")
        per_mille = (*(round(c) for c in cuts), max(lengths))
        return cls(
            len(lengths),
            per_mille[QUANTILE_STEPS // 2 - 1],
            per_mille[QUANTILE_STEPS * 9 // 10 - 1],
            per_mille,
            statistics.fmean(lengths),
            statistics.pvariance(lengths),
        )

    def moments(self, cap: int | None) -> tuple[float, float]:
        """Mean and variance of the completion tokens, each length capped at `cap` (a request's max_tokens).
        Under a cap below the longest learned length they are read off the per-mille quantiles (cached per cap)."""
        if cap is None or not self.per_mille or cap >= self.per_mille[-1]:
            return self.mean, self.variance
        found = self._capped.get(cap)
        if found is None:
            points = [min(n, cap) for n in self.per_mille[:-1]]
            found = (statistics.fmean(points), statistics.pvariance(points))
            if len(self._capped) >= CAPPED_CACHE:
                self._capped.clear()
            self._capped[cap] = found
        return found

    def at(self, quantile: Decimal) -> int:
        """Completion tokens at `quantile` (0.5 to 1; rounded to the nearest per mille)."""
        if not self.per_mille:
            return self.median if quantile <= MEDIAN else self.p90
        return self.per_mille[_step(quantile) - 1]


@lru_cache(maxsize=64)  # a setting: one or two quantiles in all
def _step(quantile: Decimal) -> int:
    """The per mille `quantile` rounds to (1 to QUANTILE_STEPS)."""
    return min(QUANTILE_STEPS, max(1, int((quantile * QUANTILE_STEPS).to_integral_value(ROUND_HALF_UP))))


@dataclass
class OutputHistory:
    """Recent completion lengths per model (by model group and by deployment model), refreshed by a job."""

    stats: dict[str, OutputStats] = field(default_factory=dict)
    refreshed_at: datetime | None = None

    def for_model(self, *names: str) -> OutputStats | None:
        for name in names:
            found = self.stats.get(name)
            if found is not None and found.requests >= MIN_HISTORY:
                return found
        return None


async def learn_output_lengths(session: AsyncSession, schema: LiteLLMSchema, now: datetime) -> dict[str, OutputStats]:
    """Quantiles (median, 90th percentile, every per mille) of completion tokens for each model with enough
    successful requests in the last 30 days, from the newest HISTORY_SAMPLE rows of each (recent behaviour matters
    more than old)."""
    if not schema.has_table(spend_logs):
        return {}
    t = spend_logs.c
    since = now - timedelta(days=HISTORY_DAYS)
    ok = [t.start_time >= since, t.completion_tokens > 0]
    if schema.has(spend_logs, "status"):
        ok.append(or_(t.status.is_(None), t.status != "failure"))
    out: dict[str, OutputStats] = {}
    for column in [c for c in (t.model_group, t.model) if schema.has(spend_logs, c.key)]:
        counts = await session.execute(
            select(column, func.count()).where(*ok).group_by(column).having(func.count() >= MIN_HISTORY)
        )
        for name, _ in counts.all():
            if not name or name in out:
                continue
            lengths = (
                await session.scalars(
                    select(t.completion_tokens)
                    .where(*ok, column == name)
                    .order_by(t.start_time.desc())
                    .limit(HISTORY_SAMPLE)
                )
            ).all()
            if len(lengths) >= MIN_HISTORY:
                out[name] = OutputStats.learn(lengths)
    return out


@dataclass(frozen=True)
class Prediction:
    model: str
    resolved_model: str
    provider: str | None
    price_source: str
    alias: str | None
    input_tokens: int
    token_count: str  # exact | approximate
    estimated_output_tokens: int
    output_tokens_high: int
    input_cost: Decimal
    output_cost: Decimal
    output_cost_high: Decimal
    method: str  # learned | profile
    profile: str
    history_requests: int | None = None
    #: What a reservation for this request holds: output tokens at `held_quantile` of the learned distribution
    #: (None: the profile's estimate, no distribution learned), and their cost.
    held_quantile: Decimal | None = None
    held_output_tokens: int = 0
    held_output_cost: Decimal = Decimal(0)
    #: Pooled holds (RESERVATION_MARGIN=pooled): the variance of the held cost in USD squared, from the learned
    #: output lengths; each budget holds z x sqrt(sum of its requests' variances) beside their means. 0: none.
    held_variance: Decimal = Decimal(0)

    @property
    def total_cost(self) -> Decimal:
        return self.input_cost + self.output_cost

    @property
    def total_cost_high(self) -> Decimal:
        return self.input_cost + self.output_cost_high

    @property
    def held_std_dev(self) -> Decimal:
        """The held cost's standard deviation (pooled holds; 0 otherwise), in whole nanos."""
        return whole_nanos(self.held_variance.sqrt(), up=True).normalize() if self.held_variance else Decimal(0)

    @property
    def held_cost(self) -> Decimal:
        """What an admitted request holds on its budgets until its spend arrives."""
        return self.input_cost + self.held_output_cost


@dataclass(frozen=True)
class PredictionRequest:
    model: str
    messages: Sequence[Mapping[str, Any]] = ()
    prompt: str | None = None
    max_tokens: int | None = None
    #: A prompt given as token ids (OpenAI's completions): that many input tokens, beside any text.
    prompt_tokens: int = 0


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def prompt_size(request: PredictionRequest) -> int:
    return text_size(request.messages) + len(request.prompt or "")


async def count_input(request: PredictionRequest, tokenizer_model: str, counting: Counting | None = None) -> TokenCount:
    """Input tokens: counted (on `counting`'s threads past THREAD_THRESHOLD_CHARS), or past COUNT_LIMIT_CHARS
    bounded from above by the text's length; a prompt of token ids adds its length."""
    counted = await _count_texts(request, tokenizer_model, counting)
    if request.prompt_tokens > 0:
        return replace(counted, tokens=counted.tokens + request.prompt_tokens)
    return counted


async def _count_texts(request: PredictionRequest, tokenizer_model: str, counting: Counting | None) -> TokenCount:
    size = prompt_size(request)
    text_only = request.prompt is not None and not request.messages
    messages = [] if text_only else [dict(m) for m in request.messages]
    if size > COUNT_LIMIT_CHARS:
        return bound_text(request.prompt or "") if text_only else bound_messages(messages)
    if text_only:
        assert request.prompt is not None
        if size > THREAD_THRESHOLD_CHARS:
            return await _off_loop(counting, count_text, tokenizer_model, request.prompt)
        return count_text(tokenizer_model, request.prompt)
    if size > THREAD_THRESHOLD_CHARS:
        return await _off_loop(counting, count_messages, tokenizer_model, messages)
    return count_messages(tokenizer_model, messages)


async def _off_loop(counting: Counting | None, work: Callable[..., TokenCount], *args: Any) -> TokenCount:
    if counting is None:
        return await asyncio.to_thread(work, *args)
    return await counting.run(work, *args)


async def predict(
    book: PriceBook,
    history: OutputHistory,
    request: PredictionRequest,
    *,
    quantile: Decimal,
    counting: Counting | None = None,
    pooled: bool = False,
) -> Prediction:
    """The prediction, and what a reservation holds: output at `quantile` (RESERVATION_QUANTILE), or with `pooled`
    (RESERVATION_MARGIN) the mean output and its variance, for the budget's margin over everything in flight."""
    match = book.lookup(request.model)
    if match is None:
        raise InvalidInput(
            "model",
            f"no price is known for {request.model!r}: add it with setModelPrice, "
            "SELF_HOSTED_MODELS or LiteLLM's config.yaml",
        )
    return await _predict(match.price, match.alias, history, request, quantile, counting, pooled)


async def unpriced_prediction(
    book: PriceBook,
    history: OutputHistory,
    request: PredictionRequest,
    fixed: tuple[Decimal, Decimal] | None,
    *,
    quantile: Decimal,
    counting: Counting | None = None,
    pooled: bool = False,
) -> Prediction:
    """A model with no known price, priced conservatively (UNPRICED_MODEL_PRICE): a fixed price, or by default the
    dearest input and output prices of a known model of its provider (of any model when the provider is unknown)."""
    price = book.ceiling_price(request.model) if fixed is None else None
    if price is None:
        low, high = fixed if fixed is not None else (Decimal(0), Decimal(0))
        price = ModelPrice(request.model, None, low, high, "unpriced: UNPRICED_MODEL_PRICE")
    return await _predict(price, None, history, request, quantile, counting, pooled)


async def _predict(
    price: ModelPrice,
    alias: str | None,
    history: OutputHistory,
    request: PredictionRequest,
    quantile: Decimal,
    counting: Counting | None,
    pooled: bool = False,
) -> Prediction:
    tokens = await count_input(request, price.model, counting)
    learned = history.for_model(request.model, price.model)
    profile = profile_for(request.model, price.model)
    held_quantile: Decimal | None = quantile
    variance_tokens = 0.0
    if learned is not None:
        expected, high, held = learned.median, learned.p90, learned.at(quantile)
        if request.max_tokens is not None:
            expected, high, held = (min(n, request.max_tokens) for n in (expected, high, held))
        if pooled and quantile < WORST_CASE:
            mean, variance_tokens = learned.moments(request.max_tokens)
            held = math.ceil(mean)
        method = "learned"
    elif request.max_tokens is not None:
        expected = _half_up(profile.share_of_max_tokens * request.max_tokens)
        high = request.max_tokens
        held, held_quantile = (high, quantile) if quantile >= WORST_CASE else (expected, None)
        method = "profile"
    else:
        expected = _half_up(profile.output_input_ratio * tokens.tokens)
        high = expected * 2
        held, held_quantile = expected, None
        method = "profile"
    if quantile >= WORST_CASE and request.max_tokens is not None:
        held = request.max_tokens  # the worst case: what LiteLLM holds
    input_cost, output_cost = price.cost(tokens.tokens, expected)
    _, output_cost_high = price.cost(0, high)
    _, held_output_cost = price.cost(0, held)
    held_variance = Decimal(0)
    if variance_tokens:
        per_token = price.output_per_million / MILLION
        held_variance = (per_token * per_token * Decimal(variance_tokens)).quantize(VARIANCE_QUANTUM, ROUND_CEILING)
    return Prediction(
        model=request.model,
        resolved_model=price.model,
        provider=price.provider,
        price_source=price.source,
        alias=alias,
        input_tokens=tokens.tokens,
        token_count=tokens.method,
        estimated_output_tokens=expected,
        output_tokens_high=high,
        input_cost=input_cost.normalize(),
        output_cost=output_cost.normalize(),
        output_cost_high=output_cost_high.normalize(),
        method=method,
        profile=profile.name,
        history_requests=learned.requests if learned else None,
        held_quantile=held_quantile,
        held_output_tokens=held,
        held_output_cost=held_output_cost.normalize(),
        held_variance=held_variance,
    )


async def refresh_output_history(runtime: Runtime, tick: datetime) -> str:
    """Hourly job (and at start): relearn recent completion lengths per model from the spend logs."""
    now = runtime.clock()
    async with runtime.read() as session:
        stats = await learn_output_lengths(session, runtime.litellm, now)
    runtime.history.stats, runtime.history.refreshed_at = stats, now
    return f"output lengths learned for {len(stats)} models"
