"""Requests: `spendLogs`, the LiteLLM_SpendLogs rows behind every figure, newest first, a cursor page at a time."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from models.db import Database
from models.litellm import spend_logs
from tests.conftest import NOW
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

FIELDS = """requestId callType startTime endTime model modelGroup provider teamId userId keyAlias endUser status
  promptTokens completionTokens totalTokens spend latencyMs timeToFirstTokenMs cacheHit tags"""

SPEND_LOGS = (
    """query($first: Int! = 50, $after: String, $since: DateTime, $until: DateTime, $team: String, $user: String,
        $alias: String, $model: String, $status: String) {
  spendLogs(first: $first, after: $after, since: $since, until: $until, teamId: $team, userId: $user,
            keyAlias: $alias, model: $model, status: $status) {
    edges { cursor node { """
    + FIELDS
    + """ } }
    pageInfo { hasNextPage endCursor } } }"""
)


def _ids(connection: dict[str, Any]) -> list[str]:
    return [e["node"]["requestId"] for e in connection["edges"]]


async def _all_pages(api: Api, variables: dict[str, Any], *, token: str | None = "admin") -> list[str]:
    variables = dict(variables)
    seen: list[str] = []
    after = variables.pop("after", None)
    for _ in range(100):  # bounded: a broken cursor must not loop forever
        page = (await api.data(SPEND_LOGS, {**variables, "after": after}, token=token))["spendLogs"]
        seen += _ids(page)
        if not page["pageInfo"]["hasNextPage"]:
            assert page["pageInfo"]["endCursor"] == (page["edges"][-1]["cursor"] if page["edges"] else None)
            return seen
        after = page["pageInfo"]["endCursor"]
    raise AssertionError("pagination did not end")


async def _mixed_logs(db: Database) -> list[SpendLog]:
    """Nine requests over three teams, three of them at the very same instant (ties the cursor must break)."""
    same = NOW - timedelta(hours=2)
    logs = [
        SpendLog(0.01, NOW - timedelta(minutes=5), team_id="eng", user="ann", request_id="r-01"),
        SpendLog(0.02, same, team_id="eng", user="bob", request_id="r-02"),
        SpendLog(0.03, same, team_id="ops", user="cy", request_id="r-03"),
        SpendLog(0.04, same, team_id="eng", user="ann", request_id="r-04", model="claude-3", status="failure"),
        SpendLog(0.05, NOW - timedelta(days=1), team_id="ops", user="cy", request_id="r-05"),
        SpendLog(0.06, NOW - timedelta(days=2), team_id="eng", user="bob", request_id="r-06"),
        SpendLog(0.07, NOW - timedelta(days=3), team_id="fin", user="dee", request_id="r-07", status=None),
        SpendLog(0.08, NOW - timedelta(days=4), team_id="eng", user="ann", request_id="r-08"),
        SpendLog(0.09, NOW - timedelta(days=5), team_id="ops", user="cy", request_id="r-09"),
    ]
    await add_spend(db, *logs)
    return logs


def _newest_first(logs: list[SpendLog]) -> list[str]:
    return [log.request_id for log in sorted(logs, key=lambda g: (g.start, g.request_id), reverse=True)]


async def test_pages_walk_every_request_newest_first_exactly_once_ties_included(api: Api, db: Database) -> None:
    logs = await _mixed_logs(db)
    for first in (1, 2, 3, 4, 9, 50):
        assert await _all_pages(api, {"first": first}) == _newest_first(logs), first
    page = (await api.data(SPEND_LOGS, {"first": 9}))["spendLogs"]
    assert page["pageInfo"]["hasNextPage"] is False
    assert (await api.data(SPEND_LOGS, {"first": 8}))["spendLogs"]["pageInfo"]["hasNextPage"] is True


async def test_a_page_after_new_requests_arrive_neither_repeats_nor_skips(api: Api, db: Database) -> None:
    logs = await _mixed_logs(db)
    first = (await api.data(SPEND_LOGS, {"first": 4}))["spendLogs"]
    await add_spend(db, SpendLog(0.5, NOW, team_id="eng", request_id="r-new"))
    rest = await _all_pages(api, {"first": 4, "after": first["pageInfo"]["endCursor"]})
    assert _ids(first) + rest == _newest_first(logs)


async def test_every_filter_narrows_the_list(api: Api, db: Database) -> None:
    logs = await _mixed_logs(db)
    by_id = {log.request_id: log for log in logs}

    async def ids(**variables: Any) -> list[str]:
        return await _all_pages(api, {"first": 2, **variables})

    assert await ids(team="eng") == _newest_first([g for g in logs if g.team_id == "eng"])
    assert await ids(user="cy") == _newest_first([g for g in logs if g.user == "cy"])
    assert await ids(model="claude-3") == ["r-04"]
    assert await ids(status="failure") == ["r-04"]
    assert "r-07" in await ids(status="success")  # a row without a status is a success (older LiteLLM)
    assert "r-04" not in await ids(status="success")
    since, until = NOW - timedelta(days=3), NOW - timedelta(days=1)
    window = await ids(since=since.isoformat(), until=until.isoformat())
    assert window == _newest_first([g for g in logs if since <= g.start < until])
    assert all(by_id[i].team_id == "eng" for i in await ids(team="eng", since=since.isoformat()))


async def test_a_key_alias_filters_by_the_keys_hash_and_is_shown_on_each_row(api: Api, db: Database) -> None:
    key_hash = await add_virtual_key(db, "sk-billing", user_id="ann", team_id="eng", alias="billing-bot")
    await add_spend(
        db,
        SpendLog(0.1, NOW - timedelta(minutes=1), team_id="eng", api_key=key_hash, request_id="k-1"),
        SpendLog(0.2, NOW - timedelta(minutes=2), team_id="eng", api_key="other-hash", request_id="k-2"),
    )
    page = (await api.data(SPEND_LOGS, {"alias": "billing-bot"}))["spendLogs"]
    assert _ids(page) == ["k-1"]
    assert page["edges"][0]["node"]["keyAlias"] == "billing-bot"
    assert _ids((await api.data(SPEND_LOGS, {"alias": "no-such-alias"}))["spendLogs"]) == []


async def test_a_row_carries_tokens_exact_cost_latency_first_token_cache_hit_and_tags(api: Api, db: Database) -> None:
    start = NOW - timedelta(minutes=10)
    streamed = SpendLog(0.000225, start, team_id="eng", user="ann", request_id="s-1", tags=["prod", "chat"]).row()
    streamed.update(
        end_time=start + timedelta(milliseconds=1500),
        completion_start_time=start + timedelta(milliseconds=320),
        cache_hit="False",
        request_duration_ms=None,
        end_user="customer-7",
        metadata={"user_api_key_alias": "alias-from-metadata"},
    )
    plain = SpendLog(0.1, start - timedelta(minutes=1), request_id="s-2", team_id="eng").row()
    plain.update(completion_start_time=plain["end_time"], cache_hit="True", request_duration_ms=987)
    async with db.engine.begin() as conn:
        await conn.execute(insert(spend_logs), [streamed, plain])
    edges = (await api.data(SPEND_LOGS))["spendLogs"]["edges"]
    first, second = edges[0]["node"], edges[1]["node"]
    assert first == {
        "requestId": "s-1",
        "callType": "acompletion",
        "startTime": "2026-11-15T11:50:00+00:00",
        "endTime": "2026-11-15T11:50:01.500000+00:00",
        "model": "gpt-4o",
        "modelGroup": "gpt-4o",
        "provider": "openai",
        "teamId": "eng",
        "userId": "ann",
        "keyAlias": "alias-from-metadata",
        "endUser": "customer-7",
        "status": "success",
        "promptTokens": 10,
        "completionTokens": 20,
        "totalTokens": 30,
        "spend": "0.000225",
        "latencyMs": 1500,
        "timeToFirstTokenMs": 320,
        "cacheHit": False,
        "tags": ["prod", "chat"],
    }
    # Non-streaming: LiteLLM sets completionStartTime = endTime, so there is no time to first token.
    assert (second["timeToFirstTokenMs"], second["latencyMs"], second["cacheHit"]) == (None, 987, True)


async def test_page_size_is_capped_and_named_in_the_error(api: Api) -> None:
    for first in (0, -1, 201, 10_000):
        error = await api.error(SPEND_LOGS, {"first": first})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}, first
    assert (await api.data(SPEND_LOGS, {"first": 200}))["spendLogs"]["edges"] == []


async def test_a_garbage_or_foreign_cursor_is_bad_input_naming_after(api: Api, db: Database) -> None:
    await _mixed_logs(db)

    def forge(payload: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    garbage = [
        "nonsense",
        "%%%",
        "",
        "x" * 5000,
        forge(["spend_logs", "not a time", "r-1"]),
        forge(["spend_logs", "2026-11-15T10:00:00", "r-1"]),  # no zone: not one of ours
        forge(["spend_logs", 12, "r-1"]),
        forge({"k": "spend_logs"}),
        forge(["alerts", "2026-11-15T10:00:00+00:00", "r-1"]),  # another list's cursor
        forge(["spend_logs", "0001-01-01T00:00:00+14:00", "r-1"]),  # no UTC time exists for it
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    ]
    for after in garbage:
        error = await api.error(SPEND_LOGS, {"after": after})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}, after


async def test_bad_filters_are_bad_input_naming_their_field(api: Api) -> None:
    cases = [
        ({"status": "exploded"}, "status"),
        ({"team": "eng\x00"}, "teamId"),
        ({"alias": "a" * 300}, "keyAlias"),
        ({"since": NOW.isoformat(), "until": (NOW - timedelta(days=1)).isoformat()}, "until"),
    ]
    for variables, field in cases:
        error = await api.error(SPEND_LOGS, variables)
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, variables


async def test_a_time_with_no_utc_equivalent_is_bad_input_in_every_datetime_argument(api: Api) -> None:
    """The shared DateTime scalar refuses it, so no resolver ever converts it to UTC and fails (a 500 before)."""
    impossible = "0001-01-01T00:00:00+14:00"
    error = await api.error(SPEND_LOGS, {"since": impossible})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "since" in error["message"]
    for query in (
        f'{{ spendAnomalies(since: "{impossible}") {{ id }} }}',
        f'{{ spendLogs(until: "{impossible}") {{ edges {{ cursor }} }} }}',
    ):
        # An inline literal is checked while the operation is validated: BAD_USER_INPUT naming its argument.
        error = await api.error(query)
        assert error["extensions"] == {
            "code": "BAD_USER_INPUT",
            "field": "since" if "spendAnomalies" in query else "until",
        }, query
        assert "out of range once converted to UTC" in error["message"], query
    assert (await api.data(SPEND_LOGS, {"since": "2026-11-15T12:00:00+14:00"}))["spendLogs"]["edges"] == []


async def test_a_viewer_sees_only_its_own_teams_requests(api: Api, db: Database) -> None:
    logs = await _mixed_logs(db)
    await add_virtual_key(db, "sk-eng-viewer", user_id="bob", team_id="eng")
    token = await api.login("sk-eng-viewer")
    eng = _newest_first([g for g in logs if g.team_id == "eng"])
    assert await _all_pages(api, {"first": 2}, token=token) == eng
    assert await _all_pages(api, {"first": 2, "user": "ann"}, token=token) == _newest_first(
        [g for g in logs if g.team_id == "eng" and g.user == "ann"]
    )
    error = await api.error(SPEND_LOGS, {"team": "ops"}, token=token)
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_a_viewer_without_a_team_sees_only_its_own_users_requests(api: Api, db: Database) -> None:
    logs = await _mixed_logs(db)
    await add_virtual_key(db, "sk-cy", user_id="cy", team_id=None)
    token = await api.login("sk-cy")
    assert await _all_pages(api, {"first": 2}, token=token) == _newest_first([g for g in logs if g.user == "cy"])
    assert (await api.error(SPEND_LOGS, {"user": "ann"}, token=token))["extensions"]["code"] == "FORBIDDEN"


async def test_a_viewers_forged_or_borrowed_cursor_never_reaches_another_teams_rows(api: Api, db: Database) -> None:
    logs = await _mixed_logs(db)
    await add_virtual_key(db, "sk-fin-viewer", user_id="dee", team_id="fin")
    token = await api.login("sk-fin-viewer")
    # The admin's cursor, positioned among other teams' rows, moves the viewer's position only.
    admin_page = (await api.data(SPEND_LOGS, {"first": 2}))["spendLogs"]
    borrowed = (await api.data(SPEND_LOGS, {"after": admin_page["pageInfo"]["endCursor"]}, token=token))["spendLogs"]
    assert _ids(borrowed) == ["r-07"]
    # A hand-made cursor from the far future (every row is "after" it) still shows only the viewer's team.
    future = base64.urlsafe_b64encode(json.dumps(["spend_logs", "2999-01-01T00:00:00+00:00", "~"]).encode())
    forged = (await api.data(SPEND_LOGS, {"after": future.decode().rstrip("=")}, token=token))["spendLogs"]
    assert _ids(forged) == ["r-07"] == [g.request_id for g in logs if g.team_id == "fin"]
    # And a cursor cannot smuggle a filter: extra fields make it bad input, not a wider query.
    smuggled = base64.urlsafe_b64encode(json.dumps(["spend_logs", "2999-01-01T00:00:00+00:00", "~", "ops"]).encode())
    error = await api.error(SPEND_LOGS, {"after": smuggled.decode()}, token=token)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}


async def test_without_a_token_nothing_is_listed(api: Api, db: Database) -> None:
    await _mixed_logs(db)
    error = await api.error(SPEND_LOGS, token=None)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_deep_page_is_read_from_the_start_time_index_never_sorted_or_offset(api: Api, db: Database) -> None:
    """The statement the app sends, explained by the database itself: an index walk newest first, no OFFSET."""
    from sqlalchemy import event

    await _mixed_logs(db)
    engine = api.runtime().db.engine.sync_engine
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        # Only the page's statement (background jobs read the table too).
        if 'ORDER BY "LiteLLM_SpendLogs"."startTime" DESC, "LiteLLM_SpendLogs".request_id DESC' in statement:
            sent.append((statement, parameters))

    first = (await api.data(SPEND_LOGS, {"first": 3}))["spendLogs"]["pageInfo"]["endCursor"]
    event.listen(engine, "before_cursor_execute", capture)
    try:
        await api.data(SPEND_LOGS, {"first": 3, "after": first, "team": "eng"})
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(sent) == 1
    statement, parameters = sent[0]
    if "OFFSET" in statement.upper():  # SQLAlchemy's SQLite compiler writes LIMIT ? OFFSET ? with 0 for the offset
        assert statement.upper().rstrip().endswith("OFFSET ?") and parameters[-1] == 0, (statement, parameters)
    async with api.runtime().db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            plan = " | ".join(
                str(r[-1]) for r in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "USING INDEX LiteLLM_SpendLogs_startTime" in plan, (plan, statement, parameters)
            assert "TEMP B-TREE" not in plan, (plan, statement, parameters)  # no sort: the index gives the order
        else:
            # A nine-row table would be read whole and sorted; on millions of rows (bench/requests.py) the planner
            # picks the index walk by itself. Here: does an index plan without a full sort exist for this statement?
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                await conn.exec_driver_sql(f"SET LOCAL {setting} = off")
            rows = await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            plan = "\n".join(r[0] for r in rows)
            assert 'Index Scan Backward using "LiteLLM_SpendLogs_startTime' in plan, plan
            assert "Seq Scan" not in plan, plan
