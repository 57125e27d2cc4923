"""Instance-wide state: feature switches and generated secrets (JWT signing key, admin key hash)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import UTCDateTime


class FeatureSettingsRow(Base):
    """A single row (id = 1): the guide's Settings > Features switches."""

    __tablename__ = "spendplane_feature_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cost_tracking_enabled: Mapped[bool] = mapped_column(Boolean)
    budget_enforcement_enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(100))


class InstanceSecretRow(Base):
    """Secrets generated at first start, so every replica sharing the database agrees on them."""

    __tablename__ = "spendplane_instance_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
