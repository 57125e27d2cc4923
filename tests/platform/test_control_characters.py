"""Names and ids never carry control characters: a budget named "x\\r\\nBcc: evil@example.com" would reach alert
email headers, CSV files and logs. Refused on create and update, on both faces, naming the field, with nothing
written."""

from __future__ import annotations

from typing import Any

import pytest

from resolvers.platform import validation
from resolvers.platform.errors import InvalidInput
from tests.support import Api

INJECTION = "x\r\nBcc: evil@example.com"

CREATE_BUDGET = "mutation($input: BudgetInput!) { createBudget(input: $input) { id name } }"
UPDATE_BUDGET = "mutation($id: ID!, $input: BudgetUpdateInput!) { updateBudget(id: $id, input: $input) { id } }"
BUDGET = "query($id: ID!) { budget(id: $id) { name } }"
CREATE_RULE = "mutation($input: AllocationRuleInput!) { createAllocationRule(input: $input) { id } }"
UPDATE_RULE = (
    "mutation($id: ID!, $input: AllocationRuleUpdateInput!) { updateAllocationRule(id: $id, input: $input) { id } }"
)
CREATE_SLA = "mutation($input: SlaDefinitionInput!) { createSlaDefinition(input: $input) { id } }"
UPDATE_SLA = (
    "mutation($id: ID!, $input: SlaDefinitionUpdateInput!) { updateSlaDefinition(id: $id, input: $input) { id } }"
)
CREATE_FAILOVER = "mutation($input: FailoverRuleInput!) { createFailoverRule(input: $input) { id } }"
UPDATE_FAILOVER = (
    "mutation($id: ID!, $input: FailoverRuleUpdateInput!) { updateFailoverRule(id: $id, input: $input) { id } }"
)
SET_PRICE = "mutation($input: ModelPriceInput!) { setModelPrice(input: $input) { model } }"

BUDGET_IN = {"name": "Eng", "entityType": "TEAM", "entityId": "eng", "limit": "10"}
RULE_IN = {"teamId": "eng", "allocationType": "COST_CENTER", "allocationTarget": "CC-1"}
SLA_IN = {"name": "GPT-4o", "modelPattern": "gpt-4o*", "targetErrorRate": 0.01}
FAILOVER_IN = {
    "primaryModel": "gpt-4o",
    "fallbackModel": "claude-sonnet-4.5",
    "triggerCondition": "ERROR_RATE",
    "triggerThreshold": 0.2,
}


@pytest.mark.parametrize(
    "bad",
    ["x\r\nBcc: evil@example.com", "a\tb", "a\nb", "esc\x1b[31m", "del\x7f", "n\x85el", "line\u2028sep", "nul\x00"],
)
def test_the_shared_check_refuses_every_control_character(bad: str) -> None:
    with pytest.raises(InvalidInput, match="control characters") as caught:
        validation.text("name", bad, max_length=200)
    assert caught.value.field == "name"
    with pytest.raises(InvalidInput, match="control characters"):
        validation.identifier("entity_id", bad)


def test_ordinary_names_pass_and_a_note_keeps_its_line_breaks() -> None:
    for fine in ("Équipe données — 東京", "team-42 (ops)", "emoji 👩‍💻 with a zero-width joiner"):
        assert validation.text("name", fine, max_length=200) == fine
    assert validation.text("note", "line one\nline two\tend", max_length=2000, multiline=True) == (
        "line one\nline two\tend"
    )
    with pytest.raises(InvalidInput):
        validation.text("note", "a\rb\x1b", max_length=2000, multiline=True)


@pytest.mark.parametrize(
    ("mutation", "values", "field"),
    [
        (CREATE_BUDGET, {**BUDGET_IN, "name": INJECTION}, "name"),
        (CREATE_BUDGET, {**BUDGET_IN, "entityId": "en\ng"}, "entityId"),
        (CREATE_BUDGET, {**BUDGET_IN, "alertEmail": "a@example.com\r\nBcc: evil@example.com"}, "alertEmail"),
        (CREATE_RULE, {**RULE_IN, "name": INJECTION}, "name"),
        (CREATE_RULE, {**RULE_IN, "teamId": "en\x1bg"}, "teamId"),
        (CREATE_RULE, {**RULE_IN, "allocationTarget": "CC\r\n1"}, "allocationTarget"),
        (CREATE_SLA, {**SLA_IN, "name": INJECTION}, "name"),
        (CREATE_SLA, {**SLA_IN, "provider": "open\x07ai"}, "provider"),
        (CREATE_SLA, {**SLA_IN, "modelPattern": "gpt\t*"}, "modelPattern"),
        (CREATE_FAILOVER, {**FAILOVER_IN, "primaryModel": "gpt-4o\r\nX"}, "primaryModel"),
        (CREATE_FAILOVER, {**FAILOVER_IN, "fallbackModel": "clau\u2028de"}, "fallbackModel"),
        (SET_PRICE, {"model": "my\x7fmodel", "inputPerMillion": "1", "outputPerMillion": "2"}, "model"),
    ],
)
async def test_graphql_refuses_control_characters_on_create_naming_the_field(
    api: Api, mutation: str, values: dict[str, Any], field: str
) -> None:
    error = await api.error(mutation, {"input": values})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


async def test_graphql_refuses_control_characters_on_update_and_changes_nothing(api: Api) -> None:
    budget = (await api.data(CREATE_BUDGET, {"input": BUDGET_IN}))["createBudget"]
    rule = (await api.data(CREATE_RULE, {"input": RULE_IN}))["createAllocationRule"]
    sla = (await api.data(CREATE_SLA, {"input": SLA_IN}))["createSlaDefinition"]
    failover = (await api.data(CREATE_FAILOVER, {"input": FAILOVER_IN}))["createFailoverRule"]
    for mutation, target, values, field in (
        (UPDATE_BUDGET, budget, {"name": INJECTION}, "name"),
        (UPDATE_RULE, rule, {"name": INJECTION}, "name"),
        (UPDATE_RULE, rule, {"allocationTarget": "CC\n2"}, "allocationTarget"),
        (UPDATE_SLA, sla, {"name": INJECTION}, "name"),
        (UPDATE_FAILOVER, failover, {"fallbackModel": "gpt-4o-mini\r\n\x00"}, "fallbackModel"),
    ):
        error = await api.error(mutation, {"id": target["id"], "input": values})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, mutation
    assert (await api.data(BUDGET, {"id": budget["id"]}))["budget"]["name"] == "Eng"


async def test_rest_refuses_control_characters_on_create_and_update_naming_the_field(api: Api) -> None:
    headers = api.bearer()
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/api/v1/budgets", {"name": INJECTION, "entity_type": "team", "entity_id": "eng", "limit": 10}, "name"),
        ("/api/v1/budgets", {"name": "Eng", "entity_type": "team", "entity_id": "e\rng", "limit": 10}, "entity_id"),
        (
            "/api/v1/cost-allocation/rules",
            {"name": INJECTION, "team_id": "eng", "allocation_type": "cost_center", "allocation_target": "CC-1"},
            "name",
        ),
        ("/api/v1/sla/definitions", {"name": INJECTION, "target_error_rate": 0.01}, "name"),
        (
            "/api/v1/sla/failover-rules",
            {
                "primary_model": "gpt\n4o",
                "fallback_model": "claude",
                "trigger_condition": "error_rate",
                "trigger_threshold": 0.2,
            },
            "primary_model",
        ),
    ]
    for path, body, field in cases:
        response = await api.client.post(path, json=body, headers=headers)
        assert (response.status_code, response.json()["error"]["field"]) == (400, field), (path, response.text)

    budget = await api.client.post(
        "/api/v1/budgets", json={"name": "Eng", "entity_type": "team", "entity_id": "eng", "limit": 10}, headers=headers
    )
    assert budget.status_code == 201, budget.text
    path = f"/api/v1/budgets/{budget.json()['id']}"
    changed = await api.client.put(path, json={"name": INJECTION}, headers=headers)
    assert (changed.status_code, changed.json()["error"]["field"]) == (400, "name")
    assert (await api.client.get(path, headers=headers)).json()["name"] == "Eng"
    sla = await api.client.post(
        "/api/v1/sla/definitions", json={"name": "GPT-4o", "target_error_rate": 0.01}, headers=headers
    )
    sla_path = f"/api/v1/sla/definitions/{sla.json()['id']}"
    changed = await api.client.put(sla_path, json={"name": "a\x1b[2Jb"}, headers=headers)
    assert (changed.status_code, changed.json()["error"]["field"]) == (400, "name")
