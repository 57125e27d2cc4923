"""Alerts: stored once per key, listed with the guide's filters, scoped by role, deliveries queued."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from models.alerts import AlertDeliveryRow
from models.db import Database
from resolvers.alerts import AlertDraft, AlertType, Severity, budget_dedupe_key, raise_alert
from resolvers.platform.config import Settings
from tests.conftest import NOW, Clock, started
from tests.support import Api, add_virtual_key

pytestmark = pytest.mark.litellm_tables

ALERTS = """query($team: String, $user: String, $type: AlertType, $limit: Int! = 100) {
  alerts(teamId: $team, userId: $user, type: $type, limit: $limit) {
    id type severity budgetId entityType entityId teamId userId message spend limit createdAt } }"""


def draft(
    team: str,
    kind: AlertType = AlertType.APPROACHING_LIMIT,
    *,
    user: str | None = None,
    budget: str = "b-1",
    emails: tuple[str, ...] = (),
) -> AlertDraft:
    return AlertDraft(
        type=kind,
        severity=Severity.WARNING,
        message=f"{team} is at 85% of its budget",
        dedupe_key=budget_dedupe_key(f"{budget}-{team}", kind, NOW),
        budget_id=f"{budget}-{team}",
        entity_type="team",
        entity_id=team,
        team_id=team,
        user_id=user,
        spend=Decimal("85"),
        limit=Decimal("100"),
        emails=emails,
    )


async def test_an_alert_is_raised_once_per_budget_type_and_month(
    settings: Settings, clock: Clock, db: Database
) -> None:
    # Without the delivery worker (jobs off), so the queued deliveries stay as raise_alert wrote them.
    async with started(settings, clock, jobs_enabled=False) as api:
        async with api.runtime().work() as work:
            first = await raise_alert(
                work, draft("eng", emails=("lead@example.com",)), webhook_url="http://127.0.0.1:9/hook"
            )
            second = await raise_alert(work, draft("eng", emails=("lead@example.com",)))
        found = (await api.data(ALERTS))["alerts"]
    assert first is not None and second is None
    async with db.reader() as session:
        deliveries = (await session.scalars(select(AlertDeliveryRow))).all()
    assert sorted((d.channel, d.target, d.status) for d in deliveries) == [
        ("email", "lead@example.com", "pending"),
        ("webhook", "http://127.0.0.1:9/hook", "pending"),
    ]
    assert [(a["type"], a["spend"], a["limit"], a["teamId"]) for a in found] == [
        ("APPROACHING_LIMIT", "85", "100", "eng")
    ]


async def test_alerts_filter_like_the_guide(api: Api) -> None:
    runtime = api.runtime()
    async with runtime.work() as work:
        await raise_alert(work, draft("eng", user="user-123"))
        await raise_alert(work, draft("eng", AlertType.BUDGET_EXCEEDED))
        await raise_alert(work, draft("ops"))
    assert len((await api.data(ALERTS, {"team": "eng"}))["alerts"]) == 2
    assert [a["userId"] for a in (await api.data(ALERTS, {"user": "user-123"}))["alerts"]] == ["user-123"]
    assert len((await api.data(ALERTS, {"type": "BUDGET_EXCEEDED"}))["alerts"]) == 1
    assert len((await api.data(ALERTS, {"limit": 1}))["alerts"]) == 1
    error = await api.error(ALERTS, {"limit": 0})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "limit"}
    rest = await api.client.get("/alerts", params={"team_id": "eng"}, headers=api.bearer())
    assert rest.status_code == 200 and {a["type"] for a in rest.json()} == {"approaching_limit", "budget_exceeded"}
    bad = await api.client.get("/alerts", params={"type": "loud"}, headers=api.bearer())
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "type"


async def test_a_viewer_sees_only_its_teams_alerts(api: Api, db: Database) -> None:
    runtime = api.runtime()
    async with runtime.work() as work:
        await raise_alert(work, draft("eng"))
        await raise_alert(work, draft("ops"))
    await add_virtual_key(db, "sk-eng-viewer", user_id="someone", team_id="eng")
    token = await api.login("sk-eng-viewer")
    assert [a["teamId"] for a in (await api.data(ALERTS, token=token))["alerts"]] == ["eng"]
    assert (await api.data(ALERTS, {"team": "ops"}, token=token))["alerts"] == []
    rest = await api.client.get("/alerts", headers=api.bearer(token))
    assert [a["team_id"] for a in rest.json()] == ["eng"]
