"""The issue's walk, end to end with real receivers: a team budget goes from allow, to allow with a warning (one
alert, one email, one webhook call, one subscription event), to a 429 block — and the Guardrail API says BLOCKED
at the same point."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from models.db import Database
from resolvers.platform.config import Settings
from tests.conftest import MASTER_KEY, NOW, Clock, started
from tests.notifications.test_delivery import smtp_at
from tests.receivers import SmtpReceiver, WebhookReceiver
from tests.support import Api, SpendLog, add_spend, graphql_ws

pytestmark = pytest.mark.litellm_tables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "litellm"
GATEWAY = {"x-api-key": MASTER_KEY}
SUBSCRIBE = 'subscription { alertRaised(teamId: "eng") { type severity teamId spend limit } }'


async def _check(api: Api) -> tuple[int, dict[str, Any], str]:
    webhook = await api.client.post(
        "/webhook/pre-request",
        headers=GATEWAY,
        json={"team_id": "eng", "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20},
    )
    guard = json.loads((FIXTURES / "guardrail_request_custom_auth_headers.json").read_text())["body"]
    guard["request_data"] = {"user_api_key_team_id": "eng"}
    verdict = (await api.client.post("/beta/litellm_basic_guardrail_api", headers=GATEWAY, json=guard)).json()
    return webhook.status_code, webhook.json(), verdict["action"]


async def _spend(api: Api, db: Database, usd: float) -> None:
    await add_spend(db, SpendLog(usd, NOW - timedelta(minutes=1), team_id="eng"))
    await api.runtime().enforcement().refresh()


async def _nothing_more(*queues: asyncio.Queue[Any]) -> None:
    await asyncio.sleep(0.5)  # the background alert write and its deliveries would be done by now
    assert all(q.empty() for q in queues)


async def test_allow_then_warn_with_one_of_each_notification_then_block(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with (
        SmtpReceiver() as smtp,
        WebhookReceiver() as hook,
        started(settings, clock, smtp=smtp_at(smtp), alert_webhook_url=hook.url) as api,
    ):
        await api.data(
            'mutation { createBudget(input: {name: "Eng", entityType: TEAM, entityId: "eng", '
            'monthlyLimit: "100", alertEmail: "lead@example.com"}) { id } }'
        )
        await api.runtime().enforcement().refresh()
        async with graphql_ws(api) as ws:
            await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}})
            assert (await ws.receive_json())["type"] == "connection_ack"
            await ws.send_json({"id": "a", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
            await asyncio.sleep(0.1)

            await _spend(api, db, 50)
            status, body, action = await _check(api)
            assert (status, body["action"], action) == (200, "allow", "NONE")
            await _nothing_more(smtp.received, hook.received)

            await _spend(api, db, 35)
            status, body, action = await _check(api)
            assert (status, body["action"], action) == (200, "warn", "NONE")
            await _check(api)  # a second request past the soft limit: no second alert
            event = await asyncio.wait_for(ws.receive_json(), 10)
            mail, post = await smtp.next(), await hook.next()
            assert event["payload"]["data"]["alertRaised"] == {
                "type": "APPROACHING_LIMIT",
                "severity": "WARNING",
                "teamId": "eng",
                "spend": "85",
                "limit": "100",
            }
            assert mail.recipients == ["lead@example.com"]
            assert post.body["event"] == "soft_budget_crossed" and post.body["team_id"] == "eng"
            await _nothing_more(smtp.received, hook.received)

            await _spend(api, db, 15)
            status, body, action = await _check(api)
            assert (status, body["error"]["type"], body["budget"]["name"], action) == (
                429,
                "budget_exceeded",
                "Eng",
                "BLOCKED",
            )
            blocked = await asyncio.wait_for(ws.receive_json(), 10)
            assert blocked["payload"]["data"]["alertRaised"]["type"] == "BUDGET_EXCEEDED"
            assert (await hook.next()).body["event"] == "budget_crossed"
            assert "Budget exceeded" in (await smtp.next()).message["Subject"]
