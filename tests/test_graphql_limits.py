"""What one GraphQL operation may ask and answer: no schema hints without a token, introspection held to a depth
limit, and a response-size budget per operation (twenty aliased exports do not answer megabytes)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from graphql import get_introspection_query

from models.db import Database
from resolvers.platform.config import Settings
from tests.conftest import NOW, Clock, started
from tests.support import Api, SpendLog, add_spend, add_virtual_key, graphql_ws

pytestmark = pytest.mark.litellm_tables

SMALL_BUDGET = 65_536  # the lowest SPENDPLANE_MAX_RESPONSE_BYTES allows


async def test_without_a_token_validation_errors_carry_no_did_you_mean_hints(api: Api) -> None:
    probes = {  # a mistake, and the hint graphql-core would add to it
        "{ budgts { id } }": "'budgets'",  # a field
        "{ budgets { id nme } }": "'name'",  # a field of a type
        "{ costReport(perod: MONTHLY) { totalCost } }": "'period'",  # an argument
        "{ costReport(period: MONTHL) { totalCost } }": "'MONTHLY'",  # an enum value
        "query($p: ReportPeriodd!) { costReport(period: $p) { totalCost } }": "'ReportPeriod'",  # a type
    }
    for query, hint in probes.items():
        anonymous = await api.gql(query, token=None)
        messages = " ".join(error["message"] for error in anonymous["errors"])
        assert "Did you mean" not in messages and hint not in messages, (query, messages)
        # A value of the wrong type (the enum's) is bad input naming its argument; the others are validation.
        code = "BAD_USER_INPUT" if "MONTHL)" in query else "GRAPHQL_VALIDATION_FAILED"
        assert all(error["extensions"]["code"] == code for error in anonymous["errors"]), anonymous
        # A caller with a token may be helped: the same mistake names what it meant.
        helped = " ".join(error["message"] for error in (await api.gql(query))["errors"])
        assert "Did you mean" in helped and hint in helped, (query, helped)


async def test_an_invalid_token_gets_no_hints_either(api: Api) -> None:
    result = await api.gql("{ budgts { id } }", token="not-a-jwt")
    assert "Did you mean" not in result["errors"][0]["message"]


def _of_types(levels: int) -> str:
    return "ofType { " * levels + "name" + " }" * levels


async def test_introspection_is_held_to_the_depth_limit(api: Api) -> None:
    # __schema > types > fields > type > ofType x 12: 16 levels, past SPENDPLANE_MAX_INTROSPECTION_DEPTH (15).
    deep = "{ __schema { types { fields { type { " + _of_types(12) + " } } } } }"
    error = await api.error(deep)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "exceeds maximum introspection depth of 15" in error["message"]
    # ... also when the introspection hides in a fragment or an inline fragment.
    fragment = "{ ...Deep } fragment Deep on Query { ... on Query { __schema { types { fields { type { "
    error = await api.error(fragment + _of_types(12) + " } } } } } }")
    assert "introspection depth" in error["message"]
    # __type is introspection too.
    error = await api.error('{ __type(name: "Budget") { fields { type { ' + _of_types(14) + " } } } }")
    assert "introspection depth" in error["message"]


async def test_introspection_cycles_through_fields_and_types_are_refused(api: Api) -> None:
    cycle = "{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }"
    error = await api.error(cycle)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "Maximum introspection depth exceeded" in error["message"]


async def test_the_standard_introspection_query_still_works(api: Api) -> None:
    data = await api.data(get_introspection_query(descriptions=True, input_value_deprecation=True))
    assert data["__schema"]["queryType"]["name"] == "Query"


async def test_a_lower_introspection_limit_is_applied(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock, max_introspection_depth=3) as api:
        assert (await api.data("{ __schema { queryType { fields { name } } } }"))["__schema"]["queryType"]
        error = await api.error("{ __schema { queryType { fields { type { name } } } } }")
        assert "exceeds maximum introspection depth of 3" in error["message"]


async def _team_spend(db: Database, rows: int) -> None:
    await add_spend(
        db,
        *(
            SpendLog(0.25, NOW - timedelta(hours=i % 200), team_id="eng", user=f"user-{i:04d}", model=f"model-{i % 7}")
            for i in range(rows)
        ),
    )


EXPORTS = "{ " + " ".join(f"e{i}: exportCostReport(format: JSON) {{ url content }}" for i in range(20)) + " }"


async def test_twenty_aliased_exports_from_a_viewer_stop_at_the_response_budget(
    settings: Settings, clock: Clock, db: Database
) -> None:
    await _team_spend(db, 150)
    await add_virtual_key(db, "sk-ann", user_id="ann", team_id="eng")
    async with started(settings, clock, max_response_bytes=SMALL_BUDGET) as api:
        viewer = await api.login("sk-ann")
        one = await api.data("{ exportCostReport(format: JSON) { content } }", token=viewer)
        single = len(one["exportCostReport"]["content"])
        assert 10_000 < single < SMALL_BUDGET  # one export fits; twenty of them would not
        response = await api.client.post("/graphql", json={"query": EXPORTS}, headers=api.bearer(viewer))
        assert response.status_code == 200
        assert len(response.content) < SMALL_BUDGET
        body = response.json()
        assert body["data"] is None
        codes = {error["extensions"]["code"] for error in body["errors"]}
        assert codes == {"RESPONSE_TOO_LARGE"}
        named = body["errors"][0]["extensions"].get("field")
        assert named is not None and named.endswith(".content") and named.split(".")[0] in {f"e{i}" for i in range(20)}
        assert "SPENDPLANE_MAX_RESPONSE_BYTES" in body["errors"][0]["message"]


async def test_any_answer_past_the_budget_is_replaced_by_one_coded_error(
    settings: Settings, clock: Clock, db: Database
) -> None:
    await _team_spend(db, 150)
    reports = " ".join(
        f"r{i}: costReport {{ totalCost breakdownByUser {{ key cost requests share }} }}" for i in range(20)
    )
    async with started(settings, clock, max_response_bytes=SMALL_BUDGET) as api:
        one = await api.client.post(
            "/graphql",
            json={"query": "{ costReport { breakdownByUser { key cost requests share } } }"},
            headers=api.bearer(),
        )
        assert one.status_code == 200 and "errors" not in one.json()
        response = await api.client.post("/graphql", json={"query": "{ " + reports + " }"}, headers=api.bearer())
        assert response.status_code == 200
        assert len(response.content) < 1024
        assert int(response.headers["content-length"]) == len(response.content)
        body = response.json()
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "RESPONSE_TOO_LARGE"


async def _over_the_socket(api: Api, token: str, query: str) -> tuple[int, dict[str, Any]]:
    """A query sent as graphql-transport-ws `subscribe` (which runs queries and mutations too): its one answer's
    size in bytes, and its payload."""
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        await ws.send_json({"id": "q", "type": "subscribe", "payload": {"query": query}})
        text = await ws.receive_text()
        answer = json.loads(text)
        assert answer["type"] == "next", answer
        assert json.loads(await ws.receive_text()) == {"id": "q", "type": "complete"}
    return len(text.encode()), answer["payload"]


async def test_a_query_over_the_websocket_is_held_to_the_same_response_budget(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """graphql-transport-ws runs queries as well as subscriptions; such a query had no response budget at all (the
    view's is per HTTP request): twenty aliased exports left in one message of 20 times the inline limit."""
    await _team_spend(db, 150)
    await add_virtual_key(db, "sk-ann", user_id="ann", team_id="eng")
    async with started(settings, clock, max_response_bytes=SMALL_BUDGET) as api:
        viewer = await api.login("sk-ann")
        size, one = await _over_the_socket(api, viewer, "{ exportCostReport(format: JSON) { content } }")
        assert "errors" not in one and 10_000 < size < SMALL_BUDGET  # one fits, as over HTTP
        size, payload = await _over_the_socket(api, viewer, EXPORTS)
        assert size < SMALL_BUDGET
        assert payload["data"] is None
        assert {e["extensions"]["code"] for e in payload["errors"]} == {"RESPONSE_TOO_LARGE"}
        assert payload["errors"][0]["extensions"]["field"].endswith(".content")
        # The backstop too: twenty aliased reports, each within budget, are one coded error together.
        reports = " ".join(f"r{i}: costReport {{ breakdownByUser {{ key cost requests share }} }}" for i in range(20))
        size, payload = await _over_the_socket(api, api.admin_token, "{ " + reports + " }")
        assert size < 1024 and payload["data"] is None
        assert [e["extensions"]["code"] for e in payload["errors"]] == ["RESPONSE_TOO_LARGE"]
        # Each operation has its own budget: a small query after the refusals answers.
        _, me = await _over_the_socket(api, viewer, "{ me { role } }")
        assert me == {"data": {"me": {"role": "VIEWER"}}}


@pytest.mark.parametrize("value", ["65535", "1073741825", "lots"])
def test_the_response_budget_setting_is_bounded(value: str) -> None:
    with pytest.raises(ValueError, match="SPENDPLANE_MAX_RESPONSE_BYTES"):
        Settings.from_env({"SPENDPLANE_MAX_RESPONSE_BYTES": value, "DATABASE_URL": "sqlite:///x.db"})


@pytest.mark.parametrize("token", ["admin", None])
async def test_a_malformed_scalar_literal_is_bad_input_not_an_internal_error(api: Api, token: str | None) -> None:
    # Found by the GraphQL fuzzer: a Decimal literal that is no number answered INTERNAL_SERVER_ERROR.
    for literal in ('""', '"\\u0003"', '"12abc"'):
        price = f'{{ model: "m", inputPerMillion: {literal}, outputPerMillion: "1" }}'
        query = f"mutation {{ setModelPrice(input: {price}) {{ model }} }}"
        error = await api.error(query, token=token)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    # A variable is coerced after the token check: without one, the answer is UNAUTHENTICATED.
    price = '{ model: "m", inputPerMillion: $d, outputPerMillion: 1 }'
    error = await api.error(
        f"mutation($d: Decimal!) {{ setModelPrice(input: {price}) {{ model }} }}", {"d": "x"}, token=token
    )
    assert error["extensions"]["code"] == ("BAD_USER_INPUT" if token else "UNAUTHENTICATED"), error
