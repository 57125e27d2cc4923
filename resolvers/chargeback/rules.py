"""Allocation rules: which share of a team's spend goes to which cost center, project or department.

Per team and allocation type the percents may not exceed 100; what is left is reported as unallocated. A rule's
metadata (GL account, SAP codes, Workday ids) travels into every statement line built from it. SAP codes must be
strings, so leading zeros survive ("0000620000" is not 620000).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.budgets import BudgetRow
from models.chargeback import AllocationRuleRow
from models.litellm import LiteLLMSchema, verification_tokens
from models.litellm import teams as litellm_teams
from models.rollups import CostSummaryMonthlyRow
from resolvers.auth import Principal, require_admin
from resolvers.platform import validation
from resolvers.platform.errors import AlreadyExists, Forbidden, InvalidInput, NotFound
from resolvers.platform.work import Work

R = TypeVar("R")

HUNDRED = Decimal(100)
MAX_METADATA_BYTES = 8192
#: Rule metadata keys the SAP exports read, with SAP's field lengths (checked when a SAP file is made, so a
#: rule may carry a descriptive code such as the guide's "6200-AI-SERVICES" for CSV and JSON statements).
#: An SAP code in a rule's metadata: the SPENDPLANE_SAP_* settings' letters and digits, plus the separators
#: G/L account and WBS names use ("6200-AI-SERVICES", "P-1234.01"); it starts with a letter or digit, so it is never
#: a spreadsheet formula, and carries no space or control character into the SAP files.
SAP_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
SAP_KEYS = {
    "company_code": 4,
    "controlling_area": 4,
    "gl_account": 10,
    "cost_element": 10,
    "sap_cost_center": 10,
    "sap_internal_order": 12,
    "sap_wbs_element": 24,
    "sap_profit_center": 10,
}
_RULE_WRITE_LOCK = 0x5350414C4C  # "SPALL": rule writes take turns, so two can never add up past 100 %


class AllocationType(StrEnum):
    COST_CENTER = "cost_center"
    PROJECT = "project"
    DEPARTMENT = "department"


#: The order a team's allocation types are posted in: its cost center rules, else project, else department.
POSTING_ORDER = (AllocationType.COST_CENTER, AllocationType.PROJECT, AllocationType.DEPARTMENT)


@dataclass(frozen=True)
class RuleDraft:
    team_id: str
    allocation_type: str
    allocation_target: str
    allocation_percent: Decimal | None = None
    name: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class RuleChanges:
    """None leaves a field as it is; metadata {} clears it."""

    name: str | None = None
    allocation_target: str | None = None
    allocation_percent: Decimal | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class AllocationRule:
    id: str
    name: str
    team_id: str
    allocation_type: AllocationType
    allocation_target: str
    allocation_percent: Decimal
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    #: Said when the rule is created (e.g. a team nobody has heard of); never stored.
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: AllocationRuleRow) -> AllocationRule:
        return cls(
            id=row.id,
            name=row.name,
            team_id=row.team_id,
            allocation_type=AllocationType(row.allocation_type),
            allocation_target=row.allocation_target,
            allocation_percent=row.allocation_percent,
            metadata=dict(row.details or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


async def list_rules(session: AsyncSession, principal: Principal, team_id: str | None = None) -> list[AllocationRule]:
    """Admins see every rule; a viewer sees its own team's."""
    team_id = validation.identifier("team_id", team_id)
    if not principal.is_admin:
        if team_id is not None and team_id != principal.team_id:
            raise Forbidden("this token may only read its own team's allocation rules")
        if principal.team_id is None:
            return []
        team_id = principal.team_id
    query = select(AllocationRuleRow).order_by(
        AllocationRuleRow.team_id, AllocationRuleRow.allocation_type, AllocationRuleRow.allocation_target
    )
    if team_id:
        query = query.where(AllocationRuleRow.team_id == team_id)
    return [AllocationRule.from_row(r) for r in (await session.scalars(query)).all()]


async def all_rules(session: AsyncSession) -> list[AllocationRule]:
    query = select(AllocationRuleRow).order_by(
        AllocationRuleRow.team_id, AllocationRuleRow.allocation_type, AllocationRuleRow.allocation_target
    )
    return [AllocationRule.from_row(r) for r in (await session.scalars(query)).all()]


async def team_is_known(session: AsyncSession, litellm: LiteLLMSchema | None, team_id: str) -> bool:
    """Does anything know this team: LiteLLM's team table, a virtual key of the team, its rolled-up spend or a
    budget? Each is one indexed lookup (never a scan of the raw spend logs)."""
    lookups = [
        select(CostSummaryMonthlyRow.team_id).where(CostSummaryMonthlyRow.team_id == team_id).limit(1),
        select(BudgetRow.id).where(BudgetRow.entity_type == "team", BudgetRow.entity_id == team_id).limit(1),
    ]
    if litellm is not None and litellm.has_table(litellm_teams):
        lookups.insert(0, select(litellm_teams.c.team_id).where(litellm_teams.c.team_id == team_id).limit(1))
    if litellm is not None and litellm.has(verification_tokens, "team_id"):
        lookups.append(select(verification_tokens.c.token).where(verification_tokens.c.team_id == team_id).limit(1))
    for lookup in lookups:
        if (await session.execute(lookup)).first() is not None:
            return True
    return False


async def create_rule(
    work: Work, principal: Principal, draft: RuleDraft, litellm: LiteLLMSchema | None = None
) -> AllocationRule:
    require_admin(principal, "creating an allocation rule")
    team = _required("team_id", draft.team_id, 256)
    kind = allocation_type(draft.allocation_type)
    target = _required("allocation_target", draft.allocation_target, 128)
    percent = _percent(draft.allocation_percent)
    await _lock(work)
    await _refuse_duplicate(work.session, team, kind, target, exclude=None)
    await _check_total(work.session, team, kind, percent, exclude=None)
    row = AllocationRuleRow(
        id=str(uuid.uuid4()),
        name=validation.identifier("name", draft.name, max_length=200) or f"{team} to {target}",
        team_id=team,
        allocation_type=kind.value,
        allocation_target=target,
        allocation_percent=percent,
        details=_metadata(draft.metadata),
        created_at=work.now,
        updated_at=work.now,
    )
    work.session.add(row)
    try:
        await work.session.flush()
    except IntegrityError as exc:
        raise _duplicate(team, kind, target) from exc
    warnings: tuple[str, ...] = ()
    if not await team_is_known(work.session, litellm, team):
        warnings = (
            f"team_id: no spend, key, budget or LiteLLM team row knows team {team!r} yet; check the id (the rule "
            "applies as soon as spend of that team arrives)",
        )
    return replace(AllocationRule.from_row(row), warnings=warnings)


async def update_rule(work: Work, principal: Principal, rule_id: str, changes: RuleChanges) -> AllocationRule:
    require_admin(principal, "updating an allocation rule")
    await _lock(work)
    row = await _row(work.session, rule_id)
    kind = AllocationType(row.allocation_type)
    if changes.allocation_percent is not None:
        percent = _percent(changes.allocation_percent)
        await _check_total(work.session, row.team_id, kind, percent, exclude=row.id)
        row.allocation_percent = percent
    if changes.allocation_target is not None:
        target = _required("allocation_target", changes.allocation_target, 128)
        await _refuse_duplicate(work.session, row.team_id, kind, target, exclude=row.id)
        row.allocation_target = target
    if changes.name is not None:
        row.name = _required("name", changes.name, 200)
    if changes.metadata is not None:
        row.details = _metadata(changes.metadata)
    row.updated_at = work.now
    await work.session.flush()
    return AllocationRule.from_row(row)


async def delete_rule(work: Work, principal: Principal, rule_id: str) -> AllocationRule:
    require_admin(principal, "deleting an allocation rule")
    row = await _row(work.session, rule_id)
    rule = AllocationRule.from_row(row)
    await work.session.delete(row)
    await work.session.flush()
    return rule


def _required(field: str, value: str | None, max_length: int) -> str:
    found = validation.identifier(field, value, max_length=max_length)
    if found is None:
        raise InvalidInput(field, "is required and may not be blank")
    return found


def allocation_type(value: str) -> AllocationType:
    try:
        return AllocationType(value.strip().lower())
    except ValueError:
        allowed = ", ".join(t.value for t in AllocationType)
        raise InvalidInput("allocation_type", f"must be one of {allowed} (got {value!r})") from None


def _percent(value: Decimal | None) -> Decimal:
    if value is None:
        return HUNDRED
    if not value.is_finite() or value <= 0 or value > HUNDRED:
        raise InvalidInput("allocation_percent", "must be above 0 and at most 100 (percent of the team's spend)")
    if -value.as_tuple().exponent > 6:  # type: ignore[operator]
        raise InvalidInput("allocation_percent", "has more than 6 decimal places")
    return value


def _metadata(value: dict[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("metadata", "must be a JSON object")
    try:
        encoded = json.dumps(value, default=_number)
    except (TypeError, ValueError):
        raise InvalidInput("metadata", "must be plain JSON") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidInput("metadata", f"may not exceed {MAX_METADATA_BYTES} bytes of JSON")
    _refuse_controls_within(value)
    for key, length in SAP_KEYS.items():
        if key not in value or value[key] is None:
            continue
        code = value[key]
        if not isinstance(code, str):
            raise InvalidInput("metadata", f'{key} must be a string, so leading zeros survive (e.g. "0000620000")')
        if not SAP_CODE.fullmatch(code):
            raise InvalidInput(
                "metadata",
                f"{key} must be 1 to 64 letters or digits, with '-', '.', '/' or '_' between them "
                f"(SAP itself takes {length}; the SAP files check that length)",
            )
    return json.loads(encoded)  # type: ignore[no-any-return]


def _refuse_controls_within(value: object) -> None:
    """No control character (NUL included) in any key or text of the metadata, however deep."""
    if isinstance(value, str):
        validation.refuse_controls("metadata", value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_controls_within(key)
            _refuse_controls_within(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_controls_within(item)


def _number(value: object) -> int | float:
    """REST bodies parse numbers as Decimal; plain JSON numbers go into metadata."""
    if isinstance(value, Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


async def _lock(work: Work) -> None:
    if work.dialect == "postgresql":
        await work.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _RULE_WRITE_LOCK})


async def _check_total(
    session: AsyncSession, team: str, kind: AllocationType, percent: Decimal, *, exclude: str | None
) -> None:
    query = select(AllocationRuleRow.allocation_percent).where(
        AllocationRuleRow.team_id == team, AllocationRuleRow.allocation_type == kind.value
    )
    if exclude is not None:
        query = query.where(AllocationRuleRow.id != exclude)
    others = sum((Decimal(p) for p in (await session.scalars(query)).all()), Decimal(0))
    if others + percent > HUNDRED:
        raise InvalidInput(
            "allocation_percent",
            f"{team}'s {kind.value} rules would add up to {others + percent}% "
            f"(at most 100; {HUNDRED - others}% is left)",
        )


async def _refuse_duplicate(
    session: AsyncSession, team: str, kind: AllocationType, target: str, *, exclude: str | None
) -> None:
    query = select(func.count()).where(
        AllocationRuleRow.team_id == team,
        AllocationRuleRow.allocation_type == kind.value,
        AllocationRuleRow.allocation_target == target,
    )
    if exclude is not None:
        query = query.where(AllocationRuleRow.id != exclude)
    if await session.scalar(query):
        raise _duplicate(team, kind, target)


def _duplicate(team: str, kind: AllocationType, target: str) -> AlreadyExists:
    return AlreadyExists("allocation_target", f"{team} already has a {kind.value} rule for {target}; update it instead")


async def _row(session: AsyncSession, rule_id: str) -> AllocationRuleRow:
    return await by_id(session, AllocationRuleRow, rule_id, "allocation rule")


async def by_id(session: AsyncSession, model: type[R], row_id: str, what: str) -> R:
    """A row by its uuid, or NOT_FOUND (a malformed id is simply not found)."""
    try:
        uuid.UUID(row_id)
    except ValueError:
        raise NotFound(f"no {what} with id {row_id!r}") from None
    row = await session.get(model, row_id)
    if row is None:
        raise NotFound(f"no {what} with id {row_id!r}")
    return row
