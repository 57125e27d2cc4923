"""Every REST route, declared once with what its OpenAPI document says about it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resolvers.alerts import AlertType
from resolvers.budgets import EntityType
from resolvers.chargeback.files import ChargebackFormat
from resolvers.chargeback.sap import SapLayout
from resolvers.platform.errors import InvalidInput
from resolvers.reports import ReportPeriod
from resolvers.reports.exports import CostExportFormat
from webhook import alerts, auth, budgets, chargeback, enforcement, forecasts, health, predictor, reports, sla
from webhook.openapi import Endpoint, Handler, QueryParam, build_openapi, choice, time_zone
from webhook.rest import JSON, runtime_of


def whole(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


#: An id or filter: control characters (C0, DEL, C1) and line separators are refused (leading and trailing blanks
#: are trimmed, so the 256 characters are counted between them; resolvers.platform.validation.refuse_controls).
IDENT: dict[str, Any] = {"type": "string", "pattern": r"^\s*[^\x00-\x1f\x7f-\x9f\u2028\u2029]{0,256}\s*$"}
#: A day as YYYY-MM-DD, or blank.
DAY: dict[str, Any] = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "maxLength": 0}]}

ALERT_TYPE = choice(*(t.value for t in AlertType), trimmed=False, any_case=False, blank=True)
#: A month as YYYY-MM from 2000, or blank (the routes also refuse one that has not started).
MONTH: dict[str, Any] = {"type": "string", "pattern": r"^(\s*2[0-9]{3}-(0[1-9]|1[0-2])\s*)?$"}

#: A moment in a spend event: epoch seconds or an ISO 8601 time, from 2000 to 2200.
_MOMENT = {
    "anyOf": [
        {"type": "number", "minimum": 946_684_800, "exclusiveMaximum": 7_289_654_400},
        # 2001 to 2199 as text: an offset can move a time at either end out of range.
        {"type": "string", "format": "date-time", "pattern": "^(200[1-9]|20[1-9][0-9]|21[0-9]{2})-"},
    ]
}
#: LiteLLM's StandardLoggingPayload, as much of it as the route requires; other keys are read when present.
SPEND_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "LiteLLM's StandardLoggingPayload",
    "required": ["id", "startTime", "endTime"],
    "properties": {
        "id": {
            "anyOf": [
                {"type": "string", "pattern": r"\S"},
                # resolvers.platform.validation.clipped: a whole number is kept as its text, like LiteLLM's own ids.
                {"type": "integer", "exclusiveMinimum": -(10**18), "exclusiveMaximum": 10**18},
            ],
            "description": "the request id LiteLLM logs (clipped to 256); a whole number is taken as its text",
        },
        "startTime": _MOMENT,
        "endTime": _MOMENT,
    },
}

_BUDGET_ERRORS = (400, 401, 403, 404)
_REPORT_ERRORS = (400, 401, 403, 503)
_CHARGEBACK_ERRORS = (400, 401, 403, 404)
#: A report's period and, only with `period=custom` (which requires `start_date`), its days: one exploded object,
#: so `if`/`then` can say what depends on `period` (resolvers.reports.report_window).
_PERIOD_WINDOW: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "period": {**choice(*ReportPeriod, blank=True), "description": "daily, weekly, monthly (default) or custom"},
        "start_date": {**DAY, "description": "YYYY-MM-DD, with period=custom (inclusive)"},
        "end_date": {**DAY, "description": "YYYY-MM-DD, with period=custom (inclusive; default today)"},
    },
    "if": {"required": ["period"], "properties": {"period": choice(ReportPeriod.CUSTOM)}},
    "then": {"required": ["start_date"], "properties": {"start_date": {"type": "string", "format": "date"}}},
    "else": {"properties": {"start_date": {"maxLength": 0}, "end_date": {"maxLength": 0}}},
}
_PERIOD_QUERY = (
    QueryParam(
        "window",
        "the period; start_date and end_date only with period=custom, which requires start_date",
        schema=_PERIOD_WINDOW,
        exploded=True,
    ),
    QueryParam("team_id", "only this team (a viewer always gets its own team)", schema=IDENT),
)
#: What the report routes refuse that the document cannot say (it compares parameters or depends on the day).
_PERIOD_RULES = (
    "`start_date` and `end_date` are taken only with `period=custom`, which requires `start_date`; `end_date` "
    "(default today) may not be before `start_date`, and the range may not exceed SPENDPLANE_REPORT_MAX_DAYS "
    "days. Each is refused with 400 naming the parameter."
)
_PERIOD_400 = (
    "Bad input; also `start_date`/`end_date` without `period=custom`, `period=custom` without `start_date`, "
    "`end_date` before `start_date`, or a range longer than SPENDPLANE_REPORT_MAX_DAYS (`error.field` names it)"
)
#: What the budget routes refuse that the document cannot say (it compares fields, a number's spelling, stored
#: budgets, or what email-validator takes).
_BUDGET_RULES = (
    "The document cannot say what compares two fields, a number's spelling or stored budgets: "
    "`soft_limit_percent` above `hard_limit_percent` (given, default or stored) is refused with 400 on "
    "`soft_limit_percent`; an amount sent as a JSON number with more decimal places than kept (9 for USD, 6 for a "
    "fraction; an amount sent as text is bounded by its pattern) with 400 naming it; an `alert_email` that "
    "email-validator refuses with 400 on `alert_email`; on an update, `monthly_limit` for a stored period that is "
    "not monthly, with 400 on `monthly_limit`. A second budget for the same entity and period is refused with 409 "
    "on `entity_id` (`entity_type` for a global budget)."
)
#: A viewer's out-of-scope budget answers as a missing id does (resolvers/budgets `get_budget`): no existence oracle.
_BUDGET_404 = "No budget with that id, or one outside the caller's scope (answered alike; `error.field` is `id`)"
_BUDGET_400 = (
    "Bad input; also `soft_limit_percent` above `hard_limit_percent`, an amount with more decimal places than kept, "
    "an address email-validator refuses (`alert_email`), `monthly_limit` for a stored period that is not monthly "
    "(`error.field` names it)"
)
_BUDGET_409 = (
    "A budget for the same entity and period exists already (`error.field` = `entity_id`, or `entity_type` for a "
    "global one): update it instead"
)
_SLA_RULES = (
    "Nor can it say what depends on a setting, stored definitions or email-validator: an `alert_webhook_url` whose "
    "host is a private, loopback or link-local address or `localhost` (in any spelling the resolver takes) while "
    "SPENDPLANE_ALLOW_PRIVATE_WEBHOOKS is off is refused with 400 on `alert_webhook_url`; an address in "
    "`alert_emails` that email-validator refuses with 400 on `alert_emails`; a `name` another definition has with "
    "409 on `name`."
)
_SLA_400 = (
    "Bad input; also a private, loopback or link-local webhook host (`alert_webhook_url`), or an address "
    "email-validator refuses (`alert_emails`)"
)
_SLA_409 = "Another definition has this name (`error.field` = `name`)"
_UNPRICED_400 = (
    "Bad input; also a `model` with no known price (`error.field` = `model`): add it with setModelPrice, "
    "SELF_HOSTED_MODELS or LiteLLM's config.yaml"
)
_FAILOVER_RULES = (
    "The document cannot say what compares two fields or depends on stored rules: a `fallback_model` equal to "
    "the (new or stored) `primary_model` is refused with 400 on `fallback_model`, a second rule for a primary "
    "model with 409 on `primary_model`."
)
_FAILOVER_400 = "Bad input; also a fallback model equal to the primary (`error.field` = `fallback_model`)"
_FAILOVER_409 = "The primary model has a rule already (`error.field` = `primary_model`): update that one"
_ZONE_QUERY = QueryParam(
    "time_zone", "IANA zone of the days and months (default SPENDPLANE_TIME_ZONE)", schema=time_zone()
)

_GATEWAY_ERRORS = (400, 401)
_RULE_400 = (
    "Bad input; also percents of the team's rules of one `allocation_type` that would add up to more than 100, or an "
    "`allocation_percent` sent as a JSON number with more than 6 decimal places (`error.field` = `allocation_percent`)"
)
_RULE_409 = "The team has a rule for this `allocation_target` already (`error.field` = `allocation_target`): update it"

_SLA_ERRORS = (400, 401, 403, 404)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/webhook/pre-request",
        enforcement.pre_request,
        "LiteLLM's pre-request budget check: 200 allow (with a warning past a soft limit) or 429 block",
        "gateway",
        auth="gateway",
        body=enforcement.PreRequest,
        response=enforcement.PreRequestAllowed,
        other_responses=((429, enforcement.PreRequestBlocked),),
        errors=_GATEWAY_ERRORS,
    ),
    Endpoint(
        "POST",
        "/beta/litellm_basic_guardrail_api",
        enforcement.guardrail,
        "LiteLLM's Generic Guardrail API on the same decision: NONE or BLOCKED, always 200 for a decision",
        "gateway",
        auth="gateway",
        body=enforcement.GuardrailRequest,
        response=enforcement.GuardrailResponse,
        errors=_GATEWAY_ERRORS,
    ),
    Endpoint(
        "POST",
        "/spend/litellm",
        enforcement.ingest_spend,
        "Spend from LiteLLM's logging callback (one payload, a JSON list, or NDJSON); idempotent by id; 503 with "
        "Retry-After while the database is unreachable (LiteLLM retries)",
        "gateway",
        auth="gateway",
        response=enforcement.IngestResponse,
        errors=(*_GATEWAY_ERRORS, 503),
        raw_body={
            "application/json": {
                "schema": {
                    "anyOf": [SPEND_EVENT, {"type": "array", "items": SPEND_EVENT, "minItems": 1, "maxItems": 1000}]
                }
            },
            "application/x-ndjson": {"schema": {"type": "string", "description": "one spend event per line"}},
        },
    ),
    Endpoint(
        "POST",
        "/predict",
        predictor.predict_cost,
        "Predict a request's cost before it runs (optionally against the X-Api-Key's budget)",
        "predictor",
        body=predictor.PredictRequest,
        response=predictor.PredictResponse,
        errors=(400, 401, 429),
        headers=(QueryParam("x-api-key", "a LiteLLM virtual key: adds its budget's remaining and within_budget"),),
        error_notes=((400, _UNPRICED_400),),
    ),
    Endpoint(
        "POST",
        "/budget/check",
        predictor.check_budget,
        "Does a cost fit within a key's budget?",
        "predictor",
        body=predictor.BudgetCheckRequest,
        response=predictor.BudgetCheckResponse,
        errors=(400, 401, 429),
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
        errors=(400, 401, 429),
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
            QueryParam(
                "entity_type",
                "user, team, global, key, end_user or tag",
                schema=choice(*EntityType, blank=True),
            ),
            QueryParam("entity_id", "a user or team id", schema=IDENT),
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
        errors=(*_BUDGET_ERRORS, 409),
        description=_BUDGET_RULES,
        error_notes=((400, _BUDGET_400), (409, _BUDGET_409)),
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
        error_notes=((404, _BUDGET_404),),
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
        errors=(*_BUDGET_ERRORS, 409),
        description=_BUDGET_RULES,
        error_notes=((400, _BUDGET_400), (409, _BUDGET_409)),
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
            QueryParam("team_id", "only this team's alerts", schema=IDENT),
            QueryParam("user_id", "only this user's alerts", schema=IDENT),
            QueryParam(
                "type",
                ", ".join(AlertType),
                schema=ALERT_TYPE,
            ),
            QueryParam("limit", "at most this many (1-500, default 100)", schema=whole(1, 500)),
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
            QueryParam("user_id", "only this user", schema=IDENT),
            QueryParam("model", "only this model or model group", schema=IDENT),
            _ZONE_QUERY,
        ),
        description=_PERIOD_RULES,
        error_notes=((400, _PERIOD_400),),
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
            QueryParam("days", "days of history, today included (default 30)", schema=whole(1, 366)),
            QueryParam("model", "only this model or model group", schema=IDENT),
            QueryParam("team_id", "only this team", schema=IDENT),
            _ZONE_QUERY,
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
            QueryParam(
                "format",
                "csv (default), json or focus",
                schema=choice(*CostExportFormat, blank=True),
            ),
            *_PERIOD_QUERY,
            QueryParam("user_id", "only this user", schema=IDENT),
            QueryParam("model", "only this model or model group", schema=IDENT),
            _ZONE_QUERY,
        ),
        description=_PERIOD_RULES,
        error_notes=((400, _PERIOD_400),),
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
        query=(_ZONE_QUERY,),
    ),
    Endpoint(
        "GET",
        "/api/v1/reports/forecast",
        forecasts.list_forecasts,
        "This month's and next month's forecasts per team and for the platform",
        "forecasts",
        auth="jwt",
        response=forecasts.ForecastOut,
        response_is_list=True,
        errors=(400, 401, 403),
        query=(QueryParam("team_id", "only this team (a viewer always gets its own team)", schema=IDENT),),
    ),
    Endpoint(
        "POST",
        "/api/v1/reports/forecast/generate",
        forecasts.generate,
        "Forecast every team and the platform now (admin)",
        "forecasts",
        auth="jwt",
        response=forecasts.ForecastOut,
        response_is_list=True,
        errors=(401, 403, 503),
    ),
    Endpoint(
        "GET",
        "/api/v1/budgets/{budget_id}/forecast",
        forecasts.budget_forecast,
        "A budget's projected spend at its period's end and when it reaches its soft and hard limits",
        "forecasts",
        auth="jwt",
        response=forecasts.BudgetForecastOut,
        errors=_BUDGET_ERRORS,
        error_notes=((404, _BUDGET_404),),
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
        query=(QueryParam("team_id", "only this team's rules", schema=IDENT),),
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
        errors=(*_CHARGEBACK_ERRORS, 409),
        error_notes=(
            (400, _RULE_400),
            (409, _RULE_409),
        ),
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
        errors=(*_CHARGEBACK_ERRORS, 409),
        error_notes=(
            (400, _RULE_400),
            (409, _RULE_409),
        ),
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
        description=(
            "The document cannot say what depends on the calendar or stored data: a month that has not started "
            "yet, or one whose statement is already finalized or exported, is refused with 400 on `period`."
        ),
        error_notes=(
            (
                400,
                "Bad input; also, with `error.field` = `period`, a month that has not started yet or whose "
                "statement is no longer a draft (finalized or exported: it never changes)",
            ),
        ),
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
        query=(QueryParam("period", "only this month, YYYY-MM (from 2000-01, not a future month)", schema=MONTH),),
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
        error_notes=(
            (
                400,
                "Also a statement that is no longer a draft (finalized or exported) or whose month has not ended "
                "(`error.field` = `id`)",
            ),
        ),
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
            QueryParam("format", "csv (default), json or sap", schema=choice(*ChargebackFormat, blank=True)),
            QueryParam(
                "layout",
                "with format=sap: fi (FI journal, default) or co (CO reposting)",
                schema=choice(*SapLayout, blank=True),
            ),
        ),
    ),
    *(
        # ------------------------------------------------------------------------------ SLA monitoring
        Endpoint(
            "GET",
            "/api/v1/sla/definitions",
            sla.list_definitions,
            "List the SLA definitions",
            "sla",
            auth="jwt",
            response=sla.SlaDefinitionOut,
            response_is_list=True,
            errors=_SLA_ERRORS,
        ),
        Endpoint(
            "POST",
            "/api/v1/sla/definitions",
            sla.create_definition,
            "Create an SLA definition (admin)",
            "sla",
            auth="jwt",
            body=sla.SlaDefinitionCreate,
            response=sla.SlaDefinitionOut,
            status=201,
            errors=(*_SLA_ERRORS, 409),
            description=_SLA_RULES,
            error_notes=((400, _SLA_400), (409, _SLA_409)),
        ),
        Endpoint(
            "GET",
            "/api/v1/sla/definitions/{definition_id}",
            sla.get_definition,
            "One SLA definition",
            "sla",
            auth="jwt",
            response=sla.SlaDefinitionOut,
            errors=_SLA_ERRORS,
        ),
        Endpoint(
            "PUT",
            "/api/v1/sla/definitions/{definition_id}",
            sla.update_definition,
            "Change an SLA definition (admin)",
            "sla",
            auth="jwt",
            body=sla.SlaDefinitionUpdate,
            response=sla.SlaDefinitionOut,
            errors=(*_SLA_ERRORS, 409),
            description=(
                "The document cannot say what depends on the stored definition: an update that would leave it with "
                "no target (every target null, or null on the ones it has) is refused with 400 on `target_p95_ms`. "
                + _SLA_RULES
            ),
            error_notes=(
                (
                    400,
                    "Bad input; also an update that would leave no target (`error.field` = `target_p95_ms`); "
                    + _SLA_400[len("Bad input; also ") :],
                ),
                (409, _SLA_409),
            ),
        ),
        Endpoint(
            "DELETE",
            "/api/v1/sla/definitions/{definition_id}",
            sla.delete_definition,
            "Delete an SLA definition (admin); its violations are kept",
            "sla",
            auth="jwt",
            response=sla.SlaDefinitionOut,
            errors=_SLA_ERRORS,
        ),
        Endpoint(
            "GET",
            "/api/v1/sla/health",
            sla.current_health,
            "Each provider and model at the latest health-collector run",
            "sla",
            auth="jwt",
            response=sla.ProviderHealthOut,
            response_is_list=True,
            errors=_SLA_ERRORS,
        ),
        Endpoint(
            "POST",
            "/api/v1/sla/health/collect",
            sla.collect_health,
            "Run the health collector now (admin) and answer the health it measured",
            "sla",
            auth="jwt",
            response=sla.ProviderHealthOut,
            response_is_list=True,
            errors=_SLA_ERRORS,
        ),
        Endpoint(
            "GET",
            "/api/v1/sla/health/history",
            sla.health_history,
            "Every collector run's figures of the last hours, oldest first (for charts)",
            "sla",
            auth="jwt",
            response=sla.ProviderHealthOut,
            response_is_list=True,
            errors=_SLA_ERRORS,
            query=(
                QueryParam("hours", "how far back (1-720, default 24)", schema=whole(1, 720)),
                QueryParam("provider", "only this provider", schema=IDENT),
                QueryParam("model", "only this model", schema=IDENT),
            ),
        ),
        Endpoint(
            "GET",
            "/api/v1/sla/violations",
            sla.list_violations,
            "SLA violations, newest first",
            "sla",
            auth="jwt",
            response=sla.SlaViolationOut,
            response_is_list=True,
            errors=_SLA_ERRORS,
            query=(
                QueryParam(
                    "active_only",
                    "true: only open violations",
                    schema=choice("true", "false", "1", "0", trimmed=False, blank=True),
                ),
                QueryParam("limit", "at most this many (default 100; clamped to 1-500)", schema={"type": "integer"}),
            ),
        ),
        Endpoint(
            "GET",
            "/api/v1/sla/violations/active",
            sla.active_violations,
            "The open SLA violations",
            "sla",
            auth="jwt",
            response=sla.SlaViolationOut,
            response_is_list=True,
            errors=_SLA_ERRORS,
        ),
        Endpoint(
            "POST",
            "/api/v1/sla/violations/{violation_id}/resolve",
            sla.resolve_violation,
            "Resolve an SLA violation by hand (admin)",
            "sla",
            auth="jwt",
            response=sla.SlaViolationOut,
            errors=_SLA_ERRORS,
        ),
        Endpoint(
            "GET",
            "/api/v1/sla/failover-rules",
            sla.list_rules,
            "List the failover rules, with whether each routes now",
            "sla",
            auth="jwt",
            response=sla.FailoverRuleOut,
            response_is_list=True,
            errors=_SLA_ERRORS,
        ),
        Endpoint(
            "POST",
            "/api/v1/sla/failover-rules",
            sla.create_rule,
            "Create a failover rule (admin)",
            "sla",
            auth="jwt",
            body=sla.FailoverRuleCreate,
            response=sla.FailoverRuleOut,
            status=201,
            errors=(*_SLA_ERRORS, 409),
            description=_FAILOVER_RULES,
            error_notes=((400, _FAILOVER_400), (409, _FAILOVER_409)),
        ),
        Endpoint(
            "GET",
            "/api/v1/sla/failover-rules/{rule_id}",
            sla.get_rule,
            "One failover rule with its latest transitions",
            "sla",
            auth="jwt",
            response=sla.FailoverRuleOut,
            errors=_SLA_ERRORS,
        ),
        Endpoint(
            "PUT",
            "/api/v1/sla/failover-rules/{rule_id}",
            sla.update_rule,
            "Change a failover rule (admin)",
            "sla",
            auth="jwt",
            body=sla.FailoverRuleUpdate,
            response=sla.FailoverRuleOut,
            errors=(*_SLA_ERRORS, 409),
            description=_FAILOVER_RULES,
            error_notes=((400, _FAILOVER_400), (409, _FAILOVER_409)),
        ),
        Endpoint(
            "DELETE",
            "/api/v1/sla/failover-rules/{rule_id}",
            sla.delete_rule,
            "Delete a failover rule (admin)",
            "sla",
            auth="jwt",
            response=sla.FailoverRuleOut,
            errors=_SLA_ERRORS,
        ),
    ),
)


async def openapi_document(request: Request) -> Response:
    """The document, with the bounds that are settings of this server (the SLA windows' minimum)."""
    interval = runtime_of(request).settings.sla.collector_interval_minutes
    return JSON(sla.with_collector_interval(build_openapi(ENDPOINTS), interval))


def _dispatch(handlers: dict[str, Handler], params: dict[str, frozenset[str]]) -> Handler:
    async def handle(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        # Every documented query parameter is one value (the document's schemas are scalars): one given twice is
        # refused, not read as its last value. (Parameters the route does not take are ignored, repeated or not.)
        if request.scope.get("query_string"):  # (not `request.url`: building it costs more than the check)
            names = [name for name, _ in request.query_params.multi_items() if name in params[method]]
            if len(names) != len(set(names)):
                raise InvalidInput(next(n for n in names if names.count(n) > 1), "is given more than once")
        return await handlers[method](request)

    return handle


def routes() -> list[Route]:
    """One route per path, with every method the document lists for it: a 405 answers `Allow` with all of them
    (one route per method answered only its own, so `Allow: PUT` on a path that also takes DELETE)."""
    by_path: dict[str, dict[str, Handler]] = {}
    params: dict[str, dict[str, frozenset[str]]] = {}
    for e in ENDPOINTS:
        by_path.setdefault(e.path, {})[e.method] = e.handler
        params.setdefault(e.path, {})[e.method] = frozenset(name for p in e.query for name in p.names)
    found = [
        Route(path, _dispatch(handlers, params[path]), methods=list(handlers), name=path)
        for path, handlers in by_path.items()
    ]
    found.append(Route("/openapi.json", openapi_document, methods=["GET"], include_in_schema=False))
    return found
