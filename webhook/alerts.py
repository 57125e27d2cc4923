"""GET /alerts: the guide's alert list with its filters (team_id, user_id; also type and limit)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from resolvers import alerts
from resolvers.alerts import Alert, AlertDelivery
from webhook.downloads import query_int
from webhook.rest import JSON, caller, runtime_of


class AlertDeliveryOut(BaseModel):
    channel: str
    status: str
    attempts: int
    last_error: str | None
    updated_at: datetime


class AlertOut(BaseModel):
    id: str
    type: str
    severity: str
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
    deliveries: list[AlertDeliveryOut]

    @classmethod
    def render(cls, alert: Alert, deliveries: list[AlertDelivery], *, admin: bool) -> dict[str, Any]:
        return cls(
            id=alert.id,
            type=alert.type.value,
            severity=alert.severity.value,
            budget_id=alert.budget_id,
            entity_type=alert.entity_type,
            entity_id=alert.entity_id,
            team_id=alert.team_id,
            user_id=alert.user_id,
            message=alert.message,
            spend=alert.spend,
            limit=alert.limit,
            details=alert.details,
            created_at=alert.created_at,
            deliveries=[
                AlertDeliveryOut(
                    channel=d.channel,
                    status=d.status,
                    attempts=d.attempts,
                    last_error=d.last_error if admin else None,  # may name addresses and URLs
                    updated_at=d.updated_at,
                )
                for d in deliveries
            ],
        ).model_dump()


async def list_alerts(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    params = request.query_params
    async with runtime.read() as session:
        found = await alerts.list_alerts(
            session,
            principal,
            team_id=params.get("team_id") or None,
            user_id=params.get("user_id") or None,
            alert_type=params.get("type") or None,
            limit=query_int(params.get("limit"), "limit", 100),
        )
        sent = await alerts.deliveries_for(session, [a.id for a in found])
    return JSON([AlertOut.render(a, sent[a.id], admin=principal.is_admin) for a in found])
