"""Provider health: requests, errors, availability and latency percentiles per provider and model over a window of
LiteLLM_SpendLogs, and the snapshots the collector keeps of them.

What counts (the usual convention of provider SLAs and status pages; docs/sla.md says the same for users):
- Only rows in the window by `"startTime"` are read (its index), and only requests a provider was called for:
  LiteLLM also logs requests refused before calling any provider (bad key, budget, guardrail, spendplane's own
  refusals), and those say nothing about a provider. Some carry no provider (`custom_llm_provider` empty); the
  rest name the provider and model asked for, and are failures whose metadata says no provider ran
  (`resolvers.spend.never_ran`: `status_fields.guardrail_status` is "guardrail_intervened", or
  `error_information.llm_provider` is there and empty or null).
- A row failed when its `status` is "failure"; where the column is NULL (older LiteLLM) or missing, the
  `metadata.status` LiteLLM also writes decides; with neither, the row succeeded.
- Error rate = failures / requests. Availability = good / valid requests: a failure whose
  `metadata.error_information.error_code` is 400, 401, 403, 404 or 422 is the caller's fault and not a valid
  request; every other failure — provider 429s (also counted apart as `rate_limited`), 5xx, timeouts, and failures
  without an error code (older rows) — is a valid request that went bad.
- Latency = endTime - startTime over successful rows. Time to first token = completionStartTime - startTime over
  successful streaming rows only: LiteLLM sets completionStartTime = endTime for a call that did not stream.
- Percentiles are nearest-rank (the value at rank ceil(p * n) of the n ordered values, PostgreSQL's
  `percentile_disc`), exact to the microsecond on both databases: PostgreSQL computes them in SQL; SQLite reads
  the window's ordered durations and picks the same ranks here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    case,
    delete,
    false,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import insert_or_ignore
from models.litellm import LiteLLMSchema, spend_logs
from models.sla import HealthRunRow, ProviderHealthRow, elapsed_us
from resolvers.platform import validation
from resolvers.platform.errors import InvalidInput
from resolvers.platform.periods import Period
from resolvers.spend import never_ran_sql, requested_model, require_spend_logs

#: Failures that are the caller's fault, not the provider's (their requests are not valid for availability).
CLIENT_ERROR_CODES = ("400", "401", "403", "404", "422")
RATE_LIMITED_CODE = "429"
LATENCY_FRACTIONS = (0.5, 0.95, 0.99)
TTFT_FRACTIONS = (0.5, 0.95)
MAX_HISTORY_HOURS = 720


class Metric(StrEnum):
    """What an SLA target or a failover trigger measures."""

    LATENCY_P50 = "latency_p50"
    LATENCY_P95 = "latency_p95"
    LATENCY_P99 = "latency_p99"
    TTFT_P95 = "ttft_p95"
    ERROR_RATE = "error_rate"
    AVAILABILITY = "availability"

    @property
    def is_rate(self) -> bool:
        return self in (Metric.ERROR_RATE, Metric.AVAILABILITY)

    def breached(self, measured: float, target: float) -> bool:
        """Availability must stay at or above its target; everything else at or below."""
        return measured < target if self is Metric.AVAILABILITY else measured > target

    def describe(self, value: float) -> str:
        return f"{value * 100:.2f}%" if self.is_rate else f"{value:,.0f} ms"

    @property
    def label(self) -> str:
        return {
            Metric.LATENCY_P50: "p50 latency",
            Metric.LATENCY_P95: "p95 latency",
            Metric.LATENCY_P99: "p99 latency",
            Metric.TTFT_P95: "p95 time to first token",
            Metric.ERROR_RATE: "error rate",
            Metric.AVAILABILITY: "availability",
        }[self]


def nearest_rank(ordered: Sequence[int], fraction: float) -> int | None:
    """The value at rank ceil(fraction * n) (1-based, at least 1) of ascending values: PostgreSQL's percentile_disc,
    the same float arithmetic included."""
    if not ordered:
        return None
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


@dataclass(frozen=True)
class Health:
    """One provider and model (or a selection of them) over a window. Latencies in whole microseconds."""

    provider: str
    model: str
    window: Period
    requests: int
    failures: int
    client_errors: int
    rate_limited: int
    streaming_requests: int
    latency_p50_us: int | None = None
    latency_p95_us: int | None = None
    latency_p99_us: int | None = None
    ttft_p50_us: int | None = None
    ttft_p95_us: int | None = None

    @property
    def window_start(self) -> datetime:
        return self.window.start

    @property
    def window_end(self) -> datetime:
        return self.window.end

    @property
    def window_minutes(self) -> int:
        return int((self.window.end - self.window.start).total_seconds() // 60)

    @property
    def successes(self) -> int:
        return self.requests - self.failures

    @property
    def valid_requests(self) -> int:
        return self.requests - self.client_errors

    @property
    def good_requests(self) -> int:
        return self.successes

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None

    @property
    def availability(self) -> float | None:
        return self.good_requests / self.valid_requests if self.valid_requests else None

    @property
    def latency_p50_ms(self) -> float | None:
        return _ms(self.latency_p50_us)

    @property
    def latency_p95_ms(self) -> float | None:
        return _ms(self.latency_p95_us)

    @property
    def latency_p99_ms(self) -> float | None:
        return _ms(self.latency_p99_us)

    @property
    def ttft_p50_ms(self) -> float | None:
        return _ms(self.ttft_p50_us)

    @property
    def ttft_p95_ms(self) -> float | None:
        return _ms(self.ttft_p95_us)

    def value(self, metric: Metric) -> float | None:
        return {
            Metric.LATENCY_P50: self.latency_p50_ms,
            Metric.LATENCY_P95: self.latency_p95_ms,
            Metric.LATENCY_P99: self.latency_p99_ms,
            Metric.TTFT_P95: self.ttft_p95_ms,
            Metric.ERROR_RATE: self.error_rate,
            Metric.AVAILABILITY: self.availability,
        }[metric]

    def sample(self, metric: Metric) -> int:
        """How many requests the metric is computed from."""
        if metric is Metric.ERROR_RATE:
            return self.requests
        if metric is Metric.AVAILABILITY:
            return self.valid_requests
        if metric is Metric.TTFT_P95:
            return self.streaming_requests
        return self.successes

    @classmethod
    def from_row(cls, row: ProviderHealthRow) -> Health:
        return cls(
            provider=row.provider,
            model=row.model,
            window=Period(row.window_start, row.window_end),
            requests=row.requests,
            failures=row.failures,
            client_errors=row.client_errors,
            rate_limited=row.rate_limited,
            streaming_requests=row.streaming,
            latency_p50_us=row.latency_p50_us,
            latency_p95_us=row.latency_p95_us,
            latency_p99_us=row.latency_p99_us,
            ttft_p50_us=row.ttft_p50_us,
            ttft_p95_us=row.ttft_p95_us,
        )


def _ms(micros: int | None) -> float | None:
    return None if micros is None else micros / 1000


# ---------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class _Classes:
    """How a spend-log row is classified, as SQL over the columns this LiteLLM release has."""

    failed: ColumnElement[bool]
    #: A failure refused before any provider was called (`never_ran`): not a request of the provider it names.
    refused: ColumnElement[bool]
    client_error: ColumnElement[bool]
    rate_limited: ColumnElement[bool]
    streaming: ColumnElement[bool]
    latency: ColumnElement[int]
    ttft: ColumnElement[int]


def _classes(schema: LiteLLMSchema, dialect: str) -> _Classes:
    c = spend_logs.c
    statuses: list[ColumnElement[str | None]] = []
    if schema.has(spend_logs, "status"):
        statuses.append(c.status)
    has_metadata = schema.has(spend_logs, "metadata")
    if has_metadata:
        statuses.append(c.metadata["status"].as_string())
    # coalesce(…, '') keeps every test two-valued: a NULL would drop the row from both sides of a NOT.
    failed = func.coalesce(*statuses, "") == "failure"
    code = func.coalesce(c.metadata[("error_information", "error_code")].as_string(), "") if has_metadata else None
    client_error = and_(failed, code.in_(CLIENT_ERROR_CODES)) if code is not None else false()
    rate_limited = and_(failed, code == RATE_LIMITED_CODE) if code is not None else false()
    first_token = c.completion_start_time
    if schema.has(spend_logs, "completion_start_time"):
        streaming = and_(~failed, first_token.is_not(None), first_token < c.end_time)
    else:
        streaming = false()
    return _Classes(
        failed=failed,
        refused=and_(failed, never_ran_sql(schema, dialect)),
        client_error=client_error,
        rate_limited=rate_limited,
        streaming=streaming,
        latency=elapsed_us(c.end_time, c.start_time),
        ttft=elapsed_us(first_token, c.start_time),
    )


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _percentiles(
    fractions: Sequence[float], value: ColumnElement[int], where: ColumnElement[bool]
) -> ColumnElement[list[int] | None]:
    # Constants of ours, not input: one sort yields every percentile of the array.
    array: ColumnElement[list[float]] = literal_column(f"ARRAY[{', '.join(repr(f) for f in fractions)}]::float8[]")
    ordered = func.percentile_disc(array).within_group(value).filter(where)
    result: ColumnElement[list[int] | None] = type_coerce(ordered, ARRAY(BigInteger))  # type: ignore[arg-type]
    return result


async def measure(
    session: AsyncSession,
    schema: LiteLLMSchema,
    window: Period,
    *,
    provider: str | None = None,
    models: Collection[str] | None = None,
    requested: Collection[str] | None = None,
    grouped: bool = True,
    label: tuple[str, str] = ("*", "*"),
) -> list[Health]:
    """Health per provider and model over `window` (or, `grouped=False`, one figure for the whole selection, named
    `label`), optionally only one provider's rows and only some models (the `model` column: the deployment
    called). With `requested`: per name clients asked for instead (LiteLLM's `model_group`, else `model`), across
    providers, for those names only — what failover rules route. Reads only the window's rows."""
    require_spend_logs(schema)
    c = spend_logs.c
    dialect = session.get_bind().dialect.name
    postgres = dialect == "postgresql"
    classes = _classes(schema, dialect)
    where = [c.start_time >= window.start, c.start_time < window.end, c.custom_llm_provider != "", ~classes.refused]
    if provider is not None:
        where.append(c.custom_llm_provider == provider)
    if models is not None:
        if not models:
            return []
        where.append(c.model.in_(sorted(models)))
    keys: list[ColumnElement[Any]] = [c.custom_llm_provider, c.model] if grouped else []
    if requested is not None:
        if not requested:
            return []
        name = requested_model(schema)
        where.append(name.in_(sorted(requested)))
        keys = [name.label("requested")]
    counts: list[ColumnElement[Any]] = [
        func.count().label("requests"),
        _count_if(classes.failed).label("failures"),
        _count_if(classes.client_error).label("client_errors"),
        _count_if(classes.rate_limited).label("rate_limited"),
        _count_if(classes.streaming).label("streaming"),
    ]
    if postgres:
        counts += [
            _percentiles(LATENCY_FRACTIONS, classes.latency, ~classes.failed).label("latency"),
            _percentiles(TTFT_FRACTIONS, classes.ttft, classes.streaming).label("ttft"),
        ]
    query = select(*keys, *counts).where(*where)
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    rows = (await session.execute(query)).mappings().all()
    found: list[Health] = []
    latencies: dict[tuple[str, ...], tuple[int | None, ...]] = {}
    ttfts: dict[tuple[str, ...], tuple[int | None, ...]] = {}
    if not postgres:
        latencies = await _ranked(session, keys, classes.latency, [*where, ~classes.failed], LATENCY_FRACTIONS)
        ttfts = await _ranked(session, keys, classes.ttft, [*where, classes.streaming], TTFT_FRACTIONS)
    for row in rows:
        if row["requests"] == 0:
            continue  # an ungrouped selection with no rows still answers one row of zeros
        key: tuple[str, ...] = (
            (row["requested"],)
            if requested is not None
            else (row["custom_llm_provider"], row["model"])
            if grouped
            else ("", "")
        )
        latency = tuple(row["latency"] or (None,) * 3) if postgres else latencies.get(key, (None,) * 3)
        ttft = tuple(row["ttft"] or (None,) * 2) if postgres else ttfts.get(key, (None,) * 2)
        provider_name, model_name = ("*", key[0]) if requested is not None else key if grouped else label
        found.append(
            Health(
                provider=provider_name,
                model=model_name,
                window=window,
                requests=int(row["requests"]),
                failures=int(row["failures"]),
                client_errors=int(row["client_errors"]),
                rate_limited=int(row["rate_limited"]),
                streaming_requests=int(row["streaming"]),
                latency_p50_us=latency[0],
                latency_p95_us=latency[1],
                latency_p99_us=latency[2],
                ttft_p50_us=ttft[0],
                ttft_p95_us=ttft[1],
            )
        )
    return found


async def _ranked(
    session: AsyncSession,
    keys: Sequence[ColumnElement[Any]],
    value: ColumnElement[int],
    where: list[ColumnElement[bool]],
    fractions: Sequence[float],
) -> dict[tuple[str, ...], tuple[int | None, ...]]:
    """SQLite: the window's values in order, per group, and the nearest ranks picked here."""
    rows = await session.execute(select(*keys, value).where(*where).order_by(*keys, value))
    found: dict[tuple[str, ...], tuple[int | None, ...]] = {}
    for key, group in itertools.groupby(rows, key=lambda r: tuple(r[:-1])):
        ordered = [int(r[-1]) for r in group if r[-1] is not None]
        name = tuple(str(k) for k in key) if keys else ("", "")
        found[name] = tuple(nearest_rank(ordered, f) for f in fractions)
    return found


# ---------------------------------------------------------------------------------------------- snapshots


async def store_run(
    session: AsyncSession, dialect: str, window: Period, collected_at: datetime, found: list[Health]
) -> bool:
    """Keep one run's figures. False when this window was stored already (a run repeated for the same tick)."""
    run = insert_or_ignore(dialect, HealthRunRow.__table__).returning(HealthRunRow.window_end)  # type: ignore[arg-type]
    inserted = (
        await session.execute(
            run,
            {
                "window_end": window.end,
                "window_start": window.start,
                "collected_at": collected_at,
                "groups": len(found),
                "requests": sum(h.requests for h in found),
            },
        )
    ).first()
    if inserted is None:
        return False
    if found:
        await session.execute(
            insert_or_ignore(dialect, ProviderHealthRow.__table__),  # type: ignore[arg-type]
            [
                {
                    "window_end": window.end,
                    "window_start": window.start,
                    "provider": h.provider,
                    "model": h.model,
                    "requests": h.requests,
                    "failures": h.failures,
                    "client_errors": h.client_errors,
                    "rate_limited": h.rate_limited,
                    "streaming": h.streaming_requests,
                    "latency_p50_us": h.latency_p50_us,
                    "latency_p95_us": h.latency_p95_us,
                    "latency_p99_us": h.latency_p99_us,
                    "ttft_p50_us": h.ttft_p50_us,
                    "ttft_p95_us": h.ttft_p95_us,
                }
                for h in found
            ],
        )
    return True


async def prune_snapshots(session: AsyncSession, before: datetime) -> int:
    await session.execute(delete(ProviderHealthRow).where(ProviderHealthRow.window_end < before))
    result = await session.execute(delete(HealthRunRow).where(HealthRunRow.window_end < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def current_health(session: AsyncSession) -> list[Health]:
    """The latest run's figures (empty when it saw no traffic, or before the first run)."""
    latest = select(func.max(HealthRunRow.window_end)).scalar_subquery()
    rows = await session.scalars(
        select(ProviderHealthRow)
        .where(ProviderHealthRow.window_end == latest)
        .order_by(ProviderHealthRow.provider, ProviderHealthRow.model)
    )
    return [Health.from_row(r) for r in rows]


async def health_history(
    session: AsyncSession, now: datetime, hours: int, *, provider: str | None = None, model: str | None = None
) -> list[Health]:
    """Every run's figures whose window ended in the last `hours`, oldest first (for charts)."""
    if not 1 <= hours <= MAX_HISTORY_HOURS:
        raise InvalidInput("hours", f"must be from 1 to {MAX_HISTORY_HOURS}")
    provider = validation.identifier("provider", provider, max_length=64)
    model = validation.identifier("model", model)
    row = ProviderHealthRow
    query = select(row).where(row.window_end > now - timedelta(hours=hours), row.window_end <= now)
    if provider is not None:
        query = query.where(row.provider == provider)
    if model is not None:
        query = query.where(row.model == model)
    rows = await session.scalars(query.order_by(row.window_end, row.provider, row.model))
    return [Health.from_row(r) for r in rows]
