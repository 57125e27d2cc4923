"""Import point that registers every spendplane table on `Base.metadata` (for Alembic and tests)."""

from __future__ import annotations

from models import alerts, anomalies, budgets, chargeback, forecasts, instance, jobs, ledger, pricing, rollups, sla
from models.base import Base, litellm_metadata

metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic filter: only our tables. LiteLLM's (and anything else in a shared database) are never diffed."""
    if type_ == "table":
        return name in metadata.tables
    return True


__all__ = [
    "alerts",
    "anomalies",
    "budgets",
    "chargeback",
    "forecasts",
    "include_name",
    "instance",
    "jobs",
    "ledger",
    "litellm_metadata",
    "metadata",
    "pricing",
    "rollups",
    "sla",
]
