"""Spend anomalies: one row per scope (team, key, user or model), granularity (hour or day) and bucket, with what
was expected, the driver that explains the excess, and what an admin did about it (acknowledged, ignored)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Float, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Money, UTCDateTime


class SpendAnomalyRow(Base):
    __tablename__ = "spendplane_spend_anomalies"
    __table_args__ = (
        UniqueConstraint(
            "scope_kind", "scope_id", "granularity", "bucket_start", name="uq_spendplane_spend_anomalies_scope_bucket"
        ),
        Index("ix_spendplane_spend_anomalies_bucket_start", "bucket_start"),
        Index("ix_spendplane_spend_anomalies_team_id_bucket_start", "team_id", "bucket_start"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    scope_kind: Mapped[str] = mapped_column(String(16))  # team, key, user, model
    scope_id: Mapped[str] = mapped_column(String(256))
    granularity: Mapped[str] = mapped_column(String(8))  # hour, day
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Whose it is, for a viewer's scope: the team (of a team or key scope), the user (of a user or key scope).
    team_id: Mapped[str | None] = mapped_column(String(256))
    user_id: Mapped[str | None] = mapped_column(String(256))
    actual: Mapped[Decimal] = mapped_column(Money)
    expected: Mapped[Decimal] = mapped_column(Money)
    #: Robust z-score: (actual - expected) / (1.4826 x MAD of the decomposition's residuals).
    score: Mapped[float] = mapped_column(Float)
    driver_kind: Mapped[str | None] = mapped_column(String(16))  # key, user, model, team
    driver_id: Mapped[str | None] = mapped_column(String(256))
    #: USD of the excess the driver accounts for, and that as a share of the whole excess.
    driver_excess: Mapped[Decimal | None] = mapped_column(Money)
    driver_share: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # open, acknowledged, ignored
    alert_id: Mapped[str | None] = mapped_column(String(36))
    handled_by: Mapped[str | None] = mapped_column(String(256))
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AnomalyMuteRow(Base):
    """An ignored anomaly's scope stays quiet until `until`: anomalies found meanwhile are stored as ignored and
    raise no alert."""

    __tablename__ = "spendplane_anomaly_mutes"

    scope_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    anomaly_id: Mapped[str] = mapped_column(String(36))
    created_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
