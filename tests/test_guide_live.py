"""The guide's commands, each run against a LIVE `spendplane serve` (its own process) with the guide's optional
listeners on: the predictor's port (the guide's 8080) and the webhook's (8081) beside the main port (8086).
README.md's "Guide compatibility" list names these commands; this file is its proof."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx

from models.db import Database
from tests.adversarial.support import Served
from tests.conftest import MASTER_KEY
from tests.support import add_virtual_key

USER_KEY = "sk-guide-user-123"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Guide(Served):
    """`spendplane serve` with SPENDPLANE_PREDICTOR_PORT and SPENDPLANE_WEBHOOK_PORT set."""

    def __init__(self, database_url: str, tmp: Path, **env: str) -> None:
        self.predictor_port, self.webhook_port = _free_port(), _free_port()
        super().__init__(
            database_url,
            tmp,
            SPENDPLANE_PREDICTOR_PORT=str(self.predictor_port),
            SPENDPLANE_WEBHOOK_PORT=str(self.webhook_port),
            GLOBAL_BUDGET_USD="auto",
            **env,
        )
        self.predictor = f"http://127.0.0.1:{self.predictor_port}"
        self.webhook = f"http://127.0.0.1:{self.webhook_port}"


async def test_the_guides_commands_work_against_a_live_server_with_the_guides_ports(
    db: Database, tmp_path: Path
) -> None:
    await add_virtual_key(db, USER_KEY, user_id="user-123", team_id="engineering")
    async with Guide(str(db.engine.url), tmp_path) as live, httpx.AsyncClient(timeout=60) as http:
        main, predictor, webhook = live.url, live.predictor, live.webhook
        login = await http.post(f"{main}/auth/login", json={"api_key": MASTER_KEY})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

        # Budgets (8086): the guide's team budget as written.
        team = await http.post(
            f"{main}/api/v1/budgets",
            headers=auth,
            json={
                "name": "Engineering Team Monthly",
                "entity_type": "team",
                "entity_id": "engineering",
                "monthly_limit": 500.00,
                "soft_limit_percent": 0.8,
                "hard_limit_percent": 1.0,
                "alert_email": "eng@example.com",
            },
        )
        assert team.status_code == 201, team.text
        # The pre-configured global budget is there from the first start (soft $1,000, hard $1,500) ...
        listed = (await http.get(f"{main}/api/v1/budgets", headers=auth)).json()
        (preset,) = [b for b in listed if b["entity_type"] == "global"]
        # README's tour finds it by filter
        found = (await http.get(f"{main}/api/v1/budgets", params={"entity_type": "global"}, headers=auth)).json()
        assert [b["id"] for b in found] == [preset["id"]]
        assert (preset["monthly_limit"], preset["soft_limit_percent"]) == (1500, 0.666666)
        # ... so the guide's "create a global budget" is refused by name, and updating it does what it meant.
        platform = {
            "name": "Platform Monthly Cap",
            "entity_type": "global",
            "monthly_limit": 5000.00,
            "soft_limit_percent": 0.75,
            "hard_limit_percent": 0.95,
            "alert_email": "finance@example.com",
        }
        again = await http.post(f"{main}/api/v1/budgets", headers=auth, json=platform)
        assert again.status_code == 409 and again.json()["error"]["field"] == "entity_type"
        updated = await http.put(
            f"{main}/api/v1/budgets/{preset['id']}",
            headers=auth,
            json={"monthly_limit": 750.00, "soft_limit_percent": 0.7},
        )
        assert updated.status_code == 200 and updated.json()["monthly_limit"] == 750

        # The cost predictor (8080): exactly /predict, /budget/check, /pricing and /health.
        body = {
            "model": "claude-sonnet-4.5",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Explain quantum computing in one paragraph."},
            ],
            "max_tokens": 500,
        }
        predicted = await http.post(f"{predictor}/predict", json=body)
        assert predicted.status_code == 200, predicted.text
        guide_fields = {
            "model",
            "input_tokens",
            "estimated_output_tokens",
            "input_cost_usd",
            "estimated_output_cost_usd",
            "total_estimated_cost_usd",
            "budget_remaining_usd",
            "within_budget",
            "warning",
        }
        assert guide_fields <= predicted.json().keys()
        assert predicted.json()["total_estimated_cost_usd"] > 0
        keyed = await http.post(
            f"{predictor}/predict",
            headers={"X-Api-Key": USER_KEY},
            json={"model": "gpt-5", "messages": [{"role": "user", "content": "Hello"}]},
        )
        assert keyed.status_code == 200 and keyed.json()["within_budget"] is True
        checked = await http.post(f"{predictor}/budget/check", json={"api_key": USER_KEY, "estimated_cost": 0.05})
        assert checked.status_code == 200, checked.text
        assert checked.json()["allowed"] is True and checked.json()["budget_limit"] == 100.0  # the per-key default
        pricing = await http.get(f"{predictor}/pricing")
        assert pricing.status_code == 200 and pricing.json()["count"] > 100
        free = await http.post(f"{predictor}/predict", json={"model": "llama-3.1-70b", "prompt": "hello"})
        assert free.json()["total_estimated_cost_usd"] == 0 and free.json()["price_source"] == "self-hosted"
        assert (await http.get(f"{predictor}/health")).json()["status"] == "ok"
        for elsewhere in ("/graphql", "/api/v1/budgets", "/webhook/pre-request", "/alerts"):
            assert (await http.get(f"{predictor}{elsewhere}", headers=auth)).status_code == 404, elsewhere

        # The budget webhook (8081): a team member's own budget runs out; the team's alert list shows it.
        user_budget = await http.post(
            f"{main}/api/v1/budgets",
            headers=auth,
            json={"name": "user-123", "entity_type": "user", "entity_id": "user-123", "monthly_limit": 0.000001},
        )
        assert user_budget.status_code == 201, user_budget.text
        ask = {
            "litellm_call_id": "guide-1",
            "api_key": USER_KEY,
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 100,
        }
        decided: dict[str, Any] = {}
        for attempt in range(300):  # the new budget reaches the webhook's in-memory state within a refresh
            answer = await http.post(
                f"{webhook}/webhook/pre-request",
                headers={"x-api-key": MASTER_KEY},
                json={**ask, "litellm_call_id": f"guide-{attempt}"},
            )
            decided = {"status": answer.status_code, **answer.json()}
            if answer.status_code == 429:
                break
            await _pause()
        assert decided["status"] == 429, decided
        team_alerts: list[dict[str, Any]] = []
        for _ in range(300):  # the alert is stored in the background, right after the decision
            team_alerts = (await http.get(f"{webhook}/alerts", params={"team_id": "engineering"}, headers=auth)).json()
            if team_alerts:
                break
            await _pause()
        assert {(a["entity_type"], a["entity_id"], a["team_id"]) for a in team_alerts} == {
            ("user", "user-123", "engineering")
        }
        by_user = (await http.get(f"{webhook}/alerts", params={"user_id": "user-123"}, headers=auth)).json()
        assert [a["id"] for a in by_user] == [a["id"] for a in team_alerts]
        assert all("deliveries" in a for a in by_user)
        assert (await http.get(f"{webhook}/alerts", headers=auth)).status_code == 200
        assert (await http.get(f"{webhook}/health")).status_code == 200
        assert (await http.post(f"{webhook}/predict", json=body)).status_code == 404
        assert (await http.get(f"{webhook}/alerts")).status_code == 401  # alerts name people: a token is needed

        # FinOps reports, chargeback, forecasts, SLA (8086), as the guide writes them.
        for path in (
            "/api/v1/reports/cost?period=daily",
            "/api/v1/reports/cost?period=monthly&team_id=engineering",
            "/api/v1/reports/cost?period=custom&start_date=2026-01-01&end_date=2026-01-31",
            "/api/v1/reports/trend?days=30",
            "/api/v1/reports/trend?days=30&model=claude-sonnet-4.5",
            "/api/v1/reports/export?format=csv&period=monthly",
            "/api/v1/reports/export?format=json&period=monthly",
            "/api/v1/reports/forecast",
            "/api/v1/sla/health",
            "/api/v1/sla/health/history?hours=24",
            "/api/v1/sla/violations/active",
        ):
            answer = await http.get(f"{main}{path}", headers=auth)
            assert answer.status_code == 200, (path, answer.text)
        rule = await http.post(
            f"{main}/api/v1/cost-allocation/rules",
            headers=auth,
            json={
                "name": "Engineering to CC-1234",
                "team_id": "engineering-team-uuid",
                "allocation_type": "cost_center",
                "allocation_target": "CC-1234",
                "allocation_percent": 100.0,
                "metadata": {"gl_account": "6200-AI-SERVICES"},
            },
        )
        assert rule.status_code == 201, rule.text
        assert any("engineering-team-uuid" in w for w in rule.json()["warnings"])
        report = await http.post(f"{main}/api/v1/chargeback/reports/generate", headers=auth, json={"period": "2026-02"})
        assert report.status_code in (200, 201), report.text
        # Statements are drafts until finalized (the guide's lifecycle draft -> finalized -> exported).
        report_id = report.json()["id"]
        finalized = await http.post(f"{main}/api/v1/chargeback/reports/{report_id}/finalize", headers=auth)
        assert finalized.status_code == 200, finalized.text
        exported = await http.get(
            f"{main}/api/v1/chargeback/reports/{report.json()['id']}/export", params={"format": "csv"}, headers=auth
        )
        assert exported.status_code == 200, exported.text
        assert (await http.post(f"{main}/api/v1/reports/forecast/generate", headers=auth)).status_code in (200, 201)
        sla = {
            "name": "OpenAI GPT-4o SLA",
            "provider": "openai",
            "model_pattern": "gpt-4o*",
            "target_p95_ms": 3000,
            "target_error_rate": 0.01,
            "target_availability": 0.999,
            "evaluation_window_minutes": 60,
        }
        assert (await http.post(f"{main}/api/v1/sla/definitions", headers=auth, json=sla)).status_code == 201
        failover = {
            "primary_model": "gpt-4o",
            "fallback_model": "claude-sonnet-4.5",
            "trigger_condition": "error_rate",
            "trigger_threshold": 0.05,
            "cooldown_minutes": 15,
        }
        assert (await http.post(f"{main}/api/v1/sla/failover-rules", headers=auth, json=failover)).status_code == 201


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.1)
