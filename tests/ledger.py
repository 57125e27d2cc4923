"""Independent checks for the FinOps tests: figures straight from LiteLLM_SpendLogs with plain SQL and Python
arithmetic (no spendplane query code), demo traffic, and the rollup refresh."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import text

from models.db import Database
from models.litellm import probe_litellm_schema
from resolvers.demo import DemoPlan, write_demo_data
from resolvers.rollups import RollupStatus, refresh_rollups_of
from tests.conftest import NOW
from tests.support import Api

CENT = Decimal("0.01")


@dataclass
class Ledger:
    """Sums of raw rows, keyed by one column; `cents` from a float fsum, `nanos` row-rounded like LiteLLM."""

    spend: dict[Any, list[float]] = field(default_factory=lambda: defaultdict(list))
    requests: dict[Any, int] = field(default_factory=lambda: defaultdict(int))
    input_tokens: dict[Any, int] = field(default_factory=lambda: defaultdict(int))
    output_tokens: dict[Any, int] = field(default_factory=lambda: defaultdict(int))

    def cents(self, key: Any) -> Decimal:
        return Decimal(math.fsum(self.spend[key])).quantize(CENT, rounding=ROUND_HALF_EVEN)

    def nanos(self, key: Any) -> Decimal:
        return Decimal(sum(round(s * 10**9) for s in self.spend[key])) / 10**9

    def groups(self) -> set[Any]:
        return set(self.requests)


async def raw_ledger(db: Database, start: date, end_inclusive: date, by: str, where: str = "") -> Ledger:
    """`by` is a raw SQL expression over LiteLLM_SpendLogs (e.g. 'model', '"user"', "'all'")."""
    start_at = datetime.combine(start, time(0))
    end_at = datetime.combine(end_inclusive + timedelta(days=1), time(0))
    sql = (
        f'SELECT {by} AS k, spend, prompt_tokens, completion_tokens FROM "LiteLLM_SpendLogs" '
        f'WHERE "startTime" >= :s AND "startTime" < :e {where}'
    )
    ledger = Ledger()
    # SQLite keeps LiteLLM's timestamps as ISO text; PostgreSQL as timestamp without time zone.
    bounds: dict[str, Any] = {"s": start_at, "e": end_at}
    if not db.is_postgres:
        bounds = {k: v.isoformat(sep=" ") for k, v in bounds.items()}
    async with db.engine.connect() as conn:
        for key, spend, prompt, completion in await conn.execute(text(sql), bounds):
            ledger.spend[key].append(float(spend))
            ledger.requests[key] += 1
            ledger.input_tokens[key] += int(prompt)
            ledger.output_tokens[key] += int(completion)
    return ledger


async def demo(db: Database, *, rows: int = 3000, days: int = 50, end: datetime = NOW, seed: int = 5) -> None:
    async with db.engine.connect() as conn:
        schema = await probe_litellm_schema(conn)
    await write_demo_data(db, schema, DemoPlan(rows=rows, days=days, end=end, seed=seed), embedded=True)


async def refresh(api: Api, *, since: date | None = None) -> RollupStatus:
    return await refresh_rollups_of(api.runtime(), since)


def cents(value: str | float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_EVEN)
