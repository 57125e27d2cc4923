"""SLA definitions and their violations, as the guide's "SLA Monitoring" section reads: a provider at 10% errors
breaches a 1% SLA and opens exactly one violation, later runs do not open another, and a violation is resolved by
hand or after enough healthy runs; bad definitions are refused naming the field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models.alerts import AlertDeliveryRow, AlertRow
from models.db import Database
from resolvers.platform.errors import InvalidInput
from resolvers.sla.definitions import compile_glob
from tests.conftest import NOW
from tests.sla.test_sla_health import add_calls, collect, traffic
from tests.support import Api, add_virtual_key

pytestmark = pytest.mark.litellm_tables

CREATE = """mutation($input: SlaDefinitionInput!) { createSlaDefinition(input: $input) {
  id name provider modelPattern targetP95Ms targetErrorRate targetAvailability evaluationWindowMinutes
  alertEmails } }"""
VIOLATIONS = """query($active: Boolean!) { slaViolations(activeOnly: $active) {
  id definitionId definitionName metric measuredValue targetValue lastMeasuredValue requests windowMinutes windowStart
  windowEnd openedAt healthyWindows active resolvedAt resolution resolvedBy alertId } }"""
RESOLVE = "mutation($id: ID!) { resolveSlaViolation(id: $id) { id active resolution resolvedBy resolvedAt } }"
GPT4O_SLA = {
    "name": "OpenAI GPT-4o SLA",
    "provider": "openai",
    "modelPattern": "gpt-4o*",
    "targetP95Ms": 3000,
    "targetErrorRate": 0.01,
    "evaluationWindowMinutes": 60,
    "alertEmails": ["oncall@example.com"],
}


async def define(api: Api, **fields: Any) -> dict[str, Any]:
    created: dict[str, Any] = (await api.data(CREATE, {"input": {**GPT4O_SLA, **fields}}))["createSlaDefinition"]
    return created


async def active_violations(api: Api) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await api.data(VIOLATIONS, {"active": True}))["slaViolations"]
    return found


async def alerts_of(db: Database, kind: str) -> list[AlertRow]:
    async with db.reader() as session:
        return list((await session.scalars(select(AlertRow).where(AlertRow.type == kind))).all())


async def test_ten_percent_errors_breach_a_one_percent_sla_and_open_exactly_one_violation(
    sla_api: Api, db: Database
) -> None:
    api = sla_api
    definition = await define(api)
    # openai gpt-4o: 100 requests, 10 failing with a 503, all well under the p95 target. Rows of other providers
    # and of models outside the pattern do not count.
    await add_calls(
        db,
        traffic(NOW - timedelta(minutes=50), 100, failures=10, code="503", latency_ms=800)
        + traffic(NOW - timedelta(minutes=50), 30, failures=30, provider="anthropic", model="gpt-4o")
        + traffic(NOW - timedelta(minutes=50), 30, failures=30, model="o3"),
    )
    await collect(api, NOW)

    (violation,) = await active_violations(api)
    assert violation["definitionId"] == definition["id"] and violation["definitionName"] == "OpenAI GPT-4o SLA"
    assert (violation["metric"], violation["measuredValue"], violation["targetValue"]) == ("ERROR_RATE", 0.1, 0.01)
    assert (violation["requests"], violation["windowMinutes"], violation["active"]) == (100, 60, True)
    assert violation["windowEnd"] == "2026-11-15T12:00:00+00:00"
    assert violation["windowStart"] == "2026-11-15T11:00:00+00:00"
    (alert,) = await alerts_of(db, "sla_violation")
    assert violation["alertId"] == alert.id and alert.severity == "critical"
    assert "error rate 10.00% over the last 60 min is above its target 1.00%" in alert.message
    async with db.reader() as session:
        targets = (await session.scalars(select(AlertDeliveryRow.target))).all()
    assert targets == ["oncall@example.com"]

    # The breach goes on: later runs update the open violation, never open a second one (nor alert again).
    await add_calls(db, traffic(NOW + timedelta(minutes=1), 20, failures=4, code="500"))
    await collect(api, NOW + timedelta(minutes=5))
    await collect(api, NOW + timedelta(minutes=10))
    (still,) = await active_violations(api)
    assert still["id"] == violation["id"]
    assert still["lastMeasuredValue"] == 14 / 120 and still["measuredValue"] == 0.1
    assert len(await alerts_of(db, "sla_violation")) == 1

    # Resolved by hand: no longer active, both in GraphQL and REST.
    resolved = (await api.data(RESOLVE, {"id": violation["id"]}))["resolveSlaViolation"]
    assert (resolved["active"], resolved["resolution"], resolved["resolvedBy"]) == (False, "MANUAL", "master-key")
    assert await active_violations(api) == []
    rest = await api.client.get("/api/v1/sla/violations/active", headers=api.bearer())
    assert (rest.status_code, rest.json()) == (200, [])
    again = (await api.data(RESOLVE, {"id": violation["id"]}))["resolveSlaViolation"]
    assert again["resolvedAt"] == resolved["resolvedAt"]  # resolving twice changes nothing
    everything = (await api.data(VIOLATIONS, {"active": False}))["slaViolations"]
    assert [(v["id"], v["active"]) for v in everything] == [(violation["id"], False)]


async def test_a_violation_resolves_itself_after_enough_healthy_runs(sla_api: Api, db: Database) -> None:
    api = sla_api
    await define(api)
    await add_calls(db, traffic(NOW - timedelta(minutes=50), 100, failures=10))
    await collect(api, NOW)
    (violation,) = await active_violations(api)

    later = NOW + timedelta(hours=2)  # the failures have left the window; the provider answers well now
    await add_calls(db, traffic(later - timedelta(minutes=50), 100))
    await collect(api, later)
    await collect(api, later + timedelta(minutes=5))
    (open_,) = await active_violations(api)
    assert open_["healthyWindows"] == 2 and open_["lastMeasuredValue"] == 0.0
    # A run that sees too few requests judges nothing: the count neither grows nor restarts.
    await collect(api, later + timedelta(minutes=60))
    assert (await active_violations(api))[0]["healthyWindows"] == 2
    await add_calls(db, traffic(later + timedelta(minutes=70), 100))
    await collect(api, later + timedelta(minutes=120))

    assert await active_violations(api) == []
    (closed,) = (await api.data(VIOLATIONS, {"active": False}))["slaViolations"]
    assert (closed["id"], closed["resolution"], closed["resolvedBy"]) == (
        violation["id"],
        "AUTO",
        "3 healthy runs in a row",
    )


async def test_a_breach_after_a_manual_resolution_opens_a_new_violation(sla_api: Api, db: Database) -> None:
    api = sla_api
    await define(api)
    await add_calls(db, traffic(NOW - timedelta(minutes=50), 100, failures=10))
    await collect(api, NOW)
    (first,) = await active_violations(api)
    await api.data(RESOLVE, {"id": first["id"]})
    await collect(api, NOW + timedelta(minutes=5))
    (second,) = await active_violations(api)
    assert second["id"] != first["id"]
    assert len(await alerts_of(db, "sla_violation")) == 2


async def test_each_breached_target_is_its_own_violation(sla_api: Api, db: Database) -> None:
    api = sla_api
    await define(api, targetP95Ms=500, targetAvailability=0.999, name="Strict")
    await add_calls(db, traffic(NOW - timedelta(minutes=50), 100, failures=10, code="429", latency_ms=800))
    await collect(api, NOW)
    found = {v["metric"]: v for v in await active_violations(api)}
    assert set(found) == {"ERROR_RATE", "AVAILABILITY", "LATENCY_P95"}
    assert (found["AVAILABILITY"]["measuredValue"], found["LATENCY_P95"]["measuredValue"]) == (0.9, 800.0)


async def test_removing_a_target_or_the_definition_resolves_its_violations_and_keeps_them(
    sla_api: Api, db: Database
) -> None:
    api = sla_api
    definition = await define(api, targetAvailability=0.999)
    await add_calls(db, traffic(NOW - timedelta(minutes=50), 100, failures=10))
    await collect(api, NOW)
    assert {v["metric"] for v in await active_violations(api)} == {"ERROR_RATE", "AVAILABILITY"}

    update = (
        "mutation($id: ID!) { updateSlaDefinition(id: $id, input: {targetAvailability: null}) { targetAvailability } }"
    )
    assert (await api.data(update, {"id": definition["id"]}))["updateSlaDefinition"]["targetAvailability"] is None
    assert [v["metric"] for v in await active_violations(api)] == ["ERROR_RATE"]

    await api.data("mutation($id: ID!) { deleteSlaDefinition(id: $id) { id } }", {"id": definition["id"]})
    assert await active_violations(api) == []
    kept = (await api.data(VIOLATIONS, {"active": False}))["slaViolations"]
    assert sorted((v["metric"], v["resolution"], v["definitionId"]) for v in kept) == [
        ("AVAILABILITY", "DEFINITION_CHANGED", None),
        ("ERROR_RATE", "DEFINITION_DELETED", None),
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"targetErrorRate": 1.5}, "targetErrorRate"),
        ({"targetAvailability": -0.1}, "targetAvailability"),
        ({"targetP95Ms": 0}, "targetP95Ms"),
        ({"targetP99Ms": -20}, "targetP99Ms"),
        ({"modelPattern": "gpt-[4o"}, "modelPattern"),
        ({"modelPattern": "gpt-[z-a]"}, "modelPattern"),
        ({"evaluationWindowMinutes": 4}, "evaluationWindowMinutes"),
        ({"evaluationWindowMinutes": 1441}, "evaluationWindowMinutes"),
        ({"targetP95Ms": None, "targetErrorRate": None}, "targetP95Ms"),
        ({"alertEmails": ["not an address"]}, "alertEmails"),
        ({"alertWebhookUrl": "ftp://hooks.example.com"}, "alertWebhookUrl"),
        ({"name": "  "}, "name"),
    ],
)
async def test_a_bad_definition_is_refused_naming_the_field(sla_api: Api, change: dict[str, Any], field: str) -> None:
    error = await sla_api.error(CREATE, {"input": {**GPT4O_SLA, **change}})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


async def test_the_guides_rest_api_creates_lists_updates_and_deletes_definitions(sla_api: Api, db: Database) -> None:
    api = sla_api
    guide = {
        "name": "OpenAI GPT-4o SLA",
        "provider": "openai",
        "model_pattern": "gpt-4o*",
        "target_p95_ms": 3000,
        "target_error_rate": 0.01,
        "target_availability": 0.999,
        "evaluation_window_minutes": 60,
    }
    created = await api.client.post("/api/v1/sla/definitions", json=guide, headers=api.bearer())
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in guide} == guide and body["alert_emails"] == [] and body["target_p50_ms"] is None
    listed = await api.client.get("/api/v1/sla/definitions", headers=api.bearer())
    assert [d["id"] for d in listed.json()] == [body["id"]]
    path = f"/api/v1/sla/definitions/{body['id']}"
    changed = await api.client.put(path, json={"target_error_rate": 0.02, "provider": None}, headers=api.bearer())
    assert changed.status_code == 200, changed.text
    assert (changed.json()["target_error_rate"], changed.json()["provider"]) == (0.02, None)
    bad = await api.client.put(path, json={"target_error_rate": 2}, headers=api.bearer())
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "target_error_rate")
    assert (await api.client.delete(path, headers=api.bearer())).status_code == 200
    assert (await api.client.get(path, headers=api.bearer())).status_code == 404
    missing = await api.client.post("/api/v1/sla/violations/nope/resolve", headers=api.bearer())
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")


async def test_viewers_read_slas_but_may_not_change_them(sla_api: Api, db: Database) -> None:
    api = sla_api
    await add_virtual_key(db, "sk-viewer", user_id="carol", team_id="eng")
    viewer = await api.login("sk-viewer")
    await define(api)
    assert len((await api.data("{ slaDefinitions { id } }", token=viewer))["slaDefinitions"]) == 1
    error = await api.error(CREATE, {"input": GPT4O_SLA}, token=viewer)
    assert error["extensions"]["code"] == "FORBIDDEN"
    rest = await api.client.post("/api/v1/sla/definitions", json={"name": "x"}, headers=api.bearer(viewer))
    assert rest.status_code == 403
    anonymous = await api.client.get("/api/v1/sla/health")
    assert anonymous.status_code == 401


def test_model_patterns_are_globs_over_the_whole_model_name() -> None:
    pattern = compile_glob("gpt-4o*")
    assert [bool(pattern.fullmatch(m)) for m in ("gpt-4o", "gpt-4o-mini", "gpt-4", "azure/gpt-4o")] == [
        True,
        True,
        False,
        False,
    ]
    assert compile_glob("claude-?-*").fullmatch("claude-3-haiku")
    assert compile_glob("gpt-[45]o").fullmatch("gpt-5o") and not compile_glob("gpt-[!45]o").fullmatch("gpt-4o")
    assert compile_glob("a.b+c").fullmatch("a.b+c") and not compile_glob("a.b").fullmatch("axb")
    assert compile_glob("[]]x").fullmatch("]x")
    with pytest.raises(InvalidInput, match="never closed"):
        compile_glob("gpt-[4o")


async def test_nul_characters_are_refused_never_sent_to_the_database(sla_api: Api) -> None:
    api = sla_api
    body = {"name": "bad\x00name", "target_error_rate": 0.01}
    created = await api.client.post("/api/v1/sla/definitions", json=body, headers=api.bearer())
    assert (created.status_code, created.json()["error"]["field"]) == (400, "name")
    resolved = await api.client.post("/api/v1/sla/violations/%00/resolve", headers=api.bearer())
    assert resolved.status_code == 404
    history = await api.client.get("/api/v1/sla/health/history", params={"model": "x\x00"}, headers=api.bearer())
    assert (history.status_code, history.json()["error"]["field"]) == (400, "model")
    error = await api.error(CREATE, {"input": {**GPT4O_SLA, "modelPattern": "gpt\x00*"}})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "modelPattern"}
