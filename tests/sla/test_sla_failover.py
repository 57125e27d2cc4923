"""Failover rules: a rule activates when its primary breaches the threshold, the gateway then answers the fallback
as the model to call (and the LiteLLM plugin calls it), it stays on at least the cooldown and turns off once the
primary is healthy again; every transition is recorded and alerted; a failing fallback is never chosen; rules never
form a cycle; every replica follows the routes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from models.alerts import AlertRow
from models.db import Database
from resolvers.platform.config import Settings
from resolvers.sla.failover import resolve_routes
from tests.conftest import MASTER_KEY, NOW, Clock, started
from tests.sla.test_sla_health import add_calls, answered, blocked, collect, post_spend, provider_failed, traffic
from tests.sla.test_sla_violations import active_violations, define
from tests.support import Api, add_virtual_key, served
from webhook.litellm_plugin import SpendplaneBudgetHook

pytestmark = pytest.mark.litellm_tables

GATEWAY = {"x-api-key": MASTER_KEY}
CREATE = """mutation($input: FailoverRuleInput!) { createFailoverRule(input: $input) {
  id primaryModel fallbackModel triggerCondition triggerThreshold cooldownMinutes evaluationWindowMinutes active } }"""
RULES = """{ failoverRules { id primaryModel fallbackModel active activatedAt lastMeasuredValue note
  transitions { kind reason measuredValue threshold at } } }"""
GUIDE_RULE = {
    "primaryModel": "gpt-4o",
    "fallbackModel": "claude-sonnet-4.5",
    "triggerCondition": "ERROR_RATE",
    "triggerThreshold": 0.05,
    "cooldownMinutes": 15,
    "evaluationWindowMinutes": 15,
}


async def create_rule(api: Api, **fields: Any) -> dict[str, Any]:
    created: dict[str, Any] = (await api.data(CREATE, {"input": {**GUIDE_RULE, **fields}}))["createFailoverRule"]
    return created


async def rules(api: Api) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await api.data(RULES))["failoverRules"]
    return found


async def routed_to(api: Api, model: str = "gpt-4o") -> str:
    """The model the pre-request webhook tells the gateway to call for a request for `model`."""
    response = await api.client.post(
        "/webhook/pre-request",
        headers=GATEWAY,
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["model"])


async def routes_become(api: Api, expected: dict[str, str]) -> None:
    """Routes follow the rules through the event bus, in the background: wait (bounded) until they do."""
    enforcer = api.runtime().enforcement()
    for _ in range(500):
        if enforcer.routes == expected:
            return
        await asyncio.sleep(0.02)
    assert enforcer.routes == expected


async def alert_types(db: Database) -> list[str]:
    async with db.reader() as session:
        return list((await session.scalars(select(AlertRow.type))).all())


async def outage(db: Database, model: str = "gpt-4o", *, start: Any = None, count: int = 40, failing: int = 20) -> None:
    """`failing` of `count` requests for `model` fail with a 503, in the five minutes from `start`."""
    begin = start if start is not None else NOW - timedelta(minutes=10)
    await add_calls(db, traffic(begin, count, failures=failing, code="503", model=model, spacing=timedelta(seconds=7)))


async def test_a_rule_routes_around_a_failing_primary_until_it_recovers_and_the_cooldown_passed(
    sla_api: Api, db: Database
) -> None:
    api = sla_api
    rule = await create_rule(api)
    assert await routed_to(api) == "gpt-4o"

    await outage(db)  # 50% errors on gpt-4o, against a 5% threshold
    await collect(api, NOW)
    (state,) = await rules(api)
    assert (state["active"], state["activatedAt"], state["lastMeasuredValue"]) == (
        True,
        "2026-11-15T12:00:00+00:00",
        0.5,
    )
    assert [(t["kind"], t["measuredValue"], t["threshold"]) for t in state["transitions"]] == [("ACTIVATED", 0.5, 0.05)]
    assert "error_rate of gpt-4o is 50.00% (threshold 5.00%)" in state["transitions"][0]["reason"]
    await routes_become(api, {"gpt-4o": "claude-sonnet-4.5"})
    assert await routed_to(api) == "claude-sonnet-4.5"
    assert await routed_to(api, "gpt-4o-mini") == "gpt-4o-mini"  # other models are not touched

    # The primary answers well again (traffic from elsewhere), but the cooldown (15 min) holds the rule on.
    await add_calls(db, traffic(NOW + timedelta(minutes=1), 30, model="gpt-4o"))
    await collect(api, NOW + timedelta(minutes=10))
    assert (await rules(api))[0]["active"] is True
    assert await routed_to(api) == "claude-sonnet-4.5"

    await collect(api, NOW + timedelta(minutes=15))
    (state,) = await rules(api)
    assert (state["active"], state["activatedAt"]) == (False, None)
    assert [t["kind"] for t in state["transitions"]] == ["DEACTIVATED", "ACTIVATED"]
    assert "back to 0.00%" in state["transitions"][0]["reason"]
    await routes_become(api, {})
    assert await routed_to(api) == "gpt-4o"
    assert sorted(await alert_types(db)) == ["failover_activated", "failover_deactivated"]

    rest = await api.client.get(f"/api/v1/sla/failover-rules/{rule['id']}", headers=api.bearer())
    assert [t["kind"] for t in rest.json()["transitions"]] == ["deactivated", "activated"]


async def test_a_rule_watches_the_requests_for_its_model_whatever_deployment_served_them(
    sla_api: Api, db: Database
) -> None:
    """Clients ask for gpt-4o; LiteLLM logs the deployment it called (openai/gpt-4o-2024-08-06) as `model` and the
    name asked for as `model_group`. The rule routes gpt-4o, so gpt-4o's requests are what it must watch."""
    await create_rule(sla_api)
    rows = traffic(NOW - timedelta(minutes=10), 40, failures=20, code="503", spacing=timedelta(seconds=7))
    for row in rows:
        row["model"] = "openai/gpt-4o-2024-08-06"
    await add_calls(db, rows)
    await collect(sla_api, NOW)
    (state,) = await rules(sla_api)
    assert (state["active"], state["lastMeasuredValue"]) == (True, 0.5)
    await routes_become(sla_api, {"gpt-4o": "claude-sonnet-4.5"})


async def test_the_litellm_plugin_calls_the_fallback_while_the_rule_is_active(sla_api: Api, db: Database) -> None:
    api = sla_api
    await create_rule(api)
    await outage(db)
    await collect(api, NOW)
    await routes_become(api, {"gpt-4o": "claude-sonnet-4.5"})
    async with served(api.lifespan_app) as url:
        hook = SpendplaneBudgetHook(url=url, key=MASTER_KEY)
        try:
            key = SimpleNamespace(api_key=None, user_id=None, team_id=None, end_user_id=None)
            data = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
            sent = await hook.async_pre_call_hook(key, None, data, "completion")
        finally:
            await hook.aclose()
    assert sent["model"] == "claude-sonnet-4.5"


async def test_an_idle_primary_counts_as_recovered_once_its_failures_leave_the_window(
    sla_api: Api, db: Database
) -> None:
    # While the rule is on, the gateway sends the primary nothing: its window empties, and after the cooldown the
    # rule turns off (a half-open probe: if the primary still fails, enough failures trip it again).
    api = sla_api
    await create_rule(api, cooldownMinutes=5)
    await outage(db)
    await collect(api, NOW)
    await collect(api, NOW + timedelta(minutes=5))  # the failures are still in the 15-minute window
    assert (await rules(api))[0]["active"] is True
    await collect(api, NOW + timedelta(minutes=20))
    (state,) = await rules(api)
    assert state["active"] is False
    assert state["transitions"][0]["reason"] == "no requests failed on gpt-4o in the last 15 min"
    await outage(db, start=NOW + timedelta(minutes=20))
    await collect(api, NOW + timedelta(minutes=25))
    assert (await rules(api))[0]["active"] is True


async def test_a_failing_fallback_is_never_chosen(sla_api: Api, db: Database) -> None:
    api = sla_api
    await create_rule(api)
    await outage(db)
    await outage(db, "claude-sonnet-4.5")
    await collect(api, NOW)
    (state,) = await rules(api)
    assert (state["active"], state["transitions"]) == (False, [])
    assert "but so is claude-sonnet-4.5" in state["note"]
    assert await routed_to(api) == "gpt-4o"

    # Active, and then the fallback starts failing: off at once, cooldown or not.
    later = NOW + timedelta(hours=1)
    await outage(db, start=later - timedelta(minutes=10))
    await collect(api, later)
    assert (await rules(api))[0]["active"] is True
    await outage(db, "claude-sonnet-4.5", start=later)
    await collect(api, later + timedelta(minutes=5))
    (state,) = await rules(api)
    assert state["active"] is False
    assert state["transitions"][0]["reason"] == "the fallback claude-sonnet-4.5 is failing too (error_rate 50.00%)"


async def test_too_few_requests_trip_nothing(sla_api: Api, db: Database) -> None:
    api = sla_api
    await create_rule(api)
    await outage(db, count=19, failing=19)  # SLA_MIN_REQUESTS is 20
    await collect(api, NOW)
    assert (await rules(api))[0]["active"] is False


async def test_latency_and_availability_triggers(sla_api: Api, db: Database) -> None:
    api = sla_api
    await create_rule(api, triggerCondition="LATENCY_P95", triggerThreshold=2000)
    await create_rule(
        api, primaryModel="o3", fallbackModel="o4-mini", triggerCondition="AVAILABILITY", triggerThreshold=0.99
    )
    await add_calls(db, traffic(NOW - timedelta(minutes=10), 30, latency_ms=2500))
    # o3: 30 requests, 10 refused as the caller's fault (401) and 1 rate-limited: availability 19/20.
    await add_calls(db, traffic(NOW - timedelta(minutes=10), 10, failures=10, code="401", model="o3"))
    await add_calls(db, traffic(NOW - timedelta(minutes=10), 20, failures=1, code="429", model="o3"))
    await collect(api, NOW)
    assert {(r["primaryModel"], r["active"], r["lastMeasuredValue"]) for r in await rules(api)} == {
        ("gpt-4o", True, 2500.0),
        ("o3", True, 0.95),
    }
    await routes_become(api, {"gpt-4o": "claude-sonnet-4.5", "o3": "o4-mini"})


async def test_rules_never_form_a_cycle_and_chains_route_to_their_end(sla_api: Api, db: Database) -> None:
    api = sla_api
    first = await create_rule(api, primaryModel="a", fallbackModel="b")
    await create_rule(api, primaryModel="b", fallbackModel="c")
    error = await api.error(CREATE, {"input": {**GUIDE_RULE, "primaryModel": "c", "fallbackModel": "a"}})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "fallbackModel"}
    assert "cycle: c → a → b → c" in error["message"]
    error = await api.error(CREATE, {"input": {**GUIDE_RULE, "primaryModel": "x", "fallbackModel": "x"}})
    assert error["extensions"]["field"] == "fallbackModel"
    update = 'mutation($id: ID!) { updateFailoverRule(id: $id, input: {primaryModel: "c"}) { id } }'
    assert "cycle" in (await api.error(update, {"id": first["id"]}))["message"]
    error = await api.error(CREATE, {"input": {**GUIDE_RULE, "primaryModel": "a", "fallbackModel": "z"}})
    assert "exists already" in error["message"]

    await outage(db, "a")
    await outage(db, "b")
    await collect(api, NOW)
    await routes_become(api, {"a": "c", "b": "c"})  # b is failing too, but has its own active rule
    assert await routed_to(api, "a") == "c"


def test_routes_follow_active_chains_and_skip_a_cycle() -> None:
    assert resolve_routes({"a": "b", "b": "c", "x": "y"}) == {"a": "c", "b": "c", "x": "y"}
    assert resolve_routes({"a": "b", "b": "a", "c": "a"}) == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"triggerThreshold": 1.5}, "triggerThreshold"),
        ({"triggerCondition": "LATENCY_P95", "triggerThreshold": 0}, "triggerThreshold"),
        ({"cooldownMinutes": -1}, "cooldownMinutes"),
        ({"evaluationWindowMinutes": 1}, "evaluationWindowMinutes"),
        ({"primaryModel": " "}, "primaryModel"),
    ],
)
async def test_a_bad_rule_is_refused_naming_the_field(sla_api: Api, change: dict[str, Any], field: str) -> None:
    error = await sla_api.error(CREATE, {"input": {**GUIDE_RULE, **change}})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


async def test_the_guides_rest_api_for_failover_rules(sla_api: Api, db: Database) -> None:
    api = sla_api
    guide = {
        "primary_model": "gpt-4o",
        "fallback_model": "claude-sonnet-4.5",
        "trigger_condition": "error_rate",
        "trigger_threshold": 0.05,
        "cooldown_minutes": 15,
    }
    created = await api.client.post("/api/v1/sla/failover-rules", json=guide, headers=api.bearer())
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in guide} == guide
    assert (body["active"], body["evaluation_window_minutes"], body["transitions"]) == (False, 15, [])
    path = f"/api/v1/sla/failover-rules/{body['id']}"
    changed = await api.client.put(path, json={"trigger_threshold": 0.1}, headers=api.bearer())
    assert (changed.status_code, changed.json()["trigger_threshold"]) == (200, 0.1)
    bad = await api.client.put(path, json={"trigger_condition": "vibes"}, headers=api.bearer())
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "trigger_condition")
    listed = await api.client.get("/api/v1/sla/failover-rules", headers=api.bearer())
    assert [r["id"] for r in listed.json()] == [body["id"]]
    await add_virtual_key(db, "sk-viewer", user_id="carol", team_id="eng")
    viewer = await api.login("sk-viewer")
    refused = await api.client.delete(path, headers=api.bearer(viewer))
    assert refused.status_code == 403
    assert (await api.client.delete(path, headers=api.bearer())).status_code == 200
    assert (await api.client.get(path, headers=api.bearer())).status_code == 404


async def test_deleting_an_active_rule_stops_routing_at_once(sla_api: Api, db: Database) -> None:
    api = sla_api
    rule = await create_rule(api)
    await outage(db)
    await collect(api, NOW)
    await routes_become(api, {"gpt-4o": "claude-sonnet-4.5"})
    await api.data("mutation($id: ID!) { deleteFailoverRule(id: $id) { id } }", {"id": rule["id"]})
    await routes_become(api, {})


async def test_a_restarted_replica_routes_from_its_first_request(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with started(settings, clock, jobs_enabled=False) as api:
        await create_rule(api)
        await outage(db)
        await collect(api, NOW)
    async with started(settings, clock, jobs_enabled=False) as restarted:
        assert restarted.runtime().enforcement().routes == {"gpt-4o": "claude-sonnet-4.5"}
        assert await routed_to(restarted) == "claude-sonnet-4.5"


async def test_every_replica_follows_a_transition_made_on_another(
    settings: Settings, clock: Clock, db: Database
) -> None:
    if not db.is_postgres:
        pytest.skip("one process per SQLite file: replicas share a PostgreSQL database")
    async with (
        started(settings, clock, jobs_enabled=False) as one,
        started(settings, clock, jobs_enabled=False) as two,
    ):
        rule = await create_rule(one)
        await outage(db)
        await collect(one, NOW)
        await routes_become(two, {"gpt-4o": "claude-sonnet-4.5"})
        assert await routed_to(two) == "claude-sonnet-4.5"
        await one.data("mutation($id: ID!) { deleteFailoverRule(id: $id) { id } }", {"id": rule["id"]})
        await routes_become(two, {})


async def test_a_storm_of_spendplanes_own_refusals_opens_no_violation_and_switches_no_rule_on(
    sla_api: Api, db: Database
) -> None:
    """Budget refusals LiteLLM logged as failures naming the provider and model asked for (its guardrail blocked
    them) are not the provider's: 200 of them beside 30 answered requests breach no error-rate SLA and trip no
    failover rule. Ten failures the provider answered, as a control, do both."""
    api = sla_api
    await define(
        api, name="Anthropic Sonnet", provider="anthropic", modelPattern="anthropic/claude-*", targetP95Ms=None
    )
    await create_rule(api, primaryModel="claude-sonnet-4.5", fallbackModel="gpt-4o")
    start = NOW - timedelta(minutes=10)
    await post_spend(api, [answered(start + timedelta(seconds=10 * i)) for i in range(30)])
    await post_spend(api, [blocked(start + timedelta(seconds=i)) for i in range(200)])
    await collect(api, NOW)

    (health,) = (await api.data("{ providerHealth { provider requests failures errorRate } }"))["providerHealth"]
    assert health == {"provider": "anthropic", "requests": 30, "failures": 0, "errorRate": 0.0}
    assert await active_violations(api) == []
    (state,) = await rules(api)
    assert (state["active"], state["lastMeasuredValue"], state["transitions"]) == (False, 0.0, [])
    assert await alert_types(db) == []
    assert await routed_to(api, "claude-sonnet-4.5") == "claude-sonnet-4.5"

    await post_spend(api, [provider_failed(NOW + timedelta(seconds=i)) for i in range(10)])
    await collect(api, NOW + timedelta(minutes=5))
    (violation,) = await active_violations(api)
    assert (violation["metric"], violation["requests"], violation["measuredValue"]) == ("ERROR_RATE", 40, 0.25)
    assert (await rules(api))[0]["active"] is True
