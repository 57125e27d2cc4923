"""Chargeback: allocation rules (a team's spend to cost centers, projects, departments) and monthly
statements with their frozen lines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Money, Ratio, UTCDateTime


class AllocationRuleRow(Base):
    __tablename__ = "spendplane_allocation_rules"
    __table_args__ = (UniqueConstraint("team_id", "allocation_type", "allocation_target"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    team_id: Mapped[str] = mapped_column(String(256))
    allocation_type: Mapped[str] = mapped_column(String(16))  # cost_center, project, department
    allocation_target: Mapped[str] = mapped_column(String(128))
    #: Percent of the team's spend (100 = all of it), up to six decimal places.
    allocation_percent: Mapped[Decimal] = mapped_column(Ratio)
    #: GL account, SAP codes, Workday ids: copied into each statement line when it is generated.
    details: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChargebackReportRow(Base):
    """A month's statement: draft (regenerated in place), finalized (frozen), exported."""

    __tablename__ = "spendplane_chargeback_reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), unique=True)  # YYYY-MM
    #: The IANA zone whose calendar month `period` is (existing statements: UTC).
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    status: Mapped[str] = mapped_column(String(16))
    total_cost: Mapped[Decimal] = mapped_column(Money)
    allocated_cost: Mapped[Decimal] = mapped_column(Money)
    unallocated_cost: Mapped[Decimal] = mapped_column(Money)
    adjustment_cost: Mapped[Decimal] = mapped_column(Money)
    revision: Mapped[int] = mapped_column(Integer)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    generated_by: Mapped[str] = mapped_column(String(100))
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finalized_by: Mapped[str | None] = mapped_column(String(100))
    exported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_export_format: Mapped[str | None] = mapped_column(String(16))


class ChargebackLineRow(Base):
    """One line of a statement: an allocation, an unallocated remainder, or an adjustment for late spend of an
    earlier finalized month. Everything a line needs for export is copied in, so rule changes never reach it."""

    __tablename__ = "spendplane_chargeback_lines"
    __table_args__ = (Index("ix_spendplane_chargeback_lines_report_id_position", "report_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("spendplane_chargeback_reports.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # allocation, unallocated, adjustment
    team_id: Mapped[str | None] = mapped_column(String(256))
    allocation_type: Mapped[str | None] = mapped_column(String(16))
    allocation_target: Mapped[str | None] = mapped_column(String(128))
    percent: Mapped[Decimal] = mapped_column(Ratio)
    cost: Mapped[Decimal] = mapped_column(Money)
    #: Part of the team's posting dimension (cost center, else project, else department): what is charged and
    #: exported to SAP. Lines of the other dimensions report the same spend another way.
    posted: Mapped[bool] = mapped_column(Boolean)
    rule_id: Mapped[str | None] = mapped_column(String(36))
    rule_name: Mapped[str | None] = mapped_column(String(200))
    adjusts_period: Mapped[str | None] = mapped_column(String(7))
    details: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
