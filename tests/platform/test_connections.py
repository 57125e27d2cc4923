"""The growing lists' cursor connections (alerts, SLA violations, chargeback reports, spend anomalies): every row
once, newest first, the old list fields unchanged, viewers scoped and cursors checked as in `spendLogs`."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from models.anomalies import SpendAnomalyRow
from models.db import Database
from models.sla import SlaViolationRow
from resolvers.alerts import AlertDraft, AlertType, Severity, raise_alert
from tests.conftest import NOW
from tests.support import Api, add_virtual_key

pytestmark = pytest.mark.litellm_tables


async def _walk(api: Api, query: str, field: str, variables: dict[str, Any], *, token: str = "admin") -> list[str]:
    seen: list[str] = []
    after = None
    for _ in range(100):
        page = (await api.data(query, {**variables, "after": after}, token=token))[field]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        after = page["pageInfo"]["endCursor"]
    raise AssertionError("pagination did not end")


# ------------------------------------------------------------------------------------------------- alerts

ALERTS_CONNECTION = """query($first: Int! = 50, $after: String, $team: String, $user: String, $type: AlertType) {
  alertsConnection(first: $first, after: $after, teamId: $team, userId: $user, type: $type) {
    edges { cursor node { id teamId userId type } } pageInfo { hasNextPage endCursor } } }"""
ALERTS = "query { alerts(limit: 500) { id teamId } }"


async def _alerts(api: Api, teams: list[str]) -> None:
    """Alerts raised in one unit of work share one timestamp: the tie-breaker alone orders them."""
    async with api.runtime().work() as work:
        for n, team in enumerate(teams):
            kind = AlertType.BUDGET_EXCEEDED if n % 3 == 0 else AlertType.APPROACHING_LIMIT
            draft = AlertDraft(
                type=kind,
                severity=Severity.WARNING,
                message=f"{team} alert {n}",
                dedupe_key=f"test:{n}",
                team_id=team,
                user_id=f"user-{n % 2}",
                spend=Decimal(n),
            )
            await raise_alert(work, draft)


async def test_alerts_connection_walks_every_alert_once_and_agrees_with_the_old_list(api: Api) -> None:
    await _alerts(api, ["eng", "ops", "eng", "fin", "eng", "ops", "eng"])
    listed = [a["id"] for a in (await api.data(ALERTS))["alerts"]]
    for first in (1, 2, 3, 7, 50):
        walked = await _walk(api, ALERTS_CONNECTION, "alertsConnection", {"first": first})
        assert sorted(walked) == sorted(listed) and len(set(walked)) == 7, first
        assert walked == sorted(walked, reverse=True)  # same instant: newest-first falls back to the id, descending
    eng = await _walk(api, ALERTS_CONNECTION, "alertsConnection", {"first": 2, "team": "eng"})
    assert len(eng) == 4
    exceeded = await _walk(api, ALERTS_CONNECTION, "alertsConnection", {"type": "BUDGET_EXCEEDED"})
    assert len(exceeded) == 3


async def test_a_viewer_pages_its_own_teams_alerts_only_whatever_cursor_it_sends(api: Api, db: Database) -> None:
    await _alerts(api, ["eng", "ops", "eng", "fin", "ops"])
    await add_virtual_key(db, "sk-fin", user_id="nobody", team_id="fin")
    token = await api.login("sk-fin")
    mine = await _walk(api, ALERTS_CONNECTION, "alertsConnection", {"first": 1}, token=token)
    assert len(mine) == 1
    admin = (await api.data(ALERTS_CONNECTION, {"first": 1}))["alertsConnection"]
    for after in (admin["pageInfo"]["endCursor"], _cursor("alerts", "2999-01-01T00:00:00+00:00", "~")):
        page = (await api.data(ALERTS_CONNECTION, {"after": after}, token=token))["alertsConnection"]
        assert {e["node"]["teamId"] for e in page["edges"]} <= {"fin"}
    # An alert whose team is another's, but whose user is the viewer's own, is the viewer's too (as in `alerts`).
    scoped = await _walk(api, ALERTS_CONNECTION, "alertsConnection", {}, token=token)
    assert scoped == mine


# ------------------------------------------------------------------------------------------- SLA violations

VIOLATIONS = """query($first: Int! = 50, $after: String, $active: Boolean! = false) {
  slaViolationsConnection(first: $first, after: $after, activeOnly: $active) {
    edges { cursor node { id resolvedAt } } pageInfo { hasNextPage endCursor } } }"""


async def _violations(db: Database, count: int) -> list[str]:
    ids = []
    async with db.sessions() as session, session.begin():
        for n in range(count):
            opened = NOW - timedelta(hours=n // 2)  # pairs share an opening time
            row = SlaViolationRow(
                id=str(uuid.uuid4()),
                definition_name=f"def-{n}",
                provider="openai",
                model_pattern="gpt-*",
                metric="latency_p95",
                target=1000.0,
                measured=2000.0,
                last_measured=2000.0,
                requests=10,
                window_minutes=5,
                window_start=opened - timedelta(minutes=5),
                window_end=opened,
                opened_at=opened,
                last_breached_at=opened,
                healthy_windows=0,
                resolved_at=opened + timedelta(minutes=1) if n % 2 else None,
            )
            session.add(row)
            ids.append(row.id)
    return ids


async def test_sla_violations_connection_pages_newest_first_and_filters_the_active(api: Api, db: Database) -> None:
    ids = await _violations(db, 7)
    walked = await _walk(api, VIOLATIONS, "slaViolationsConnection", {"first": 2})
    assert sorted(walked) == sorted(ids) and len(walked) == 7
    listed = [v["id"] for v in (await api.data("query { slaViolations(limit: 500) { id } }"))["slaViolations"]]
    assert sorted(listed) == sorted(walked)
    active = await _walk(api, VIOLATIONS, "slaViolationsConnection", {"first": 3, "active": True})
    assert sorted(active) == sorted(ids[0::2])


# ---------------------------------------------------------------------------------------- chargeback reports

GENERATE = "mutation($p: String!) { generateChargebackReport(period: $p) { id period } }"
REPORTS = """query($first: Int! = 50, $after: String, $period: String) {
  chargebackReportsConnection(first: $first, after: $after, period: $period) {
    edges { cursor node { id period } } pageInfo { hasNextPage endCursor } } }"""


async def test_chargeback_reports_connection_pages_newest_period_first_for_admins_only(api: Api, db: Database) -> None:
    periods = ["2026-07", "2026-09", "2026-08", "2026-10"]
    ids = {p: (await api.data(GENERATE, {"p": p}))["generateChargebackReport"]["id"] for p in periods}
    walked = await _walk(api, REPORTS, "chargebackReportsConnection", {"first": 1})
    assert walked == [ids[p] for p in sorted(periods, reverse=True)]
    only = (await api.data(REPORTS, {"period": "2026-08"}))["chargebackReportsConnection"]["edges"]
    assert [e["node"]["period"] for e in only] == ["2026-08"]
    await add_virtual_key(db, "sk-viewer", user_id="u", team_id="eng")
    token = await api.login("sk-viewer")
    assert (await api.error(REPORTS, token=token))["extensions"]["code"] == "FORBIDDEN"
    # A period cursor of another list (a datetime list) is not this list's.
    error = await api.error(REPORTS, {"after": _cursor("sla_violations", "2026-10", "x")})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}


# ----------------------------------------------------------------------------------------- spend anomalies

ANOMALIES = """query($first: Int! = 50, $after: String, $status: AnomalyStatus) {
  spendAnomaliesConnection(first: $first, after: $after, status: $status) {
    edges { cursor node { id scopeId status } } pageInfo { hasNextPage endCursor } } }"""


async def _anomalies(db: Database) -> dict[str, str]:
    teams = {}
    async with db.sessions() as session, session.begin():
        for n, team in enumerate(["eng", "ops", "eng", "ops", "eng"]):
            row = SpendAnomalyRow(
                id=str(uuid.uuid4()),
                scope_kind="team",
                scope_id=team,
                granularity="hour",
                bucket_start=NOW - timedelta(hours=n),
                team_id=team,
                user_id=None,
                actual=Decimal(50),
                expected=Decimal(5),
                score=9.0,
                details={},
                status="acknowledged" if n == 4 else "open",
                created_at=NOW,
            )
            session.add(row)
            teams[row.id] = team
    return teams


async def test_spend_anomalies_connection_pages_scoped_to_the_viewer(api: Api, db: Database) -> None:
    teams = await _anomalies(db)
    walked = await _walk(api, ANOMALIES, "spendAnomaliesConnection", {"first": 2})
    assert sorted(walked) == sorted(teams)
    assert len(await _walk(api, ANOMALIES, "spendAnomaliesConnection", {"status": "OPEN"})) == 4
    await add_virtual_key(db, "sk-ops", user_id="o", team_id="ops")
    token = await api.login("sk-ops")
    ops = await _walk(api, ANOMALIES, "spendAnomaliesConnection", {"first": 1}, token=token)
    assert sorted(ops) == sorted(i for i, t in teams.items() if t == "ops")
    forged = _cursor("spend_anomalies", "2999-01-01T00:00:00+00:00", "~")
    page = (await api.data(ANOMALIES, {"after": forged}, token=token))["spendAnomaliesConnection"]
    assert {e["node"]["scopeId"] for e in page["edges"]} == {"ops"}


# ------------------------------------------------------------------------------------------- shared checks


def _cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


async def test_every_connection_caps_first_and_refuses_garbage_cursors(api: Api) -> None:
    for query in (ALERTS_CONNECTION, VIOLATIONS, REPORTS, ANOMALIES):
        for variables, field in (({"first": 201}, "first"), ({"first": 0}, "first"), ({"after": "!!"}, "after")):
            error = await api.error(query, variables)
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, (query, variables)
        # Another list's well-formed cursor is refused too.
        error = await api.error(query, {"after": _cursor("spend_logs", "2026-11-15T00:00:00+00:00", "r-1")})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
