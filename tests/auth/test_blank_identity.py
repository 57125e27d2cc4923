"""A LiteLLM key whose `team_id` or `user_id` is stored as an empty string belongs to no team or user: its
viewer reads what a key without a team reads, never every team's forecasts, allocation rules or alerts (an empty
team id must not read as "no filter")."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.db import Database
from resolvers.alerts import AlertDraft, AlertType, Severity, raise_alert
from tests.chargeback.test_chargeback import rule
from tests.conftest import NOW
from tests.support import Api, SpendLog, add_spend, add_virtual_key


@pytest.mark.parametrize(("user", "team"), [("ann", ""), ("", ""), ("ann", " ")], ids=["team", "both", "blank"])
async def test_a_key_with_an_empty_team_id_reads_no_other_teams_data(
    api: Api, db: Database, user: str, team: str
) -> None:
    await add_spend(db, *[SpendLog(7, NOW - timedelta(days=d), team_id="ops", user="bob") for d in range(1, 5)])
    assert (await api.client.post("/api/v1/reports/forecast/generate", headers=api.bearer())).status_code == 200
    await rule(api, teamId="ops", allocationType="COST_CENTER", allocationTarget="CC-OPS", allocationPercent="50")
    async with api.runtime().work() as work:
        draft = AlertDraft(AlertType.SPEND_ANOMALY, Severity.WARNING, "ops spent a lot", "t:1", team_id="ops")
        await raise_alert(work, draft)
        empty = AlertDraft(AlertType.SPEND_ANOMALY, Severity.WARNING, "no team", "t:2", team_id="", user_id="")
        await raise_alert(work, empty)
    await add_virtual_key(db, "sk-empty", user_id=user, team_id=team)
    token = await api.login("sk-empty")
    me = (await api.data("{ me { userId teamId } }", token=token))["me"]
    assert me["teamId"] is None and (me["userId"] is None) == (user == "")

    forecasts = await api.client.get("/api/v1/reports/forecast", headers=api.bearer(token))
    assert forecasts.status_code == 200 and forecasts.json() == []
    assert (await api.data("{ forecasts { teamId } }", token=token))["forecasts"] == []
    rules = await api.client.get("/api/v1/cost-allocation/rules", headers=api.bearer(token))
    assert rules.status_code == 200 and rules.json() == []
    assert (await api.data("{ allocationRules { teamId } }", token=token))["allocationRules"] == []
    assert (await api.data("{ alerts { message } }", token=token))["alerts"] == []
    report = await api.gql("{ costReport(period: MONTHLY) { totalCost } }", token=token)
    if user:
        assert report["data"]["costReport"]["totalCost"] == "0"  # ann's own spend: none
    else:
        assert report["errors"][0]["extensions"]["code"] == "FORBIDDEN"
