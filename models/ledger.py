"""The admission ledger: per budget and month, the spend it had when last reconciled, and the allowances each
app instance holds. The sum of allowances plus recorded spend never exceeds a budget's hard limit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Money, UTCDateTime


class BudgetLedgerRow(Base):
    """One row per budget key and month; locked (FOR UPDATE) while allowances are granted or returned."""

    __tablename__ = "spendplane_budget_ledgers"

    budget_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    recorded: Mapped[Decimal] = mapped_column(Money)
    reconciled_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AllowanceRow(Base):
    """Budget an app instance may hand out to requests without asking the database again."""

    __tablename__ = "spendplane_allowances"

    budget_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    granted: Mapped[Decimal] = mapped_column(Money)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SettlementRow(Base):
    """A request's real cost as LiteLLM's logging callback reported it, for whichever instance holds its
    reservation (the callback may reach another replica than the pre-request check did)."""

    __tablename__ = "spendplane_settlements"

    call_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(256))
    actual: Mapped[Decimal] = mapped_column(Money)
    failed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
