"""Every REST route, declared once with what its OpenAPI document says about it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhook import alerts, auth, budgets, gateway, health, predictor
from webhook.openapi import Endpoint, QueryParam, build_openapi
from webhook.rest import JSON

_BUDGET_ERRORS = (400, 401, 403, 404)

_GATEWAY_ERRORS = (400, 401)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/webhook/pre-request",
        gateway.pre_request,
        "LiteLLM's pre-request budget check: 200 allow (with a warning past a soft limit) or 429 block",
        "gateway",
        auth="gateway",
        body=gateway.PreRequest,
        response=gateway.PreRequestAllowed,
        other_responses=((429, gateway.PreRequestBlocked),),
        errors=_GATEWAY_ERRORS,
    ),
    Endpoint(
        "POST",
        "/beta/litellm_basic_guardrail_api",
        gateway.guardrail,
        "LiteLLM's Generic Guardrail API on the same decision: NONE or BLOCKED, always 200 for a decision",
        "gateway",
        auth="gateway",
        body=gateway.GuardrailRequest,
        response=gateway.GuardrailResponse,
        errors=_GATEWAY_ERRORS,
    ),
    Endpoint(
        "POST",
        "/spend/litellm",
        gateway.ingest_spend,
        "Spend from LiteLLM's logging callback (one payload, a JSON list, or NDJSON); idempotent by id",
        "gateway",
        auth="gateway",
        response=gateway.IngestResponse,
        errors=_GATEWAY_ERRORS,
    ),
    Endpoint(
        "POST",
        "/predict",
        predictor.predict_cost,
        "Predict a request's cost before it runs (optionally against the X-Api-Key's budget)",
        "predictor",
        body=predictor.PredictRequest,
        response=predictor.PredictResponse,
        errors=(400, 401),
        headers=(QueryParam("x-api-key", "a LiteLLM virtual key: adds its budget's remaining and within_budget"),),
    ),
    Endpoint(
        "POST",
        "/budget/check",
        predictor.check_budget,
        "Does a cost fit within a key's budget?",
        "predictor",
        body=predictor.BudgetCheckRequest,
        response=predictor.BudgetCheckResponse,
        errors=(400, 401),
    ),
    Endpoint(
        "GET",
        "/pricing",
        predictor.pricing,
        "Every model's price per million input and output tokens, with provider and source",
        "predictor",
        response=predictor.PricingResponse,
        errors=(404,),
        query=(QueryParam("model", "one model or alias (resolved as the predictor does)"),),
    ),
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
)


async def openapi_document(request: Request) -> Response:
    return JSON(build_openapi(ENDPOINTS))


def routes() -> list[Route]:
    found = [Route(e.path, e.handler, methods=[e.method], name=f"{e.method.lower()} {e.path}") for e in ENDPOINTS]
    found.append(Route("/openapi.json", openapi_document, methods=["GET"], include_in_schema=False))
    return found
