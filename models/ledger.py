"""The admission ledger: per budget and window, a row to lock while allowances are granted, the allowances each
app instance holds (recorded spend plus every live allowance never exceeds a budget's hard limit), and the
settlements that tie a request's real spend to exactly one hold, on whichever instance claims it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Money, UTCDateTime

#: A window's key: its UTC start, `2026-11-01T00:00Z` (resolvers.platform.periods.Period.key).
PERIOD_KEY_LENGTH = 32


class BudgetLedgerRow(Base):
    """One row per budget key and window; locked (FOR UPDATE) while allowances are granted."""

    __tablename__ = "spendplane_budget_ledgers"

    budget_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    period: Mapped[str] = mapped_column(String(PERIOD_KEY_LENGTH), primary_key=True)
    recorded: Mapped[Decimal] = mapped_column(Money)
    reconciled_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AllowanceRow(Base):
    """Budget an app instance may hand out to requests without asking the database again. Every other instance
    counts `granted` until `expires_at`: the instance renews it while it lives, and a crashed instance's share —
    which may all be holds of requests still running — stays counted for RESERVATION_TTL_SECONDS. `held` is the
    part its open holds took, as of `updated_at` (shown as in-flight spend, and judged against soft limits)."""

    __tablename__ = "spendplane_allowances"

    budget_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    period: Mapped[str] = mapped_column(String(PERIOD_KEY_LENGTH), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    granted: Mapped[Decimal] = mapped_column(Money)
    held: Mapped[Decimal] = mapped_column(Money, default=Decimal(0), server_default="0")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SettlementRow(Base):
    """A request's real cost — from LiteLLM's logging callback, or from its spend-log row once visible — and the
    instance whose hold it settled. One row per request (LiteLLM's spend-log id), whatever its call id: clients
    may reuse call ids, so a settlement releases one hold of that call id and key, and only the instance that
    claims it (`claimed_by`, set once) does. When more than one instance may hold a hold of that call id and key,
    they bid for it first: `bid_by` holds the smallest hold of them (`bid_amount`) as far as they have told, and
    claims it once the bidding has been open for the settling delay (`created_at` is when it opened)."""

    __tablename__ = "spendplane_settlements"

    request_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(256), index=True)
    #: sha256 of the key the request was made with ('' when unknown): a hold is matched by call id and key.
    api_key: Mapped[str] = mapped_column(String(64), default="")
    actual: Mapped[Decimal] = mapped_column(Money)
    failed: Mapped[bool] = mapped_column(Boolean)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    #: The instance with the smallest open hold of the call id and key that bid so far, and that hold's amount.
    bid_by: Mapped[str | None] = mapped_column(String(64))
    bid_amount: Mapped[Decimal | None] = mapped_column(Money)
    #: When the row was stored, or when bidding for it (re)opened: the first bid, or a bidder withdrawing.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
