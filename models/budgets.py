"""The budgets table: spending limits per window (daily to yearly, in a time zone) for a user, a team, a key, an
end user, a tag or the whole platform."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Money, Ratio, UTCDateTime


class BudgetRow(Base):
    __tablename__ = "spendplane_budgets"
    # One budget per entity and window length: "$50 a day and $500 a month" are two rows.
    __table_args__ = (UniqueConstraint("entity_type", "entity_id", "period"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    entity_type: Mapped[str] = mapped_column(String(16))
    # '' for the global budget, so the unique constraint also holds there (NULLs never collide in SQL).
    entity_id: Mapped[str] = mapped_column(String(256))
    #: daily, weekly, monthly, quarterly or yearly (resolvers.platform.periods.Cadence).
    period: Mapped[str] = mapped_column(String(16), server_default="monthly")
    time_zone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    week_starts_on: Mapped[str] = mapped_column(String(9), server_default="monday")
    month_start_day: Mapped[int] = mapped_column(Integer, server_default="1")
    year_start_month: Mapped[int] = mapped_column(Integer, server_default="1")
    #: USD per window (the guide's monthly limit for a monthly budget).
    spend_limit: Mapped[Decimal] = mapped_column(Money)
    soft_limit_percent: Mapped[Decimal] = mapped_column(Ratio)
    #: The soft limit as an amount (USD per window) when it was set as one (the first start's
    #: GLOBAL_SOFT_BUDGET_USD, which six decimals of a fraction cannot always hit: $1,000 of $1,500): it warns there
    #: exactly. Null: at limit x soft_limit_percent. Any change of the limit or a percent clears it.
    soft_limit_usd: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    hard_limit_percent: Mapped[Decimal] = mapped_column(Ratio)
    alert_email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
