"""Alerts (deduplicated by key) and their delivery outbox (email, webhook), written in one transaction."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Money, UTCDateTime


class AlertRow(Base):
    __tablename__ = "spendplane_alerts"
    __table_args__ = (
        Index("ix_spendplane_alerts_created_at", "created_at"),
        Index("ix_spendplane_alerts_team_id_created_at", "team_id", "created_at"),
        Index("ix_spendplane_alerts_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(48))
    severity: Mapped[str] = mapped_column(String(16))
    #: e.g. "<budget id>:approaching_limit:2026-11": one alert per budget, type and month.
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    budget_id: Mapped[str | None] = mapped_column(String(36))
    entity_type: Mapped[str | None] = mapped_column(String(16))
    entity_id: Mapped[str | None] = mapped_column(String(256))
    team_id: Mapped[str | None] = mapped_column(String(256))
    user_id: Mapped[str | None] = mapped_column(String(256))
    message: Mapped[str] = mapped_column(Text)
    spend: Mapped[Decimal | None] = mapped_column(Money)
    limit_usd: Mapped[Decimal | None] = mapped_column(Money)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertDeliveryRow(Base):
    """One channel's delivery of one alert; retried with backoff until sent or given up."""

    __tablename__ = "spendplane_alert_deliveries"
    __table_args__ = (Index("ix_spendplane_alert_deliveries_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("spendplane_alerts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))  # email, webhook
    target: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16))  # pending, sending, sent, failed, unsendable
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When its status or attempts last changed (None only on rows from before migration 0011 filled it in).
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
