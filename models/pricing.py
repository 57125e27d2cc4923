"""Admin price overrides (setModelPrice): the top layer of the price book."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Money, UTCDateTime


class ModelPriceRow(Base):
    __tablename__ = "spendplane_model_prices"

    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    provider: Mapped[str | None] = mapped_column(String(64))
    input_per_million: Mapped[Decimal] = mapped_column(Money)
    output_per_million: Mapped[Decimal] = mapped_column(Money)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(100))
