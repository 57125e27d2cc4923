"""Model prices, layered; every price says where it came from.

From the top: admin overrides (`setModelPrice`), self-hosted models from the configuration, per-deployment prices
in LiteLLM's config.yaml, LiteLLM's published price map (fetched daily, cached on disk), and an offline baseline
from the maintained `genai-prices` package, so prices work with no network at all. Names resolve through aliases
(the guide's and config.yaml's `model_list`) and provider prefixes (`openai/gpt-4o`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import yaml
from genai_prices import Usage, calc_price
from genai_prices import data_snapshot as _snapshot
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.pricing import ModelPriceRow
from models.private_files import tighten, write_private_atomically
from resolvers.auth import Principal, require_admin
from resolvers.platform import validation
from resolvers.platform.config import Settings
from resolvers.platform.errors import ExpectedFailure, NotFound
from resolvers.platform.events import Event

if TYPE_CHECKING:
    from resolvers.platform.work import Work
    from resolvers.service.runtime import Runtime

log = logging.getLogger("spendplane.pricing")

OVERRIDE = "override"
SELF_HOSTED = "self-hosted"
LITELLM_CONFIG = "litellm-config"
PRICE_MAP = "litellm-price-map"
BASELINE = "genai-prices"
MILLION = Decimal(1_000_000)

#: The guide's capability aliases. An alias prices at its most expensive member, so estimates never undershoot.
GUIDE_ALIASES: Mapping[str, tuple[str, ...]] = {
    "fast": ("gpt-5-mini", "claude-haiku-4.5"),
    "smart": ("claude-sonnet-4.5", "gpt-5"),
    "powerful": ("claude-opus-4.5", "gpt-5.2"),
    "reasoning": ("o3", "deepseek-reasoner"),
    "coding": ("deepseek-chat", "claude-sonnet-4.5"),
    "cost-effective": ("gpt-5-mini", "gemini-2.5-flash"),
}

# LiteLLM's provider names -> genai-prices provider ids (where they differ).
_BASELINE_PROVIDER = {
    "vertex_ai": "google",
    "gemini": "google",
    "bedrock": "aws",
    "together_ai": "together",
    "azure_ai": "azure",
    "fireworks_ai": "fireworks",
}


@dataclass(frozen=True)
class ModelPrice:
    model: str
    provider: str | None
    input_per_million: Decimal
    output_per_million: Decimal
    source: str

    def cost(self, input_tokens: int, output_tokens: int) -> tuple[Decimal, Decimal]:
        return (self.input_per_million * input_tokens / MILLION, self.output_per_million * output_tokens / MILLION)


@dataclass(frozen=True)
class PriceMatch:
    requested: str
    price: ModelPrice
    alias: str | None = None
    candidates: tuple[ModelPrice, ...] = ()


@dataclass(frozen=True)
class PriceMapState:
    prices: Mapping[str, ModelPrice]
    origin: str | None = None
    loaded_at: datetime | None = None


#: How many model names `PriceBook.lookup` remembers (then it starts again).
FOUND_CACHE = 4096
#: The price book's layers (`PriceBook.__setattr__`).
_LAYERS = frozenset({"overrides", "self_hosted", "config_prices", "aliases", "price_map"})


@dataclass
class PriceBook:
    """The in-memory price book; rebuilt pieces are swapped in whole (price map refresh, overrides)."""

    overrides: dict[str, ModelPrice] = field(default_factory=dict)
    self_hosted: tuple[tuple[str, ModelPrice], ...] = ()
    config_prices: dict[str, ModelPrice] = field(default_factory=dict)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(GUIDE_ALIASES))
    price_map: PriceMapState = field(default_factory=lambda: PriceMapState({}))
    #: Derived from the layers, forgotten when one is swapped (`__setattr__`): the dearest prices per provider,
    #: and `lookup`'s answers by name (every decision looks its model up).
    _ceilings: dict[str | None, tuple[Decimal, Decimal]] | None = field(default=None, repr=False)
    _found: dict[str, PriceMatch | None] = field(default_factory=dict, repr=False)

    def __setattr__(self, name: str, value: object) -> None:
        # Every layer is swapped in whole when it changes, never edited in place: a swap forgets what was
        # derived from the old layers (`lookup`'s answers, the ceilings), at no cost to the lookups themselves.
        object.__setattr__(self, name, value)
        if name in _LAYERS:
            self.__dict__["_found"] = {}
            self.__dict__["_ceilings"] = None

    def lookup(self, name: str) -> PriceMatch | None:
        """The price `name` runs at (an alias: its dearest member's); None when no layer prices it. Answers are
        remembered until a layer is swapped (at most FOUND_CACHE names: clients choose the names)."""
        try:
            return self._found[name]
        except KeyError:
            pass
        found = self._lookup(name)
        if len(self._found) >= FOUND_CACHE:
            self._found.clear()
        self._found[name] = found
        return found

    def _lookup(self, name: str, *, _depth: int = 0) -> PriceMatch | None:
        name = name.strip()
        if not name:
            return None
        direct = self._concrete(name)
        if direct is not None:
            return PriceMatch(name, direct)
        members = self.aliases.get(name) if _depth < 3 else None  # aliases of aliases, but never a loop
        if members:
            matches = (self._lookup(member, _depth=_depth + 1) for member in members)
            found = tuple(m.price for m in matches if m is not None)
            if found:
                dearest = max(found, key=lambda p: (p.output_per_million, p.input_per_million))
                return PriceMatch(name, dearest, alias=name, candidates=found)
        return None

    def _concrete(self, name: str) -> ModelPrice | None:
        provider, bare = split_provider(name)
        names = _spellings(name, bare)
        for candidate in names:
            if candidate in self.overrides:
                return self.overrides[candidate]
        # Self-hosted patterns match the name as asked (`llama-3.1-70b` is not `groq/llama-3.1-70b`).
        whole = tuple(dict.fromkeys((name, name.replace(".", "-"))))
        for pattern, price in self.self_hosted:
            if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in whole):
                return ModelPrice(name, price.provider, price.input_per_million, price.output_per_million, SELF_HOSTED)
        for candidate in names:
            if candidate in self.config_prices:
                return self.config_prices[candidate]
        for candidate in (*names, *(f"{provider}/{n}" for n in names if provider)):
            if candidate in self.price_map.prices:
                return self.price_map.prices[candidate]
        return baseline_price(bare, provider)

    def ceiling_price(self, name: str) -> ModelPrice | None:
        """A conservative price for a model nobody priced: the dearest input and the dearest output price of the
        known models of its provider (`openai/...`), else of every known model. None when nothing is priced."""
        if self._ceilings is None:
            self._ceilings = _ceilings(self.all_prices())
        provider, _ = split_provider(name.strip())
        found = self._ceilings.get(provider) if provider else None
        chosen = found or self._ceilings.get(None)
        if chosen is None:
            return None
        low, high = chosen
        scope = f"provider {provider}" if found else "any model"
        return ModelPrice(name, provider, low, high, f"unpriced: dearest known price of {scope}")

    def all_prices(self) -> list[ModelPrice]:
        """Every model any layer knows, the top layer's price winning, sorted by model name."""
        merged: dict[str, ModelPrice] = {p.model: p for p in baseline_prices()}
        merged.update(self.price_map.prices)
        merged.update(self.config_prices)
        merged.update({pattern: price for pattern, price in self.self_hosted})
        merged.update(self.overrides)
        return sorted(merged.values(), key=lambda p: p.model)


def _ceilings(prices: Iterable[ModelPrice]) -> dict[str | None, tuple[Decimal, Decimal]]:
    """Per provider (and None: over all), the dearest input and output price per million tokens."""
    out: dict[str | None, tuple[Decimal, Decimal]] = {}
    for price in prices:
        if price.input_per_million <= 0 and price.output_per_million <= 0:
            continue  # free (self-hosted): says nothing about what an unknown model costs
        for key in {price.provider, None}:
            low, high = out.get(key, (Decimal(0), Decimal(0)))
            out[key] = (max(low, price.input_per_million), max(high, price.output_per_million))
    return out


def split_provider(name: str) -> tuple[str | None, str]:
    """`openai/gpt-4o` -> ("openai", "gpt-4o"); `gpt-4o` -> (None, "gpt-4o")."""
    provider, slash, bare = name.partition("/")
    return (provider, bare) if slash and bare else (None, name)


def _spellings(name: str, bare: str) -> tuple[str, ...]:
    # claude-sonnet-4.5 (the guide) and claude-sonnet-4-5 (LiteLLM's map) name the same model.
    out = dict.fromkeys((name, bare, bare.replace(".", "-")))
    return tuple(out)


# ------------------------------------------------------------------------------------------------ the baseline


@lru_cache(maxsize=4096)
def baseline_price(model: str, provider: str | None) -> ModelPrice | None:
    provider_id = _BASELINE_PROVIDER.get(provider or "", provider)
    try:
        found_provider, found = _snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        if provider_id is None:
            return None
        return baseline_price(model, None)
    return _baseline_entry(found_provider.id, found)


def _baseline_entry(provider_id: str, model: Any) -> ModelPrice | None:
    prices = model.get_prices(datetime.now(UTC))
    rates = [_base_rate(prices.input_mtok), _base_rate(prices.output_mtok)]
    if rates[0] is None and rates[1] is None:
        return None
    return ModelPrice(model.id, provider_id, rates[0] or Decimal(0), rates[1] or Decimal(0), BASELINE)


def _base_rate(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(value) if not hasattr(value, "base") else Decimal(value.base)


@lru_cache(maxsize=1)
def baseline_prices() -> tuple[ModelPrice, ...]:
    out = []
    for provider in _snapshot.get_snapshot().providers:
        for model in provider.models:
            entry = _baseline_entry(provider.id, model)
            if entry is not None:
                out.append(entry)
    return tuple(out)


def baseline_cost(model: str, provider: str | None, input_tokens: int, output_tokens: int) -> Decimal | None:
    """The baseline's cost of one request (long-context tiers included), or None for an unknown model."""
    try:
        priced = calc_price(
            Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            model_ref=model,
            provider_id=_BASELINE_PROVIDER.get(provider or "", provider),
        )
    except LookupError:
        return None
    return Decimal(priced.total_price)


# --------------------------------------------------------------------------------------- LiteLLM's price map


def parse_price_map(data: Any) -> dict[str, ModelPrice]:
    """LiteLLM's model_prices_and_context_window.json -> prices per million tokens (entries without a price
    per token, such as image or per-second models, are skipped)."""
    if not isinstance(data, dict):
        raise ValueError("the price map is not a JSON object")
    out: dict[str, ModelPrice] = {}
    for name, entry in data.items():
        if name == "sample_spec" or not isinstance(entry, dict):
            continue
        rates = [_per_million(entry.get("input_cost_per_token")), _per_million(entry.get("output_cost_per_token"))]
        if rates[0] is None and rates[1] is None:
            continue
        provider = entry.get("litellm_provider")
        out[name] = ModelPrice(
            name,
            provider if isinstance(provider, str) else None,
            rates[0] or Decimal(0),
            rates[1] or Decimal(0),
            PRICE_MAP,
        )
    if not out:
        raise ValueError("the price map has no per-token prices")
    return out


def _per_million(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        rate = Decimal(str(value)) * MILLION
    except InvalidOperation:
        return None
    return rate.normalize() if rate.is_finite() and rate >= 0 else None


def read_price_map_cache(path: str) -> PriceMapState:
    tighten(path)  # a cache written by an older version may be world-readable
    try:
        raw = Path(path).read_text()
        state = PriceMapState(
            parse_price_map(json.loads(raw)),
            origin=f"cache:{path}",
            loaded_at=datetime.fromtimestamp(os.path.getmtime(path), UTC),
        )
    except FileNotFoundError:
        return PriceMapState({})
    except (OSError, ValueError) as exc:
        log.warning("ignoring the cached price map %s: %s", path, exc)
        return PriceMapState({})
    return state


async def fetch_price_map(source: str, cache_path: str, *, timeout_seconds: float = 20.0) -> PriceMapState:
    """Read the map from a URL or a file; a fetched map is cached on disk (written atomically)."""
    if source.startswith(("http://", "https://")):
        async with httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=True) as client:
            response = await client.get(source)
            response.raise_for_status()
            raw = response.text
        prices = parse_price_map(json.loads(raw))
        await asyncio.to_thread(_write_atomically, cache_path, raw)
    else:
        raw = await asyncio.to_thread(Path(source.removeprefix("file://")).read_text)
        prices = parse_price_map(json.loads(raw))
    return PriceMapState(prices, origin=source, loaded_at=datetime.now(UTC))


def _write_atomically(path: str, text: str) -> None:
    write_private_atomically(path, text)  # owner-only (0600), whatever the umask


# ---------------------------------------------------------------------------------- configuration and overrides


def self_hosted_prices(models: Iterable[tuple[str, Decimal, Decimal]]) -> tuple[tuple[str, ModelPrice], ...]:
    return tuple(
        (name, ModelPrice(name, "self-hosted", cost_in, cost_out, SELF_HOSTED)) for name, cost_in, cost_out in models
    )


_PRIVATE_SUFFIXES = (".local", ".internal", ".lan", ".localhost", ".svc", ".cluster.local")


def private_api_base(api_base: Any) -> bool:
    """A deployment served on our own network: a loopback, private or link-local address, `localhost`, a
    single-label host (a container or service name such as `ollama`) or a `.local`/`.internal`/`.lan`/`.svc` name."""
    if not isinstance(api_base, str) or not api_base.strip():
        return False
    host = urlsplit(api_base.strip() if "//" in api_base else f"//{api_base.strip()}").hostname
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_PRIVATE_SUFFIXES)
    return address.is_private or address.is_loopback or address.is_link_local


def read_litellm_config(path: str) -> tuple[dict[str, tuple[str, ...]], dict[str, ModelPrice]]:
    """Aliases (model_name -> deployment models) and per-deployment prices from LiteLLM's config.yaml."""
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    aliases: dict[str, list[str]] = {}
    prices: dict[str, ModelPrice] = {}
    for deployment in config.get("model_list") or []:
        if not isinstance(deployment, dict):
            continue
        name = deployment.get("model_name")
        params = deployment.get("litellm_params") or {}
        info = deployment.get("model_info") or {}
        target = params.get("model")
        if not isinstance(name, str) or not isinstance(target, str):
            continue
        if target != name:
            aliases.setdefault(name, []).append(target)
        rates = [_per_million(params.get(k, info.get(k))) for k in ("input_cost_per_token", "output_cost_per_token")]
        if rates[0] is None and rates[1] is None and private_api_base(params.get("api_base")):
            provider, _ = split_provider(target)  # a deployment of our own: free unless it says otherwise
            prices[name] = ModelPrice(name, provider, Decimal(0), Decimal(0), SELF_HOSTED)
            prices.setdefault(target, ModelPrice(target, provider, Decimal(0), Decimal(0), SELF_HOSTED))
        elif rates[0] is not None or rates[1] is not None:
            provider, _ = split_provider(target)
            price = ModelPrice(name, provider, rates[0] or Decimal(0), rates[1] or Decimal(0), LITELLM_CONFIG)
            prices[name] = price
            prices[target] = ModelPrice(
                target, provider, price.input_per_million, price.output_per_million, LITELLM_CONFIG
            )
    for alias, group in ((config.get("router_settings") or {}).get("model_group_alias") or {}).items():
        if isinstance(group, str):
            aliases.setdefault(alias, []).append(group)
    return {k: tuple(v) for k, v in aliases.items()}, prices


# ------------------------------------------------------------------------------------------ overrides and jobs

PRICES_TOPIC = "prices"


async def load_overrides(session: AsyncSession) -> dict[str, ModelPrice]:
    rows = (await session.scalars(select(ModelPriceRow))).all()
    return {r.model: ModelPrice(r.model, r.provider, r.input_per_million, r.output_per_million, OVERRIDE) for r in rows}


async def set_model_price(
    work: Work,
    principal: Principal,
    *,
    model: str,
    provider: str | None,
    input_per_million: Decimal,
    output_per_million: Decimal,
) -> ModelPrice:
    require_admin(principal, "setting a model price")
    name = validation.text("model", model, max_length=256) or ""
    provider = validation.text("provider", provider, max_length=64, required=False)
    price_in = validation.usd("input_per_million", input_per_million, allow_zero=True)
    price_out = validation.usd("output_per_million", output_per_million, allow_zero=True)
    row = await work.session.get(ModelPriceRow, name)
    if row is None:
        row = ModelPriceRow(model=name)
        work.session.add(row)
    row.provider, row.input_per_million, row.output_per_million = provider, price_in, price_out
    row.updated_at, row.updated_by = work.now, principal.subject
    await work.session.flush()
    work.emit(Event(PRICES_TOPIC, {"model": name}))
    return ModelPrice(name, provider, price_in, price_out, OVERRIDE)


async def delete_model_price(work: Work, principal: Principal, model: str) -> None:
    require_admin(principal, "removing a model price")
    row = await work.session.get(ModelPriceRow, model)
    if row is None:
        raise NotFound(f"no price override for {model!r}")
    await work.session.delete(row)
    work.emit(Event(PRICES_TOPIC, {"model": model}))


def build_price_book(settings: Settings, overrides: dict[str, ModelPrice]) -> PriceBook:
    """Everything but the network: overrides, self-hosted models, LiteLLM's config.yaml, the cached price map."""
    book = PriceBook(
        overrides=overrides,
        self_hosted=self_hosted_prices(settings.self_hosted_models),
        price_map=read_price_map_cache(settings.price_map_cache),
    )
    if settings.litellm_config_path:
        aliases, config_prices = read_litellm_config(settings.litellm_config_path)
        book.aliases = {**book.aliases, **aliases}  # swapped whole, like every layer (`PriceBook.__setattr__`)
        book.config_prices = config_prices
    return book


async def refresh_price_map(runtime: Runtime, tick: datetime) -> str:
    """Daily job (and at start): fetch LiteLLM's price map; on failure the previous map (or the cache) stays."""
    source = runtime.settings.price_map_url
    if not source:
        return "no LITELLM_PRICE_MAP_URL: baseline prices only"
    try:
        state = await fetch_price_map(source, runtime.settings.price_map_cache)
    except (httpx.HTTPError, OSError, ValueError) as exc:
        kept = runtime.prices.price_map
        using = f"the cached map of {len(kept.prices)} models" if kept.prices else "the offline baseline prices"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExpectedFailure(f"could not fetch LiteLLM's price map from {source} ({reason}); using {using}") from exc
    runtime.prices.price_map = state
    return f"{len(state.prices)} models from {source}"


async def reload_overrides(runtime: Runtime, tick: datetime) -> str:
    """Overrides set through another replica reach this one within a minute (at once through events here)."""
    async with runtime.read() as session:
        runtime.prices.overrides = await load_overrides(session)
    return f"{len(runtime.prices.overrides)} overrides"
