"""Alerts: stored first (deduplicated by key, e.g. once per budget, type and month), then published as events;
deliveries to email and the alert webhook are queued in the same transaction (the outbox) and sent in the
background, so nothing is lost and the request path never waits for SMTP or HTTP."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.alerts import AlertDeliveryRow, AlertRow
from models.db import Database, insert_or_ignore
from resolvers.auth import Principal, own_entities
from resolvers.platform import validation
from resolvers.platform.errors import InvalidInput
from resolvers.platform.events import Event
from resolvers.platform.pages import DEFAULT_PAGE, Keyset, Page
from resolvers.platform.work import Work

log = logging.getLogger(__name__)

ALERT_TOPIC = "alert"
MAX_LIST = 500


class AlertType(StrEnum):
    """The guide's budget alert types, plus the forecast's, SLA monitoring's and spend anomalies'."""

    APPROACHING_LIMIT = "approaching_limit"
    REQUEST_EXCEEDS_BUDGET = "request_exceeds_budget"
    BUDGET_EXCEEDED = "budget_exceeded"
    PROJECTED_LIMIT_EXCEEDED = "projected_limit_exceeded"
    # SLA monitoring: a target breached (one alert per violation); a failover rule turned on or off.
    SLA_VIOLATION = "sla_violation"
    FAILOVER_ACTIVATED = "failover_activated"
    FAILOVER_DEACTIVATED = "failover_deactivated"
    # Spend anomalies (resolvers/anomalies): one per scope and hour (or day).
    SPEND_ANOMALY = "spend_anomaly"


#: Alerts about one budget (its `entity_type` and `entity_id`): a viewer reads them only for a budget it may see.
BUDGET_ALERTS = frozenset(
    {
        AlertType.APPROACHING_LIMIT,
        AlertType.REQUEST_EXCEEDS_BUDGET,
        AlertType.BUDGET_EXCEEDED,
        AlertType.PROJECTED_LIMIT_EXCEEDED,
    }
)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class AlertDraft:
    type: AlertType
    severity: Severity
    message: str
    dedupe_key: str
    budget_id: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    spend: Decimal | None = None
    limit: Decimal | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: Where to send it besides subscribers: email addresses; the alert webhook is added from the settings.
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Alert:
    id: str
    type: AlertType
    severity: Severity
    budget_id: str | None
    entity_type: str | None
    entity_id: str | None
    team_id: str | None
    user_id: str | None
    message: str
    spend: Decimal | None
    limit: Decimal | None
    details: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: AlertRow) -> Alert:
        return cls(
            id=row.id,
            type=AlertType(row.type),
            severity=Severity(row.severity),
            budget_id=row.budget_id,
            entity_type=row.entity_type,
            entity_id=row.entity_id,
            team_id=row.team_id,
            user_id=row.user_id,
            message=row.message,
            spend=row.spend,
            limit=row.limit_usd,
            details=dict(row.details or {}),
            created_at=row.created_at,
        )

    def visible_to(self, principal: Principal) -> bool:
        """`own_alerts` for one alert (the `alertRaised` feed)."""
        if principal.is_admin:
            return True
        if self.type in BUDGET_ALERTS and self.entity_type is not None:
            return principal.can_see(self.entity_type, self.entity_id)
        return (self.team_id is not None and self.team_id == principal.team_id) or (
            self.user_id is not None and self.user_id == principal.user_id
        )


def budget_dedupe_key(budget_id: str, alert_type: AlertType, period_start: datetime) -> str:
    """Once per budget, type and window. A calendar month in UTC keeps its `YYYY-MM` name (alerts raised before
    budget windows existed keep deduplicating); any other window is named by its UTC start."""
    start = period_start.astimezone(UTC)
    if (start.day, start.hour, start.minute, start.second) == (1, 0, 0, 0):
        return f"budget:{budget_id}:{alert_type.value}:{start:%Y-%m}"
    return f"budget:{budget_id}:{alert_type.value}:{start:%Y-%m-%dT%H:%M}Z"


async def raise_alert(work: Work, draft: AlertDraft, *, webhook_url: str | None = None) -> Alert | None:
    """Store the alert unless one with the same key exists; queue its deliveries; publish it after commit.
    Returns None when it was a duplicate (already raised this period)."""
    alert_id = str(uuid.uuid4())
    table = AlertRow.__table__
    statement = insert_or_ignore(work.dialect, table).returning(table.c.id)  # type: ignore[arg-type]
    inserted = (
        await work.session.execute(
            statement,
            {
                "id": alert_id,
                "type": draft.type.value,
                "severity": draft.severity.value,
                "dedupe_key": draft.dedupe_key,
                "budget_id": draft.budget_id,
                "entity_type": draft.entity_type,
                "entity_id": draft.entity_id,
                "team_id": draft.team_id,
                "user_id": draft.user_id,
                "message": draft.message,
                "spend": draft.spend,
                "limit_usd": draft.limit,
                "details": draft.details,
                "created_at": work.now,
            },
        )
    ).first()
    if inserted is None:
        return None
    targets = [("email", address) for address in dict.fromkeys(draft.emails) if address]
    if webhook_url:
        targets.append(("webhook", webhook_url))
    for channel, target in targets:
        work.session.add(
            AlertDeliveryRow(
                alert_id=alert_id,
                channel=channel,
                target=target,
                status="pending",
                attempts=0,
                next_attempt_at=work.now,
                updated_at=work.now,
            )
        )
    work.emit(Event(ALERT_TOPIC, {"id": alert_id}))
    row = await work.session.get(AlertRow, alert_id)
    assert row is not None
    return Alert.from_row(row)


ALERT_KEYSET = Keyset("alerts", AlertRow.created_at, AlertRow.id)


def _alerts_query(
    principal: Principal, *, team_id: str | None, user_id: str | None, alert_type: str | None
) -> Select[AlertRow]:
    """The alerts a caller asked for and may see (`own_alerts`)."""
    team_id = validation.identifier("team_id", team_id)
    user_id = validation.identifier("user_id", user_id)
    query = select(AlertRow)
    if team_id is not None:
        query = query.where(AlertRow.team_id == team_id)
    if user_id is not None:
        query = query.where(AlertRow.user_id == user_id)
    if alert_type is not None:
        try:
            query = query.where(AlertRow.type == AlertType(alert_type).value)
        except ValueError:
            allowed = ", ".join(t.value for t in AlertType)
            raise InvalidInput("type", f"must be one of {allowed}") from None
    return own_alerts(query, principal)


def own_alerts(query: Select[AlertRow], principal: Principal) -> Select[AlertRow]:
    """The alerts `principal` may read. A budget's alert is read as the budget is (`Principal.can_see`: a viewer's
    own key, user and team), whatever team and user it records: a teammate's key or user budget stays out of
    sight even though its alert names the team whose key crossed it. Other alerts (anomalies, SLA, and any
    naming no budget entity) go by the team and user they record, as their own lists do (`own_rows`)."""
    if principal.is_admin:
        return query
    budget_alert = AlertRow.type.in_(sorted(t.value for t in BUDGET_ALERTS)) & AlertRow.entity_type.is_not(None)
    mine = [AlertRow.team_id == principal.team_id] if principal.team_id else []
    mine += [AlertRow.user_id == principal.user_id] if principal.user_id else []
    return query.where(
        or_(
            and_(budget_alert, own_entities(principal, AlertRow.entity_type, AlertRow.entity_id)),
            and_(~budget_alert, or_(false(), *mine)),
        )
    )


async def list_alerts(
    session: AsyncSession,
    principal: Principal,
    *,
    team_id: str | None = None,
    user_id: str | None = None,
    alert_type: str | None = None,
    limit: int = 100,
) -> list[Alert]:
    """Most recent first, filtered as the guide's GET /alerts; a viewer only ever sees its own (`own_alerts`)."""
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput("limit", f"must be from 1 to {MAX_LIST}")
    query = _alerts_query(principal, team_id=team_id, user_id=user_id, alert_type=alert_type)
    query = query.order_by(AlertRow.created_at.desc(), AlertRow.id).limit(limit)
    return [Alert.from_row(row) for row in (await session.scalars(query)).all()]


@dataclass(frozen=True)
class AlertDelivery:
    """One channel's delivery of an alert, as stored: status pending, sending, sent, failed or unsendable."""

    alert_id: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    updated_at: datetime


async def deliveries_for(session: AsyncSession, alert_ids: Sequence[str]) -> dict[str, list[AlertDelivery]]:
    """Each alert's deliveries (email first, then webhook), in one query for a whole page of alerts."""
    found: dict[str, list[AlertDelivery]] = {alert_id: [] for alert_id in alert_ids}
    if not alert_ids:
        return found
    row = AlertDeliveryRow
    query = select(row).where(row.alert_id.in_(list(alert_ids))).order_by(row.alert_id, row.channel, row.id)
    for delivery in (await session.scalars(query)).all():
        found[delivery.alert_id].append(
            AlertDelivery(
                alert_id=delivery.alert_id,
                channel=delivery.channel,
                status=delivery.status,
                attempts=delivery.attempts,
                last_error=delivery.last_error,
                updated_at=delivery.updated_at or delivery.sent_at or delivery.next_attempt_at,
            )
        )
    return found


async def alert_page(
    session: AsyncSession,
    principal: Principal,
    *,
    team_id: str | None = None,
    user_id: str | None = None,
    alert_type: str | None = None,
    first: int = DEFAULT_PAGE,
    after: str | None = None,
) -> Page[Alert]:
    """`list_alerts` a cursor page at a time (same filters and scoping, newest first)."""
    query = _alerts_query(principal, team_id=team_id, user_id=user_id, alert_type=alert_type)
    rows = (await session.scalars(ALERT_KEYSET.apply(query, first, after))).all()
    return ALERT_KEYSET.page(rows, first, lambda r: (r.created_at, r.id)).map(Alert.from_row)


async def get_alert(session: AsyncSession, alert_id: str) -> Alert | None:
    row = await session.get(AlertRow, alert_id)
    return None if row is None else Alert.from_row(row)


CATCH_UP_LIMIT = 1000


async def alert_events_since(db: Database, since: datetime) -> list[Event]:
    """The alert events stored at or after `since`, oldest first: what a replica missed while its LISTEN
    connection was down (the bus skips the ones it delivered already)."""
    query = (
        select(AlertRow.id)
        .where(AlertRow.created_at >= since)
        .order_by(AlertRow.created_at, AlertRow.id)
        .limit(CATCH_UP_LIMIT)
    )
    async with db.reader() as session, session.begin():
        ids = (await session.scalars(query)).all()
    if len(ids) == CATCH_UP_LIMIT:
        log.warning("catching up on alerts since %s: only the first %d are re-published", since, CATCH_UP_LIMIT)
    return [Event(ALERT_TOPIC, {"id": alert_id}) for alert_id in ids]
