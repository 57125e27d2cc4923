"""Bad input is a 400 / BAD_USER_INPUT naming the field, never a 500: dates past what the service computes with,
lone UTF-16 surrogates in any text, GraphQL bodies that are not JSON objects, invalid UTF-8 and deep nesting; and a
download that dies after its 200 closes the connection without a traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resolvers.platform.errors import InvalidInput
from tests.support import Api, served
from webhook.downloads import download
from webhook.rest import EXCEPTION_HANDLERS

COST_REPORT = """query($start: Date, $end: Date) {
  costReport(period: CUSTOM, startDate: $start, endDate: $end) { totalCost }
}"""
EXPORT = """query($start: Date, $end: Date) {
  exportCostReport(period: CUSTOM, startDate: $start, endDate: $end) { filename }
}"""


def field_of(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT"
    return str(error["field"])


# ----------------------------------------------------------------------------------------- out-of-range dates


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("9999-12-01", "9999-12-31", "startDate"),
        ("2026-11-01", "9999-12-31", "endDate"),
        ("0001-01-01", None, "startDate"),
    ],
)
async def test_report_dates_past_the_supported_range_are_bad_user_input(
    api: Api, start: str, end: str | None, field: str
) -> None:
    for query in (COST_REPORT, EXPORT):
        error = await api.error(query, {"start": start, "end": end})
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["extensions"]["field"] == field


@pytest.mark.parametrize("path", ["/api/v1/reports/cost", "/api/v1/reports/export"])
async def test_rest_reports_with_9999_12_31_are_400_naming_the_field(api: Api, path: str) -> None:
    params = {"period": "custom", "start_date": "9999-12-01", "end_date": "9999-12-31"}
    response = await api.client.get(path, params=params, headers=api.bearer())
    assert field_of(response) == "start_date"


async def test_chargeback_reports_for_the_year_9999_are_bad_user_input(api: Api) -> None:
    error = await api.error('{ chargebackReports(period: "9999-12") { id } }')
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "period"}
    response = await api.client.get("/api/v1/chargeback/reports", params={"period": "9999-12"}, headers=api.bearer())
    assert field_of(response) == "period"
    generate = await api.client.post(
        "/api/v1/chargeback/reports/generate", json={"period": "9999-12"}, headers=api.bearer()
    )
    assert generate.status_code == 400 and generate.json()["error"]["field"] == "period"


# ------------------------------------------------------------------------------------------- lone surrogates

SURROGATE_BUDGET = b'{"name": "x\\ud800", "entity_type": "team", "entity_id": "eng", "monthly_limit": 5}'


async def test_a_lone_surrogate_in_a_rest_body_is_400_naming_the_field(api: Api) -> None:
    headers = {**api.bearer(), "content-type": "application/json"}
    response = await api.client.post("/api/v1/budgets", content=SURROGATE_BUDGET, headers=headers)
    assert field_of(response) == "name"
    assert (await api.client.get("/api/v1/budgets", headers=api.bearer())).json() == []


async def test_a_lone_surrogate_in_graphql_variables_is_400_naming_the_field(api: Api) -> None:
    body = (
        b'{"query": "mutation($i: BudgetInput!) { createBudget(input: $i) { id } }", "variables": {"i": '
        b'{"name": "Eng \\udfff", "entityType": "TEAM", "entityId": "eng", "monthlyLimit": "5"}}}'
    )
    headers = {**api.bearer(), "content-type": "application/json"}
    response = await api.client.post("/graphql", content=body, headers=headers)
    assert field_of(response) == "variables.i.name"
    assert (await api.data("{ budgets { id } }"))["budgets"] == []


async def test_a_lone_surrogate_in_a_graphql_string_literal_is_a_coded_error(api: Api) -> None:
    query = '{ budgets(entityId: "\\ud800") { id } }'
    error = await api.error(query)
    assert error["extensions"]["code"] in {"GRAPHQL_PARSE_FAILED", "BAD_USER_INPUT"}


# -------------------------------------------------------------------------------------------- raw GraphQL bodies

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"query": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001


@pytest.mark.parametrize(
    "body",
    [b"null", b"42", b'"query"', b'{"query":"\xff\xfe"}', DEEP, DEEP_OBJECT, b"{", b"\xef\xbb\xbf\xff"],
    ids=[
        "null",
        "number",
        "string",
        "invalid-utf8",
        "nested-100000-arrays",
        "nested-100000-objects",
        "truncated",
        "bom",
    ],
)
async def test_raw_graphql_bodies_that_are_not_a_json_object_are_400(api: Api, body: bytes) -> None:
    headers = {**api.bearer(), "content-type": "application/json"}
    response = await api.client.post("/graphql", content=body, headers=headers)
    assert field_of(response) == "body"


async def test_rest_bodies_nested_100000_deep_are_400(api: Api) -> None:
    headers = {**api.bearer(), "content-type": "application/json"}
    response = await api.client.post("/api/v1/budgets", content=DEEP_OBJECT, headers=headers)
    assert field_of(response) == "body"


# ---------------------------------------------------------------------------------- a download that dies late


def _download_app() -> Starlette:
    async def late(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a,b\n" * 1000
            raise OverflowError("date value out of range")

        return download(chunks(), filename="late.csv", media_type="text/csv")

    async def early(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            raise InvalidInput("end_date", "must be a date from 1970-01-01 to 9000-12-31")
            yield b""  # pragma: no cover - makes this a generator

        return download(chunks(), filename="early.csv", media_type="text/csv")

    routes = [Route("/late", late), Route("/early", early)]
    return Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS))


async def test_a_download_that_dies_after_its_200_closes_without_a_traceback_or_a_complete_looking_file(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        async with served(_download_app()) as base, httpx.AsyncClient(base_url=base) as client:
            async with client.stream("GET", "/late") as response:
                assert response.status_code == 200
                with pytest.raises(httpx.RemoteProtocolError):  # the client is told the body is incomplete
                    await response.aread()
            early = await client.get("/early")
    # Failing before the first byte is an ordinary 400, naming the field.
    assert early.status_code == 400 and early.json()["error"]["field"] == "end_date"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    messages = [r.getMessage() for r in caplog.records]
    assert not any("Exception in ASGI application" in m for m in messages), messages
    assert any("download" in m and "stopped after 4000 bytes" in m for m in messages), messages


# ------------------------------------------------------------------------------------------- oversized bodies


def _too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:200]
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("token", [True, False], ids=["admin", "no-token"])
@pytest.mark.parametrize("path", ["/api/v1/budgets", "/auth/login", "/predict", "/graphql"])
async def test_a_body_past_the_limit_is_413_with_the_json_error_body(api: Api, path: str, token: bool) -> None:
    """Both faces, whether or not the route would have refused the caller first (Starlette's own limit answered
    text/plain then)."""
    from webhook.rest import MAX_BODY_BYTES

    headers = {**(api.bearer() if token else {}), "content-type": "application/json"}
    body = b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}'
    _too_large(await api.client.post(path, content=body, headers=headers))


@pytest.mark.parametrize("path", ["/api/v1/budgets", "/graphql"])
async def test_a_chunked_body_growing_past_the_limit_is_413_with_the_json_error_body(api: Api, path: str) -> None:
    """No Content-Length: the limit is found while the route reads the body."""
    from webhook.rest import MAX_BODY_BYTES

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "'
        for _ in range(MAX_BODY_BYTES // (1 << 20) + 1):
            yield b"x" * (1 << 20)
        yield b'"}'

    headers = {**api.bearer(), "content-type": "application/json"}
    _too_large(await api.client.post(path, content=chunks(), headers=headers))


# ------------------------------------------------------------------------------ GraphQL values naming their field

BUDGET_INPUT = '{name: "b", entityType: TEAM, entityId: "t1", limit: "10"}'


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("{ budget(id: 5.5) { id } }", "id"),
        ("{ costReport(period: NOPE) { totalCost } }", "period"),
        ('{ costReport(period: "CUSTOM") { totalCost } }', "period"),
        ("{ budget { id } }", "id"),
        (f"mutation {{ createBudget(input: {BUDGET_INPUT[:-1]}, soft: 1}}) {{ id }} }}", "input.soft"),
        ('mutation { createBudget(input: {name: "b", entityType: GLOBAL, limit: "x"}) { id } }', "input.limit"),
        ('mutation { createBudget(input: {name: "b", entityType: GLOBAL, limit: true}) { id } }', "input.limit"),
        ('mutation { createBudget(input: {entityType: GLOBAL, limit: "1"}) { id } }', "input.name"),
        ('mutation { createBudget(input: {name: "b", entityType: GLOBE, limit: "1"}) { id } }', "input.entityType"),
    ],
)
async def test_an_invalid_inline_literal_is_bad_user_input_naming_its_argument(
    api: Api, query: str, field: str
) -> None:
    error = await api.error(query)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, error


@pytest.mark.parametrize(
    ("query", "variables", "field"),
    [
        ("query($id: ID!) { budget(id: $id) { id } }", {"id": 5.5}, "id"),
        ("query($id: ID!) { budget(id: $id) { id } }", {}, "id"),
        ("query($p: ReportPeriod) { costReport(period: $p) { totalCost } }", {"p": "NOPE"}, "p"),
        (
            "mutation($i: BudgetInput!) { createBudget(input: $i) { id } }",
            {"i": {"name": "b", "entityType": "GLOBAL", "limit": "x"}},
            "i.limit",
        ),
        (
            "mutation($i: BudgetInput!) { createBudget(input: $i) { id } }",
            {"i": {"entityType": "GLOBAL", "limit": "1"}},
            "i.name",
        ),
        (
            "mutation($i: BudgetInput!) { createBudget(input: $i) { id } }",
            {"i": {"name": "b", "entityType": "GLOBAL", "limit": "1", "bogus": 1}},
            "i.bogus",
        ),
    ],
)
async def test_a_bad_variable_value_is_bad_user_input_naming_the_variable_and_path(
    api: Api, query: str, variables: dict[str, object], field: str
) -> None:
    error = await api.error(query, variables)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, error


@pytest.mark.parametrize(
    "query",
    [
        "{ budgts { id } }",
        "{ budgets { colour } }",
        '{ budget(id: "x", colour: 1) { id } }',
        "query($id: Int) { budget(id: $id) { id } }",
    ],
)
async def test_genuine_validation_errors_stay_graphql_validation_failed(api: Api, query: str) -> None:
    error = await api.error(query)
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}, error


# ------------------------------------------------------------------------- GraphQL over WebSocket: the same reader


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("null", "message: must be a JSON object"),
        ("[]", "message: must be a JSON object"),
        ("42", "message: must be a JSON object"),
        ("{", "body: is not valid JSON"),
        ('{"type": "connection_init", "payload": {"authorization": "\\ud800"}}', "payload.authorization"),
        ('{"type": "connection_init", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}", "body: is not valid"),
    ],
    ids=["null", "array", "number", "truncated", "lone-surrogate", "nested-100000"],
)
async def test_a_websocket_message_the_post_reader_refuses_closes_4400_naming_it(
    api: Api, message: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before a connection_init and after one (subscribe messages): the same strict reader as POST /graphql, and
    never an exception escaping the handler."""
    from httpx_ws import WebSocketDisconnect

    from tests.support import graphql_ws

    for initialised in (False, True):
        async with graphql_ws(api) as ws:
            if initialised:
                init = {"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}}
                await ws.send_json(init)
                assert (await ws.receive_json())["type"] == "connection_ack"
            await ws.send_text(message)
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_json()
        assert closed.value.code == 4400, closed.value
        assert (closed.value.reason or "").startswith(reason), closed.value.reason
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_websocket_message_past_the_body_limit_closes_1009(api: Api) -> None:
    from httpx_ws import WebSocketDisconnect

    from tests.support import graphql_ws
    from webhook.rest import MAX_BODY_BYTES

    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        query = "{ me { role } }" + " " * MAX_BODY_BYTES
        await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query}})
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
    assert closed.value.code == 1009 and "larger than" in (closed.value.reason or "")


# ------------------------------------------------------------------------------ whole numbers in query strings


@pytest.mark.parametrize("value", ["1_0", "+3", "\u0663", "\uff13", "3.0", "0x1f", "3 3"])
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/alerts", "limit"),
        ("/api/v1/reports/trend", "days"),
        ("/api/v1/sla/health/history", "hours"),
        ("/api/v1/sla/violations", "limit"),
    ],
)
async def test_a_query_integer_is_ascii_digits_only(api: Api, path: str, field: str, value: str) -> None:
    """The document says `integer`: Python's int() also took `1_0` (ten), `+3`, blanks and other scripts' digits
    (`٣`), so a request the document calls invalid was answered as another one. Blanks around it are trimmed, as
    for every query parameter."""
    response = await api.client.get(path, params={field: value}, headers=api.bearer())
    assert field_of(response) == field
    for good in ("3", " 3 ", "-3" if field == "limit" and path.endswith("violations") else "03"):
        assert (await api.client.get(path, params={field: good}, headers=api.bearer())).status_code == 200, good
