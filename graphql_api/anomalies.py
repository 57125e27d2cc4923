"""Spend anomalies in GraphQL: the `spendAnomalies` query, and `detectSpendAnomalies`, `acknowledgeSpendAnomaly`
and `ignoreSpendAnomaly` (admin). Their alerts arrive on `alertRaised` as SPEND_ANOMALY."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import strawberry
from strawberry.scalars import JSON

from graphql_api.context import Info
from graphql_api.pagination import After, Connection, First, connection
from resolvers import anomalies
from resolvers.anomalies import AnomalyStatus, Granularity, SpendAnomaly
from resolvers.platform.pages import DEFAULT_PAGE

strawberry.enum(
    AnomalyStatus, name="AnomalyStatus", description="OPEN, ACKNOWLEDGED, or IGNORED (its scope may be muted)."
)
strawberry.enum(Granularity, name="AnomalyGranularity", description="An hour's spend, or a UTC day's.")


@strawberry.enum(name="AnomalyScopeKind", description="What an anomaly is about.")
class AnomalyScopeKind(StrEnum):
    TEAM = "team"
    KEY = "key"
    USER = "user"
    MODEL = "model"


@strawberry.type(
    name="SpendAnomalyDriver",
    description="The key, user, model or team under the scope whose spend rose most, and its share of the excess.",
)
class DriverType:
    kind: str
    id: str
    excess: Decimal = strawberry.field(description="USD above its usual spend in the same hour of day (or weekday).")
    share: float = strawberry.field(description="Its share of the scope's whole excess (0.8 = 80%).")


@strawberry.type(name="SpendAnomaly", description="Spend of a team, key, user or model well above what was expected.")
class SpendAnomalyType:
    id: strawberry.ID
    scope_kind: str = strawberry.field(description="team, key, user or model.")
    scope_id: str
    granularity: Granularity
    bucket_start: datetime
    bucket_end: datetime
    team_id: str | None
    user_id: str | None
    actual: Decimal = strawberry.field(description="USD spent in the bucket (exact).")
    expected: Decimal = strawberry.field(description="USD the decomposition of the history expected.")
    excess: Decimal
    score: float = strawberry.field(description="Robust z-score: excess over 1.4826 x MAD of the residuals.")
    driver: DriverType | None
    description: str
    status: AnomalyStatus
    alert_id: strawberry.ID | None
    handled_by: str | None
    handled_at: datetime | None
    note: str | None
    details: JSON
    created_at: datetime

    @classmethod
    def from_domain(cls, a: SpendAnomaly) -> SpendAnomalyType:
        driver = None
        if a.driver_kind and a.driver_id is not None and a.driver_excess is not None:
            driver = DriverType(kind=a.driver_kind, id=a.driver_id, excess=a.driver_excess, share=a.driver_share or 0)
        return cls(
            id=strawberry.ID(a.id),
            scope_kind=a.scope_kind,
            scope_id=a.scope_id,
            granularity=a.granularity,
            bucket_start=a.bucket_start,
            bucket_end=a.bucket_end,
            team_id=a.team_id,
            user_id=a.user_id,
            actual=a.actual,
            expected=a.expected,
            excess=a.excess,
            score=a.score,
            driver=driver,
            description=str(a.details.get("description", "")),
            status=a.status,
            alert_id=strawberry.ID(a.alert_id) if a.alert_id else None,
            handled_by=a.handled_by,
            handled_at=a.handled_at,
            note=a.note,
            details=JSON(a.details),
            created_at=a.created_at,
        )


@strawberry.type(name="AnomalyScan", description="What a scan found: anomalies, how many were new, how many alerted.")
class ScanType:
    found: int
    new: int
    alerted: int


@strawberry.type
class AnomalyQueries:
    @strawberry.field(description="Spend anomalies, newest first (a viewer: its own team's and user's only).")
    async def spend_anomalies(
        self,
        info: Info,
        status: AnomalyStatus | None = None,
        scope_kind: AnomalyScopeKind | None = None,
        scope_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[SpendAnomalyType]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await anomalies.list_anomalies(
                session,
                principal,
                status=status.value if status else None,
                scope_kind=scope_kind.value if scope_kind else None,
                scope_id=scope_id,
                since=since,
                limit=limit,
            )
        return [SpendAnomalyType.from_domain(a) for a in found]

    @strawberry.field(description="`spendAnomalies` a cursor page at a time (same scoping, newest first).")
    async def spend_anomalies_connection(
        self, info: Info, first: First = DEFAULT_PAGE, after: After = None, status: AnomalyStatus | None = None
    ) -> Connection[SpendAnomalyType]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            page = await anomalies.anomaly_page(
                session, principal, status=status.value if status else None, first=first, after=after
            )
        return connection(page, SpendAnomalyType.from_domain)


@strawberry.type
class AnomalyMutations:
    @strawberry.mutation(description="Scan the last closed hour and day for anomalies now (admin).")
    async def detect_spend_anomalies(self, info: Info) -> ScanType:
        runtime, principal = info.context.runtime, info.context.caller()
        result = await anomalies.detect_anomalies(runtime, principal)
        return ScanType(found=result.found, new=result.new, alerted=result.alerted)

    @strawberry.mutation(description="Mark an anomaly as seen (admin).")
    async def acknowledge_spend_anomaly(
        self, info: Info, id: strawberry.ID, note: str | None = None
    ) -> SpendAnomalyType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            found = await anomalies.acknowledge_anomaly(work, principal, str(id), note)
        return SpendAnomalyType.from_domain(found)

    @strawberry.mutation(
        description="Mark an anomaly as not a problem (admin) and mute its scope for muteHours (default 24; 0: "
        "no mute): anomalies found meanwhile are stored as IGNORED and alert nobody."
    )
    async def ignore_spend_anomaly(
        self, info: Info, id: strawberry.ID, note: str | None = None, mute_hours: int = 24
    ) -> SpendAnomalyType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            found = await anomalies.ignore_anomaly(work, principal, str(id), note, mute_hours)
        return SpendAnomalyType.from_domain(found)
