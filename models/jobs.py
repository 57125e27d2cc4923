"""Periodic job runs: one row per job and scheduled tick, so each tick runs once across replicas."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import UTCDateTime


class JobRunRow(Base):
    __tablename__ = "spendplane_job_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    tick: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # running, ok, failed
    summary: Mapped[str | None] = mapped_column(Text)
