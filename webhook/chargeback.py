"""The guide's chargeback API: /api/v1/cost-allocation/rules and /api/v1/chargeback/reports (JWT)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from resolvers.chargeback import rules, statements
from resolvers.chargeback.files import chargeback_format, sap_layout, statement_file
from resolvers.chargeback.rules import AllocationRule, AllocationType, RuleChanges, RuleDraft
from resolvers.chargeback.statements import Statement
from resolvers.platform.errors import InvalidInput
from resolvers.reports import report_source
from resolvers.service.runtime import Runtime
from webhook.downloads import download
from webhook.openapi import amount, choice, refine, time_zone
from webhook.rest import JSON, caller, read_model, runtime_of

#: A rule's share of its team's spend, in percent.
#: resolvers.chargeback.rules._percent: above 0, at most 100, at most 6 decimal places.
_PERCENT = amount(places=6, maximum=100, above_zero=True)


class RuleCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=refine(
            not_blank=("team_id", "allocation_target"),
            props={"allocation_type": choice(*AllocationType), "allocation_percent": _PERCENT},
        ),
    )
    name: str | None = Field(default=None, max_length=200)
    team_id: str = Field(max_length=256)
    allocation_type: str = Field(description="cost_center, project or department")
    allocation_target: str = Field(max_length=128, description="e.g. CC-1234 or PROJ-AI-001")
    allocation_percent: Decimal | None = Field(default=None, allow_inf_nan=False, description="default 100")
    metadata: dict[str, Any] | None = Field(default=None, description="GL account, SAP codes (strings), ...")


class RuleUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=refine(
            not_null=("name", "allocation_target", "allocation_percent", "metadata"),
            not_blank=("name", "allocation_target"),
            props={"allocation_percent": _PERCENT},
        ),
    )
    name: str | None = Field(default=None, max_length=200)
    allocation_target: str | None = Field(default=None, max_length=128)
    allocation_percent: Decimal | None = Field(default=None, allow_inf_nan=False)
    metadata: dict[str, Any] | None = None


class RuleOut(BaseModel):
    id: str
    name: str
    team_id: str
    allocation_type: str
    allocation_target: str
    allocation_percent: Decimal
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    warnings: list[str] = Field(default_factory=list, description="said on creation, e.g. a team nobody knows")

    @classmethod
    def render(cls, found: AllocationRule) -> dict[str, Any]:
        return cls.model_validate(found, from_attributes=True).model_dump()


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=refine(
            props={"period": {"pattern": r"^\s*2[0-9]{3}-(0[1-9]|1[0-2])\s*$"}, "time_zone": time_zone()}
        ),
    )
    period: str = Field(max_length=7, description="YYYY-MM, e.g. 2026-02")
    time_zone: str | None = Field(
        default=None, max_length=64, description="IANA zone whose month it is; default SPENDPLANE_TIME_ZONE"
    )


class LineOut(BaseModel):
    kind: str
    team_id: str | None
    allocation_type: str | None
    allocation_target: str | None
    percent: Decimal
    cost: Decimal
    posted: bool
    adjusts_period: str | None
    rule_id: str | None
    rule_name: str | None
    metadata: dict[str, Any]


class TypeSummaryOut(BaseModel):
    allocation_type: str
    allocated: Decimal
    unallocated: Decimal


_NOW_FIELDS = ("current_total", "difference")


class ReportOut(BaseModel):
    id: str
    period: str
    time_zone: str
    status: str
    total_cost: Decimal
    allocated_cost: Decimal
    unallocated_cost: Decimal
    adjustment_cost: Decimal
    revision: int
    generated_at: datetime
    finalized_at: datetime | None
    exported_at: datetime | None
    by_type: list[TypeSummaryOut]
    lines: list[LineOut]
    current_total: Decimal = Field(
        description="the month's spend as reports read it now (late logs once the rollup re-counted their day)"
    )
    difference: Decimal = Field(description="current_total - total_cost: late spend a frozen statement does not hold")

    @classmethod
    def render(cls, found: Statement, current: Decimal) -> dict[str, Any]:
        out = cls.model_validate(
            {
                **{
                    name: getattr(found, name)
                    for name in cls.model_fields
                    if name not in ("current_total", "difference")
                },
                "current_total": current,
                "difference": current - found.total_cost,
            },
            from_attributes=True,
        )
        return out.model_dump()


async def _rendered(runtime: Runtime, found: list[Statement]) -> list[dict[str, Any]]:
    """Statements with their current total and difference, as GraphQL gives them (one read per month and zone)."""
    async with runtime.read() as session:
        source = await report_source(session, runtime)
        months = {(s.period, s.time_zone) for s in found}
        current = {m: await statements.current_total(session, source, *m) for m in months}
    return [ReportOut.render(s, current[s.period, s.time_zone]) for s in found]


async def list_rules(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await rules.list_rules(session, principal, request.query_params.get("team_id") or None)
    return JSON([RuleOut.render(r) for r in found])


async def create_rule(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, RuleCreate)
    async with runtime.work() as work:
        rule = await rules.create_rule(work, principal, RuleDraft(**body.model_dump()), runtime.litellm)
    return JSON(RuleOut.render(rule), status_code=201)


async def update_rule(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, RuleUpdate)
    for field in body.model_fields_set:
        if getattr(body, field) is None:
            raise InvalidInput(field, "may not be null; omit it to keep the current value")
    async with runtime.work() as work:
        rule = await rules.update_rule(
            work, principal, request.path_params["rule_id"], RuleChanges(**body.model_dump())
        )
    return JSON(RuleOut.render(rule))


async def delete_rule(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.work() as work:
        rule = await rules.delete_rule(work, principal, request.path_params["rule_id"])
    return JSON(RuleOut.render(rule))


async def generate_report(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body = await read_model(request, GenerateRequest)
    found = await statements.generate_statement(runtime, principal, body.period, body.time_zone)
    return JSON((await _rendered(runtime, [found]))[0])


async def list_reports(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await statements.list_statements(session, principal, request.query_params.get("period") or None)
    return JSON(await _rendered(runtime, found))


async def get_report(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.read() as session:
        found = await statements.get_statement(session, principal, request.path_params["report_id"])
    return JSON((await _rendered(runtime, [found]))[0])


async def finalize_report(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    async with runtime.work() as work:
        found = await statements.finalize_statement(work, principal, request.path_params["report_id"])
    return JSON((await _rendered(runtime, [found]))[0])


async def export_report(request: Request) -> Response:
    """Marks the statement EXPORTED (a draft is refused before anything is sent), then streams the file."""
    runtime, principal, params = runtime_of(request), caller(request), request.query_params
    fmt, layout = chargeback_format(params.get("format")), sap_layout(params.get("layout"))
    async with runtime.work() as work:
        found = await statements.mark_exported(work, principal, request.path_params["report_id"], fmt.value)
        file = statement_file(found, fmt, layout, runtime.settings.sap)  # a refusal rolls the status back

    async def chunks(parts: Iterator[bytes]) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    return download(
        chunks(file.chunks),
        filename=file.filename,
        media_type=file.content_type,
        headers={"x-control-total": format(file.control_total, "f"), "x-documents": str(file.documents)},
    )
