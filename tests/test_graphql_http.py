"""What POST /graphql refuses before any operation runs is answered like every other refusal: a JSON error body
(`{"error": {"code", "message", "field"}}`) with a 4xx naming the part of the request at fault, never Strawberry's
plain-text reason; and a subscription sent over HTTP is such a refusal, not an INTERNAL_SERVER_ERROR (and a
logged traceback) from running it as a query."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.support import Api, graphql_ws

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


# GraphQL spec, Executing Requests (GetOperation): with several operations and no operationName, or a name that
# names none of them, the request is an error. Strawberry ran the document's first operation instead.
TWO = "query A { me { role } } query B { me { subject } }"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"query": TWO}, "the document has 2 operations: name the one to run"),
        ({"query": TWO, "operationName": None}, "the document has 2 operations: name the one to run"),
        ({"query": "{ me { role } } query B { me { subject } } query C { me { role } }"}, "the document has 3"),
        # The first is a subscription: the request is at fault for naming no operation, not for the subscription.
        ({"query": "subscription S { budgetUpdated { id } } " + TWO}, "the document has 3 operations"),
        ({"query": TWO, "operationName": "C"}, "no operation named 'C' in the document"),
        ({"query": "fragment F on Me { role } query A { me { ...F } }", "operationName": "F"}, "no operation named"),
        ({"query": "{ me { role } }", "operationName": "A"}, "no operation named 'A' in the document"),
    ],
    ids=["two", "two-null-name", "three", "subscription-first", "unknown-name", "fragment-name", "anonymous-named"],
)
async def test_an_operation_not_chosen_is_400_naming_operation_name(
    api: Api, body: dict[str, Any], problem: str
) -> None:
    for headers in (api.bearer(), {}):  # refused before the token is looked at, as nothing runs either way
        error = refused(await api.client.post("/graphql", json=body, headers=headers), 400, "BAD_USER_INPUT")
        assert error["field"] == "operationName"
        assert error["message"].startswith(f"operationName: {problem}"), error


async def test_several_mutations_without_operation_name_run_none(api: Api) -> None:
    off = "mutation Off { updateSettings(input: {budgetEnforcementEnabled: false}) { budgetEnforcementEnabled } }"
    response = await api.client.post("/graphql", json={"query": off + " query Q { me { role } }"}, headers=api.bearer())
    refused(response, 400, "BAD_USER_INPUT")
    assert (await api.data("{ settings { budgetEnforcementEnabled } }"))["settings"]["budgetEnforcementEnabled"]
    # Named, the same document runs the one named; one operation beside fragments needs no name.
    named = await api.client.post("/graphql", json={"query": TWO, "operationName": "B"}, headers=api.bearer())
    assert named.status_code == 200 and "role" not in named.json()["data"]["me"], named.text
    assert await api.data("fragment F on Me { role } query A { me { ...F } }") == {"me": {"role": "ADMIN"}}


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"query": TWO}, "operationName: the document has 2 operations: name the one to run"),
        ({"query": TWO, "operationName": "C"}, "operationName: no operation named 'C' in the document"),
        (
            {"query": "subscription S { budgetUpdated { id } } subscription T { alertRaised { id } }"},
            "operationName: the document has 2 operations: name the one to run",
        ),
    ],
    ids=["two", "unknown-name", "two-subscriptions"],
)
async def test_over_the_websocket_an_operation_not_chosen_is_an_error_message_naming_operation_name(
    api: Api, payload: dict[str, Any], problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, an unknown name was logged as a failed resolver, masked as an internal error and closed the socket.
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        await ws.send_json({"id": "q", "type": "subscribe", "payload": payload})
        answer = await asyncio.wait_for(ws.receive_json(), 5)
        assert answer["id"] == "q" and answer["type"] == "error", answer
        (error,) = answer["payload"]
        assert error["message"] == problem
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "operationName"}
        # The connection stays open: the next operation runs.
        await ws.send_json({"id": "r", "type": "subscribe", "payload": {"query": TWO, "operationName": "A"}})
        answer = await asyncio.wait_for(ws.receive_json(), 5)
        assert answer == {"id": "r", "type": "next", "payload": {"data": {"me": {"role": "ADMIN"}}}}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "an error was logged"


async def test_a_document_of_fragments_only_is_400_naming_the_query(api: Api) -> None:
    response = await api.client.post("/graphql", json={"query": "fragment F on Me { role }"}, headers=api.bearer())
    error = refused(response, 400, "BAD_USER_INPUT")
    assert error["field"] == "query" and error["message"].startswith("query: holds no operation"), error
