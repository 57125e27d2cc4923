"""Alerts in GraphQL: the `alerts` query and the `alertRaised` subscription (scoped by the subscriber's token)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from graphql_api.context import Info
from graphql_api.pagination import After, Connection, First, connection
from graphql_api.subscriptions import still_valid, subscription
from resolvers import alerts
from resolvers.alerts import Alert, AlertDelivery, AlertType, Severity
from resolvers.platform.pages import DEFAULT_PAGE

strawberry.enum(
    AlertType,
    name="AlertType",
    description="approaching_limit (allow + notify), "
    "request_exceeds_budget (block), budget_exceeded (block + notify), projected_limit_exceeded.",
)
strawberry.enum(Severity, name="AlertSeverity")


@strawberry.type(name="AlertDelivery", description="One channel's delivery of an alert, as stored.")
class AlertDeliveryView:
    channel: str = strawberry.field(description="email or webhook.")
    status: str = strawberry.field(
        description="pending (waiting for its next attempt), sending, sent, failed (gave up after retries) or "
        "unsendable (nothing to send it with, e.g. no SMTP server)."
    )
    attempts: int
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed (kept after a later success); admins only, null for viewers."
    )
    updated_at: datetime

    @classmethod
    def from_domain(cls, delivery: AlertDelivery, *, admin: bool) -> AlertDeliveryView:
        return cls(
            channel=delivery.channel,
            status=delivery.status,
            attempts=delivery.attempts,
            last_error=delivery.last_error if admin else None,
            updated_at=delivery.updated_at,
        )


@strawberry.type(
    name="Alert", description="A budget (or forecast, or SLA) alert, raised once per budget, type and month."
)
class AlertView:
    id: strawberry.ID
    type: AlertType
    severity: Severity
    budget_id: strawberry.ID | None
    entity_type: str | None = strawberry.field(description="user, team, key or global.")
    entity_id: str | None
    team_id: str | None
    user_id: str | None
    message: str
    spend: Decimal | None = strawberry.field(description="USD spent when the alert was raised.")
    limit: Decimal | None = strawberry.field(description="The limit it was measured against, USD.")
    details: JSON
    created_at: datetime
    preloaded: strawberry.Private[list[AlertDelivery] | None] = None

    @strawberry.field(description="Its email and webhook deliveries (none when it had nowhere to go).")
    async def deliveries(self, info: Info) -> list[AlertDeliveryView]:
        runtime, principal = info.context.runtime, info.context.caller()
        found = self.preloaded
        if found is None:
            async with runtime.read() as session:
                found = (await alerts.deliveries_for(session, [str(self.id)]))[str(self.id)]
        return [AlertDeliveryView.from_domain(d, admin=principal.is_admin) for d in found]

    @classmethod
    def from_domain(cls, alert: Alert, deliveries: list[AlertDelivery] | None = None) -> AlertView:
        return cls(
            id=strawberry.ID(alert.id),
            type=alert.type,
            severity=alert.severity,
            budget_id=strawberry.ID(alert.budget_id) if alert.budget_id else None,
            entity_type=alert.entity_type,
            entity_id=alert.entity_id,
            team_id=alert.team_id,
            user_id=alert.user_id,
            message=alert.message,
            spend=alert.spend,
            limit=alert.limit,
            details=JSON(alert.details),
            created_at=alert.created_at,
            preloaded=deliveries,
        )


@strawberry.type
class AlertQueries:
    @strawberry.field(
        description="Recent alerts, newest first. A viewer reads its own team's and user's, and budget alerts only of "
        "budgets it may see (its key's, user's and team's)."
    )
    async def alerts(
        self,
        info: Info,
        team_id: str | None = None,
        user_id: str | None = None,
        type: AlertType | None = None,
        limit: int = 100,
    ) -> list[AlertView]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await alerts.list_alerts(
                session,
                principal,
                team_id=team_id,
                user_id=user_id,
                alert_type=type.value if type else None,
                limit=limit,
            )
            sent = await alerts.deliveries_for(session, [a.id for a in found])
        return [AlertView.from_domain(a, sent[a.id]) for a in found]

    @strawberry.field(description="`alerts` a cursor page at a time (same filters and scoping, newest first).")
    async def alerts_connection(
        self,
        info: Info,
        first: First = DEFAULT_PAGE,
        after: After = None,
        team_id: str | None = None,
        user_id: str | None = None,
        type: AlertType | None = None,
    ) -> Connection[AlertView]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            page = await alerts.alert_page(
                session,
                principal,
                team_id=team_id,
                user_id=user_id,
                alert_type=type.value if type else None,
                first=first,
                after=after,
            )
            sent = await alerts.deliveries_for(session, [e.node.id for e in page.edges])  # one query per page
        return connection(page, lambda a: AlertView.from_domain(a, sent[a.id]))


@strawberry.type
class AlertSubscriptions:
    @strawberry.subscription(
        description="Alerts as they are raised, across every replica. Filters are optional; "
        "a viewer only hears its own team's and user's alerts, and budget alerts only of budgets it may see."
    )
    async def alert_raised(
        self, info: Info, team_id: str | None = None, user_id: str | None = None
    ) -> AsyncGenerator[AlertView, None]:
        async with subscription(info) as principal, info.context.runtime.feeds["alerts"].watch() as raised:
            async for alert in raised:
                still_valid(info, principal)
                if not alert.visible_to(principal):
                    continue
                if (team_id is not None and alert.team_id != team_id) or (
                    user_id is not None and alert.user_id != user_id
                ):
                    continue
                yield AlertView.from_domain(alert)
