"""Every REST route, declared once with what its OpenAPI document says about it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhook import alerts, auth, budgets, health, reports
from webhook.http import JSON
from webhook.openapi import Endpoint, QueryParam, build_openapi

_BUDGET_ERRORS = (400, 401, 403, 404)
_REPORT_ERRORS = (400, 401, 403, 503)
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
)


async def openapi_document(request: Request) -> Response:
    return JSON(build_openapi(ENDPOINTS))


def routes() -> list[Route]:
    found = [Route(e.path, e.handler, methods=[e.method], name=f"{e.method.lower()} {e.path}") for e in ENDPOINTS]
    found.append(Route("/openapi.json", openapi_document, methods=["GET"], include_in_schema=False))
    return found
