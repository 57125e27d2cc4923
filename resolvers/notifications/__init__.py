"""Alert delivery: sends the outbox (`spendplane_alert_deliveries`) by email (SMTP) and to the alert webhook
(HTTP POST) in the background, with retries and exponential backoff.

`raise_alert` only writes rows, so the request path never waits for SMTP or HTTP. The worker wakes at once when
an alert is published (in this process or, on PostgreSQL, any replica) and sweeps every few seconds anyway, so
rows left by a restart or a missed event go out too.

Claiming is one atomic status transition, the same statement on both databases: `pending` → `sending`, counting
the attempt and leasing the row until a deadline, for rows picked with `FOR UPDATE SKIP LOCKED` on PostgreSQL (two
replicas never claim the same row). Sending happens outside any transaction; the outcome is written only if the
row is still the claimed attempt. A `sent` row is never picked again. A sender that died mid-send leaves its lease
to expire; the row then goes back to `pending` with an error saying so, the one case where a message can go out
twice (the webhook's `alert_id` and the email's Message-ID stay the same, so receivers can tell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import aiosmtplib
import httpx
from sqlalchemy import func, select, update

from models.alerts import AlertDeliveryRow, AlertRow
from models.budgets import BudgetRow
from models.types import whole_nanos
from resolvers.alerts import ALERT_TOPIC, Alert
from resolvers.notifications.content import AlertNotice, email_message, message_id, webhook_event
from resolvers.platform import outbound
from resolvers.platform.backoff import backoff_seconds
from resolvers.platform.config import AlertDeliverySettings, SmtpSecurity, SmtpSettings

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime

log = logging.getLogger("spendplane.delivery")

PENDING, SENDING, SENT, FAILED, UNSENDABLE = "pending", "sending", "sent", "failed", "unsendable"
EMAIL, WEBHOOK = "email", "webhook"
BATCH = 20
MAX_BACKOFF_SECONDS = 3600
MAX_ERROR_CHARS = 1000
NO_SMTP = "no SMTP server is configured (set SMTP_HOST and SMTP_FROM); alert emails are not sent"


class DeliveryFailed(Exception):
    """One attempt failed. `permanent`: trying again cannot help (the server refused it for good)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class Unsendable(DeliveryFailed):
    """The channel is not configured, so no attempt can be made at all."""


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    alert_id: str
    channel: str
    target: str
    attempt: int


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    unsendable: int = 0

    def add(self, status: str) -> None:
        match status:
            case "sent":
                self.sent += 1
            case "pending":
                self.retrying += 1
            case "failed":
                self.failed += 1
            case "unsendable":
                self.unsendable += 1


class DeliveryWorker:
    """Sends due deliveries; `start` runs it in the background, `deliver_due` is one pass (tests call it)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.policy: AlertDeliverySettings = runtime.settings.alert_delivery
        self.email = EmailSender(runtime.settings.smtp, timeout=self.policy.timeout_seconds)
        self.webhook = WebhookSender(
            timeout=self.policy.timeout_seconds, allow_private=runtime.settings.allow_private_webhooks
        )
        #: Long enough that a live sender always records its outcome first (each send is bounded by the timeout).
        self.lease = timedelta(seconds=self.policy.timeout_seconds * 6 + 60)
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.runtime.settings.smtp is None:
            log.warning("alert email is off: %s", NO_SMTP)
        self._tasks = [
            asyncio.create_task(self._listen(), name="spendplane-delivery-wake"),
            asyncio.create_task(self._run(), name="spendplane-delivery"),
        ]

    async def stop(self) -> None:
        """Let the attempts in flight finish and record their outcome (bounded), then stop: an attempt cut off
        between sending and recording would be sent again after its lease."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            listen, run = self._tasks
            listen.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run, self.policy.timeout_seconds * 3 + 5)
            await asyncio.gather(listen, run, return_exceptions=True)
        self._tasks = []
        await self.webhook.close()

    async def deliver_due(self) -> DeliveryReport:
        """Claim and send every due delivery, batch by batch, until none is left."""
        report = DeliveryReport()
        while not self._stopping and (claimed := await self._claim()):
            notices = await self._notices({d.alert_id for d in claimed})
            for status in await asyncio.gather(*(self._attempt(d, notices.get(d.alert_id)) for d in claimed)):
                report.add(status)
        return report

    async def _listen(self) -> None:
        while True:  # a dropped subscription (the bus sheds slow subscribers) is simply renewed
            async with self.runtime.bus.subscribe(ALERT_TOPIC) as events:
                async for _event in events:
                    self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.deliver_due()
                wait = await self._seconds_to_next_due()
            except Exception:  # a failed pass (database away) is logged; the next sweep retries
                log.exception("alert delivery pass failed")
                wait = self.policy.sweep_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _seconds_to_next_due(self) -> float:
        async with self.runtime.read() as session:
            next_due = await session.scalar(
                select(func.min(AlertDeliveryRow.next_attempt_at)).where(
                    AlertDeliveryRow.status.in_((PENDING, SENDING))
                )
            )
        if next_due is None:
            return self.policy.sweep_seconds
        seconds = (next_due - self.runtime.clock()).total_seconds()
        return min(max(seconds, 1.0), self.policy.sweep_seconds)

    async def _claim(self) -> list[ClaimedDelivery]:
        now = self.runtime.clock()
        row = AlertDeliveryRow
        due = row.next_attempt_at <= now
        # Look first without writing, so an idle sweep never takes SQLite's write lock.
        async with self.runtime.read() as session:
            if await session.scalar(select(row.id).where(row.status.in_((PENDING, SENDING)), due).limit(1)) is None:
                return []
        async with self.runtime.db.sessions() as session, session.begin():
            expired = await session.execute(
                update(row)
                .where(row.status == SENDING, due)
                .values(
                    status=PENDING,
                    last_error="the replica sending it stopped before recording the outcome",
                    updated_at=now,
                )
                .returning(row.id)
                .execution_options(synchronize_session=False)
            )
            for (delivery_id,) in expired:
                log.warning("alert delivery %d: its sender stopped mid-attempt; trying again", delivery_id)
            # Two statements, not `UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`: PostgreSQL may
            # rescan such a subquery once per row and so claim far more than a batch.
            candidates = await session.scalars(
                select(row.id)
                .where(row.status == PENDING, due)
                .order_by(row.next_attempt_at, row.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
            ids = list(candidates)
            if not ids:
                return []
            claimed = await session.execute(
                update(row)
                .where(row.id.in_(ids), row.status == PENDING)
                .values(status=SENDING, attempts=row.attempts + 1, next_attempt_at=now + self.lease, updated_at=now)
                .returning(row.id, row.alert_id, row.channel, row.target, row.attempts)
                .execution_options(synchronize_session=False)
            )
            return [ClaimedDelivery(*found) for found in claimed.all()]

    async def _notices(self, alert_ids: set[str]) -> dict[str, AlertNotice]:
        async with self.runtime.read() as session:
            alerts = [
                Alert.from_row(a) for a in await session.scalars(select(AlertRow).where(AlertRow.id.in_(alert_ids)))
            ]
            budget_ids = {a.budget_id for a in alerts if a.budget_id}
            budgets = {b.id: b for b in await session.scalars(select(BudgetRow).where(BudgetRow.id.in_(budget_ids)))}
            emails: dict[str, list[str]] = {}
            for alert_id, address in await session.execute(
                select(AlertDeliveryRow.alert_id, AlertDeliveryRow.target)
                .where(AlertDeliveryRow.alert_id.in_(alert_ids), AlertDeliveryRow.channel == EMAIL)
                .order_by(AlertDeliveryRow.id)
            ):
                emails.setdefault(alert_id, []).append(address)
        notices = {}
        for alert in alerts:
            budget = budgets.get(alert.budget_id or "")
            notices[alert.id] = AlertNotice(
                alert=alert,
                budget_name=budget.name if budget else None,
                soft_limit=_soft_limit(budget) if budget else None,
                emails=tuple(emails.get(alert.id, ())),
                time_zone=budget.time_zone if budget else None,
            )
        return notices

    async def _attempt(self, delivery: ClaimedDelivery, notice: AlertNotice | None) -> str:
        try:
            async with asyncio.timeout(self.policy.timeout_seconds * 3):
                if notice is None:
                    raise DeliveryFailed("the alert no longer exists", permanent=True)
                if delivery.channel == EMAIL:
                    await self.email.send(notice, delivery)
                elif delivery.channel == WEBHOOK:
                    await self.webhook.send(notice, delivery)
                else:
                    raise DeliveryFailed(f"unknown channel {delivery.channel!r}", permanent=True)
        except Unsendable as exc:
            return await self._record(delivery, UNSENDABLE, str(exc))
        except DeliveryFailed as exc:
            return await self._failed(delivery, str(exc), permanent=exc.permanent)
        except TimeoutError:
            return await self._failed(delivery, f"no answer within {self.policy.timeout_seconds * 3} s")
        except Exception as exc:  # an unexpected error still ends the attempt, never the worker
            log.exception("alert delivery %d: unexpected error", delivery.id)
            return await self._failed(delivery, f"{type(exc).__name__}: {exc}")
        return await self._record(delivery, SENT, None)

    async def _failed(self, delivery: ClaimedDelivery, reason: str, *, permanent: bool = False) -> str:
        if permanent or delivery.attempt >= self.policy.max_attempts:
            log.error(
                "alert delivery %d (%s to %s, alert %s) failed after %d attempt(s), giving up: %s",
                delivery.id,
                delivery.channel,
                delivery.target,
                delivery.alert_id,
                delivery.attempt,
                reason,
            )
            return await self._record(delivery, FAILED, reason)
        delay = backoff_seconds(delivery.attempt, base=self.policy.backoff_seconds, cap=MAX_BACKOFF_SECONDS)
        log.warning(
            "alert delivery %d (%s) attempt %d failed, next in %.0f s: %s",
            delivery.id,
            delivery.channel,
            delivery.attempt,
            delay,
            reason,
        )
        return await self._record(delivery, PENDING, reason, retry_in=delay)

    async def _record(self, delivery: ClaimedDelivery, status: str, error: str | None, retry_in: float = 0) -> str:
        now = self.runtime.clock()
        values: dict[str, object] = {"status": status, "updated_at": now}
        if error is not None:  # a success keeps the last failure: it says why earlier attempts did not arrive
            values["last_error"] = error[:MAX_ERROR_CHARS]
        if status == SENT:
            values["sent_at"] = now
        if status == PENDING:
            values["next_attempt_at"] = now + timedelta(seconds=retry_in)
        row = AlertDeliveryRow
        async with self.runtime.db.sessions() as session, session.begin():
            result = await session.execute(
                update(row)
                .where(row.id == delivery.id, row.status == SENDING, row.attempts == delivery.attempt)
                .values(**values)
                .returning(row.id)
                .execution_options(synchronize_session=False)
            )
            if result.first() is None:
                log.warning("alert delivery %d: attempt %d outlived its lease", delivery.id, delivery.attempt)
        return status


class EmailSender:
    """One SMTP session per message (alerts are rare; a pooled connection would only go stale between them)."""

    def __init__(self, smtp: SmtpSettings | None, *, timeout: float) -> None:
        self.smtp = smtp
        self.timeout = timeout

    async def send(self, notice: AlertNotice, delivery: ClaimedDelivery) -> None:
        smtp = self.smtp
        if smtp is None:
            raise Unsendable(NO_SMTP, permanent=True)
        message = email_message(
            notice,
            sender=smtp.sender,
            recipient=delivery.target,
            message_id=message_id(notice, delivery.id, smtp.sender),
        )
        try:
            await aiosmtplib.send(
                message,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password,
                use_tls=smtp.security == SmtpSecurity.SSL,
                start_tls=smtp.security == SmtpSecurity.STARTTLS,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:  # our credentials: fixable, so worth retrying
            raise DeliveryFailed(f"SMTP login refused: {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            raise DeliveryFailed(f"SMTP refused the recipient: {exc}", permanent=_permanent(codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryFailed(f"SMTP {exc.code}: {exc.message}", permanent=_permanent([exc.code])) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"SMTP {type(exc).__name__}: {exc}") from exc


def _permanent(codes: Sequence[int]) -> bool:
    """SMTP's 5xx replies are permanent: the same message to the same address will be refused again."""
    return bool(codes) and all(500 <= code < 600 for code in codes)


class WebhookSender:
    """POSTs the alert's JSON; only a 2xx answer counts as delivered."""

    MAX_BODY_IN_ERROR = 300

    def __init__(self, *, timeout: float, allow_private: bool = False) -> None:
        self.allow_private = allow_private
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
            headers={"user-agent": "spendplane-alerts"},
        )

    async def send(self, notice: AlertNotice, delivery: ClaimedDelivery) -> None:
        headers = {"x-spendplane-alert-id": notice.alert.id, "x-spendplane-delivery-id": str(delivery.id)}
        try:
            # Resolved and checked now, and posted to the address checked (DNS cannot swap it in between).
            target = await outbound.pin(delivery.target, allow_private=self.allow_private)
        except outbound.OutboundRefused as exc:
            raise DeliveryFailed(f"refused: {exc}", permanent=True) from None
        except OSError as exc:  # the name does not resolve (now): try again later
            raise DeliveryFailed(f"could not resolve the webhook's host: {exc}") from exc
        headers["host"] = target.host
        extensions = {"sni_hostname": target.sni} if target.sni else {}
        try:
            async with self.client.stream(
                "POST", target.url, json=webhook_event(notice), headers=headers, extensions=extensions
            ) as response:
                if response.is_success:
                    return
                body = await _read_some(response, self.MAX_BODY_IN_ERROR)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc or 'no details'}") from exc
        raise DeliveryFailed(f"HTTP {response.status_code}: {body}".strip())

    async def close(self) -> None:
        await self.client.aclose()


async def _read_some(response: httpx.Response, limit: int) -> str:
    """The start of an error body (a receiver's explanation), without reading an unbounded answer."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit].decode("utf-8", "replace")


def _soft_limit(budget: BudgetRow) -> Decimal:
    """The budget's soft limit in USD: as set in USD, or its limit times the soft percent."""
    if budget.soft_limit_usd is not None:
        return budget.soft_limit_usd
    return whole_nanos(budget.spend_limit * budget.soft_limit_percent)
