"""The budgets table: monthly spending limits for a user, a team, a key or the whole platform."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Money, Ratio, UTCDateTime


class BudgetRow(Base):
    __tablename__ = "spendplane_budgets"
    __table_args__ = (UniqueConstraint("entity_type", "entity_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    entity_type: Mapped[str] = mapped_column(String(16))
    # '' for the global budget, so the unique constraint also holds there (NULLs never collide in SQL).
    entity_id: Mapped[str] = mapped_column(String(256))
    monthly_limit: Mapped[Decimal] = mapped_column(Money)
    soft_limit_percent: Mapped[Decimal] = mapped_column(Ratio)
    hard_limit_percent: Mapped[Decimal] = mapped_column(Ratio)
    alert_email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
