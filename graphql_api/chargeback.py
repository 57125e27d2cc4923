"""Chargeback in GraphQL: allocation rules, monthly statements and their lifecycle and exports."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types.unset import UNSET, UnsetType

from graphql_api.context import Info
from graphql_api.pagination import After, Connection, First, connection
from resolvers.chargeback import rules, statements
from resolvers.chargeback.files import ChargebackFormat, statement_file
from resolvers.chargeback.rules import AllocationRule, AllocationType, RuleChanges, RuleDraft
from resolvers.chargeback.sap import SapLayout
from resolvers.chargeback.splitting import LineKind, StatementLine
from resolvers.chargeback.statements import Statement, StatementStatus
from resolvers.platform.errors import InvalidInput
from resolvers.platform.pages import DEFAULT_PAGE
from resolvers.reports import report_source

strawberry.enum(AllocationType, name="AllocationType", description="What a team's spend is allocated to.")
strawberry.enum(
    StatementStatus,
    name="ChargebackStatus",
    description="DRAFT (regenerated in place) -> FINALIZED (frozen) -> EXPORTED.",
)
strawberry.enum(
    LineKind,
    name="ChargebackLineKind",
    description="ALLOCATION to a target, the UNALLOCATED remainder, or an ADJUSTMENT for late spend of an "
    "earlier finalized month.",
)
strawberry.enum(ChargebackFormat, name="ChargebackExportFormat", description="CSV, JSON or SAP (see SapLayout).")
strawberry.enum(
    SapLayout,
    name="SapLayout",
    description="FI_JOURNAL: balanced G/L journal (BAPI_ACC_DOCUMENT_POST fields); CO_REPOSTING: KB11N "
    "reposting of primary costs from the central cost center to the receivers.",
)

EXPORT_PATH = "/api/v1/chargeback/reports/{id}/export"


@strawberry.type(
    name="AllocationRule", description="Maps a share of a team's spend to a cost center, project or department."
)
class AllocationRuleType:
    id: strawberry.ID
    name: str
    team_id: str
    allocation_type: AllocationType
    allocation_target: str
    allocation_percent: Decimal = strawberry.field(description="Percent of the team's spend (100 = all).")
    metadata: JSON = strawberry.field(description="GL account, SAP codes (as strings), Workday ids, ...")
    created_at: datetime
    updated_at: datetime
    warnings: list[str] = strawberry.field(
        description="Said when the rule is created (e.g. a team with no spend and no LiteLLM team row); empty when "
        "read back."
    )

    @classmethod
    def from_rule(cls, rule: AllocationRule) -> AllocationRuleType:
        return cls(
            id=strawberry.ID(rule.id),
            name=rule.name,
            team_id=rule.team_id,
            allocation_type=rule.allocation_type,
            allocation_target=rule.allocation_target,
            allocation_percent=rule.allocation_percent,
            metadata=JSON(rule.metadata),
            created_at=rule.created_at,
            updated_at=rule.updated_at,
            warnings=list(rule.warnings),
        )


@strawberry.input(description="A new allocation rule. allocationPercent defaults to 100.")
class AllocationRuleInput:
    team_id: str
    allocation_type: AllocationType
    allocation_target: str
    allocation_percent: Decimal | None = None
    name: str | None = None
    metadata: JSON | None = strawberry.field(
        default=None,
        description='e.g. {"gl_account": "0000620000", "sap_cost_center": "0000004711", "company_code": "1000"}',
    )


@strawberry.input(description="Changes to a rule; omitted fields stay. The team and type of a rule never change.")
class AllocationRuleUpdateInput:
    name: str | None = UNSET
    allocation_target: str | None = UNSET
    allocation_percent: Decimal | None = UNSET
    metadata: JSON | None = UNSET


@strawberry.type(name="ChargebackLine", description="One line of a statement.")
class ChargebackLineType:
    kind: LineKind
    team_id: str | None = strawberry.field(description="null = spend logged without a team.")
    allocation_type: AllocationType | None
    allocation_target: str | None = strawberry.field(description="null on the unallocated part.")
    percent: Decimal
    cost: Decimal
    posted: bool = strawberry.field(
        description="Charged and sent to SAP: the team's cost center lines, else project, else department."
    )
    adjusts_period: str | None = strawberry.field(description="For ADJUSTMENT lines: the month they adjust.")
    rule_id: strawberry.ID | None
    rule_name: str | None
    metadata: JSON = strawberry.field(description="The rule's metadata as it was when the line was generated.")

    @classmethod
    def from_line(cls, line: StatementLine) -> ChargebackLineType:
        return cls(
            kind=line.kind,
            team_id=line.team_id,
            allocation_type=line.allocation_type,
            allocation_target=line.allocation_target,
            percent=line.percent,
            cost=line.cost,
            posted=line.posted,
            adjusts_period=line.adjusts_period,
            rule_id=strawberry.ID(line.rule_id) if line.rule_id else None,
            rule_name=line.rule_name,
            metadata=JSON(line.metadata),
        )


@strawberry.type(name="ChargebackTypeSummary", description="One allocation type's view of the month.")
class ChargebackTypeSummaryType:
    allocation_type: AllocationType
    allocated: Decimal
    unallocated: Decimal


@strawberry.type(name="ChargebackReport", description="A month's chargeback statement.")
class ChargebackReportType:
    statement: strawberry.Private[Statement]
    id: strawberry.ID
    period: str = strawberry.field(description="YYYY-MM.")
    time_zone: str = strawberry.field(description="The IANA time zone whose calendar month `period` is.")
    status: StatementStatus
    total_cost: Decimal = strawberry.field(description="The month's spend: equal to costReport's total for it.")
    allocated_cost: Decimal = strawberry.field(description="Posted to allocation targets.")
    unallocated_cost: Decimal = strawberry.field(description="Posted nowhere (no rule, or percents below 100).")
    adjustment_cost: Decimal = strawberry.field(description="Late spend of earlier finalized months carried here.")
    revision: int
    generated_at: datetime
    generated_by: str
    finalized_at: datetime | None
    finalized_by: str | None
    exported_at: datetime | None
    last_export_format: str | None
    lines: list[ChargebackLineType]
    by_type: list[ChargebackTypeSummaryType]

    @strawberry.field(
        description="The month's spend as reports read it now: late spend logs count once the rollup's next run "
        "has re-counted their day (SPENDPLANE_ROLLUP_SCHEDULE)."
    )
    async def current_total(self, info: Info) -> Decimal:
        return await _current_total(info, self.statement)

    @strawberry.field(description="currentTotal - totalCost: late spend a frozen statement does not hold.")
    async def difference(self, info: Info) -> Decimal:
        return await _current_total(info, self.statement) - self.statement.total_cost

    @classmethod
    def from_statement(cls, s: Statement) -> ChargebackReportType:
        return cls(
            statement=s,
            id=strawberry.ID(s.id),
            period=s.period,
            time_zone=s.time_zone,
            status=s.status,
            total_cost=s.total_cost,
            allocated_cost=s.allocated_cost,
            unallocated_cost=s.unallocated_cost,
            adjustment_cost=s.adjustment_cost,
            revision=s.revision,
            generated_at=s.generated_at,
            generated_by=s.generated_by,
            finalized_at=s.finalized_at,
            finalized_by=s.finalized_by,
            exported_at=s.exported_at,
            last_export_format=s.last_export_format,
            lines=[ChargebackLineType.from_line(x) for x in s.lines],
            by_type=[
                ChargebackTypeSummaryType(
                    allocation_type=t.allocation_type, allocated=t.allocated, unallocated=t.unallocated
                )
                for t in s.by_type
            ],
        )


@strawberry.type(name="ChargebackExport", description="An exported statement: the file and what it posts.")
class ChargebackExportType:
    report: ChargebackReportType
    format: ChargebackFormat
    filename: str
    content_type: str
    url: str = strawberry.field(description="The REST download of the same file (send the same bearer token).")
    content: str
    control_total: Decimal = strawberry.field(
        description="SAP: the sum of posted cents; CSV/JSON: total + adjustments."
    )
    documents: int


async def _current_total(info: Info, statement: Statement) -> Decimal:
    runtime = info.context.runtime
    async with runtime.read() as session:
        source = await report_source(session, runtime)
        return await statements.current_total(session, source, statement.period, statement.time_zone)


def _keep(field: str, value: Any) -> Any:
    if isinstance(value, UnsetType):
        return None
    if value is None:
        raise InvalidInput(field, "may not be null; omit it to keep the current value")
    return value


@strawberry.type
class ChargebackQueries:
    @strawberry.field(description="Allocation rules, optionally of one team (a viewer sees its own team's).")
    async def allocation_rules(self, info: Info, team_id: str | None = None) -> list[AllocationRuleType]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await rules.list_rules(session, principal, team_id or None)
        return [AllocationRuleType.from_rule(r) for r in found]

    @strawberry.field(description="Chargeback statements, newest month first, optionally of one month (admin).")
    async def chargeback_reports(self, info: Info, period: str | None = None) -> list[ChargebackReportType]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await statements.list_statements(session, principal, period)
        return [ChargebackReportType.from_statement(s) for s in found]

    @strawberry.field(description="`chargebackReports` a cursor page at a time, newest period first (admin).")
    async def chargeback_reports_connection(
        self, info: Info, first: First = DEFAULT_PAGE, after: After = None, period: str | None = None
    ) -> Connection[ChargebackReportType]:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            page = await statements.statement_page(session, principal, period, first=first, after=after)
        return connection(page, ChargebackReportType.from_statement)

    @strawberry.field(description="One statement by id (admin).")
    async def chargeback_report(self, info: Info, id: strawberry.ID) -> ChargebackReportType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await statements.get_statement(session, principal, str(id))
        return ChargebackReportType.from_statement(found)


@strawberry.type
class ChargebackMutations:
    @strawberry.mutation(description="Create an allocation rule (admin). Per team and type at most 100% in all.")
    async def create_allocation_rule(self, info: Info, input: AllocationRuleInput) -> AllocationRuleType:
        runtime, principal = info.context.runtime, info.context.caller()
        draft = RuleDraft(
            team_id=input.team_id,
            allocation_type=input.allocation_type.value,
            allocation_target=input.allocation_target,
            allocation_percent=input.allocation_percent,
            name=input.name,
            metadata=input.metadata,  # type: ignore[arg-type]
        )
        async with runtime.work() as work:
            rule = await rules.create_rule(work, principal, draft, runtime.litellm)
        return AllocationRuleType.from_rule(rule)

    @strawberry.mutation(description="Change a rule's name, target, percent or metadata (admin).")
    async def update_allocation_rule(
        self, info: Info, id: strawberry.ID, input: AllocationRuleUpdateInput
    ) -> AllocationRuleType:
        runtime, principal = info.context.runtime, info.context.caller()
        changes = RuleChanges(
            name=_keep("name", input.name),
            allocation_target=_keep("allocation_target", input.allocation_target),
            allocation_percent=_keep("allocation_percent", input.allocation_percent),
            metadata=_keep("metadata", input.metadata),
        )
        async with runtime.work() as work:
            rule = await rules.update_rule(work, principal, str(id), changes)
        return AllocationRuleType.from_rule(rule)

    @strawberry.mutation(description="Delete a rule (admin); statements already generated keep their lines.")
    async def delete_allocation_rule(self, info: Info, id: strawberry.ID) -> AllocationRuleType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            rule = await rules.delete_rule(work, principal, str(id))
        return AllocationRuleType.from_rule(rule)

    @strawberry.mutation(
        description="Build the month's DRAFT statement (YYYY-MM, a month in `timeZone`, default "
        "SPENDPLANE_TIME_ZONE), replacing an earlier draft (admin)."
    )
    async def generate_chargeback_report(
        self, info: Info, period: str, time_zone: str | None = None
    ) -> ChargebackReportType:
        runtime, principal = info.context.runtime, info.context.caller()
        found = await statements.generate_statement(runtime, principal, period, time_zone)
        return ChargebackReportType.from_statement(found)

    @strawberry.mutation(description="Freeze a draft once its month is over (admin); it never changes again.")
    async def finalize_chargeback_report(self, info: Info, id: strawberry.ID) -> ChargebackReportType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            found = await statements.finalize_statement(work, principal, str(id))
        return ChargebackReportType.from_statement(found)

    @strawberry.mutation(
        description="Export a finalized statement as CSV, JSON or SAP and mark it EXPORTED (admin); drafts are refused."
    )
    async def export_chargeback_report(
        self,
        info: Info,
        id: strawberry.ID,
        format: ChargebackFormat = ChargebackFormat.CSV,
        sap_layout: SapLayout = SapLayout.FI_JOURNAL,
    ) -> ChargebackExportType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            found = await statements.mark_exported(work, principal, str(id), format.value)
            file = statement_file(found, format, sap_layout, runtime.settings.sap)  # a refusal rolls back
        url = EXPORT_PATH.format(id=found.id) + f"?format={format.value}"
        if format is ChargebackFormat.SAP:
            url += f"&layout={sap_layout.value}"
        return ChargebackExportType(
            report=ChargebackReportType.from_statement(found),
            format=format,
            filename=file.filename,
            content_type=file.content_type,
            url=url,
            content=b"".join(file.chunks).decode(),
            control_total=file.control_total,
            documents=file.documents,
        )
