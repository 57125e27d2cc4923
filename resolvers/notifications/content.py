"""What an alert says on each channel: the email's subject and body, and the webhook's JSON.

The webhook JSON carries every field of LiteLLM's budget-alert webhook event (`WebhookEvent`: spend, max_budget,
soft_budget, token, …, event_group, event, event_message), so a receiver built for LiteLLM's `WEBHOOK_URL`
alerts works unchanged, followed by spendplane's own fields (alert id, type, severity, budget, entity, period,
for a budget's alert the zone of its window, message, created_at). Our alert types map to LiteLLM's events as
`LITELLM_EVENTS` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from resolvers.alerts import Alert, AlertType
from resolvers.platform.errors import InvalidInput
from resolvers.platform.periods import Period, month_of, zone
from resolvers.sla.health import Metric

TITLES = {
    AlertType.APPROACHING_LIMIT: "Approaching budget limit",
    AlertType.REQUEST_EXCEEDS_BUDGET: "Request exceeds remaining budget",
    AlertType.BUDGET_EXCEEDED: "Budget exceeded",
    AlertType.PROJECTED_LIMIT_EXCEEDED: "Projected to exceed budget",
    AlertType.SLA_VIOLATION: "SLA violated",
    AlertType.FAILOVER_ACTIVATED: "Failover activated",
    AlertType.FAILOVER_DEACTIVATED: "Failover deactivated",
    AlertType.SPEND_ANOMALY: "Unusual spend",
}

#: Our alert type → LiteLLM's `event` and the words its `event_message` uses. A request blocked because its
#: estimate is larger than what remains has no exact LiteLLM twin; `threshold_crossed` ("little budget left")
#: is the closest.
LITELLM_EVENTS = {
    AlertType.APPROACHING_LIMIT: ("soft_budget_crossed", "Soft Budget Crossed"),
    AlertType.BUDGET_EXCEEDED: ("budget_crossed", "Budget Crossed"),
    AlertType.REQUEST_EXCEEDS_BUDGET: ("threshold_crossed", "Request Exceeds Remaining Budget"),
    AlertType.PROJECTED_LIMIT_EXCEEDED: ("projected_limit_exceeded", "Projected Limit Exceeded"),
    # SLA monitoring. LiteLLM's webhook events are about budgets only; an SLA violation takes the name of LiteLLM's
    # own alert type for it (`outage_alerts`; `llm_too_slow` for latency targets, see `_sla_event`). Failover has
    # no LiteLLM twin and keeps its own names.
    AlertType.SLA_VIOLATION: ("outage_alerts", "SLA Violated"),
    AlertType.FAILOVER_ACTIVATED: ("failover_activated", "Failover Activated"),
    AlertType.FAILOVER_DEACTIVATED: ("failover_deactivated", "Failover Deactivated"),
    # No LiteLLM twin either: spend anomalies keep their own name.
    AlertType.SPEND_ANOMALY: ("spend_anomaly", "Spend Anomaly"),
}

SLA_TYPES = frozenset({AlertType.SLA_VIOLATION, AlertType.FAILOVER_ACTIVATED, AlertType.FAILOVER_DEACTIVATED})
#: A budget's alerts: their webhook JSON names the zone of the budget's window beside its UTC bounds.
BUDGET_TYPES = frozenset(
    {
        AlertType.APPROACHING_LIMIT,
        AlertType.BUDGET_EXCEEDED,
        AlertType.REQUEST_EXCEEDS_BUDGET,
        AlertType.PROJECTED_LIMIT_EXCEEDED,
    }
)
#: What an SLA or failover alert's details carry into its webhook JSON (beside spendplane's common fields).
SLA_FIELDS = (
    "violation_id",
    "definition_id",
    "definition_name",
    "provider",
    "model_pattern",
    "metric",
    "measured",
    "target",
    "requests",
    "window_minutes",
    "rule_id",
    "transition_id",
    "primary_model",
    "fallback_model",
    "trigger_condition",
    "threshold",
    "cooldown_minutes",
    "reason",
)

#: What a spend anomaly's details carry into its webhook JSON.
ANOMALY_FIELDS = (
    "anomaly_id",
    "scope_kind",
    "scope_id",
    "granularity",
    "bucket_start",
    "expected",
    "excess",
    "score",
    "driver_kind",
    "driver_id",
    "driver_excess",
    "driver_share",
)

#: Our entity type → LiteLLM's `event_group` (Litellm_EntityType) and its label in `event_message`.
EVENT_GROUPS = {
    "user": ("user", "User"),
    "team": ("team", "Team"),
    "key": ("key", "Key"),
    "end_user": ("end_user", "Customer"),
    "tag": ("tag", "Tag"),
    "organization": ("organization", "Organization"),
    "global": ("proxy", "Proxy"),
}


@dataclass(frozen=True)
class AlertNotice:
    """An alert together with what its messages mention beyond the alert row."""

    alert: Alert
    budget_name: str | None = None
    #: USD at which the budget warns (monthly limit times soft percent), when the alert belongs to a budget.
    soft_limit: Decimal | None = None
    #: Every email address this alert goes to (LiteLLM's `alert_emails`).
    emails: tuple[str, ...] = ()
    #: The budget's time zone, when the alert belongs to a budget (for alerts whose details do not name it).
    time_zone: str | None = None

    @property
    def title(self) -> str:
        return TITLES.get(self.alert.type, self.alert.type.value.replace("_", " ").capitalize())

    @property
    def entity(self) -> str:
        alert = self.alert
        if alert.type in SLA_TYPES:
            return _sla_subject(alert)
        if alert.entity_type in (None, "global"):
            return "the whole platform"
        alias = alert.details.get("key_alias") if alert.entity_type == "key" else None
        return f"{alert.entity_type.replace('_', ' ')} {alias or alert.entity_id}"

    @property
    def period(self) -> Period:
        """The budget period the alert speaks of: from its details when given, else its calendar month (UTC)."""
        start, end = self.alert.details.get("period_start"), self.alert.details.get("period_end")
        if isinstance(start, str) and isinstance(end, str):
            try:
                return Period(datetime.fromisoformat(start), datetime.fromisoformat(end))
            except ValueError:
                pass
        return month_of(self.alert.created_at)

    @property
    def period_zone(self) -> ZoneInfo:
        """The zone the period is a window in: the one the alert names (`details.time_zone`, recorded when it was
        raised). An alert that names none (projected-limit alerts raised before they did) takes its budget's zone
        only where the period is local days there (its bounds local midnights), as it was when raised unless the
        budget moved since; else UTC, in which its bounds are stored, never a zone the window was not in. UTC too
        when nothing is known or the period is the alert's UTC month (no period in its details)."""
        details = self.alert.details
        if not isinstance(details.get("period_start"), str):
            return zone("UTC")
        named = _zone_or_none(details.get("time_zone"))
        if named is not None:
            return named
        budgets = _zone_or_none(self.time_zone)
        if budgets is not None and _local_days_in(self.period, budgets):
            return budgets
        return zone("UTC")


def _zone_or_none(name: object) -> ZoneInfo | None:
    if not isinstance(name, str):
        return None
    try:
        return zone(name)
    except InvalidInput:
        return None


def _local_days_in(period: Period, tz: ZoneInfo) -> bool:
    """Whether `period` starts and ends at local midnights in `tz` (whole local days there)."""
    return period.start.astimezone(tz).time() == time(0) and period.end.astimezone(tz).time() == time(0)


def email_message(notice: AlertNotice, *, sender: str, recipient: str, message_id: str) -> EmailMessage:
    alert = notice.alert
    subject = f"[spendplane] {notice.title}: {notice.entity}"
    if alert.spend is not None and alert.limit is not None:
        subject += f" ({usd(alert.spend)} of {usd(alert.limit)})"
    if alert.type in SLA_TYPES:
        subject += _sla_figure(alert)
        rows = _sla_rows(alert)
    elif alert.type is AlertType.SPEND_ANOMALY:
        rows = _anomaly_rows(alert)
    else:
        rows = [("Spend", _spend_line(alert))]
    if notice.soft_limit is not None:
        rows.append(("Warns at", usd(notice.soft_limit)))
    if alert.budget_id is not None:
        rows.append(("Budget", f"{notice.budget_name} ({alert.budget_id})" if notice.budget_name else alert.budget_id))
    rows += [
        ("Period", describe_period(notice.period, notice.period_zone)),
        ("Severity", alert.severity.value),
        ("Raised", f"{alert.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("Alert id", alert.id),
    ]
    width = max(len(label) for label, _ in rows) + 3
    body = "\n".join(
        [
            f"{notice.title}: {notice.entity}",
            "",
            alert.message,
            "",
            *(f"{label + ':':<{width}}{value}" for label, value in rows),
            "",
            "-- ",
            "spendplane, cost management beside your LiteLLM proxy",
        ]
    )
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(alert.created_at)
    message["Message-ID"] = message_id
    message.set_content(body + "\n")
    return message


def message_id(notice: AlertNotice, delivery_id: int, sender: str) -> str:
    """The same on every attempt of one delivery, so a mailbox can tell a retry from a new alert."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "spendplane.invalid"
    return f"<alert-{notice.alert.id}.{delivery_id}@{domain}>"


def webhook_event(notice: AlertNotice) -> dict[str, Any]:
    alert, details = notice.alert, notice.alert.details
    event, event_words = LITELLM_EVENTS.get(alert.type, (alert.type.value, notice.title))
    group, group_label = EVENT_GROUPS.get(alert.entity_type or "global", ("proxy", "Proxy"))
    event_message = f"{group_label} Budget: {event_words}"
    if alert.type in SLA_TYPES:
        event = _sla_event(alert, event)
        group, event_message = "proxy", f"{event_words}: {notice.entity}"
    period = notice.period
    body = {
        # LiteLLM's WebhookEvent, field for field.
        "spend": float(alert.spend) if alert.spend is not None else 0.0,
        "max_budget": float(alert.limit) if alert.limit is not None else None,
        "soft_budget": float(notice.soft_limit) if notice.soft_limit is not None else None,
        "token": alert.entity_id if alert.entity_type == "key" else details.get("token"),
        "customer_id": alert.entity_id if alert.entity_type == "end_user" else details.get("customer_id"),
        "user_id": alert.user_id or (alert.entity_id if alert.entity_type == "user" else None),
        "team_id": alert.team_id or (alert.entity_id if alert.entity_type == "team" else None),
        "team_alias": details.get("team_alias"),
        "organization_id": details.get("organization_id"),
        "user_email": details.get("user_email"),
        "key_alias": details.get("key_alias"),
        "projected_exceeded_date": details.get("projected_exceeded_date"),
        "projected_spend": _float_or_none(details.get("projected_spend")),
        "event_group": group,
        "alert_emails": list(notice.emails) or None,
        "event": event,
        "event_message": event_message,
        # spendplane's own.
        "source": "spendplane",
        "alert_id": alert.id,
        "alert_type": alert.type.value,
        "severity": alert.severity.value,
        "budget_id": alert.budget_id,
        "budget_name": notice.budget_name,
        "entity_type": alert.entity_type,
        "entity_id": alert.entity_id,
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
    }
    if alert.type in BUDGET_TYPES:
        # The IANA zone the budget's window is local days in (the email's), so a receiver can show them.
        body["time_zone"] = str(notice.period_zone.key)
    body["message"] = alert.message
    body["created_at"] = alert.created_at.isoformat()
    if alert.type in SLA_TYPES:
        body.update({name: details.get(name) for name in SLA_FIELDS})
    if alert.type is AlertType.SPEND_ANOMALY:
        body.update({name: details.get(name) for name in ANOMALY_FIELDS})
    return body


def usd(amount: Decimal) -> str:
    if amount != 0 and abs(amount) < Decimal("0.01"):
        return f"${amount:f}"
    return f"${amount:,.2f}"


def describe_period(period: Period, time_zone: ZoneInfo | None = None) -> str:
    """A budget window as its local days in its zone, the last day included: 'November 2026 (2026-11-01 to
    2026-11-30, Asia/Tokyo)', '2026-11-15 (America/Los_Angeles)', '2026-11-09 to 2026-11-15 (UTC)'. A period that
    does not start and end at local midnights there (an SLA window) is shown by its local times, as ever:
    '2026-11-15 11:00 to 2026-11-15 12:00 UTC'."""
    tz = time_zone or zone("UTC")
    start, end = period.start.astimezone(tz), period.end.astimezone(tz)
    name = str(tz.key)
    if start.time() != time(0) or end.time() != time(0):
        return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} {name}"
    first, last = start.date(), end.date() - timedelta(days=1)
    if first == last:
        return f"{first:%Y-%m-%d} ({name})"
    if first.day == 1 and end.date() == (first + timedelta(days=31)).replace(day=1):
        return f"{first:%B %Y} ({first:%Y-%m-%d} to {last:%Y-%m-%d}, {name})"
    return f"{first:%Y-%m-%d} to {last:%Y-%m-%d} ({name})"


def _spend_line(alert: Alert) -> str:
    if alert.spend is None:
        return "not recorded"
    if alert.limit is None or alert.limit == 0:
        return usd(alert.spend)
    share = alert.spend / alert.limit * 100
    return f"{usd(alert.spend)} of the {usd(alert.limit)} limit ({share:.1f}%)"


def _float_or_none(value: object) -> float | None:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return None
    return None


# ------------------------------------------------------------------------------------------------- spend anomalies


def _anomaly_rows(alert: Alert) -> list[tuple[str, str]]:
    details = alert.details
    rows = [
        ("Spend", usd(alert.spend) if alert.spend is not None else "not recorded"),
        ("Expected", _usd_text(details.get("expected"))),
        ("Excess", _usd_text(details.get("excess"))),
        ("Robust z", str(details.get("score"))),
    ]
    if details.get("driver_id"):
        share = details.get("driver_share")
        rows.append(
            (
                "Driver",
                f"{details.get('driver_kind')} {details.get('driver_id')}: +{_usd_text(details.get('driver_excess'))}"
                + (f" ({float(share):.0%} of the excess)" if isinstance(share, int | float) else ""),
            )
        )
    rows.append(("Anomaly", str(details.get("anomaly_id"))))
    return rows


def _usd_text(value: object) -> str:
    amount = _float_or_none(value)
    return "unknown" if amount is None else usd(Decimal(str(value)))


# ------------------------------------------------------------------------------------------------- SLA monitoring


def _sla_subject(alert: Alert) -> str:
    details = alert.details
    if alert.type is AlertType.SLA_VIOLATION:
        scope = f"{details.get('provider') or 'any provider'}, {details.get('model_pattern')}"
        return f"SLA '{details.get('definition_name')}' ({scope})"
    return f"{details.get('primary_model')} → {details.get('fallback_model')}"


def _sla_event(alert: Alert, event: str) -> str:
    metric = _metric(alert.details.get("metric"))
    if alert.type is AlertType.SLA_VIOLATION and metric is not None and not metric.is_rate:
        return "llm_too_slow"
    return event


def _metric(name: object) -> Metric | None:
    try:
        return Metric(str(name))
    except ValueError:
        return None


def _sla_measure(value: object, metric: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "no requests"
    known = _metric(metric)
    return known.describe(float(value)) if known is not None else str(value)


def _sla_figure(alert: Alert) -> str:
    details = alert.details
    metric = details.get("metric") or details.get("trigger_condition")
    limit = details.get("target", details.get("threshold"))
    return f" ({metric} {_sla_measure(details.get('measured'), metric)}, limit {_sla_measure(limit, metric)})"


def _sla_rows(alert: Alert) -> list[tuple[str, str]]:
    details = alert.details
    if alert.type is AlertType.SLA_VIOLATION:
        metric = details.get("metric")
        return [
            ("Metric", str(metric)),
            ("Measured", _sla_measure(details.get("measured"), metric)),
            ("Target", _sla_measure(details.get("target"), metric)),
            ("Requests", str(details.get("requests"))),
            ("Window", f"the last {details.get('window_minutes')} min"),
            ("Definition", f"{details.get('definition_name')} ({details.get('definition_id')})"),
            ("Violation", str(details.get("violation_id"))),
        ]
    condition = details.get("trigger_condition")
    return [
        ("Routes", f"{details.get('primary_model')} → {details.get('fallback_model')}"),
        ("Trigger", str(condition)),
        ("Measured", _sla_measure(details.get("measured"), condition)),
        ("Threshold", _sla_measure(details.get("threshold"), condition)),
        ("Cooldown", f"{details.get('cooldown_minutes')} min"),
        ("Reason", str(details.get("reason"))),
        ("Rule", str(details.get("rule_id"))),
    ]
