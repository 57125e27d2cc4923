"""SLA monitoring's tables: health snapshots per provider and model, SLA definitions and their violations, failover
rules with their recorded transitions; and `elapsed_us`, the exact time between two LiteLLM timestamps in SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from models.base import Base
from models.types import UTCDateTime


class HealthRunRow(Base):
    """One collector run: the window it measured. A run that saw no traffic still has its row, so "current
    health" is never an older run's figures."""

    __tablename__ = "spendplane_sla_health_runs"

    window_end: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    groups: Mapped[int] = mapped_column(Integer)
    requests: Mapped[int] = mapped_column(Integer)


class ProviderHealthRow(Base):
    """A provider and model's figures over one run's window. Latencies are integer microseconds (exact)."""

    __tablename__ = "spendplane_provider_health"
    __table_args__ = (UniqueConstraint("window_end", "provider", "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    requests: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    client_errors: Mapped[int] = mapped_column(Integer)
    rate_limited: Mapped[int] = mapped_column(Integer)
    streaming: Mapped[int] = mapped_column(Integer)
    latency_p50_us: Mapped[int | None] = mapped_column(BigInteger)
    latency_p95_us: Mapped[int | None] = mapped_column(BigInteger)
    latency_p99_us: Mapped[int | None] = mapped_column(BigInteger)
    ttft_p50_us: Mapped[int | None] = mapped_column(BigInteger)
    ttft_p95_us: Mapped[int | None] = mapped_column(BigInteger)


class SlaDefinitionRow(Base):
    __tablename__ = "spendplane_sla_definitions"
    __table_args__ = (UniqueConstraint("name", name="uq_spendplane_sla_definitions_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(64))  # None: every provider
    model_pattern: Mapped[str] = mapped_column(String(200))
    target_p50_ms: Mapped[float | None] = mapped_column(Float)
    target_p95_ms: Mapped[float | None] = mapped_column(Float)
    target_p99_ms: Mapped[float | None] = mapped_column(Float)
    target_ttft_p95_ms: Mapped[float | None] = mapped_column(Float)
    target_error_rate: Mapped[float | None] = mapped_column(Float)
    target_availability: Mapped[float | None] = mapped_column(Float)
    evaluation_window_minutes: Mapped[int] = mapped_column(Integer)
    alert_emails: Mapped[list[str]] = mapped_column(JSON)
    alert_webhook_url: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SlaViolationRow(Base):
    """A breach of one target of one definition, open until resolved (automatically or by hand)."""

    __tablename__ = "spendplane_sla_violations"
    __table_args__ = (Index("ix_spendplane_sla_violations_opened_at", "opened_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Kept (set to NULL) when the definition is deleted: a violation is history.
    definition_id: Mapped[str | None] = mapped_column(
        ForeignKey("spendplane_sla_definitions.id", ondelete="SET NULL"), index=True
    )
    definition_name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(64))
    model_pattern: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(16))
    target: Mapped[float] = mapped_column(Float)
    measured: Mapped[float] = mapped_column(Float)
    last_measured: Mapped[float] = mapped_column(Float)
    requests: Mapped[int] = mapped_column(Integer)
    window_minutes: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_breached_at: Mapped[datetime] = mapped_column(UTCDateTime)
    healthy_windows: Mapped[int] = mapped_column(Integer)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(String(24))  # auto, manual, definition_changed, ...
    resolved_by: Mapped[str | None] = mapped_column(String(300))
    #: "<definition id>:<metric>" while open, NULL once resolved: the unique key that allows one open violation
    #: per definition and metric, whichever replica or request tries to open a second.
    open_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    alert_id: Mapped[str | None] = mapped_column(String(36))


class FailoverRuleRow(Base):
    __tablename__ = "spendplane_failover_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    primary_model: Mapped[str] = mapped_column(String(256), unique=True)
    fallback_model: Mapped[str] = mapped_column(String(256))
    trigger_condition: Mapped[str] = mapped_column(String(16))
    trigger_threshold: Mapped[float] = mapped_column(Float)
    cooldown_minutes: Mapped[int] = mapped_column(Integer)
    evaluation_window_minutes: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_measured: Mapped[float | None] = mapped_column(Float)
    last_evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FailoverTransitionRow(Base):
    """A rule turning on or off, with what was measured and why (the rule's models are copied: rules change)."""

    __tablename__ = "spendplane_failover_transitions"
    __table_args__ = (Index("ix_spendplane_failover_transitions_rule_id_at", "rule_id", "at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rule_id: Mapped[str] = mapped_column(ForeignKey("spendplane_failover_rules.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # activated, deactivated
    primary_model: Mapped[str] = mapped_column(String(256))
    fallback_model: Mapped[str] = mapped_column(String(256))
    trigger_condition: Mapped[str] = mapped_column(String(16))
    threshold: Mapped[float] = mapped_column(Float)
    measured: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    alert_id: Mapped[str | None] = mapped_column(String(36))


class elapsed_us(FunctionElement[int]):
    """Whole microseconds from `start` to `end`, exact on both databases: PostgreSQL subtracts timestamps; SQLite
    (whose julianday() is a double, off by up to ~40 µs) adds whole seconds to the difference of the fractional
    digits of the stored text. NULL when either is NULL."""

    type = BigInteger()
    inherit_cache = True
    name = "elapsed_us"

    def __init__(self, end: ColumnElement[Any], start: ColumnElement[Any]) -> None:
        super().__init__(end, start)


@compiles(elapsed_us, "postgresql")
def _elapsed_us_postgresql(element: elapsed_us, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(round(EXTRACT(EPOCH FROM ({end} - {start})) * 1000000) AS BIGINT)"


@compiles(elapsed_us, "sqlite")
def _elapsed_us_sqlite(element: elapsed_us, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(c, **kw) for c in element.clauses)
    # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff'; padding with zeros also reads '...SS' and '...SS.fff' right.
    fraction = "CAST(substr({} || '000000', 21, 6) AS INTEGER)"
    return (
        f"((CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', {start}) AS INTEGER)) * 1000000"
        f" + {fraction.format(end)} - {fraction.format(start)})"
    )
