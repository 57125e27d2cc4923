"""What POST /graphql refuses before any operation runs is answered like every other refusal: a JSON error body
(`{"error": {"code", "message", "field"}}`) with a 4xx naming the part of the request at fault, never Strawberry's
plain-text reason; and a subscription sent over HTTP is such a refusal, not an INTERNAL_SERVER_ERROR (and a
logged traceback) from running it as a query."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.support import Api

ME = "{ me { role } }"


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"query": ME}, {"query": ME}], "body"),  # a batch: not taken
        ([], "body"),
        ({"query": 5}, "query"),
        ({}, "query"),
        ({"query": None}, "query"),
        ({"query": ME, "variables": [1]}, "variables"),
        ({"query": ME, "variables": "x"}, "variables"),
        ({"query": ME, "extensions": "x"}, "extensions"),
        ({"query": ME, "operationName": 5}, "operationName"),
        ({"query": "query A { me { role } }", "operationName": "B"}, "operationName"),
        ({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}}, "query"),
    ],
    ids=[
        "batch",
        "empty-batch",
        "query-number",
        "no-query",
        "query-null",
        "variables-list",
        "variables-string",
        "extensions-string",
        "operation-name-number",
        "operation-name-unknown",
        "persisted-query",
    ],
)
async def test_a_malformed_graphql_request_is_400_json_naming_its_part(api: Api, body: Any, field: str) -> None:
    response = await api.client.post("/graphql", json=body, headers=api.bearer())
    assert refused(response, 400, "BAD_USER_INPUT")["field"] == field


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
async def test_a_graphql_body_that_is_not_json_is_415_json(api: Api, content_type: str) -> None:
    headers = {**api.bearer(), "content-type": content_type}
    response = await api.client.post("/graphql", content=b'{"query": "{ me { role } }"}', headers=headers)
    assert refused(response, 415, "UNSUPPORTED_MEDIA_TYPE")["field"] == "content-type"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "HEAD"])
async def test_other_methods_on_graphql_are_405_with_allow(api: Api, method: str) -> None:
    response = await api.client.request(method, "/graphql", headers=api.bearer())
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    if method != "HEAD":
        refused(response, 405, "METHOD_NOT_ALLOWED")


async def test_an_operation_sent_with_get_is_refused_as_json(api: Api) -> None:
    for query in (ME, "mutation { updateSettings(input: {budgetEnforcementEnabled: false}) { costTrackingEnabled } }"):
        response = await api.client.get("/graphql", params={"query": query}, headers=api.bearer())
        error = refused(response, 400, "BAD_USER_INPUT")
        assert error["field"] == "query" and error["message"].startswith("query: send GraphQL operations with POST")
    assert (await api.data("{ settings { budgetEnforcementEnabled } }"))["settings"]["budgetEnforcementEnabled"]


@pytest.mark.parametrize(
    "query",
    [
        "subscription { budgetUpdated { id } }",
        "subscription { alertRaised { id } }",
        "subscription S { slaViolationRaised { id } }",
    ],
)
async def test_a_subscription_over_http_is_400_naming_the_query_not_an_internal_error(
    api: Api, query: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = await api.client.post("/graphql", json={"query": query}, headers=api.bearer())
    error = refused(response, 400, "BAD_USER_INPUT")
    assert error["field"] == "query" and "graphql-transport-ws" in error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "an error was logged"
    # Without a token it is refused the same way (nothing runs either way).
    anonymous = await api.client.post("/graphql", json={"query": query})
    assert refused(anonymous, 400, "BAD_USER_INPUT")["field"] == "query"
