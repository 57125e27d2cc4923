"""Alert delivery: an alert email reaches a real SMTP server and the alert webhook a real HTTP server, at once and
in the background; failures are retried with backoff until sent or given up; replicas never send twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select, update

from models.alerts import AlertDeliveryRow
from models.db import Database
from resolvers.alerts import Alert, AlertDraft, AlertType, Severity, budget_dedupe_key, raise_alert
from resolvers.notifications import DeliveryReport, DeliveryWorker
from resolvers.notifications.content import AlertNotice, email_message, webhook_event
from resolvers.platform.config import AlertDeliverySettings, Settings, SmtpSecurity, SmtpSettings
from resolvers.platform.periods import local_days
from tests.adversarial.support import ask
from tests.conftest import NOW, Clock, started
from tests.receivers import SmtpReceiver, WebhookReceiver, free_port
from tests.support import Api, SpendLog, add_spend

pytestmark = pytest.mark.litellm_tables

#: Every field of LiteLLM's budget-alert webhook event (WebhookEvent), which receivers built for LiteLLM read.
LITELLM_FIELDS = {
    "spend",
    "max_budget",
    "soft_budget",
    "token",
    "customer_id",
    "user_id",
    "team_id",
    "team_alias",
    "organization_id",
    "user_email",
    "key_alias",
    "projected_exceeded_date",
    "projected_spend",
    "event_group",
    "alert_emails",
    "event",
    "event_message",
}

CREATE_BUDGET = """mutation { createBudget(input: {name: "Engineering Monthly", entityType: TEAM,
  entityId: "engineering", monthlyLimit: "500", softLimitPercent: "0.8"}) { id } }"""


def smtp_at(smtp: SmtpReceiver, **changes: Any) -> SmtpSettings:
    plain = SmtpSettings(
        host="127.0.0.1", port=smtp.port, sender="Spendplane <alerts@spendplane.test>", security=SmtpSecurity.NONE
    )
    return replace(plain, **changes)


def draft(
    kind: AlertType = AlertType.APPROACHING_LIMIT,
    *,
    budget_id: str | None = None,
    emails: tuple[str, ...] = (),
    key: str = "1",
    spend: str = "410",
) -> AlertDraft:
    return AlertDraft(
        type=kind,
        severity=Severity.CRITICAL if kind is AlertType.BUDGET_EXCEEDED else Severity.WARNING,
        message=f"Team engineering has spent ${spend} of its $500 monthly budget",
        dedupe_key=budget_dedupe_key(f"{budget_id or 'b'}-{key}", kind, NOW),
        budget_id=budget_id,
        entity_type="team",
        entity_id="engineering",
        team_id="engineering",
        spend=Decimal(spend),
        limit=Decimal("500"),
        emails=emails,
    )


def stored_alert(**changes: Any) -> Alert:
    """An alert as stored: the engineering team's budget crossed, unless `changes` say otherwise."""
    alert = Alert(
        id="a-1",
        type=AlertType.BUDGET_EXCEEDED,
        severity=Severity.WARNING,
        budget_id="b-1",
        entity_type="team",
        entity_id="engineering",
        team_id="engineering",
        user_id=None,
        message="m",
        spend=Decimal("9"),
        limit=Decimal("10"),
        details={},
        created_at=NOW,
    )
    return replace(alert, **changes)


async def raise_one(api: Api, alert: AlertDraft) -> Alert:
    runtime = api.runtime()
    async with runtime.work() as work:
        raised = await raise_alert(work, alert, webhook_url=runtime.settings.alert_webhook_url)
    assert raised is not None
    return raised


async def deliveries(db: Database) -> list[AlertDeliveryRow]:
    async with db.reader() as session:
        return list((await session.scalars(select(AlertDeliveryRow).order_by(AlertDeliveryRow.id))).all())


async def until(db: Database, done: Callable[[list[AlertDeliveryRow]], bool]) -> list[AlertDeliveryRow]:
    """The delivery rows once `done` holds (the background worker records outcomes just after sending)."""
    for _ in range(250):
        rows = await deliveries(db)
        if done(rows):
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"deliveries never settled: {[(r.channel, r.status, r.last_error) for r in rows]}")


@pytest.fixture
def worker_app(settings: Settings, clock: Clock) -> Callable[..., started]:
    """Apps without the background worker: the test drives `DeliveryWorker.deliver_due` and the clock itself."""
    return partial(started, settings, clock, jobs_enabled=False)


async def test_an_alert_email_goes_out_at_once_with_what_happened(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with SmtpReceiver(login=("mailer", "s3cret")) as smtp:
        configured = smtp_at(smtp, username="mailer", password="s3cret")
        async with started(settings, clock, smtp=configured) as api:
            budget = (await api.data(CREATE_BUDGET))["createBudget"]
            alert = await raise_one(api, draft(budget_id=budget["id"], emails=("eng-lead@example.com",)))
            mail = await smtp.next()
            rows = await until(db, lambda rows: rows[0].status == "sent")
    assert (mail.sender, mail.recipients, smtp.logins) == (
        "alerts@spendplane.test",
        ["eng-lead@example.com"],
        ["mailer"],
    )
    message = mail.message
    # A long subject may be folded onto its own line; what a mail client shows is the unfolded, trimmed text.
    assert message["Subject"].strip() == "[spendplane] Approaching budget limit: team engineering ($410.00 of $500.00)"
    assert message["From"] == "Spendplane <alerts@spendplane.test>"
    assert message["Message-ID"] == f"<alert-{alert.id}.{rows[0].id}@spendplane.test>"
    body = message.get_content()
    for line in (
        "Team engineering has spent $410 of its $500 monthly budget",
        "Spend:     $410.00 of the $500.00 limit (82.0%)",
        "Warns at:  $400.00",
        f"Budget:    Engineering Monthly ({budget['id']})",
        "Period:    November 2026 (2026-11-01 to 2026-11-30, UTC)",
        "Severity:  warning",
        "Raised:    2026-11-15 12:00:00 UTC",
        f"Alert id:  {alert.id}",
    ):
        assert line in body, body
    assert (rows[0].attempts, rows[0].sent_at, rows[0].last_error) == (1, NOW, None)


async def test_an_alert_email_shows_a_budgets_window_in_its_zone(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """A Tokyo November is 15:00 UTC on October 31 to 15:00 UTC on November 30: the email says November, in Tokyo.
    An alert whose details do not name the zone (projected-limit alerts raised before they did) takes its budget's."""
    tokyo = local_days(date(2026, 11, 1), date(2026, 12, 1), "Asia/Tokyo")
    window = {"period_start": tokyo.start.isoformat(), "period_end": tokyo.end.isoformat()}
    async with SmtpReceiver() as smtp, started(settings, clock, smtp=smtp_at(smtp)) as api:
        budget = await api.data(
            CREATE_BUDGET.replace('monthlyLimit: "500"', 'monthlyLimit: "500", timeZone: "Asia/Tokyo"')
        )
        raised = replace(
            draft(budget_id=budget["createBudget"]["id"], emails=("eng-lead@example.com",)), details=window
        )
        await raise_one(api, raised)
        body = (await smtp.next()).message.get_content()
        await until(db, lambda rows: rows[0].status == "sent")
    assert "Period:    November 2026 (2026-11-01 to 2026-11-30, Asia/Tokyo)" in body, body


@pytest.mark.parametrize(
    ("start", "end", "details", "budget_zone", "shown"),
    [
        # The zone the alert names, before its budget's (which may have changed since).
        (
            "2026-10-31T15:00",
            "2026-11-30T15:00",
            {"time_zone": "Asia/Tokyo"},
            "UTC",
            "November 2026 (2026-11-01 to 2026-11-30, Asia/Tokyo)",
        ),
        ("2026-11-15T08:00", "2026-11-16T08:00", {}, "America/Los_Angeles", "2026-11-15 (America/Los_Angeles)"),
        (
            "2026-11-08T15:00",
            "2026-11-15T15:00",
            {"time_zone": "Asia/Tokyo"},
            None,
            "2026-11-09 to 2026-11-15 (Asia/Tokyo)",
        ),
        # UTC as before for a UTC calendar month.
        (
            "2026-11-01T00:00",
            "2026-12-01T00:00",
            {"time_zone": "UTC"},
            None,
            "November 2026 (2026-11-01 to 2026-11-30, UTC)",
        ),
        # An alert naming no zone (projected-limit alerts raised before they did) whose window is not local days in
        # its budget's zone now (the budget moved since): shown in UTC, said so, never in the budget's new zone.
        ("2026-11-01T00:00", "2026-12-01T00:00", {}, "Asia/Tokyo", "November 2026 (2026-11-01 to 2026-11-30, UTC)"),
        ("2026-10-31T15:00", "2026-11-30T15:00", {}, "America/Los_Angeles", "2026-10-31 15:00 to 2026-11-30 15:00 UTC"),
        # A window the alert's own zone names is shown there even where its times are not midnights.
        (
            "2026-11-01T00:00",
            "2026-12-01T00:00",
            {"time_zone": "Asia/Tokyo"},
            "UTC",
            "2026-11-01 09:00 to 2026-12-01 09:00 Asia/Tokyo",
        ),
    ],
)
def test_an_alert_emails_period_is_its_windows_local_days(
    start: str, end: str, details: dict[str, str], budget_zone: str | None, shown: str
) -> None:
    period = {"period_start": f"{start}:00+00:00", "period_end": f"{end}:00+00:00"}
    alert = stored_alert(severity=Severity.CRITICAL, details={**period, **details})
    notice = AlertNotice(alert, time_zone=budget_zone)
    body = email_message(notice, sender="a@example.com", recipient="b@example.com", message_id="<m@x>").get_content()
    assert f"Period:    {shown}\n" in body, body


async def test_the_webhook_carries_litellms_fields_and_ours(settings: Settings, clock: Clock, db: Database) -> None:
    async with WebhookReceiver() as hook, started(settings, clock, alert_webhook_url=hook.url) as api:
        budget = (await api.data(CREATE_BUDGET))["createBudget"]
        alert = await raise_one(
            api,
            draft(AlertType.BUDGET_EXCEEDED, budget_id=budget["id"], emails=("a@example.com",), spend="512.3"),
        )
        post = await hook.next()
        await until(db, lambda rows: all(r.status != "pending" and r.status != "sending" for r in rows))
    assert post.path == "/hooks/spend"
    assert post.headers["content-type"] == "application/json"
    assert post.headers["x-spendplane-alert-id"] == alert.id
    assert post.body == {
        "spend": 512.3,
        "max_budget": 500.0,
        "soft_budget": 400.0,
        "token": None,
        "customer_id": None,
        "user_id": None,
        "team_id": "engineering",
        "team_alias": None,
        "organization_id": None,
        "user_email": None,
        "key_alias": None,
        "projected_exceeded_date": None,
        "projected_spend": None,
        "event_group": "team",
        "alert_emails": ["a@example.com"],
        "event": "budget_crossed",
        "event_message": "Team Budget: Budget Crossed",
        "source": "spendplane",
        "alert_id": alert.id,
        "alert_type": "budget_exceeded",
        "severity": "critical",
        "budget_id": budget["id"],
        "budget_name": "Engineering Monthly",
        "entity_type": "team",
        "entity_id": "engineering",
        "period_start": "2026-11-01T00:00:00+00:00",
        "period_end": "2026-12-01T00:00:00+00:00",
        "time_zone": "UTC",
        "message": "Team engineering has spent $512.3 of its $500 monthly budget",
        "created_at": "2026-11-15T12:00:00+00:00",
    }
    assert set(post.body) >= LITELLM_FIELDS


async def test_a_budget_alerts_webhook_names_the_budgets_zone_beside_its_period(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """A request that exhausts a daily Asia/Tokyo budget raises an alert whose webhook JSON carries the window in UTC
    and the budget's zone beside it, so a receiver can show the local day; LiteLLM's fields are all still there."""
    async with WebhookReceiver() as hook, started(settings, clock, alert_webhook_url=hook.url) as api:
        budget = (
            await api.data(
                """mutation { createBudget(input: {name: "Tokyo daily", entityType: TEAM, entityId: "eng",
                period: DAILY, limit: "1", timeZone: "Asia/Tokyo"}) { id } }"""
            )
        )["createBudget"]
        await add_spend(db, SpendLog(1, NOW - timedelta(hours=1), team_id="eng"))
        await api.runtime().enforcement().refresh()
        status, _ = await ask(api, "tokyo-late")
        assert status == 429
        post = await hook.next()
        await until(db, lambda rows: bool(rows) and all(r.status == "sent" for r in rows))
    body = post.body
    assert set(body) >= LITELLM_FIELDS
    assert (body["alert_type"], body["budget_id"]) == ("budget_exceeded", budget["id"])
    # 12:00 UTC on Nov 15 is 21:00 in Tokyo: its Nov 15 runs from 15:00 UTC on Nov 14.
    assert (body["period_start"], body["period_end"], body["time_zone"]) == (
        "2026-11-14T15:00:00+00:00",
        "2026-11-15T15:00:00+00:00",
        "Asia/Tokyo",
    )
    assert list(body).index("time_zone") == list(body).index("period_end") + 1


@pytest.mark.parametrize(
    ("kind", "details", "budget_zone", "time_zone"),
    [
        # A projected-limit alert names its zone; so does every budget alert raised by enforcement.
        (AlertType.PROJECTED_LIMIT_EXCEEDED, {"time_zone": "Asia/Tokyo"}, "UTC", "Asia/Tokyo"),
        (AlertType.APPROACHING_LIMIT, {"time_zone": "America/Los_Angeles"}, None, "America/Los_Angeles"),
        # One raised before details named it: its budget's, where the window is local days there; else UTC.
        (AlertType.PROJECTED_LIMIT_EXCEEDED, {}, "Asia/Tokyo", "Asia/Tokyo"),
        (AlertType.PROJECTED_LIMIT_EXCEEDED, {}, "America/Los_Angeles", "UTC"),
        (AlertType.REQUEST_EXCEEDS_BUDGET, {}, None, "UTC"),
    ],
)
def test_every_budget_alerts_webhook_carries_a_time_zone(
    kind: AlertType, details: dict[str, str], budget_zone: str | None, time_zone: str
) -> None:
    tokyo_november = {"period_start": "2026-10-31T15:00:00+00:00", "period_end": "2026-11-30T15:00:00+00:00"}
    alert = stored_alert(type=kind, details={**tokyo_november, **details})
    body = webhook_event(AlertNotice(alert, time_zone=budget_zone))
    assert body["time_zone"] == time_zone
    assert (body["period_start"], body["period_end"]) == (tokyo_november["period_start"], tokyo_november["period_end"])


def test_alerts_that_are_not_a_budgets_carry_no_time_zone() -> None:
    alert = stored_alert(
        type=AlertType.SPEND_ANOMALY, budget_id=None, entity_type=None, entity_id=None, team_id=None, limit=None
    )
    assert "time_zone" not in webhook_event(AlertNotice(alert))


@pytest.mark.parametrize(
    ("kind", "entity_type", "event", "event_group", "event_message"),
    [
        (AlertType.APPROACHING_LIMIT, "team", "soft_budget_crossed", "team", "Team Budget: Soft Budget Crossed"),
        (AlertType.BUDGET_EXCEEDED, "user", "budget_crossed", "user", "User Budget: Budget Crossed"),
        (AlertType.BUDGET_EXCEEDED, "global", "budget_crossed", "proxy", "Proxy Budget: Budget Crossed"),
        (AlertType.BUDGET_EXCEEDED, "key", "budget_crossed", "key", "Key Budget: Budget Crossed"),
        (
            AlertType.PROJECTED_LIMIT_EXCEEDED,
            "team",
            "projected_limit_exceeded",
            "team",
            "Team Budget: Projected Limit Exceeded",
        ),
        (
            AlertType.REQUEST_EXCEEDS_BUDGET,
            "team",
            "threshold_crossed",
            "team",
            "Team Budget: Request Exceeds Remaining Budget",
        ),
    ],
)
def test_alert_types_map_to_litellms_events(
    kind: AlertType, entity_type: str, event: str, event_group: str, event_message: str
) -> None:
    alert = stored_alert(
        type=kind,
        budget_id=None,
        entity_type=entity_type,
        entity_id=None if entity_type == "global" else "abc123",
        team_id=None,
        details={"projected_spend": "12.5", "projected_exceeded_date": "2026-11-27"},
    )
    body = webhook_event(AlertNotice(alert))
    assert (body["event"], body["event_group"], body["event_message"]) == (event, event_group, event_message)
    assert (body["projected_spend"], body["projected_exceeded_date"]) == (12.5, "2026-11-27")
    assert body["token"] == ("abc123" if entity_type == "key" else None)
    assert body["user_id"] == ("abc123" if entity_type == "user" else None)


async def test_a_failing_receiver_gets_the_alert_on_the_third_attempt(
    worker_app: Callable[..., started], clock: Clock, db: Database
) -> None:
    port = free_port()  # nothing listens there yet: the first attempt is refused
    hook = WebhookReceiver(statuses=[503], port=port)
    async with worker_app(alert_webhook_url=hook.url) as api:
        worker = DeliveryWorker(api.runtime())
        try:
            alert = await raise_one(api, draft())
            assert await worker.deliver_due() == DeliveryReport(retrying=1)
            [row] = await deliveries(db)
            assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, NOW + timedelta(seconds=30))
            assert row.last_error is not None and row.last_error.startswith("ConnectError")

            async with hook:
                assert await worker.deliver_due() == DeliveryReport()  # not due yet
                clock.now = NOW + timedelta(seconds=30)
                assert await worker.deliver_due() == DeliveryReport(retrying=1)
                [row] = await deliveries(db)
                assert (row.status, row.attempts, row.last_error) == ("pending", 2, "HTTP 503: busy, try later")
                assert row.next_attempt_at == clock.now + timedelta(seconds=60)  # the wait doubles

                clock.now += timedelta(seconds=60)
                assert await worker.deliver_due() == DeliveryReport(sent=1)
                [row] = await deliveries(db)
                assert (row.status, row.attempts, row.sent_at) == ("sent", 3, clock.now)

                clock.now += timedelta(days=1)
                assert await worker.deliver_due() == DeliveryReport()  # sent once, never again
        finally:
            await worker.stop()
    assert [post.body["alert_id"] for post in hook.posts] == [alert.id, alert.id]


async def test_a_delivery_is_given_up_after_the_configured_attempts(
    worker_app: Callable[..., started], clock: Clock, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody-home"
    policy = AlertDeliverySettings(max_attempts=2, backoff_seconds=5)
    async with worker_app(alert_webhook_url=url, alert_delivery=policy) as api:
        worker = DeliveryWorker(api.runtime())
        try:
            await raise_one(api, draft())
            assert await worker.deliver_due() == DeliveryReport(retrying=1)
            clock.now = NOW + timedelta(seconds=5)
            with caplog.at_level(logging.ERROR, logger="spendplane.delivery"):
                assert await worker.deliver_due() == DeliveryReport(failed=1)
            clock.now += timedelta(days=1)
            assert await worker.deliver_due() == DeliveryReport()
        finally:
            await worker.stop()
    [row] = await deliveries(db)
    assert (row.status, row.attempts, row.sent_at) == ("failed", 2, None)
    assert "failed after 2 attempt(s), giving up" in caplog.text


async def test_without_smtp_emails_are_marked_unsendable_once(
    settings: Settings, clock: Clock, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="spendplane.delivery"):
        async with started(settings, clock) as api:
            await raise_one(api, draft(emails=("lead@example.com", "cfo@example.com")))
            rows = await until(db, lambda rows: all(r.status == "unsendable" for r in rows))
    assert "alert email is off: no SMTP server is configured (set SMTP_HOST" in caplog.text
    assert [(r.target, r.attempts, r.sent_at) for r in rows] == [
        ("lead@example.com", 1, None),
        ("cfo@example.com", 1, None),
    ]
    assert all(r.last_error is not None and "SMTP_HOST" in r.last_error for r in rows)


async def test_a_recipient_refused_for_good_is_not_retried(
    worker_app: Callable[..., started], clock: Clock, db: Database
) -> None:
    async with SmtpReceiver(refuse=("gone@example.com",)) as smtp, worker_app(smtp=smtp_at(smtp)) as api:
        worker = DeliveryWorker(api.runtime())
        try:
            await raise_one(api, draft(emails=("lead@example.com", "gone@example.com")))
            assert await worker.deliver_due() == DeliveryReport(sent=1, failed=1)
        finally:
            await worker.stop()
        assert (await smtp.next()).recipients == ["lead@example.com"]
    sent, refused = await deliveries(db)
    assert (sent.status, refused.status, refused.attempts) == ("sent", "failed", 1)
    assert refused.last_error is not None and "550" in refused.last_error


async def test_starttls_is_required_when_configured(
    worker_app: Callable[..., started], clock: Clock, db: Database
) -> None:
    async with SmtpReceiver() as smtp, worker_app(smtp=smtp_at(smtp, security=SmtpSecurity.STARTTLS)) as api:
        worker = DeliveryWorker(api.runtime())
        try:
            await raise_one(api, draft(emails=("lead@example.com",)))
            assert await worker.deliver_due() == DeliveryReport(retrying=1)
        finally:
            await worker.stop()
        assert smtp.received.empty()  # never sent in the clear
    [row] = await deliveries(db)
    assert row.last_error is not None and "STARTTLS" in row.last_error


async def test_two_replicas_sweeping_at_once_send_each_delivery_once(
    worker_app: Callable[..., started], db: Database
) -> None:
    async with (
        WebhookReceiver(delay=0.01) as hook,
        # Two replicas on one SQLite file, on purpose (the lock that keeps a second `serve` out is off).
        worker_app(alert_webhook_url=hook.url, embedded_lock=False) as one,
        worker_app(alert_webhook_url=hook.url, embedded_lock=False) as two,
    ):
        workers = [DeliveryWorker(replica.runtime()) for replica in (one, two, one, two)]
        try:
            raised = [await raise_one(one, draft(key=str(n))) for n in range(45)]
            reports = await asyncio.gather(*(worker.deliver_due() for worker in workers))
        finally:
            for worker in workers:
                await worker.stop()
    assert sum(report.sent for report in reports) == 45
    assert sorted(post.body["alert_id"] for post in hook.posts) == sorted(alert.id for alert in raised)
    assert {(row.status, row.attempts) for row in await deliveries(db)} == {("sent", 1)}


async def test_a_delivery_whose_sender_died_is_sent_after_its_lease(
    worker_app: Callable[..., started], clock: Clock, db: Database
) -> None:
    async with WebhookReceiver() as hook, worker_app(alert_webhook_url=hook.url) as api:
        worker = DeliveryWorker(api.runtime())
        try:
            await raise_one(api, draft())
            # As a replica leaves it that stopped between claiming the row and recording the outcome.
            async with db.engine.begin() as conn:
                await conn.execute(
                    update(AlertDeliveryRow).values(status="sending", attempts=1, next_attempt_at=NOW + worker.lease)
                )
            assert await worker.deliver_due() == DeliveryReport()  # still leased
            clock.now = NOW + worker.lease
            assert await worker.deliver_due() == DeliveryReport(sent=1)
        finally:
            await worker.stop()
    [row] = await deliveries(db)
    assert (row.status, row.attempts, len(hook.posts)) == ("sent", 2, 1)
    assert row.last_error == "the replica sending it stopped before recording the outcome"
