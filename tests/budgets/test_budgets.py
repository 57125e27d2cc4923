"""Budgets through GraphQL and the guide's REST admin API, with spend from LiteLLM_SpendLogs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from models.db import Database
from tests.conftest import NOW, Clock
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

BUDGET_FIELDS = """id name entityType entityId monthlyLimit softLimitPercent hardLimitPercent alertEmail
                   currentSpend remaining utilization status periodStart periodEnd createdAt updatedAt"""
CREATE = f"mutation($input: BudgetInput!) {{ createBudget(input: $input) {{ {BUDGET_FIELDS} }} }}"
UPDATE = (
    f"mutation($id: ID!, $input: BudgetUpdateInput!) {{ updateBudget(id: $id, input: $input) {{ {BUDGET_FIELDS} }} }}"
)
BUDGET = f"query($id: ID!) {{ budget(id: $id) {{ {BUDGET_FIELDS} }} }}"
BUDGETS = f"query($t: EntityType, $e: String) {{ budgets(entityType: $t, entityId: $e) {{ {BUDGET_FIELDS} }} }}"


def team_budget(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Engineering Team Monthly",
        "entityType": "TEAM",
        "entityId": "engineering",
        "monthlyLimit": "100",
        **overrides,
    }


async def create(api: Api, **overrides: Any) -> dict[str, Any]:
    data = await api.data(CREATE, {"input": team_budget(**overrides)})
    budget: dict[str, Any] = data["createBudget"]
    return budget


async def test_a_team_at_85_percent_of_its_budget_reads_warning(api: Api, db: Database) -> None:
    this_month = NOW.replace(day=3)
    await add_spend(
        db,
        SpendLog(50.0, this_month, team_id="engineering"),
        SpendLog(35.0, NOW - timedelta(hours=1), team_id="engineering"),
        SpendLog(40.0, NOW.replace(day=1, hour=0) - timedelta(seconds=1), team_id="engineering"),  # last month
        SpendLog(30.0, this_month, team_id="marketing"),  # another team
    )
    budget = await create(api)
    assert budget["status"] == "WARNING"
    assert budget["currentSpend"] == "85"
    assert budget["utilization"] == "0.85"
    assert budget["remaining"] == "15"
    assert budget["periodStart"] == "2026-11-01T00:00:00+00:00"
    assert budget["periodEnd"] == "2026-12-01T00:00:00+00:00"
    assert (await api.data(BUDGET, {"id": budget["id"]}))["budget"]["status"] == "WARNING"


async def test_defaults_come_from_the_thresholds_and_spend_is_exact(api: Api, db: Database) -> None:
    await add_spend(db, *[SpendLog(0.1, NOW - timedelta(minutes=i), team_id="engineering") for i in range(10)])
    budget = await create(api, monthlyLimit=1)
    assert budget["softLimitPercent"] == "0.8"
    assert budget["hardLimitPercent"] == "1"
    assert budget["currentSpend"] == "1"  # ten float 0.1s, summed exactly
    assert budget["status"] == "EXCEEDED"
    assert budget["remaining"] == "0"


async def test_status_follows_the_soft_and_hard_limits(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(70.0, NOW, user="alice"), SpendLog(95.0, NOW, user="bob"))
    alice = await create(api, entityType="USER", entityId="alice", softLimitPercent="0.75", hardLimitPercent="0.95")
    bob = await create(api, entityType="USER", entityId="bob", softLimitPercent="0.75", hardLimitPercent="0.95")
    carol = await create(api, entityType="USER", entityId="carol")
    assert (alice["status"], bob["status"], carol["status"]) == ("OK", "EXCEEDED", "OK")
    assert alice["remaining"] == "25"  # 100 x 0.95 - 70: what is left before blocking


async def test_the_global_budget_counts_all_spend(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(10, NOW, team_id="a"), SpendLog(20, NOW, user="u"), SpendLog(5, NOW))
    budget = await create(
        api,
        entityType="GLOBAL",
        entityId=None,
        name="Platform Monthly Cap",
        monthlyLimit="5000",
        softLimitPercent="0.75",
        hardLimitPercent="0.95",
    )
    assert budget["entityId"] is None
    assert budget["currentSpend"] == "35"


async def test_month_boundaries_are_utc_calendar_months(api: Api, db: Database, clock: Clock) -> None:
    clock.now = NOW.replace(month=12, day=31, hour=23, minute=59)
    await add_spend(
        db,
        SpendLog(7, NOW.replace(month=12, day=1, hour=0, minute=0, second=0), team_id="engineering"),
        SpendLog(9, NOW.replace(day=30, hour=23, minute=59, second=59), team_id="engineering"),
    )
    budget = await create(api)
    assert budget["currentSpend"] == "7"
    assert budget["periodEnd"] == "2027-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"monthlyLimit": "0"}, "monthlyLimit"),
        ({"monthlyLimit": "-5"}, "monthlyLimit"),
        ({"monthlyLimit": "0.0000000001"}, "monthlyLimit"),
        ({"softLimitPercent": "0"}, "softLimitPercent"),
        ({"hardLimitPercent": "-1"}, "hardLimitPercent"),
        ({"softLimitPercent": "0.9", "hardLimitPercent": "0.8"}, "softLimitPercent"),
        ({"entityId": None}, "entityId"),
        ({"entityId": "   "}, "entityId"),
        ({"entityType": "GLOBAL", "entityId": "engineering"}, "entityId"),
        ({"alertEmail": "not-an-email"}, "alertEmail"),
        ({"name": ""}, "name"),
    ],
)
async def test_invalid_budgets_are_refused_naming_the_field(api: Api, overrides: dict[str, Any], field: str) -> None:
    error = await api.error(CREATE, {"input": team_budget(**overrides)})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == field
    assert error["message"].startswith(f"{field}:")
    assert (await api.data(BUDGETS))["budgets"] == []  # nothing half-written


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", True])
async def test_a_malformed_amount_is_bad_user_input_naming_the_field(api: Api, value: object) -> None:
    error = await api.error(CREATE, {"input": team_budget(monthlyLimit=value)})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "monthlyLimit" in error["message"]


async def test_a_second_budget_for_the_same_entity_is_refused(api: Api) -> None:
    await create(api)
    error = await api.error(CREATE, {"input": team_budget(name="again")})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "entityId"}
    await create(api, entityType="USER")  # a user may share the id of a team
    await create(api, entityType="GLOBAL", entityId=None)
    error = await api.error(CREATE, {"input": team_budget(entityType="GLOBAL", entityId=None)})
    assert error["extensions"]["field"] == "entityType"


async def test_update_changes_only_what_is_given(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(600, NOW, team_id="engineering"))
    budget = await create(api, monthlyLimit="500", alertEmail="Lead@Example.com")
    assert budget["alertEmail"] == "Lead@example.com"
    updated = (
        await api.data(UPDATE, {"id": budget["id"], "input": {"monthlyLimit": "750", "softLimitPercent": "0.7"}})
    )["updateBudget"]
    assert (updated["monthlyLimit"], updated["softLimitPercent"], updated["name"]) == (
        "750",
        "0.7",
        budget["name"],
    )
    assert updated["alertEmail"] == "Lead@example.com"
    assert updated["status"] == "WARNING"
    cleared = (await api.data(UPDATE, {"id": budget["id"], "input": {"alertEmail": None}}))["updateBudget"]
    assert cleared["alertEmail"] is None


async def test_invalid_updates_are_refused_and_change_nothing(api: Api) -> None:
    budget = await create(api, softLimitPercent="0.5", hardLimitPercent="0.9")
    error = await api.error(UPDATE, {"id": budget["id"], "input": {"softLimitPercent": "0.95"}})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "softLimitPercent"}
    error = await api.error(UPDATE, {"id": budget["id"], "input": {"monthlyLimit": None}})
    assert error["extensions"]["field"] == "monthlyLimit"
    error = await api.error(UPDATE, {"id": budget["id"], "input": {"name": "x", "monthlyLimit": "-1"}})
    assert error["extensions"]["field"] == "monthlyLimit"
    again = (await api.data(BUDGET, {"id": budget["id"]}))["budget"]
    assert (again["softLimitPercent"], again["name"], again["monthlyLimit"]) == ("0.5", budget["name"], "100")


async def test_unknown_ids_are_not_found(api: Api) -> None:
    for query, variables in [
        (BUDGET, {"id": "nope"}),
        (UPDATE, {"id": "9f0e4b4e-4f4b-4b4e-8f4b-4b4e4f4b4b4e", "input": {"name": "x"}}),
        ("mutation($id: ID!) { deleteBudget(id: $id) { id } }", {"id": "nope"}),
    ]:
        error = await api.error(query, variables)
        assert error["extensions"]["code"] == "NOT_FOUND"


async def test_delete_removes_the_budget(api: Api) -> None:
    budget = await create(api)
    deleted = await api.data("mutation($id: ID!) { deleteBudget(id: $id) { id name } }", {"id": budget["id"]})
    assert deleted["deleteBudget"] == {"id": budget["id"], "name": budget["name"]}
    assert (await api.data(BUDGETS))["budgets"] == []


async def test_budgets_filter_by_entity(api: Api) -> None:
    await create(api)
    await create(api, entityType="USER", entityId="alice")
    teams = (await api.data(BUDGETS, {"t": "TEAM"}))["budgets"]
    assert [b["entityId"] for b in teams] == ["engineering"]
    alice = (await api.data(BUDGETS, {"e": "alice"}))["budgets"]
    assert [b["entityType"] for b in alice] == ["USER"]


async def test_a_scoped_key_sees_only_its_own_team_and_user(api: Api, db: Database) -> None:
    await add_spend(
        db,
        SpendLog(12, NOW, team_id="engineering", user="alice"),
        SpendLog(99, NOW, team_id="marketing", user="bob"),
    )
    engineering = await create(api)
    marketing = await create(api, entityId="marketing", name="Marketing")
    alice = await create(api, entityType="USER", entityId="alice", name="Alice")
    await create(api, entityType="GLOBAL", entityId=None, name="Cap")
    await add_virtual_key(db, "sk-alice-1", user_id="alice", team_id="engineering")
    token = await api.login("sk-alice-1")

    visible = (await api.data(BUDGETS, token=token))["budgets"]
    assert sorted(b["id"] for b in visible) == sorted([engineering["id"], alice["id"]])
    assert (await api.data(BUDGET, {"id": engineering["id"]}, token=token))["budget"]["currentSpend"] == "12"
    error = await api.error(BUDGET, {"id": marketing["id"]}, token=token)
    assert error["extensions"]["code"] == "NOT_FOUND"  # another scope's budget is named in no answer
    error = await api.error(CREATE, {"input": team_budget(entityId="engineering-2")}, token=token)
    assert error["extensions"]["code"] == "FORBIDDEN"
    error = await api.error(UPDATE, {"id": engineering["id"], "input": {"monthlyLimit": "1"}}, token=token)
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert (await api.data(BUDGET, {"id": engineering["id"]}))["budget"]["monthlyLimit"] == "100"


async def test_a_viewer_cannot_tell_another_scopes_budget_from_a_missing_id(api: Api, db: Database) -> None:
    """Out of scope and missing answer alike, byte for byte apart from the id, on every route taking a budget id
    (an existence oracle otherwise); the admin still reads the one and gets NOT_FOUND only for the other."""
    marketing = (await create(api, entityId="marketing", name="Marketing"))["id"]
    missing = str(uuid.uuid4())
    await add_virtual_key(db, "sk-alice-1", user_id="alice", team_id="engineering")
    token = await api.login("sk-alice-1")

    async def answers(budget_id: str) -> list[tuple[int, str]]:
        headers = api.bearer(token)
        url = f"/api/v1/budgets/{budget_id}"
        responses = [
            await api.client.post("/graphql", json={"query": BUDGET, "variables": {"id": budget_id}}, headers=headers),
            await api.client.get(url, headers=headers),
            await api.client.get(f"{url}/forecast", headers=headers),
            await api.client.put(url, json={"monthly_limit": 1}, headers=headers),
            await api.client.delete(url, headers=headers),
        ]
        return [(r.status_code, r.text.replace(budget_id, "<id>")) for r in responses]

    out_of_scope, absent = await answers(marketing), await answers(missing)
    assert out_of_scope == absent
    error = (await api.error(BUDGET, {"id": marketing}, token=token))["extensions"]
    assert (error["code"], error["field"]) == ("NOT_FOUND", "id")
    assert [status for status, _ in out_of_scope[1:3]] == [404, 404]
    assert '"field":"id"' in out_of_scope[1][1].replace(" ", "")
    # The admin: the budget is there, the missing id is NOT_FOUND.
    assert (await api.data(BUDGET, {"id": marketing}))["budget"]["id"] == marketing
    assert (await api.error(BUDGET, {"id": missing}))["extensions"]["code"] == "NOT_FOUND"
    assert (await api.client.get(f"/api/v1/budgets/{missing}", headers=api.bearer())).status_code == 404


async def test_without_a_token_every_operation_is_unauthenticated(api: Api) -> None:
    for query in [BUDGETS, "{ __schema { types { name } } }", "{ settings { costTrackingEnabled } }"]:
        error = await api.error(query, token=None)
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
    error = await api.error(CREATE, {"input": team_budget()}, token="not-a-jwt")
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert (await api.data(BUDGETS))["budgets"] == []


# ------------------------------------------------------------------------------------------ the guide's REST API


async def test_the_guides_rest_examples_work_as_written(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(42.58, NOW, team_id="engineering"))
    created = await api.client.post(
        "/api/v1/budgets",
        headers=api.bearer(),
        json={
            "name": "Engineering Team Monthly",
            "entity_type": "team",
            "entity_id": "engineering",
            "monthly_limit": 500.00,
            "soft_limit_percent": 0.8,
            "hard_limit_percent": 1.0,
            "alert_email": "eng-lead@example.com",
        },
    )
    assert created.status_code == 201, created.text
    budget = created.json()
    assert (budget["current_spend"], budget["monthly_limit"], budget["status"]) == (42.58, 500, "ok")
    glob = await api.client.post(
        "/api/v1/budgets",
        headers=api.bearer(),
        json={
            "name": "Platform Monthly Cap",
            "entity_type": "global",
            "monthly_limit": 5000.00,
            "soft_limit_percent": 0.75,
            "hard_limit_percent": 0.95,
            "alert_email": "finance@example.com",
        },
    )
    assert glob.status_code == 201, glob.text
    updated = await api.client.put(
        f"/api/v1/budgets/{budget['id']}",
        headers=api.bearer(),
        json={"monthly_limit": 750.00, "soft_limit_percent": 0.7},
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["monthly_limit"], updated.json()["soft_limit_percent"]) == (750, 0.7)
    listed = await api.client.get("/api/v1/budgets", headers=api.bearer())
    assert [b["entity_type"] for b in listed.json()] == ["global", "team"]
    one = await api.client.get(f"/api/v1/budgets/{budget['id']}", headers=api.bearer())
    assert one.json()["monthly_limit"] == 750
    gone = await api.client.delete(f"/api/v1/budgets/{budget['id']}", headers=api.bearer())
    assert gone.status_code == 200
    assert (await api.client.get(f"/api/v1/budgets/{budget['id']}", headers=api.bearer())).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "entity_type": "team", "entity_id": "t", "monthly_limit": -1}, "monthly_limit"),
        ({"name": "x", "entity_type": "squad", "entity_id": "t", "monthly_limit": 1}, "entity_type"),
        ({"name": "x", "entity_type": "team", "monthly_limit": 1}, "entity_id"),
        ({"name": "x", "entity_type": "team", "entity_id": "t"}, "monthly_limit"),
        ({"name": "x", "entity_type": "team", "entity_id": "t", "monthly_limit": "ten"}, "monthly_limit"),
        (
            {"name": "x", "entity_type": "team", "entity_id": "t", "monthly_limit": 1, "colour": "red"},
            "colour",
        ),
        (
            {"name": "x", "entity_type": "team", "entity_id": "t", "monthly_limit": 1, "alert_email": "@"},
            "alert_email",
        ),
    ],
)
async def test_rest_refuses_bad_budgets_with_a_400_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    response = await api.client.post("/api/v1/budgets", headers=api.bearer(), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    assert response.json()["error"]["field"] == field


async def test_rest_needs_a_token(api: Api) -> None:
    response = await api.client.get("/api/v1/budgets")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"] == "Bearer"
