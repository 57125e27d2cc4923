"""Spend anomalies per team, key, user and model, on hourly and daily spend (`detection` says how, `scan` finds
them, `series` reads the spend). The job (SPENDPLANE_ANOMALY_SCHEDULE, hourly) scans the last closed hour and the
last closed day; `detectSpendAnomalies` does it now. Each anomaly is stored once per scope, granularity and bucket
(a unique key) and raises one `spend_anomaly` alert (email, webhook, `alertRaised`) deduplicated the same way, so
at most one per scope and hour. An admin acknowledges an anomaly or ignores it; ignoring mutes its scope for some
hours (anomalies found meanwhile are stored as ignored and alert nobody). A viewer reads the anomalies of its
own team and user only; model anomalies are the admins'.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.anomalies import AnomalyMuteRow, SpendAnomalyRow
from models.budgets import BudgetRow
from models.db import insert_or_ignore
from models.types import nanos_to_usd, whole_nanos
from resolvers.alerts import AlertDraft, AlertType, Severity, raise_alert
from resolvers.anomalies.detection import Granularity
from resolvers.anomalies.scan import KINDS, Cube, Finding, Sensitivity, scan
from resolvers.anomalies.series import daily_cube, hourly_cube
from resolvers.auth import Principal, own_rows, require_admin
from resolvers.platform import validation
from resolvers.platform.errors import InvalidInput, NotFound
from resolvers.platform.pages import DEFAULT_PAGE, Keyset, Page, empty_page, page_size
from resolvers.platform.work import Work
from resolvers.reports import report_source
from resolvers.rollups import finish_on_cancel

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime

MAX_LIST = 500
MAX_MUTE_HOURS = 24 * 90
#: Budget entity types whose alert emails hear about an anomaly of the same scope.
BUDGET_ENTITY = {"team": "team", "key": "key", "user": "user"}


class AnomalyStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    IGNORED = "ignored"


@dataclass(frozen=True)
class SpendAnomaly:
    id: str
    scope_kind: str
    scope_id: str
    granularity: Granularity
    bucket_start: datetime
    team_id: str | None
    user_id: str | None
    actual: Decimal
    expected: Decimal
    excess: Decimal
    score: float
    driver_kind: str | None
    driver_id: str | None
    driver_excess: Decimal | None
    driver_share: float | None
    status: AnomalyStatus
    alert_id: str | None
    handled_by: str | None
    handled_at: datetime | None
    note: str | None
    details: dict[str, Any]
    created_at: datetime

    @property
    def bucket_end(self) -> datetime:
        return self.bucket_start + (timedelta(hours=1) if self.granularity is Granularity.HOUR else timedelta(days=1))

    @classmethod
    def from_row(cls, row: SpendAnomalyRow) -> SpendAnomaly:
        return cls(
            id=row.id,
            scope_kind=row.scope_kind,
            scope_id=row.scope_id,
            granularity=Granularity(row.granularity),
            bucket_start=row.bucket_start,
            team_id=row.team_id,
            user_id=row.user_id,
            actual=row.actual,
            expected=row.expected,
            excess=row.actual - row.expected,
            score=row.score,
            driver_kind=row.driver_kind,
            driver_id=row.driver_id,
            driver_excess=row.driver_excess,
            driver_share=row.driver_share,
            status=AnomalyStatus(row.status),
            alert_id=row.alert_id,
            handled_by=row.handled_by,
            handled_at=row.handled_at,
            note=row.note,
            details=dict(row.details or {}),
            created_at=row.created_at,
        )

    def visible_to(self, principal: Principal) -> bool:
        if principal.is_admin:
            return True
        return (self.team_id is not None and self.team_id == principal.team_id) or (
            self.user_id is not None and self.user_id == principal.user_id
        )


def describe(finding: Finding) -> str:
    """One sentence an alert and a person can read: what, when, how much, and the driver."""
    v = finding.verdict
    when = (
        f"{finding.bucket_start:%Y-%m-%d %H:00}-{(finding.bucket_start + timedelta(hours=1)):%H:00} UTC"
        if finding.granularity is Granularity.HOUR
        else f"{finding.bucket_start:%Y-%m-%d} (UTC)"
    )
    text = (
        f"{finding.kind} {finding.id} spent ${v.actual:,.2f} in the {finding.granularity.value} {when}, "
        f"${v.expected:,.2f} expected (+${v.excess:,.2f}, robust z {v.score:.1f})"
    )
    if v.requests is not None and v.expected_requests is not None:
        text += f" in {v.requests} requests, {v.expected_requests:.1f} expected"
    if v.largest is not None and v.largest_score is not None and v.largest_score >= (v.count_score or 0.0):
        rarity = f"1 in {v.largest_one_in:,.0f}" if v.largest_one_in is not None else "rare"
        text += (
            f"; its dearest request, ${v.largest:,.2f}, is {rarity} of its requests' costs "
            f"(z {v.largest_score:.1f} for the dearest of {v.requests})"
        )
    d = finding.driver
    if d is not None:
        text += f"; {d.kind} {d.id} explains +${d.excess:,.2f} of it ({d.share:.0%})"
    return text


# ---------------------------------------------------------------------------------------------- detecting


@dataclass(frozen=True)
class ScanResult:
    found: int
    new: int
    alerted: int


async def detect_anomalies(
    runtime: Runtime, principal: Principal | None = None, *, now: datetime | None = None
) -> ScanResult:
    """Scan the last closed hour and the last closed day; store what is new and alert it. `principal` None: the
    job."""
    if principal is not None:
        require_admin(principal, "scanning spend for anomalies")
    now = now or runtime.clock()
    last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    yesterday = now.date() - timedelta(days=1)
    settings = runtime.settings
    sensitivity = Sensitivity(settings.anomaly_threshold, float(settings.anomaly_min_usd))
    async with runtime.read() as session:
        hourly = await hourly_cube(session, runtime.litellm, last_hour.date())
        daily = await daily_cube(session, await report_source(session, runtime), yesterday)

    def work() -> list[Finding]:
        hour_index = int((last_hour - hourly.start) / timedelta(hours=1))
        return scan(hourly, [hour_index], sensitivity) + scan(daily, [daily.buckets - 1], sensitivity)

    findings = await asyncio.to_thread(work)
    return await finish_on_cancel(_store(runtime, findings, sensitivity))


async def _store(runtime: Runtime, findings: list[Finding], sensitivity: Sensitivity) -> ScanResult:
    new = alerted = 0
    async with runtime.work() as work:
        mutes = {
            (m.scope_kind, m.scope_id): m
            for m in (await work.session.scalars(select(AnomalyMuteRow).where(AnomalyMuteRow.until > work.now))).all()
        }
        for finding in findings:
            muted = (finding.kind, finding.id) in mutes
            row = _row(finding, work.now, sensitivity, muted)
            table = SpendAnomalyRow.__table__
            statement = insert_or_ignore(work.dialect, table).returning(table.c.id)  # type: ignore[arg-type]
            inserted = (await work.session.execute(statement, row)).first()
            if inserted is None:
                continue  # found before: one anomaly per scope, granularity and bucket
            new += 1
            if muted:
                continue
            alert = await raise_alert(
                work, await _draft(work, runtime, finding, row), webhook_url=runtime.settings.alert_webhook_url
            )
            if alert is not None:
                alerted += 1
                stored = await work.session.get(SpendAnomalyRow, row["id"])
                assert stored is not None
                stored.alert_id = alert.id
    return ScanResult(len(findings), new, alerted)


def _money(value: float) -> Decimal:
    return whole_nanos(Decimal(repr(max(0.0, value))))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _row(finding: Finding, now: datetime, sensitivity: Sensitivity, muted: bool) -> dict[str, Any]:
    d = finding.driver
    return {
        "id": str(uuid.uuid4()),
        "scope_kind": finding.kind,
        "scope_id": finding.id,
        "granularity": finding.granularity.value,
        "bucket_start": finding.bucket_start,
        "team_id": finding.team_id,
        "user_id": finding.user_id,
        "actual": nanos_to_usd(finding.actual_nanos),
        "expected": _money(finding.verdict.expected),
        "score": round(finding.verdict.score, 3),
        "driver_kind": d.kind if d else None,
        "driver_id": d.id if d else None,
        "driver_excess": _money(d.excess) if d else None,
        "driver_share": round(d.share, 4) if d else None,
        "details": {
            "description": describe(finding),
            "scale": round(finding.scale, 6),
            "threshold": sensitivity.threshold,
            "min_usd": sensitivity.min_usd,
            "method": (
                "robust STL residuals, MAD scale; request count, cost per request, dearest request in a lognormal tail"
            ),
            "requests": finding.verdict.requests,
            "expected_requests": _rounded(finding.verdict.expected_requests),
            "count_score": _rounded(finding.verdict.count_score),
            "cost_score": _rounded(finding.verdict.cost_score),
            "largest": _rounded(finding.verdict.largest),
            "largest_score": _rounded(finding.verdict.largest_score),
            "largest_one_in": _rounded(finding.verdict.largest_one_in),
        },
        "status": (AnomalyStatus.IGNORED if muted else AnomalyStatus.OPEN).value,
        "alert_id": None,
        "handled_by": "mute" if muted else None,
        "handled_at": now if muted else None,
        "note": None,
        "created_at": now,
    }


def anomaly_dedupe_key(finding: Finding) -> str:
    """One alert per scope and hour (or day, for the daily scan)."""
    stamp = f"{finding.bucket_start:%Y-%m-%dT%H}"
    return f"anomaly:{finding.granularity.value}:{finding.kind}:{finding.id}:{stamp}"[:300]


async def _draft(work: Work, runtime: Runtime, finding: Finding, row: dict[str, Any]) -> AlertDraft:
    emails = list(runtime.settings.anomaly_alert_emails)
    entity = BUDGET_ENTITY.get(finding.kind)
    if entity is not None:
        query = select(BudgetRow.alert_email).where(
            BudgetRow.entity_type == entity, BudgetRow.entity_id == finding.id, BudgetRow.alert_email.is_not(None)
        )
        emails += [e for e in (await work.session.scalars(query)).all() if e]
    d = finding.driver
    return AlertDraft(
        type=AlertType.SPEND_ANOMALY,
        severity=Severity.WARNING,
        message=describe(finding),
        dedupe_key=anomaly_dedupe_key(finding),
        entity_type=finding.kind,
        entity_id=finding.id,
        team_id=finding.team_id,
        user_id=finding.user_id,
        spend=row["actual"],
        details={
            "anomaly_id": row["id"],
            "scope_kind": finding.kind,
            "scope_id": finding.id,
            "granularity": finding.granularity.value,
            "bucket_start": finding.bucket_start.isoformat(),
            "expected": str(row["expected"]),
            "excess": str(row["actual"] - row["expected"]),
            "score": row["score"],
            "driver_kind": d.kind if d else None,
            "driver_id": d.id if d else None,
            "driver_excess": str(row["driver_excess"]) if d else None,
            "driver_share": row["driver_share"],
            "period_start": finding.bucket_start.isoformat(),
            "period_end": (
                finding.bucket_start
                + (timedelta(hours=1) if finding.granularity is Granularity.HOUR else timedelta(days=1))
            ).isoformat(),
        },
        emails=tuple(emails),
    )


async def anomaly_job(runtime: Runtime, tick: datetime) -> str:
    """The hourly scan (SPENDPLANE_ANOMALY_SCHEDULE)."""
    result = await detect_anomalies(runtime, now=tick)
    return f"{result.found} anomalies found, {result.new} new, {result.alerted} alerted"


# ---------------------------------------------------------------------------------------------- reading


ANOMALY_KEYSET = Keyset("spend_anomalies", SpendAnomalyRow.bucket_start, SpendAnomalyRow.id)


def _anomalies_query(
    principal: Principal,
    *,
    status: str | None,
    scope_kind: str | None = None,
    scope_id: str | None = None,
    since: datetime | None = None,
) -> Select[SpendAnomalyRow] | None:
    """The anomalies a caller asked for and may see (None: a viewer with no team or user sees none)."""
    scope_id = validation.identifier("scope_id", scope_id)
    query = select(SpendAnomalyRow)
    if status is not None:
        try:
            query = query.where(SpendAnomalyRow.status == AnomalyStatus(status).value)
        except ValueError:
            raise InvalidInput("status", f"must be one of {', '.join(AnomalyStatus)}") from None
    if scope_kind is not None:
        if scope_kind not in KINDS:
            raise InvalidInput("scope_kind", f"must be one of {', '.join(KINDS)}")
        query = query.where(SpendAnomalyRow.scope_kind == scope_kind)
    if scope_id is not None:
        query = query.where(SpendAnomalyRow.scope_id == scope_id)
    if since is not None:
        query = query.where(SpendAnomalyRow.bucket_start >= since)
    return own_rows(query, principal, SpendAnomalyRow.team_id, SpendAnomalyRow.user_id)


async def list_anomalies(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None = None,
    scope_kind: str | None = None,
    scope_id: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[SpendAnomaly]:
    """Newest bucket first. A viewer sees its own team's and user's only (never a model's)."""
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput("limit", f"must be from 1 to {MAX_LIST}")
    query = _anomalies_query(principal, status=status, scope_kind=scope_kind, scope_id=scope_id, since=since)
    if query is None:
        return []
    query = query.order_by(SpendAnomalyRow.bucket_start.desc(), SpendAnomalyRow.id).limit(limit)
    return [SpendAnomaly.from_row(row) for row in (await session.scalars(query)).all()]


async def anomaly_page(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None = None,
    first: int = DEFAULT_PAGE,
    after: str | None = None,
) -> Page[SpendAnomaly]:
    """`list_anomalies` a cursor page at a time (same scoping, newest bucket first)."""
    query = _anomalies_query(principal, status=status)
    if query is None:
        page_size(first)
        return empty_page()
    rows = (await session.scalars(ANOMALY_KEYSET.apply(query, first, after))).all()
    return ANOMALY_KEYSET.page(rows, first, lambda r: (r.bucket_start, r.id)).map(SpendAnomaly.from_row)


async def get_anomaly(session: AsyncSession, principal: Principal, anomaly_id: str) -> SpendAnomaly:
    """One anomaly as `principal` may read it: one it may not read is answered as a missing id is."""
    row = await session.get(SpendAnomalyRow, _anomaly_id(anomaly_id))
    anomaly = None if row is None else SpendAnomaly.from_row(row)
    if anomaly is None or not anomaly.visible_to(principal):
        raise _missing(anomaly_id)
    return anomaly


def _anomaly_id(value: str) -> str:
    if not validation.is_uuid(value):
        raise InvalidInput("id", "must be a spend anomaly id (a UUID)")
    return value.lower()


# ---------------------------------------------------------------------------------------------- handling


def _note(note: str | None) -> str | None:
    if note is None:
        return None
    return validation.text("note", note, max_length=2000, multiline=True)


async def acknowledge_anomaly(work: Work, principal: Principal, anomaly_id: str, note: str | None) -> SpendAnomaly:
    """Someone looked at it (admin). Acknowledging again keeps the first acknowledgement."""
    require_admin(principal, "acknowledging anomalies")
    row = await _locked(work, anomaly_id)
    clean = _note(note)
    if row.status == AnomalyStatus.OPEN.value:
        row.status = AnomalyStatus.ACKNOWLEDGED.value
        row.handled_by = principal.subject
        row.handled_at = work.now
        row.note = clean
    return SpendAnomaly.from_row(row)


async def ignore_anomaly(
    work: Work, principal: Principal, anomaly_id: str, note: str | None, mute_hours: int = 24
) -> SpendAnomaly:
    """Not a problem (admin): the anomaly is ignored and its scope muted for `mute_hours` from now (0: no mute)."""
    require_admin(principal, "ignoring anomalies")
    if not 0 <= mute_hours <= MAX_MUTE_HOURS:
        raise InvalidInput("mute_hours", f"must be from 0 to {MAX_MUTE_HOURS}")
    row = await _locked(work, anomaly_id)
    row.status = AnomalyStatus.IGNORED.value
    row.handled_by = principal.subject
    row.handled_at = work.now
    row.note = _note(note)
    if mute_hours:
        until = work.now + timedelta(hours=mute_hours)
        mute = await work.session.get(AnomalyMuteRow, (row.scope_kind, row.scope_id))
        if mute is None:
            work.session.add(
                AnomalyMuteRow(
                    scope_kind=row.scope_kind,
                    scope_id=row.scope_id,
                    until=until,
                    anomaly_id=row.id,
                    created_by=principal.subject,
                    created_at=work.now,
                )
            )
        else:
            mute.until, mute.anomaly_id, mute.created_by, mute.created_at = until, row.id, principal.subject, work.now
    return SpendAnomaly.from_row(row)


async def _locked(work: Work, anomaly_id: str) -> SpendAnomalyRow:
    query = select(SpendAnomalyRow).where(SpendAnomalyRow.id == _anomaly_id(anomaly_id)).with_for_update()
    row = (await work.session.scalars(query)).first()
    if row is None:
        raise _missing(anomaly_id)
    return row


def _missing(anomaly_id: str) -> NotFound:
    return NotFound(f"no spend anomaly {anomaly_id}", field="id")


__all__ = [
    "AnomalyStatus",
    "Cube",
    "Granularity",
    "ScanResult",
    "SpendAnomaly",
    "acknowledge_anomaly",
    "anomaly_job",
    "detect_anomalies",
    "get_anomaly",
    "ignore_anomaly",
    "list_anomalies",
]
