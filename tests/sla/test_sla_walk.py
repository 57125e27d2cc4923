"""The guide's SLA walk end to end with real receivers: a provider breaching its SLA opens a violation that reaches
`slaViolationRaised` subscribers, the SLA's email address (SMTP) and the alert webhook (LiteLLM's fields plus
the violation's), and its failover rule's activation reaches the webhook too; the collector also runs once as the
service starts."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from models.db import Database
from resolvers.notifications import DeliveryWorker
from resolvers.platform.config import Settings
from resolvers.service.schedule import scheduled_jobs
from tests.conftest import NOW, Clock, started
from tests.notifications.test_delivery import LITELLM_FIELDS, smtp_at
from tests.receivers import SmtpReceiver, WebhookReceiver
from tests.sla.test_sla_failover import create_rule
from tests.sla.test_sla_health import add_calls, collect, traffic
from tests.sla.test_sla_violations import define
from tests.support import graphql_ws, watching

SUBSCRIBE = "subscription { slaViolationRaised { definitionName metric measuredValue targetValue active } }"


async def test_a_violation_reaches_subscribers_email_and_webhook_and_failover_is_announced(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with (
        SmtpReceiver() as smtp,
        WebhookReceiver() as hook,
        started(settings, clock, smtp=smtp_at(smtp), alert_webhook_url=hook.url, jobs_enabled=False) as api,
    ):
        await define(api)  # alerts oncall@example.com
        await create_rule(api)
        async with graphql_ws(api) as ws:
            await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}})
            assert (await ws.receive_json())["type"] == "connection_ack"
            await ws.send_json({"id": "v", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
            await watching(api, "violations")

            await add_calls(
                db, traffic(NOW - timedelta(minutes=10), 100, failures=10, code="503", spacing=timedelta(seconds=5))
            )
            await collect(api, NOW)

            message = await asyncio.wait_for(ws.receive_json(), 10)
            assert message["payload"]["data"]["slaViolationRaised"] == {
                "definitionName": "OpenAI GPT-4o SLA",
                "metric": "ERROR_RATE",
                "measuredValue": 0.1,
                "targetValue": 0.01,
                "active": True,
            }

        report = await DeliveryWorker(api.runtime()).deliver_due()
        assert (report.sent, report.retrying, report.failed) == (3, 0, 0)  # one email, two webhook posts

        mail = await smtp.next()
        assert mail.recipients == ["oncall@example.com"]
        assert mail.message["Subject"] == (
            "[spendplane] SLA violated: SLA 'OpenAI GPT-4o SLA' (openai, gpt-4o*) (error_rate 10.00%, limit 1.00%)"
        )
        body = mail.message.get_content()
        for label, value in (
            ("Measured", "10.00%"),
            ("Target", "1.00%"),
            ("Requests", "100"),
            ("Window", "the last 60 min"),
        ):
            assert re.search(rf"^{label}:\s+{re.escape(value)}\r?$", body, re.MULTILINE), body
        assert "2026-11-15 11:00 to 2026-11-15 12:00 UTC" in body

        posts = {post.body["alert_type"]: post.body for post in (await hook.next(), await hook.next())}
        violation = posts["sla_violation"]
        assert set(violation) >= LITELLM_FIELDS
        assert (violation["event"], violation["event_group"], violation["severity"]) == (
            "outage_alerts",
            "proxy",
            "critical",
        )
        assert violation["event_message"] == "SLA Violated: SLA 'OpenAI GPT-4o SLA' (openai, gpt-4o*)"
        assert (violation["metric"], violation["measured"], violation["target"], violation["requests"]) == (
            "error_rate",
            0.1,
            0.01,
            100,
        )
        assert violation["alert_emails"] == ["oncall@example.com"] and violation["violation_id"]
        activated = posts["failover_activated"]
        assert (activated["event"], activated["primary_model"], activated["fallback_model"]) == (
            "failover_activated",
            "gpt-4o",
            "claude-sonnet-4.5",
        )
        assert (activated["trigger_condition"], activated["measured"], activated["threshold"]) == (
            "error_rate",
            0.1,
            0.05,
        )
        assert activated["message"].startswith("Failover on: requests for gpt-4o go to claude-sonnet-4.5")


async def test_the_collector_runs_every_five_minutes_and_once_at_start_up(
    settings: Settings, clock: Clock, db: Database
) -> None:
    (job,) = [j for j in scheduled_jobs(settings) if j.name == "sla-health"]
    assert (job.schedule, job.at_start, job.per_replica) == ("*/5 * * * *", True, False)

    await add_calls(db, traffic(NOW - timedelta(minutes=30), 25))
    async with started(settings, clock) as api:  # jobs on: the start-up run happens in the background
        runner = api.runtime().jobs
        for _ in range(500):
            if runner.stats["sla-health"].last_finished is not None:
                break
            await asyncio.sleep(0.02)
        # (a five-minute tick of the wall clock may add a scheduled run meanwhile)
        assert runner.stats["sla-health"].runs >= 1 and runner.stats["sla-health"].failures == 0
        health = (await api.data("{ providerHealth { provider model requests } }"))["providerHealth"]
    assert health == [{"provider": "openai", "model": "gpt-4o", "requests": 25}]
