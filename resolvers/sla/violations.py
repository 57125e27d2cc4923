"""SLA violations: opened by the collector when a definition's target is breached over its window — one open
violation per definition and metric, however many runs see the breach — and resolved either by hand
(`resolveSlaViolation`) or automatically after SLA_HEALTHY_WINDOWS_TO_RESOLVE healthy runs in a row. Each new
violation raises an `sla_violation` alert (emails, webhook, subscribers) and a `slaViolationRaised` event.

A run with fewer than SLA_MIN_REQUESTS requests behind a metric judges nothing: an open violation neither counts
a healthy window nor restarts its count.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import insert_or_ignore
from models.sla import SlaViolationRow
from resolvers.alerts import AlertDraft, AlertType, Severity, raise_alert
from resolvers.auth import Principal, require_admin
from resolvers.platform import validation
from resolvers.platform.config import SlaSettings
from resolvers.platform.errors import NotFound
from resolvers.platform.events import Event
from resolvers.platform.pages import DEFAULT_PAGE, Keyset, Page
from resolvers.platform.work import Work
from resolvers.sla.health import Health, Metric

if TYPE_CHECKING:
    from resolvers.sla.definitions import SlaDefinition

SLA_VIOLATION_TOPIC = "sla_violation"
MAX_LIST = 500


class Resolution(StrEnum):
    AUTO = "auto"  # healthy for SLA_HEALTHY_WINDOWS_TO_RESOLVE runs in a row
    MANUAL = "manual"  # resolveSlaViolation
    DEFINITION_CHANGED = "definition_changed"  # the target was removed
    DEFINITION_DELETED = "definition_deleted"


@dataclass(frozen=True)
class SlaViolation:
    id: str
    definition_id: str | None
    definition_name: str
    provider: str | None
    model_pattern: str
    metric: Metric
    target_value: float
    measured_value: float
    last_measured_value: float
    requests: int
    window_minutes: int
    window_start: datetime
    window_end: datetime
    opened_at: datetime
    last_breached_at: datetime
    healthy_windows: int
    resolved_at: datetime | None
    resolution: Resolution | None
    resolved_by: str | None
    alert_id: str | None

    @property
    def active(self) -> bool:
        return self.resolved_at is None

    @classmethod
    def from_row(cls, row: SlaViolationRow) -> SlaViolation:
        return cls(
            id=row.id,
            definition_id=row.definition_id,
            definition_name=row.definition_name,
            provider=row.provider,
            model_pattern=row.model_pattern,
            metric=Metric(row.metric),
            target_value=row.target,
            measured_value=row.measured,
            last_measured_value=row.last_measured,
            requests=row.requests,
            window_minutes=row.window_minutes,
            window_start=row.window_start,
            window_end=row.window_end,
            opened_at=row.opened_at,
            last_breached_at=row.last_breached_at,
            healthy_windows=row.healthy_windows,
            resolved_at=row.resolved_at,
            resolution=Resolution(row.resolution) if row.resolution else None,
            resolved_by=row.resolved_by,
            alert_id=row.alert_id,
        )


@dataclass
class Verdicts:
    """What one run did to the violations (for the job's summary)."""

    opened: int = 0
    resolved: int = 0


def open_key(definition_id: str, metric: Metric) -> str:
    return f"{definition_id}:{metric.value}"


# ---------------------------------------------------------------------------------------------- reading


VIOLATION_KEYSET = Keyset("sla_violations", SlaViolationRow.opened_at, SlaViolationRow.id)


async def list_violations(session: AsyncSession, *, active_only: bool = False, limit: int = 100) -> list[SlaViolation]:
    """Newest first."""
    query = select(SlaViolationRow).order_by(SlaViolationRow.opened_at.desc(), SlaViolationRow.id)
    if active_only:
        query = query.where(SlaViolationRow.resolved_at.is_(None))
    rows = await session.scalars(query.limit(min(max(limit, 1), MAX_LIST)))
    return [SlaViolation.from_row(r) for r in rows]


async def violation_page(
    session: AsyncSession, *, active_only: bool = False, first: int = DEFAULT_PAGE, after: str | None = None
) -> Page[SlaViolation]:
    """`list_violations` a cursor page at a time."""
    query = select(SlaViolationRow)
    if active_only:
        query = query.where(SlaViolationRow.resolved_at.is_(None))
    rows = (await session.scalars(VIOLATION_KEYSET.apply(query, first, after))).all()
    return VIOLATION_KEYSET.page(rows, first, lambda r: (r.opened_at, r.id)).map(SlaViolation.from_row)


async def get_violation(session: AsyncSession, violation_id: str) -> SlaViolation:
    row = await session.get(SlaViolationRow, violation_id) if validation.is_uuid(violation_id) else None
    if row is None:
        raise NotFound(f"no SLA violation with id {violation_id!r}")
    return SlaViolation.from_row(row)


# ---------------------------------------------------------------------------------------------- resolving


async def resolve_violation(work: Work, principal: Principal, violation_id: str) -> SlaViolation:
    """Resolve by hand (admin). Resolving one already resolved changes nothing. If the breach goes on, the next
    run opens a new violation (and alerts again)."""
    require_admin(principal, "resolving an SLA violation")
    found = validation.is_uuid(violation_id)
    row = await work.session.get(SlaViolationRow, violation_id, with_for_update=True) if found else None
    if row is None:
        raise NotFound(f"no SLA violation with id {violation_id!r}")
    if row.resolved_at is None:
        _resolve(row, work.now, Resolution.MANUAL, principal.subject)
        await work.session.flush()
    return SlaViolation.from_row(row)


async def close_violations(
    work: Work,
    definition_id: str,
    resolution: Resolution,
    by: str,
    metrics: Collection[Metric] | None = None,
) -> None:
    query = select(SlaViolationRow).where(
        SlaViolationRow.definition_id == definition_id, SlaViolationRow.resolved_at.is_(None)
    )
    if metrics is not None:
        query = query.where(SlaViolationRow.metric.in_([m.value for m in metrics]))
    for row in await work.session.scalars(query):
        _resolve(row, work.now, resolution, by)
    await work.session.flush()


def _resolve(row: SlaViolationRow, now: datetime, resolution: Resolution, by: str) -> None:
    row.resolved_at = now
    row.resolution = resolution.value
    row.resolved_by = by[:300]
    row.open_key = None


# ---------------------------------------------------------------------------------------------- judging


async def judge(
    work: Work,
    definition: SlaDefinition,
    health: Health | None,
    *,
    now: datetime,
    settings: SlaSettings,
    webhook_url: str | None,
) -> Verdicts:
    """One run's verdict on each target of `definition`, from `health` (its window's figures for every row it
    covers; None when none had traffic)."""
    verdicts = Verdicts()
    open_rows = {
        row.metric: row
        for row in await work.session.scalars(
            select(SlaViolationRow).where(
                SlaViolationRow.definition_id == definition.id, SlaViolationRow.resolved_at.is_(None)
            )
        )
    }
    for metric, target in definition.targets:
        measured = health.value(metric) if health is not None else None
        if health is None or measured is None or health.sample(metric) < settings.min_requests:
            continue
        row = open_rows.get(metric.value)
        if metric.breached(measured, target):
            if row is not None:
                row.last_measured, row.last_breached_at, row.healthy_windows = measured, now, 0
            elif await _open(work, definition, metric, target, measured, health, now, webhook_url):
                verdicts.opened += 1
        elif row is not None:
            row.last_measured = measured
            row.healthy_windows += 1
            if row.healthy_windows >= settings.healthy_windows_to_resolve:
                _resolve(row, now, Resolution.AUTO, f"{row.healthy_windows} healthy runs in a row")
                verdicts.resolved += 1
    await work.session.flush()
    return verdicts


async def _open(
    work: Work,
    definition: SlaDefinition,
    metric: Metric,
    target: float,
    measured: float,
    health: Health,
    now: datetime,
    webhook_url: str | None,
) -> bool:
    violation_id = str(uuid.uuid4())
    table = SlaViolationRow.__table__
    statement = insert_or_ignore(work.dialect, table).returning(table.c.id)  # type: ignore[arg-type]
    inserted = (
        await work.session.execute(
            statement,
            {
                "id": violation_id,
                "definition_id": definition.id,
                "definition_name": definition.name,
                "provider": definition.provider,
                "model_pattern": definition.model_pattern,
                "metric": metric.value,
                "target": target,
                "measured": measured,
                "last_measured": measured,
                "requests": health.sample(metric),
                "window_minutes": definition.evaluation_window_minutes,
                "window_start": health.window.start,
                "window_end": health.window.end,
                "opened_at": now,
                "last_breached_at": now,
                "healthy_windows": 0,
                "open_key": open_key(definition.id, metric),
            },
        )
    ).first()
    if inserted is None:
        return False  # opened meanwhile by someone else: still one open violation
    comparison = "below" if metric is Metric.AVAILABILITY else "above"
    message = (
        f"SLA '{definition.name}' ({definition.describe()}): {metric.label} {metric.describe(measured)} over the "
        f"last {definition.evaluation_window_minutes} min is {comparison} its target {metric.describe(target)} "
        f"({health.sample(metric)} requests)"
    )
    alert = await raise_alert(
        work,
        AlertDraft(
            type=AlertType.SLA_VIOLATION,
            severity=Severity.CRITICAL if metric.is_rate else Severity.WARNING,
            message=message,
            dedupe_key=f"sla-violation:{violation_id}",
            entity_type="provider",
            entity_id=definition.provider or "*",
            details={
                "violation_id": violation_id,
                "definition_id": definition.id,
                "definition_name": definition.name,
                "provider": definition.provider,
                "model_pattern": definition.model_pattern,
                "metric": metric.value,
                "measured": measured,
                "target": target,
                "requests": health.sample(metric),
                "window_minutes": definition.evaluation_window_minutes,
                "period_start": health.window.start.isoformat(),
                "period_end": health.window.end.isoformat(),
            },
            emails=tuple(definition.alert_emails),
        ),
        webhook_url=webhook_url,
    )
    if alert is not None:
        await work.session.execute(
            update(SlaViolationRow).where(SlaViolationRow.id == violation_id).values(alert_id=alert.id)
        )
    work.emit(Event(SLA_VIOLATION_TOPIC, {"id": violation_id}))
    return True
