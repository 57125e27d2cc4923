"""SLA definitions: targets (p50/p95/p99 latency, p95 time to first token, error rate, availability) for one
provider's models matching a glob (or every provider's), over an evaluation window, with the alert channels a
violation goes to (emails, a webhook, and always the `slaViolationRaised` subscription)."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.sla import SlaDefinitionRow
from resolvers.auth import Principal, require_admin
from resolvers.platform import validation
from resolvers.platform.config import Settings, SlaSettings
from resolvers.platform.errors import AlreadyExists, InvalidInput, NotFound
from resolvers.platform.work import Work
from resolvers.sla.health import Metric
from resolvers.sla.violations import Resolution, close_violations

MAX_WINDOW_MINUTES = 1440
MAX_LATENCY_MS = 3_600_000.0
MAX_EMAILS = 20

#: Target field → the metric it bounds.
TARGETS: dict[str, Metric] = {
    "target_p50_ms": Metric.LATENCY_P50,
    "target_p95_ms": Metric.LATENCY_P95,
    "target_p99_ms": Metric.LATENCY_P99,
    "target_ttft_p95_ms": Metric.TTFT_P95,
    "target_error_rate": Metric.ERROR_RATE,
    "target_availability": Metric.AVAILABILITY,
}


@dataclass(frozen=True)
class SlaDefinitionDraft:
    """What a user sends to create a definition (and, merged with the stored one, to change it)."""

    name: str
    provider: str | None = None
    model_pattern: str = "*"
    target_p50_ms: float | None = None
    target_p95_ms: float | None = None
    target_p99_ms: float | None = None
    target_ttft_p95_ms: float | None = None
    target_error_rate: float | None = None
    target_availability: float | None = None
    evaluation_window_minutes: int = 60
    alert_emails: Sequence[str] = ()
    alert_webhook_url: str | None = None


DRAFT_FIELDS = frozenset(f.name for f in fields(SlaDefinitionDraft))


@dataclass(frozen=True)
class SlaDefinition:
    id: str
    name: str
    provider: str | None
    model_pattern: str
    target_p50_ms: float | None
    target_p95_ms: float | None
    target_p99_ms: float | None
    target_ttft_p95_ms: float | None
    target_error_rate: float | None
    target_availability: float | None
    evaluation_window_minutes: int
    alert_emails: tuple[str, ...]
    alert_webhook_url: str | None
    created_at: datetime
    updated_at: datetime
    #: True when alert_emails and alert_webhook_url were withheld from a reader who is not an admin.
    alert_targets_redacted: bool = False

    @property
    def targets(self) -> list[tuple[Metric, float]]:
        return [(metric, value) for name, metric in TARGETS.items() if (value := getattr(self, name)) is not None]

    def covers(self, provider: str, model: str) -> bool:
        return (self.provider is None or self.provider == provider) and bool(
            compile_glob(self.model_pattern).fullmatch(model)
        )

    def describe(self) -> str:
        return f"{self.provider or 'any provider'}, {self.model_pattern}"

    def seen_by(self, principal: Principal) -> SlaDefinition:
        """The definition as `principal` may read it: a non-admin never sees where its alerts go (a webhook URL
        often carries its secret, a Slack hook's path for one; the emails are people's addresses)."""
        if principal.is_admin:
            return self
        return replace(self, alert_emails=(), alert_webhook_url=None, alert_targets_redacted=True)

    def draft(self) -> SlaDefinitionDraft:
        return SlaDefinitionDraft(**{name: getattr(self, name) for name in DRAFT_FIELDS})

    @classmethod
    def from_row(cls, row: SlaDefinitionRow) -> SlaDefinition:
        return cls(
            id=row.id,
            name=row.name,
            provider=row.provider,
            model_pattern=row.model_pattern,
            target_p50_ms=row.target_p50_ms,
            target_p95_ms=row.target_p95_ms,
            target_p99_ms=row.target_p99_ms,
            target_ttft_p95_ms=row.target_ttft_p95_ms,
            target_error_rate=row.target_error_rate,
            target_availability=row.target_availability,
            evaluation_window_minutes=row.evaluation_window_minutes,
            alert_emails=tuple(row.alert_emails or ()),
            alert_webhook_url=row.alert_webhook_url,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """A shell-style glob as a regular expression over the whole model name: `*` any run, `?` one character,
    `[abc]`, `[a-z]` and `[!abc]` one of (or none of) a set. Anything else is itself. Raises InvalidInput
    (model_pattern) for a set that is never closed or empty, or a reversed range."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            start = i + 1 if pattern[i : i + 1] == "!" else i
            end = pattern.find("]", start + 1)  # a ']' right after '[' (or '[!') belongs to the set
            if end < 0:
                raise InvalidInput("model_pattern", f"the '[' at position {i} is never closed with ']'")
            members = pattern[start:end]
            escaped = "".join(f"\\{c}" if c in "\\^[]" else c for c in members)
            out.append(f"[{'^' if start > i else ''}{escaped}]")
            i = end + 1
        else:
            out.append(re.escape(char))
    try:
        return re.compile(f"(?s:{''.join(out)})\\Z")
    except re.error as exc:  # e.g. a reversed range such as [z-a]
        raise InvalidInput("model_pattern", f"is not a valid glob ({exc})") from None


# ---------------------------------------------------------------------------------------------- reading


async def list_definitions(session: AsyncSession) -> list[SlaDefinition]:
    """Every definition, whole (the collector's read; readers go through `definitions_for`)."""
    rows = await session.scalars(select(SlaDefinitionRow).order_by(SlaDefinitionRow.name, SlaDefinitionRow.id))
    return [SlaDefinition.from_row(r) for r in rows]


async def definitions_for(session: AsyncSession, principal: Principal) -> list[SlaDefinition]:
    """Every definition as `principal` may read it (alert targets redacted for non-admins)."""
    return [d.seen_by(principal) for d in await list_definitions(session)]


async def get_definition(session: AsyncSession, definition_id: str, principal: Principal) -> SlaDefinition:
    return SlaDefinition.from_row(await _row(session, definition_id)).seen_by(principal)


# ---------------------------------------------------------------------------------------------- writing


async def create_definition(
    work: Work, principal: Principal, draft: SlaDefinitionDraft, settings: Settings
) -> SlaDefinition:
    require_admin(principal, "creating an SLA definition")
    valid = _validated(draft, settings)
    await _refuse_duplicate_name(work.session, valid.name, exclude=None)
    row = SlaDefinitionRow(id=str(uuid.uuid4()), created_at=work.now, updated_at=work.now)
    _assign(row, valid)
    work.session.add(row)
    await _flush_named(work.session, valid.name)
    return SlaDefinition.from_row(row)


def _duplicate_name(name: str) -> AlreadyExists:
    return AlreadyExists("name", f"an SLA definition named {name!r} already exists; update it or choose another name")


async def _refuse_duplicate_name(session: AsyncSession, name: str, *, exclude: str | None) -> None:
    query = select(SlaDefinitionRow.id).where(SlaDefinitionRow.name == name).limit(1)
    if exclude is not None:
        query = query.where(SlaDefinitionRow.id != exclude)
    if (await session.execute(query)).first() is not None:
        raise _duplicate_name(name)


async def _flush_named(session: AsyncSession, name: str) -> None:
    """Flush; two concurrent creations of one name meet the unique constraint, and the loser hears why."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _duplicate_name(name) from exc


async def update_definition(
    work: Work, principal: Principal, definition_id: str, changes: Mapping[str, Any], settings: Settings
) -> SlaDefinition:
    """Apply the given fields (absent ones stay; null clears an optional one). Open violations of a target that
    was removed are resolved ("definition_changed"); the others are judged against the new targets next run."""
    require_admin(principal, "updating an SLA definition")
    unknown = sorted(set(changes) - DRAFT_FIELDS)
    if unknown:
        raise InvalidInput(unknown[0], "is not a field of an SLA definition")
    row = await _row(work.session, definition_id)
    current = SlaDefinition.from_row(row)
    valid = _validated(replace(current.draft(), **changes), settings)
    await _refuse_duplicate_name(work.session, valid.name, exclude=row.id)
    _assign(row, valid)
    row.updated_at = work.now
    await _flush_named(work.session, valid.name)
    updated = SlaDefinition.from_row(row)
    kept = {metric for metric, _ in updated.targets}
    dropped = {metric for metric, _ in current.targets} - kept
    if dropped:
        await close_violations(work, updated.id, Resolution.DEFINITION_CHANGED, principal.subject, dropped)
    return updated


async def delete_definition(work: Work, principal: Principal, definition_id: str) -> SlaDefinition:
    """Delete it; its open violations are resolved ("definition_deleted") and, like the closed ones, kept."""
    require_admin(principal, "deleting an SLA definition")
    row = await _row(work.session, definition_id)
    definition = SlaDefinition.from_row(row)
    await close_violations(work, definition.id, Resolution.DEFINITION_DELETED, principal.subject)
    await work.session.delete(row)
    await work.session.flush()
    return definition


def _assign(row: SlaDefinitionRow, valid: SlaDefinitionDraft) -> None:
    for name in DRAFT_FIELDS:
        value = getattr(valid, name)
        setattr(row, name, list(value) if name == "alert_emails" else value)


def _validated(draft: SlaDefinitionDraft, settings: Settings) -> SlaDefinitionDraft:
    name = validation.text("name", draft.name, max_length=200)
    provider = validation.text("provider", draft.provider, max_length=64, required=False)
    pattern = validation.text("model_pattern", draft.model_pattern, max_length=200) or "*"
    compile_glob(pattern)
    targets: dict[str, float | None] = {}
    for field, metric in TARGETS.items():
        value = getattr(draft, field)
        targets[field] = None if value is None else (_rate if metric.is_rate else _latency)(field, value)
    if all(v is None for v in targets.values()):
        raise InvalidInput(
            "target_p95_ms", "an SLA needs at least one target (latency, TTFT, error rate, availability)"
        )
    window = window_minutes("evaluation_window_minutes", draft.evaluation_window_minutes, settings.sla)
    emails = list(draft.alert_emails or ())
    if len(emails) > MAX_EMAILS:
        raise InvalidInput("alert_emails", f"at most {MAX_EMAILS} addresses")
    checked = [validation.email("alert_emails", address) for address in emails]
    return SlaDefinitionDraft(
        name=name or "",
        provider=provider,
        model_pattern=pattern,
        evaluation_window_minutes=window,
        alert_emails=tuple(dict.fromkeys(a for a in checked if a)),
        alert_webhook_url=validation.http_url(
            "alert_webhook_url", draft.alert_webhook_url, allow_private=settings.allow_private_webhooks
        ),
        **targets,
    )


def _rate(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInput(field, "must be a fraction from 0 to 1 (0.01 means 1%)")
    return float(value)


def _latency(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidInput(field, "must be a positive number of milliseconds")
    if value > MAX_LATENCY_MS:
        raise InvalidInput(field, f"may not exceed {MAX_LATENCY_MS:.0f} ms (an hour)")
    return float(value)


def window_minutes(field: str, value: int, settings: SlaSettings) -> int:
    """An evaluation window: whole minutes, at least the collector's interval (a shorter window would leave
    requests no run ever looks at), at most a day."""
    low = settings.collector_interval_minutes
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_WINDOW_MINUTES:
        raise InvalidInput(
            field, f"must be whole minutes from {low} (SLA_COLLECTOR_INTERVAL_MINUTES) to {MAX_WINDOW_MINUTES}"
        )
    return value


async def _row(session: AsyncSession, definition_id: str) -> SlaDefinitionRow:
    row = await session.get(SlaDefinitionRow, definition_id) if validation.is_uuid(definition_id) else None
    if row is None:
        raise NotFound(f"no SLA definition with id {definition_id!r}")
    return row
