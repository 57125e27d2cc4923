"""What the first start sets up besides secrets: the guide's pre-configured global budget (soft $1,000, hard
$1,500 a month), from GLOBAL_BUDGET_USD / GLOBAL_SOFT_BUDGET_USD or LiteLLM's `litellm_settings.max_budget`.

Once per database: a marker row (in the instance table, written in the same transaction as the budget) records
that it was decided, so a budget the admin deleted or edited is never recreated or overwritten, and two instances
starting at once create it once (the marker's primary key serialises them on PostgreSQL and SQLite alike).
A database that already holds budgets is not a first start: the marker is written and nothing is created."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

import yaml
from sqlalchemy import func, select

from models.budgets import BudgetRow
from models.db import Database, insert_or_ignore
from models.instance import InstanceSecretRow
from resolvers.auth import Principal, Role
from resolvers.budgets import BudgetDraft, Thresholds, create_budget
from resolvers.platform.config import Settings
from resolvers.platform.errors import InvalidInput
from resolvers.platform.work import Work

log = logging.getLogger("spendplane")

MARKER = "first_global_budget"
DEFAULT_HARD_USD = Decimal(1500)
NAME = "Global Monthly Budget"
_SYSTEM = Principal(role=Role.ADMIN, subject="spendplane first start")


@dataclass(frozen=True)
class GlobalBudgetPlan:
    hard_usd: Decimal  # 0: none
    soft_usd: Decimal
    source: str


def litellm_max_budget(path: str | None) -> Decimal | None:
    """`litellm_settings.max_budget` of LiteLLM's config.yaml (USD), or None when absent or unreadable."""
    if not path:
        return None
    try:
        with open(path) as handle:
            config: Any = yaml.safe_load(handle) or {}
        raw = (config.get("litellm_settings") or {}).get("max_budget")
        if raw is None or isinstance(raw, bool):
            return None
        value = Decimal(str(raw))
    except (OSError, yaml.YAMLError, AttributeError, ArithmeticError, ValueError):
        return None
    return value if value.is_finite() and value >= 0 else None


def plan(settings: Settings) -> GlobalBudgetPlan:
    if settings.global_budget_usd is not None:
        return GlobalBudgetPlan(settings.global_budget_usd, settings.global_soft_budget_usd, "GLOBAL_BUDGET_USD")
    from_config = litellm_max_budget(settings.litellm_config_path)
    if from_config is not None:
        return GlobalBudgetPlan(from_config, settings.global_soft_budget_usd, "litellm_settings.max_budget")
    return GlobalBudgetPlan(DEFAULT_HARD_USD, settings.global_soft_budget_usd, "the default")


async def ensure_first_global_budget(db: Database, settings: Settings, now: datetime) -> str | None:
    """Create the global budget if this database never decided on one; returns its id when created here."""
    chosen = plan(settings)
    async with db.sessions() as session, session.begin():
        table = InstanceSecretRow.__table__
        marked = await session.execute(
            insert_or_ignore(db.dialect, table).returning(table.c.name),  # type: ignore[arg-type]
            {"name": MARKER, "value": f"{chosen.hard_usd}/{chosen.soft_usd}", "created_at": now},
        )
        if marked.first() is None:
            return None  # decided before (by this or another instance): never again
        if chosen.hard_usd == 0:
            return None
        if await session.scalar(select(func.count()).select_from(BudgetRow)):
            log.info("not creating a global budget: this database already has budgets")
            return None
        # A percentage has six decimals ($1,000 of $1,500 reads 66.6666%): the amount itself is kept beside it.
        soft = (
            (chosen.soft_usd / chosen.hard_usd).quantize(Decimal("0.000001"), rounding=ROUND_DOWN)
            if 0 < chosen.soft_usd <= chosen.hard_usd
            else None
        )
        work = Work(session=session, now=now, dialect=db.dialect)
        try:
            budget = await create_budget(
                work,
                _SYSTEM,
                BudgetDraft(
                    name=NAME,
                    entity_type="global",
                    entity_id=None,
                    monthly_limit=chosen.hard_usd,
                    soft_limit_percent=soft,
                    hard_limit_percent=Decimal(1) if soft is not None else None,
                    # Exact where the six decimals of the percent are not: warns at $1,000, not $999.999.
                    soft_limit_usd=chosen.soft_usd if soft is not None else None,
                ),
                Thresholds.from_settings(settings),
            )
        except InvalidInput as exc:
            log.warning("could not create the first global budget (%s): %s", chosen.source, exc.message)
            return None
    log.warning(
        "created the global budget %r: $%s a month, warning at $%s (%s; edit or delete it freely, it is never "
        "recreated)",
        NAME,
        _usd(chosen.hard_usd),
        _usd(budget.soft_limit),
        chosen.source,
    )
    return budget.id


def _usd(amount: Decimal) -> str:
    """An amount as people write it: 1000, 1500.5 (Decimal's normalize() alone gives 1E+3)."""
    return format(amount.normalize(), "f")
