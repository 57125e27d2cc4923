"""/openapi.json says what the REST routes take: each input below, once found by schemathesis as "schema-valid
request rejected" or "schema-violating request accepted", is now judged the same by the document and the route."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jsonschema_rs
import pytest

from resolvers.platform.config import Settings
from tests.conftest import MASTER_KEY, Clock, started
from tests.support import Api
from webhook.openapi import build_openapi
from webhook.routes import ENDPOINTS

pytestmark = pytest.mark.litellm_tables

DOCUMENT = build_openapi(ENDPOINTS)


def _operation(method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = DOCUMENT["paths"][path][method.lower()]
    return operation


def document_takes_params(method: str, path: str, values: dict[str, Any]) -> bool:
    """Whether the document takes these query parameters: each by its own schema, or together by the object
    schema of the exploded parameter (`style: form`, `explode: true`) that holds them."""
    taken = True
    for param in _operation(method, path)["parameters"]:
        if param.get("explode") and param["schema"]["type"] == "object":
            group = {k: v for k, v in values.items() if k in param["schema"]["properties"]}
            value: Any = group
        elif param["name"] in values:
            value = values[param["name"]]
        else:
            continue
        taken &= bool(jsonschema_rs.validator_for(param["schema"], validate_formats=True).is_valid(value))
    return taken


def document_takes_param(method: str, path: str, name: str, value: Any) -> bool:
    return document_takes_params(method, path, {name: value})


def document_takes_body(method: str, path: str, body: Any, document: dict[str, Any] = DOCUMENT) -> bool:
    content = document["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    root = {**content, "components": document["components"]}
    return bool(jsonschema_rs.validator_for(root, validate_formats=True).is_valid(body))


# (method, path, query parameter, value as the document types it, as the URL carries it, taken?)
PARAMS = [
    ("GET", "/alerts", "limit", 0, "0", False),
    ("GET", "/alerts", "limit", 500, "500", True),
    ("GET", "/alerts", "type", "\t\n", "\t\n", False),
    ("GET", "/alerts", "type", "budget_exceeded", "budget_exceeded", True),
    ("GET", "/api/v1/reports/trend", "days", 0, "0", False),
    ("GET", "/api/v1/reports/trend", "days", 366, "366", True),
    ("GET", "/api/v1/sla/health/history", "hours", 721, "721", False),
    ("GET", "/api/v1/sla/violations", "limit", 501, "501", True),  # clamped, not refused
    ("GET", "/api/v1/sla/violations", "active_only", " false", " false", False),
    ("GET", "/api/v1/sla/violations", "active_only", "TRUE", "TRUE", True),
    ("GET", "/api/v1/budgets", "entity_type", "\t ", "\t ", False),
    ("GET", "/api/v1/budgets", "entity_type", " TEAM ", " TEAM ", True),
    ("GET", "/api/v1/budgets", "entity_type", "", "", True),
    ("GET", "/api/v1/chargeback/reports", "period", "monthly", "monthly", False),
    ("GET", "/api/v1/chargeback/reports", "period", "\t \r ", "\t \r ", False),
    ("GET", "/api/v1/chargeback/reports", "period", "2026-02", "2026-02", True),
    ("GET", "/api/v1/cost-allocation/rules", "team_id", "g\x87\t\xe5", "g\x87\t\xe5", False),
    ("GET", "/alerts", "team_id", "a" * 257, "a" * 257, False),
    ("GET", "/alerts", "team_id", "a" * 256 + "\n" * 20, "a" * 256 + "\n" * 20, True),  # 256 once trimmed
    ("GET", "/api/v1/reports/forecast", "team_id", "\t\x8bx", "\t\x8bx", False),  # a C1 control
    ("GET", "/api/v1/sla/health/history", "provider", "a\u2028b", "a\u2028b", False),  # a line separator
    ("GET", "/api/v1/sla/health/history", "provider", "\u00e9\u00a0", "\u00e9\u00a0", True),  # past C1: taken
    ("GET", "/api/v1/reports/cost", "start_date", "\x8c", "\x8c", False),
    ("GET", "/api/v1/reports/cost", "period", "WEEKLY", "WEEKLY", True),
    ("GET", "/api/v1/reports/export", "format", "xml", "xml", False),
    # A time zone is one of zoneinfo.available_timezones(), as spelled there, blanks trimmed; blank is the default.
    ("GET", "/api/v1/reports/summary", "time_zone", "Europe/Berlin", "Europe/Berlin", True),
    ("GET", "/api/v1/reports/trend", "time_zone", " Asia/Kathmandu\t", " Asia/Kathmandu\t", True),
    ("GET", "/api/v1/reports/summary", "time_zone", " ", " ", True),
    ("GET", "/api/v1/reports/summary", "time_zone", "europe/berlin", "europe/berlin", False),
    ("GET", "/api/v1/reports/summary", "time_zone", "posixrules", "posixrules", False),  # ZoneInfo opens it
    ("GET", "/api/v1/reports/trend", "time_zone", "right/UTC", "right/UTC", False),
    ("GET", "/api/v1/reports/cost", "time_zone", "Mars/Olympus", "Mars/Olympus", False),
]


@pytest.mark.parametrize(("method", "path", "name", "typed", "raw", "taken"), PARAMS)
async def test_a_query_parameter_is_taken_by_the_route_exactly_when_the_document_allows_it(
    api: Api, method: str, path: str, name: str, typed: Any, raw: str, taken: bool
) -> None:
    assert document_takes_param(method, path, name, typed) is taken
    response = await api.client.request(method, path, params={name: raw}, headers=api.bearer())
    assert (response.status_code == 200) is taken, response.text
    if not taken:
        assert response.status_code == 400 and response.json()["error"]["field"] == name


# start_date and end_date only with period=custom, which requires start_date (one exploded object, if/then).
WINDOWS_OF_A_REPORT = [
    ({"period": "daily", "start_date": "2026-11-01"}, False),
    ({"start_date": "2026-11-01"}, False),  # the default period is monthly
    ({"period": " WEEKLY ", "end_date": "2026-11-01"}, False),
    ({"period": "custom"}, False),
    ({"period": "Custom", "start_date": ""}, False),
    ({"period": "custom", "end_date": "2026-11-01"}, False),
    ({"period": "custom", "start_date": "2026-11-01"}, True),
    ({"period": " CUSTOM", "start_date": "2026-11-01", "end_date": "2026-11-02"}, True),
    ({"period": "daily", "start_date": "", "end_date": ""}, True),
    ({"period": ""}, True),
    ({}, True),
]


@pytest.mark.parametrize("path", ["/api/v1/reports/cost", "/api/v1/reports/export"])
@pytest.mark.parametrize(("params", "taken"), WINDOWS_OF_A_REPORT)
async def test_a_report_takes_its_days_only_with_a_custom_period_and_the_document_says_so(
    api: Api, path: str, params: dict[str, str], taken: bool
) -> None:
    assert document_takes_params("GET", path, params) is taken
    response = await api.client.get(path, params=params, headers=api.bearer())
    assert (response.status_code == 200) is taken, response.text
    if not taken:
        assert response.status_code == 400 and response.json()["error"]["field"] in params.keys() | {"start_date"}


BODIES = [
    ("POST", "/api/v1/budgets", {"name": " ", "entity_type": "global", "limit": 5}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "user", "limit": 5}, False),  # no entity_id
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "", "limit": 5}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": 5, "month_start_day": 29}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": 5, "period": "1d"}, True),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "global", "period": "daily", "budget_duration": "1d"},
        False,
    ),
    ("POST", "/budget/check", {"api_key": "sk-x", "estimated_cost": ""}, False),
    ("POST", "/predict", {"model": "gpt-4o", "messages": []}, False),
    ("POST", "/predict", {"model": "gpt-4o", "prompt": "hello"}, True),
    (
        "POST",
        "/api/v1/cost-allocation/rules",
        {"team_id": "", "allocation_type": "project", "allocation_target": "P"},
        False,
    ),
    (
        "POST",
        "/api/v1/cost-allocation/rules",
        {"team_id": "t", "allocation_type": "0", "allocation_target": "P"},
        False,
    ),
    (
        "POST",
        "/api/v1/cost-allocation/rules",
        {"team_id": "t", "allocation_type": " Project", "allocation_target": "P"},
        True,
    ),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "team", "entity_id": "t"}, False),  # no limit
    (
        "POST",
        "/api/v1/cost-allocation/rules",
        {"team_id": "t", "allocation_type": "project", "allocation_target": "P", "allocation_percent": ""},
        False,
    ),
    ("POST", "/api/v1/chargeback/reports/generate", {"period": "000000"}, False),
    ("POST", "/api/v1/sla/definitions", {"name": "s", "target_availability": False}, False),
    ("POST", "/api/v1/sla/definitions", {"name": "s"}, False),  # no target
    ("POST", "/api/v1/sla/definitions", {"name": "s", "target_p95_ms": 0}, False),
    ("POST", "/api/v1/sla/definitions", {"name": "s", "target_error_rate": 0.05, "alert_webhook_url": "0000"}, False),
    ("POST", "/api/v1/sla/definitions", {"name": "s", "target_error_rate": 0.05}, True),
    (
        "POST",
        "/api/v1/sla/failover-rules",
        {"primary_model": "a", "fallback_model": "b", "trigger_condition": "x", "trigger_threshold": 1},
        False,
    ),
    ("POST", "/beta/litellm_basic_guardrail_api", {"model": {}}, True),  # the gateway ignores odd values
    ("POST", "/webhook/pre-request", {"max_tokens": "many"}, True),
    ("POST", "/spend/litellm", {"id": "r1", "startTime": 1999999999, "endTime": 7_289_654_400}, False),
    ("POST", "/spend/litellm", {"id": "r1", "startTime": 1999999999, "endTime": 1999999999.5}, True),
    # A whole-number id is taken as its text (resolvers.platform.validation.clipped); a fraction or a huge one is not.
    ("POST", "/spend/litellm", {"id": 12345, "startTime": 1999999999, "endTime": 1999999999}, True),
    ("POST", "/spend/litellm", {"id": 1.5, "startTime": 1999999999, "endTime": 1999999999}, False),
    ("POST", "/spend/litellm", {"id": -414.0, "startTime": 1999999999, "endTime": 1999999999}, True),
    ("POST", "/spend/litellm", {"id": 1e300, "startTime": 1999999999, "endTime": 1999999999}, False),
    ("POST", "/spend/litellm", {"id": 10**18, "startTime": 1999999999, "endTime": 1999999999}, False),
    (
        "POST",
        "/api/v1/cost-allocation/rules",
        {"team_id": "t", "allocation_type": "project", "allocation_target": "P", "allocation_percent": "0"},
        False,
    ),
    (
        "POST",
        "/api/v1/cost-allocation/rules",
        {"team_id": "t", "allocation_type": "project", "allocation_target": "P", "allocation_percent": "12.1234567"},
        False,
    ),
    (
        "POST",
        "/api/v1/cost-allocation/rules",
        {"team_id": "t", "allocation_type": "project", "allocation_target": "P", "allocation_percent": "100.000000"},
        True,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "t", "limit": 5, "budget_duration": ""},
        True,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "t", "limit": 5, "budget_duration": " "},
        False,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "t", "limit": 5, "period": "daily", "budget_duration": ""},
        False,
    ),
    # A global budget names no entity; any other names one (no control characters); a key's is sk-... or a sha256.
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "entity_id": "x", "limit": 5}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": " Global", "entity_id": " ", "limit": 5}, True),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "team", "entity_id": "t\x85u", "limit": 5}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "key", "entity_id": "my-key", "limit": 5}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "KEY", "entity_id": " sk-abc ", "limit": 5}, True),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "key", "entity_id": "a" * 64, "limit": 5}, True),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "key", "entity_id": "A" * 64, "limit": 5}, False),
    ("POST", "/api/v1/budgets", {"name": "b\x92", "entity_type": "team", "entity_id": "t2", "limit": 5}, False),
    # monthly_limit is limit's other name, for a monthly period only: never both.
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "m", "limit": 5, "monthly_limit": 5},
        False,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "m", "monthly_limit": 5, "period": "daily"},
        False,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "m", "monthly_limit": 5, "budget_duration": " 1MO"},
        True,
    ),
    # The window's zone and the alert address.
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "z", "limit": 5, "time_zone": "UTC "},
        True,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "z", "limit": 5, "time_zone": "Utc"},
        False,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "e", "limit": 5, "alert_email": "x"},
        False,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "e", "limit": 5, "alert_email": ""},
        True,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "team", "entity_id": "f", "limit": 5, "alert_email": "a@example.com"},
        True,
    ),
    ("POST", "/api/v1/chargeback/reports/generate", {"period": "2026-10", "time_zone": "Asia/Tokyo"}, True),
    ("POST", "/api/v1/chargeback/reports/generate", {"period": "2026-10", "time_zone": "Tokyo"}, False),
    # Amounts as text: the pattern says above 0 and at most 9 (USD) or 6 (fraction) decimal places.
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": "0"}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": " 0.000 "}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": 0}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": "0.0000000001"}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": "0.000000001"}, True),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": "007.5"}, True),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": "1000000000.0"}, True),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": "1000000000.000000001"}, False),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "limit": "999999999.999999999"}, True),
    ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "monthly_limit": "-1"}, False),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "global", "limit": 5, "soft_limit_percent": "0.0000001"},
        False,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "global", "limit": 5, "soft_limit_percent": "0.000001"},
        True,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "global", "limit": 5, "hard_limit_percent": "0"},
        False,
    ),
    (
        "POST",
        "/api/v1/budgets",
        {"name": "b", "entity_type": "global", "limit": 5, "hard_limit_percent": "10.000001"},
        False,
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "taken"), BODIES)
async def test_a_request_body_is_taken_by_the_route_exactly_when_the_document_allows_it(
    api: Api, method: str, path: str, body: Any, taken: bool
) -> None:
    assert document_takes_body(method, path, body) is taken
    gateway = path.startswith(("/webhook/", "/beta/", "/spend/"))
    headers = {**api.bearer(), "x-api-key": MASTER_KEY} if gateway else api.bearer()
    response = await api.client.request(method, path, json=body, headers=headers)
    assert (response.status_code < 300) is taken, response.text
    if not taken:
        assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("path", "field"), [("/api/v1/budgets/{budget_id}", "name"), ("/api/v1/budgets/{budget_id}", "limit")]
)
async def test_an_update_may_omit_a_field_but_not_null_it_and_the_document_says_so(
    api: Api, path: str, field: str
) -> None:
    assert not document_takes_body("PUT", path, {field: None})
    created = await api.client.post(
        "/api/v1/budgets", json={"name": "b", "entity_type": "global", "limit": 5}, headers=api.bearer()
    )
    budget_id = created.json()["id"]
    response = await api.client.put(f"/api/v1/budgets/{budget_id}", json={field: None}, headers=api.bearer())
    assert response.status_code == 400 and response.json()["error"]["field"] == field


async def test_the_spend_route_documents_its_body() -> None:
    body = _operation("POST", "/spend/litellm")["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"application/json", "application/x-ndjson"}


async def test_an_update_takes_an_amount_as_text_exactly_when_the_document_allows_it(api: Api) -> None:
    created = await api.client.post(
        "/api/v1/budgets", json={"name": "b", "entity_type": "global", "limit": 5}, headers=api.bearer()
    )
    path = f"/api/v1/budgets/{created.json()['id']}"
    for body, taken in [
        ({"limit": "0"}, False),
        ({"limit": "1.1234567891"}, False),
        ({"soft_limit_percent": ".0000000"}, False),
        ({"limit": "12.123456789"}, True),
        ({"soft_limit_percent": ".5"}, True),
        ({"budget_duration": ""}, True),  # not given: the period stays
        ({"budget_duration": "\t"}, False),
    ]:
        assert document_takes_body("PUT", "/api/v1/budgets/{budget_id}", body) is taken, body
        response = await api.client.put(path, json=body, headers=api.bearer())
        assert (response.status_code == 200) is taken, response.text
        if not taken:
            assert response.status_code == 400 and response.json()["error"]["field"] in body


WINDOWS = [
    ("POST", "/api/v1/sla/definitions", {"name": "s", "target_error_rate": 0.05}),
    (
        "POST",
        "/api/v1/sla/failover-rules",
        {"primary_model": "a", "fallback_model": "b"} | {"trigger_condition": "error_rate", "trigger_threshold": 0.5},
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), WINDOWS)
async def test_the_published_document_carries_the_collector_interval_as_the_least_window(
    settings: Settings, clock: Clock, method: str, path: str, body: dict[str, Any]
) -> None:
    async with started(settings, clock, sla=replace(settings.sla, collector_interval_minutes=30)) as api:
        document = (await api.client.get("/openapi.json")).json()
        for window, taken in [(29, False), (30, True), (1440, True), (1441, False)]:
            sent = body | {"evaluation_window_minutes": window}
            assert document_takes_body(method, path, sent, document) is taken, window
            response = await api.client.request(method, path, json=sent, headers=api.bearer())
            assert (response.status_code == 201) is taken, response.text
            if not taken:
                error = response.json()["error"]
                assert error["field"] == "evaluation_window_minutes" and "30" in error["message"]
            else:
                kind = "definitions" if "definitions" in path else "failover-rules"
                await api.client.delete(f"/api/v1/sla/{kind}/{response.json()['id']}", headers=api.bearer())


def test_the_static_document_keeps_the_least_window_any_setting_allows() -> None:
    prop = DOCUMENT["components"]["schemas"]["SlaDefinitionCreate"]["properties"]["evaluation_window_minutes"]
    assert (prop["minimum"], prop["maximum"]) == (1, 1440)


async def _sla_definition(api: Api) -> str:
    created = await api.client.post(
        "/api/v1/sla/definitions", json={"name": "s", "target_p95_ms": 500}, headers=api.bearer()
    )
    return str(created.json()["id"])


async def _failover_rule(api: Api) -> str:
    body = {"primary_model": "a", "fallback_model": "b", "trigger_condition": "error_rate", "trigger_threshold": 0.5}
    return str((await api.client.post("/api/v1/sla/failover-rules", json=body, headers=api.bearer())).json()["id"])


# What no schema can say (it compares fields or depends on stored data or the day): the document allows the
# request, the route answers 400 naming the field, and the operation's 400 answer says so.
DATA_DEPENDENT = [
    # Expressible per parameter, not across them: the order of the days and the range's length.
    (
        "GET",
        "/api/v1/reports/cost",
        {"period": "custom", "start_date": "2026-11-10", "end_date": "2026-11-01"},
        None,
        "end_date",
    ),
    ("POST", "/predict", None, {"model": "no-such-model-anywhere", "prompt": "hi"}, "model"),
    ("POST", "/api/v1/chargeback/reports/generate", None, {"period": "2199-12"}, "period"),
    (
        "POST",
        "/api/v1/sla/failover-rules",
        None,
        {"primary_model": "m", "fallback_model": "m", "trigger_condition": "error_rate", "trigger_threshold": 0.5},
        "fallback_model",
    ),
    ("PUT", "/api/v1/sla/failover-rules/{rule_id}", None, {"fallback_model": "a"}, "fallback_model"),
    ("POST", "/api/v1/chargeback/reports/{report_id}/finalize", None, None, "id"),
    ("PUT", "/api/v1/sla/definitions/{definition_id}", None, {"target_p95_ms": None}, "target_p95_ms"),
]


@pytest.mark.parametrize(("method", "path", "query", "body", "field"), DATA_DEPENDENT)
async def test_a_refusal_the_schema_cannot_express_is_documented_in_the_operation(
    api: Api, method: str, path: str, query: dict[str, str] | None, body: Any, field: str
) -> None:
    if body is not None:
        assert document_takes_body(method, path, body)
    if query is not None:
        assert document_takes_params(method, path, query)
    url = path.replace("{rule_id}", await _failover_rule(api)) if "{rule_id}" in path else path
    url = url.replace("{definition_id}", await _sla_definition(api)) if "{definition_id}" in url else url
    if "{report_id}" in url:  # finalized once already
        report = await api.client.post(
            "/api/v1/chargeback/reports/generate", json={"period": "2026-10"}, headers=api.bearer()
        )
        url = url.replace("{report_id}", report.json()["id"])
        assert (await api.client.post(url, headers=api.bearer())).status_code == 200
    response = await api.client.request(method, url, params=query, json=body, headers=api.bearer())
    assert response.status_code == 400 and response.json()["error"]["field"] == field, response.text
    operation = _operation(method, path)
    assert f"`{field}`" in operation["responses"]["400"]["description"]


_RULE = {"team_id": "t", "allocation_type": "project", "allocation_percent": 50}
_FAILOVER = {"trigger_condition": "error_rate", "trigger_threshold": 0.5}
# "Already exists" on every REST route that can say it: what is created first, then the request that clashes.
ALREADY_EXISTS = [
    (
        [("POST", "/api/v1/budgets", {"name": "a", "entity_type": "team", "entity_id": "t", "monthly_limit": 1})],
        ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "team", "entity_id": "t", "monthly_limit": 2}),
        "entity_id",
    ),
    (
        [("POST", "/api/v1/budgets", {"name": "a", "entity_type": "global", "monthly_limit": 1})],
        ("POST", "/api/v1/budgets", {"name": "b", "entity_type": "global", "monthly_limit": 2}),
        "entity_type",
    ),
    (
        [
            ("POST", "/api/v1/budgets", {"name": "a", "entity_type": "team", "entity_id": "t", "monthly_limit": 1}),
            (
                "POST",
                "/api/v1/budgets",
                {"name": "b", "entity_type": "team", "entity_id": "t", "limit": 1, "period": "weekly"},
            ),
        ],
        ("PUT", "/api/v1/budgets/{id}", {"period": "monthly"}),
        "entity_id",
    ),
    (
        [("POST", "/api/v1/cost-allocation/rules", {**_RULE, "allocation_target": "x"})],
        ("POST", "/api/v1/cost-allocation/rules", {**_RULE, "allocation_target": "x"}),
        "allocation_target",
    ),
    (
        [
            ("POST", "/api/v1/cost-allocation/rules", {**_RULE, "allocation_target": "x"}),
            ("POST", "/api/v1/cost-allocation/rules", {**_RULE, "allocation_target": "y"}),
        ],
        ("PUT", "/api/v1/cost-allocation/rules/{id}", {"allocation_target": "x"}),
        "allocation_target",
    ),
    (
        [("POST", "/api/v1/sla/definitions", {"name": "s", "target_p95_ms": 500})],
        ("POST", "/api/v1/sla/definitions", {"name": "s", "target_p95_ms": 900}),
        "name",
    ),
    (
        [
            ("POST", "/api/v1/sla/definitions", {"name": "s", "target_p95_ms": 500}),
            ("POST", "/api/v1/sla/definitions", {"name": "t", "target_p95_ms": 500}),
        ],
        ("PUT", "/api/v1/sla/definitions/{id}", {"name": "s"}),
        "name",
    ),
    (
        [("POST", "/api/v1/sla/failover-rules", {**_FAILOVER, "primary_model": "a", "fallback_model": "b"})],
        ("POST", "/api/v1/sla/failover-rules", {**_FAILOVER, "primary_model": "a", "fallback_model": "c"}),
        "primary_model",
    ),
    (
        [
            ("POST", "/api/v1/sla/failover-rules", {**_FAILOVER, "primary_model": "a", "fallback_model": "b"}),
            ("POST", "/api/v1/sla/failover-rules", {**_FAILOVER, "primary_model": "c", "fallback_model": "d"}),
        ],
        ("PUT", "/api/v1/sla/failover-rules/{id}", {"primary_model": "a"}),
        "primary_model",
    ),
]


@pytest.mark.parametrize(("first", "clash", "field"), ALREADY_EXISTS)
async def test_already_exists_is_a_409_naming_the_field_and_the_document_says_so(
    api: Api, first: list[tuple[str, str, dict[str, Any]]], clash: tuple[str, str, dict[str, Any]], field: str
) -> None:
    created = ""
    for method, path, body in first:
        response = await api.client.request(method, path, json=body, headers=api.bearer())
        assert response.status_code == 201, response.text
        created = response.json()["id"]
    method, path, body = clash
    documented = _DOCUMENTED.get(path, path)
    assert document_takes_body(method, documented, body)  # no schema can say it: the document allows it
    response = await api.client.request(method, path.replace("{id}", created), json=body, headers=api.bearer())
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("BAD_USER_INPUT", field) and "already" in error["message"]
    assert f"`{field}`" in _operation(method, documented)["responses"]["409"]["description"]


_DOCUMENTED = {
    "/api/v1/budgets/{id}": "/api/v1/budgets/{budget_id}",
    "/api/v1/cost-allocation/rules/{id}": "/api/v1/cost-allocation/rules/{rule_id}",
    "/api/v1/sla/definitions/{id}": "/api/v1/sla/definitions/{definition_id}",
    "/api/v1/sla/failover-rules/{id}": "/api/v1/sla/failover-rules/{rule_id}",
}


async def test_an_sla_update_may_not_null_its_window_and_the_document_says_so(api: Api) -> None:
    """Found by the CLI without schemathesis.toml: the document allowed null, the route refuses it."""
    path = "/api/v1/sla/definitions/{definition_id}"
    assert not document_takes_body("PUT", path, {"evaluation_window_minutes": None})
    assert document_takes_body("PUT", path, {"evaluation_window_minutes": 60})
    url = path.replace("{definition_id}", await _sla_definition(api))
    response = await api.client.put(url, json={"evaluation_window_minutes": None}, headers=api.bearer())
    assert response.status_code == 400 and response.json()["error"]["field"] == "evaluation_window_minutes"


@pytest.mark.parametrize("path", ["/alerts", "/api/v1/reports/summary"])
async def test_a_query_parameter_given_twice_is_refused_not_read_as_its_last_value(api: Api, path: str) -> None:
    """The document's query parameters are scalars (`limit=1&limit=` is an array to it): the route refuses the
    repetition, naming the parameter, rather than reading the last value (it answered 200 before)."""
    name = "limit" if path == "/alerts" else "time_zone"
    response = await api.client.get(f"{path}?{name}=5&{name}=", headers=api.bearer())
    assert response.status_code == 400 and response.json()["error"]["field"] == name, response.text
    # A parameter the route does not take is ignored, repeated or not (/pricing documents no 400).
    assert (await api.client.get("/pricing?x=1&x=2", headers=api.bearer())).status_code == 200


def test_the_cli_settings_take_400_as_valid_only_where_the_document_says_why() -> None:
    """schemathesis.toml relaxes the CLI's positive_data_acceptance on exactly the operations whose 400 answer
    documents what no schema can express; adding such a refusal without saying so, or relaxing another operation,
    fails here."""
    import tomllib
    from pathlib import Path

    settings = tomllib.loads((Path(__file__).resolve().parent.parent / "schemathesis.toml").read_text())
    relaxed = {op["include-name"] for op in settings["operations"]}
    documented = {f"{e.method} {e.path}" for e in ENDPOINTS if 400 in dict(e.error_notes)}
    assert relaxed == documented
    for op in settings["operations"]:
        statuses = op["checks"]["positive_data_acceptance"]["expected-statuses"]
        assert statuses == ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
