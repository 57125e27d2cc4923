"""Spend forecasts: per scope (a team, or '' for the whole platform) and month, the latest generation only."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Date, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Money, UTCDateTime


class ForecastRow(Base):
    __tablename__ = "spendplane_forecasts"
    __table_args__ = (UniqueConstraint("scope", "period"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The team id, or '' for the global forecast.
    scope: Mapped[str] = mapped_column(String(256))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    horizon: Mapped[str] = mapped_column(String(16))  # current_month, next_month
    forecasted_cost: Mapped[Decimal] = mapped_column(Money)
    confidence_low: Mapped[Decimal] = mapped_column(Money)
    confidence_high: Mapped[Decimal] = mapped_column(Money)
    actual_to_date: Mapped[Decimal] = mapped_column(Money)
    method: Mapped[str] = mapped_column(String(32))
    #: The backtest that chose the method: per candidate MASE, interval coverage and origins.
    backtest: Mapped[dict[str, Any]] = mapped_column(JSON)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ForecastOutlookRow(Base):
    """A scope's daily forecast from its generation day on, with its calibrated 80% band of cumulative spend:
    what a budget's exhaustion dates are read from. One per scope (team, user, key, end user or global),
    replaced by every generation."""

    __tablename__ = "spendplane_forecast_outlooks"

    scope_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: The team, user, key or end-user id; '' for the whole platform.
    scope_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    start_day: Mapped[date] = mapped_column(Date)
    method: Mapped[str] = mapped_column(String(32))
    calibration: Mapped[str] = mapped_column(String(16))
    #: USD per day from start_day on; then the 10th and 90th percentiles of cumulative spend through each day.
    point: Mapped[list[float]] = mapped_column(JSON)
    low: Mapped[list[float]] = mapped_column(JSON)
    high: Mapped[list[float]] = mapped_column(JSON)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime)
