"""Every REST route, declared once with what its OpenAPI document says about it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhook import alerts, auth, budgets, chargeback, health, reports
from webhook.http import JSON
from webhook.openapi import Endpoint, QueryParam, build_openapi

_BUDGET_ERRORS = (400, 401, 403, 404)
_REPORT_ERRORS = (400, 401, 403, 503)
_CHARGEBACK_ERRORS = (400, 401, 403, 404)
_PERIOD_QUERY = (
    QueryParam("period", "daily, weekly, monthly (default) or custom"),
    QueryParam("start_date", "YYYY-MM-DD, with period=custom (inclusive)"),
    QueryParam("end_date", "YYYY-MM-DD, with period=custom (inclusive; default today)"),
    QueryParam("team_id", "only this team (a viewer always gets its own team)"),
)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/auth/login",
        auth.login,
        "Exchange an API key for a JWT",
        "auth",
        body=auth.LoginRequest,
        response=auth.LoginResponse,
        errors=(400, 401),
    ),
    Endpoint("GET", "/health", health.health, "Liveness and readiness", "health", errors=(503,)),
    Endpoint(
        "GET",
        "/api/v1/budgets",
        budgets.list_budgets,
        "List the budgets the caller may see",
        "budgets",
        auth="jwt",
        response=budgets.BudgetOut,
        response_is_list=True,
        errors=_BUDGET_ERRORS,
        query=(
            QueryParam("entity_type", "user, team or global"),
            QueryParam("entity_id", "a user or team id"),
        ),
    ),
    Endpoint(
        "POST",
        "/api/v1/budgets",
        budgets.create_budget,
        "Create a budget (admin)",
        "budgets",
        auth="jwt",
        body=budgets.BudgetCreate,
        response=budgets.BudgetOut,
        status=201,
        errors=_BUDGET_ERRORS,
    ),
    Endpoint(
        "GET",
        "/api/v1/budgets/{budget_id}",
        budgets.get_budget,
        "One budget",
        "budgets",
        auth="jwt",
        response=budgets.BudgetOut,
        errors=_BUDGET_ERRORS,
    ),
    Endpoint(
        "PUT",
        "/api/v1/budgets/{budget_id}",
        budgets.update_budget,
        "Change a budget (admin)",
        "budgets",
        auth="jwt",
        body=budgets.BudgetUpdate,
        response=budgets.BudgetOut,
        errors=_BUDGET_ERRORS,
    ),
    Endpoint(
        "GET",
        "/alerts",
        alerts.list_alerts,
        "Recent alerts, newest first (filters: team_id, user_id, type, limit)",
        "alerts",
        auth="jwt",
        response=alerts.AlertOut,
        response_is_list=True,
        errors=(400, 401),
        query=(
            QueryParam("team_id", "only this team's alerts"),
            QueryParam("user_id", "only this user's alerts"),
            QueryParam("type", "approaching_limit, request_exceeds_budget, budget_exceeded, projected_limit_exceeded"),
            QueryParam("limit", "at most this many (1-500, default 100)", schema={"type": "integer"}),
        ),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/budgets/{budget_id}",
        budgets.delete_budget,
        "Delete a budget (admin)",
        "budgets",
        auth="jwt",
        response=budgets.BudgetOut,
        errors=_BUDGET_ERRORS,
    ),
    Endpoint(
        "GET",
        "/api/v1/reports/cost",
        reports.cost_report,
        "Cost report by period with breakdowns by model, user and team",
        "reports",
        auth="jwt",
        response=reports.CostReportOut,
        errors=_REPORT_ERRORS,
        query=(
            *_PERIOD_QUERY,
            QueryParam("user_id", "only this user"),
            QueryParam("model", "only this model or model group"),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/reports/trend",
        reports.cost_trend,
        "Daily cost series over the last `days` days, its direction and change in percent",
        "reports",
        auth="jwt",
        response=reports.CostTrendOut,
        errors=_REPORT_ERRORS,
        query=(
            QueryParam("days", "days of history, today included (default 30)", schema={"type": "integer"}),
            QueryParam("model", "only this model or model group"),
            QueryParam("team_id", "only this team"),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/reports/export",
        reports.export,
        "Export cost data as a CSV, JSON or FOCUS 1.2 file (streamed)",
        "reports",
        auth="jwt",
        errors=_REPORT_ERRORS,
        download=("text/csv", "application/json"),
        query=(
            QueryParam("format", "csv (default), json or focus"),
            *_PERIOD_QUERY,
            QueryParam("user_id", "only this user"),
            QueryParam("model", "only this model or model group"),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/reports/summary",
        reports.summary,
        "Dashboard summary: today, this week, this month, top five models this month",
        "reports",
        auth="jwt",
        response=reports.DashboardSummaryOut,
        errors=_REPORT_ERRORS,
    ),
    Endpoint(
        "GET",
        "/api/v1/cost-allocation/rules",
        chargeback.list_rules,
        "List allocation rules (a viewer sees its own team's)",
        "chargeback",
        auth="jwt",
        response=chargeback.RuleOut,
        response_is_list=True,
        errors=_CHARGEBACK_ERRORS,
        query=(QueryParam("team_id", "only this team's rules"),),
    ),
    Endpoint(
        "POST",
        "/api/v1/cost-allocation/rules",
        chargeback.create_rule,
        "Create an allocation rule (admin)",
        "chargeback",
        auth="jwt",
        body=chargeback.RuleCreate,
        response=chargeback.RuleOut,
        status=201,
        errors=_CHARGEBACK_ERRORS,
    ),
    Endpoint(
        "PUT",
        "/api/v1/cost-allocation/rules/{rule_id}",
        chargeback.update_rule,
        "Change an allocation rule (admin)",
        "chargeback",
        auth="jwt",
        body=chargeback.RuleUpdate,
        response=chargeback.RuleOut,
        errors=_CHARGEBACK_ERRORS,
    ),
    Endpoint(
        "DELETE",
        "/api/v1/cost-allocation/rules/{rule_id}",
        chargeback.delete_rule,
        "Delete an allocation rule (admin)",
        "chargeback",
        auth="jwt",
        response=chargeback.RuleOut,
        errors=_CHARGEBACK_ERRORS,
    ),
    Endpoint(
        "POST",
        "/api/v1/chargeback/reports/generate",
        chargeback.generate_report,
        "Generate (or regenerate) a month's draft chargeback statement (admin)",
        "chargeback",
        auth="jwt",
        body=chargeback.GenerateRequest,
        response=chargeback.ReportOut,
        errors=(*_CHARGEBACK_ERRORS, 503),
    ),
    Endpoint(
        "GET",
        "/api/v1/chargeback/reports",
        chargeback.list_reports,
        "List chargeback statements, newest month first (admin)",
        "chargeback",
        auth="jwt",
        response=chargeback.ReportOut,
        response_is_list=True,
        errors=_CHARGEBACK_ERRORS,
        query=(QueryParam("period", "only this month, YYYY-MM"),),
    ),
    Endpoint(
        "GET",
        "/api/v1/chargeback/reports/{report_id}",
        chargeback.get_report,
        "One chargeback statement (admin)",
        "chargeback",
        auth="jwt",
        response=chargeback.ReportOut,
        errors=_CHARGEBACK_ERRORS,
    ),
    Endpoint(
        "POST",
        "/api/v1/chargeback/reports/{report_id}/finalize",
        chargeback.finalize_report,
        "Freeze a draft statement once its month is over (admin)",
        "chargeback",
        auth="jwt",
        response=chargeback.ReportOut,
        errors=_CHARGEBACK_ERRORS,
    ),
    Endpoint(
        "GET",
        "/api/v1/chargeback/reports/{report_id}/export",
        chargeback.export_report,
        "Download a finalized statement as CSV, JSON or SAP (FI journal or CO reposting); marks it exported",
        "chargeback",
        auth="jwt",
        errors=_CHARGEBACK_ERRORS,
        download=("text/csv", "application/json"),
        query=(
            QueryParam("format", "csv (default), json or sap"),
            QueryParam("layout", "with format=sap: fi (FI journal, default) or co (CO reposting)"),
        ),
    ),
)


async def openapi_document(request: Request) -> Response:
    return JSON(build_openapi(ENDPOINTS))


def routes() -> list[Route]:
    found = [Route(e.path, e.handler, methods=[e.method], name=f"{e.method.lower()} {e.path}") for e in ENDPOINTS]
    found.append(Route("/openapi.json", openapi_document, methods=["GET"], include_in_schema=False))
    return found
