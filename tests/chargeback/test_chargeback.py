"""Chargeback: allocation rules (at most 100% per team and type), statements through their lifecycle (draft ->
finalized -> exported), frozen after finalize while late spend shows up as adjustments, and the CSV, JSON and
SAP (FI journal, CO reposting) exports."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from models.db import Database
from resolvers.chargeback.splitting import apportion
from tests.conftest import NOW
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

RULE_FIELDS = "id name teamId allocationType allocationTarget allocationPercent metadata"
CREATE_RULE = f"mutation($input: AllocationRuleInput!) {{ createAllocationRule(input: $input) {{ {RULE_FIELDS} }} }}"
LINES = "kind teamId allocationType allocationTarget percent cost posted adjustsPeriod ruleName metadata"
REPORT_FIELDS = f"""id period status totalCost allocatedCost unallocatedCost adjustmentCost revision
    lines {{ {LINES} }} byType {{ allocationType allocated unallocated }} currentTotal difference"""
GENERATE = f"mutation($p: String!) {{ generateChargebackReport(period: $p) {{ {REPORT_FIELDS} }} }}"
FINALIZE = f"mutation($id: ID!) {{ finalizeChargebackReport(id: $id) {{ {REPORT_FIELDS} }} }}"
EXPORT = """mutation($id: ID!, $format: ChargebackExportFormat!, $layout: SapLayout! = FI_JOURNAL) {
  exportChargebackReport(id: $id, format: $format, sapLayout: $layout) {
    format filename contentType url content controlTotal documents report { status } } }"""
REPORT = f"query($id: ID!) {{ chargebackReport(id: $id) {{ {REPORT_FIELDS} }} }}"
OCTOBER = datetime(2026, 10, 12, 9, 0, tzinfo=UTC)
OCT_TOTAL = """{ costReport(period: CUSTOM, startDate: "2026-10-01", endDate: "2026-10-31") { totalCost } }"""


async def rule(api: Api, **fields: Any) -> dict[str, Any]:
    found: dict[str, Any] = (await api.data(CREATE_RULE, {"input": fields}))["createAllocationRule"]
    return found


async def setup_october(api: Api, db: Database) -> None:
    await add_spend(
        db,
        SpendLog(60.000000001, OCTOBER, team_id="engineering"),
        SpendLog(40, OCTOBER + timedelta(days=3), team_id="engineering"),
        SpendLog(30, OCTOBER, team_id="ops"),
        SpendLog(5, OCTOBER, team_id=None),
        SpendLog(9, NOW, team_id="engineering"),  # November
    )
    await rule(
        api,
        teamId="engineering",
        allocationType="COST_CENTER",
        allocationTarget="CC-1234",
        allocationPercent="60",
        metadata={"gl_account": "0000620000", "sap_cost_center": "0000004711", "company_code": "0100"},
    )
    await rule(
        api, teamId="engineering", allocationType="COST_CENTER", allocationTarget="CC-5678", allocationPercent="30"
    )
    await rule(api, teamId="engineering", allocationType="PROJECT", allocationTarget="PROJ-AI-001")
    await rule(api, teamId="ops", allocationType="DEPARTMENT", allocationTarget="DEP-OPS", allocationPercent="100")


def _lines(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (x["kind"], x["teamId"], x["allocationType"], x["allocationTarget"], x["percent"], x["cost"], x["posted"])
        for x in report["lines"]
    ]


async def test_rules_default_to_100_percent_and_may_not_pass_100_per_team_and_type(api: Api) -> None:
    first = await rule(api, teamId="eng", allocationType="COST_CENTER", allocationTarget="CC-1", allocationPercent="70")
    assert first["name"] == "eng to CC-1" and first["allocationPercent"] == "70"
    error = await api.error(
        CREATE_RULE,
        {
            "input": {
                "teamId": "eng",
                "allocationType": "COST_CENTER",
                "allocationTarget": "CC-2",
                "allocationPercent": "30.5",
            }
        },
    )
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "allocationPercent"}
    assert "30%" in error["message"]
    whole = await rule(api, teamId="eng", allocationType="PROJECT", allocationTarget="P-1")
    assert whole["allocationPercent"] == "100"  # another type: its own 100%
    for bad, field in (
        ({"allocationTarget": "CC-1"}, "allocationTarget"),
        ({"allocationTarget": "CC-9", "allocationPercent": "0"}, "allocationPercent"),
        ({"allocationTarget": "CC-9", "allocationPercent": "10", "metadata": {"gl_account": 620000}}, "metadata"),
        ({"allocationTarget": "  ", "allocationPercent": "10"}, "allocationTarget"),
    ):
        error = await api.error(CREATE_RULE, {"input": {"teamId": "eng", "allocationType": "COST_CENTER", **bad}})
        assert error["extensions"]["field"] == field, bad
    update = await api.gql(
        'mutation($id: ID!) { updateAllocationRule(id: $id, input: {allocationPercent: "100"}) { id } }',
        {"id": first["id"]},
    )
    assert update["data"]["updateAllocationRule"]["id"] == first["id"]
    rules = (await api.data('{ allocationRules(teamId: "eng") { allocationTarget allocationPercent } }'))[
        "allocationRules"
    ]
    assert rules == [
        {"allocationTarget": "CC-1", "allocationPercent": "100"},
        {"allocationTarget": "P-1", "allocationPercent": "100"},
    ]


async def test_rules_through_the_guides_rest_api(api: Api, db: Database) -> None:
    created = await api.client.post(
        "/api/v1/cost-allocation/rules",
        headers=api.bearer(),
        json={
            "name": "Engineering to CC-1234",
            "team_id": "engineering-team-uuid",
            "allocation_type": "cost_center",
            "allocation_target": "CC-1234",
            "allocation_percent": 100.0,
            "metadata": {"gl_account": "6200-AI-SERVICES"},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["allocation_percent"], body["metadata"]) == (100, {"gl_account": "6200-AI-SERVICES"})
    listed = await api.client.get("/api/v1/cost-allocation/rules", headers=api.bearer())
    assert [r["id"] for r in listed.json()] == [body["id"]]
    changed = await api.client.put(
        f"/api/v1/cost-allocation/rules/{body['id']}", headers=api.bearer(), json={"allocation_percent": 75}
    )
    assert changed.json()["allocation_percent"] == 75
    assert (
        await api.client.delete(f"/api/v1/cost-allocation/rules/{body['id']}", headers=api.bearer())
    ).status_code == 200
    assert (
        await api.client.delete(f"/api/v1/cost-allocation/rules/{body['id']}", headers=api.bearer())
    ).status_code == 404
    await add_virtual_key(db, "sk-viewer", user_id="ann", team_id="engineering-team-uuid")
    viewer = await api.login("sk-viewer")
    refused = await api.client.post(
        "/api/v1/cost-allocation/rules",
        headers=api.bearer(viewer),
        json={"team_id": "x", "allocation_type": "project", "allocation_target": "P"},
    )
    assert refused.status_code == 403


async def test_rules_past_100_percent_are_refused_with_the_400_the_openapi_document_describes(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    for method, path in (("post", "/api/v1/cost-allocation/rules"), ("put", "/api/v1/cost-allocation/rules/{rule_id}")):
        refusal = document["paths"][path][method]["responses"]["400"]
        assert "add up to more than 100" in refusal["description"], (method, path)
        assert refusal["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    rule = {"team_id": "eng", "allocation_type": "project", "allocation_target": "P-1", "allocation_percent": 60}
    made = await api.client.post("/api/v1/cost-allocation/rules", headers=api.bearer(), json=rule)
    assert made.status_code == 201, made.text
    other = {**rule, "allocation_target": "P-2", "allocation_percent": 50}
    refused = await api.client.post("/api/v1/cost-allocation/rules", headers=api.bearer(), json=other)
    assert (refused.status_code, refused.json()["error"]["field"]) == (400, "allocation_percent")
    fits = await api.client.post(
        "/api/v1/cost-allocation/rules", headers=api.bearer(), json={**other, "allocation_percent": 40}
    )
    assert fits.status_code == 201, fits.text
    raised = await api.client.put(
        f"/api/v1/cost-allocation/rules/{fits.json()['id']}", headers=api.bearer(), json={"allocation_percent": 41}
    )
    assert (raised.status_code, raised.json()["error"]["field"]) == (400, "allocation_percent")


async def test_a_statement_splits_each_teams_spend_exactly_and_matches_the_cost_report(api: Api, db: Database) -> None:
    await setup_october(api, db)
    report = (await api.data(GENERATE, {"p": "2026-10"}))["generateChargebackReport"]
    assert (report["status"], report["revision"]) == ("DRAFT", 1)
    assert report["totalCost"] == (await api.data(OCT_TOTAL))["costReport"]["totalCost"] == "135.000000001"
    assert _lines(report) == [
        ("ALLOCATION", "engineering", "COST_CENTER", "CC-1234", "60", "60.000000001", True),
        ("ALLOCATION", "engineering", "COST_CENTER", "CC-5678", "30", "30", True),
        ("UNALLOCATED", "engineering", "COST_CENTER", None, "10", "10", True),
        ("ALLOCATION", "engineering", "PROJECT", "PROJ-AI-001", "100", "100.000000001", False),
        ("ALLOCATION", "ops", "DEPARTMENT", "DEP-OPS", "100", "30", True),
        ("UNALLOCATED", None, None, None, "100", "5", True),
    ]
    assert (report["allocatedCost"], report["unallocatedCost"], report["adjustmentCost"]) == (
        "120.000000001",
        "15",
        "0",
    )
    assert report["byType"][1] == {"allocationType": "PROJECT", "allocated": "100.000000001", "unallocated": "35"}
    assert report["lines"][0]["metadata"]["sap_cost_center"] == "0000004711"
    assert (report["currentTotal"], report["difference"]) == ("135.000000001", "0")


def test_apportioning_is_exact_and_fair() -> None:
    assert apportion(100, [Decimal("33.333333"), Decimal("33.333333"), Decimal("33.333334")]) == [33, 33, 34]
    assert apportion(10, [Decimal(50), Decimal(50)]) == [5, 5]
    assert apportion(-7, [Decimal(50), Decimal(50)]) == [-4, -3]
    assert sum(apportion(123_456_789, [Decimal("12.5"), Decimal("0.000001"), Decimal("87.499999")])) == 123_456_789


async def test_the_lifecycle_draft_finalized_exported_and_a_frozen_statement_never_changes(
    api: Api, db: Database
) -> None:
    await setup_october(api, db)
    draft = (await api.data(GENERATE, {"p": "2026-10"}))["generateChargebackReport"]
    error = await api.error(EXPORT, {"id": draft["id"], "format": "CSV"})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"} and "finalize it" in error["message"]
    rest = await api.client.get(f"/api/v1/chargeback/reports/{draft['id']}/export?format=csv", headers=api.bearer())
    assert rest.status_code == 400
    # Regenerating a draft replaces it in place.
    await add_spend(db, SpendLog(1, OCTOBER, team_id="ops"))
    again = (await api.data(GENERATE, {"p": "2026-10"}))["generateChargebackReport"]
    assert (again["id"], again["revision"], again["totalCost"]) == (draft["id"], 2, "136.000000001")
    november = (await api.data(GENERATE, {"p": "2026-11"}))["generateChargebackReport"]
    assert (await api.error(FINALIZE, {"id": november["id"]}))["extensions"]["field"] == "id"  # not over yet

    final = (await api.data(FINALIZE, {"id": draft["id"]}))["finalizeChargebackReport"]
    assert final["status"] == "FINALIZED"
    assert (await api.error(FINALIZE, {"id": draft["id"]}))["extensions"]["code"] == "BAD_USER_INPUT"
    frozen_lines = final["lines"]

    # Late October spend and a rule change: the finalized statement stays as it was.
    await add_spend(db, SpendLog(7.5, OCTOBER + timedelta(days=1), team_id="engineering"))
    rules = (await api.data('{ allocationRules(teamId: "ops") { id } }'))["allocationRules"]
    await api.data("mutation($id: ID!) { deleteAllocationRule(id: $id) { id } }", {"id": rules[0]["id"]})
    refused = await api.error(GENERATE, {"p": "2026-10"})
    assert refused["extensions"]["field"] == "period" and "finalized" in refused["message"]
    still = (await api.data(REPORT, {"id": draft["id"]}))["chargebackReport"]
    assert (still["totalCost"], still["lines"], still["status"]) == ("136.000000001", frozen_lines, "FINALIZED")
    assert (still["currentTotal"], still["difference"]) == ("143.500000001", "7.5")

    # ... and the next statement carries the late spend as adjustments, split by the rules as they are now.
    november = (await api.data(GENERATE, {"p": "2026-11"}))["generateChargebackReport"]
    adjustments = [x for x in _lines(november) if x[0] == "ADJUSTMENT"]
    assert adjustments == [
        ("ADJUSTMENT", "engineering", "COST_CENTER", "CC-1234", "60", "4.5", True),
        ("ADJUSTMENT", "engineering", "COST_CENTER", "CC-5678", "30", "2.25", True),
        ("ADJUSTMENT", "engineering", "COST_CENTER", None, "10", "0.75", True),
        ("ADJUSTMENT", "engineering", "PROJECT", "PROJ-AI-001", "100", "7.5", False),
    ]
    assert {x["adjustsPeriod"] for x in november["lines"] if x["kind"] == "ADJUSTMENT"} == {"2026-10"}
    assert (november["totalCost"], november["adjustmentCost"]) == ("9", "7.5")

    exported = (await api.data(EXPORT, {"id": draft["id"], "format": "JSON"}))["exportChargebackReport"]
    assert exported["report"]["status"] == "EXPORTED"
    assert json.loads(exported["content"])["total_cost"] == "136.000000001"
    again_exported = await api.client.get(f"/api/v1/chargeback/reports/{draft['id']}/export", headers=api.bearer())
    assert again_exported.status_code == 200 and again_exported.headers["content-disposition"].endswith(
        'filename="chargeback_2026-10.csv"'
    )
    assert (await api.data(REPORT, {"id": draft["id"]}))["chargebackReport"]["lines"] == frozen_lines


async def test_csv_json_and_sap_exports(api: Api, db: Database) -> None:
    await setup_october(api, db)
    draft = (await api.data(GENERATE, {"p": "2026-10"}))["generateChargebackReport"]
    await api.data(FINALIZE, {"id": draft["id"]})

    csv_export = (await api.data(EXPORT, {"id": draft["id"], "format": "CSV"}))["exportChargebackReport"]
    rows = list(csv.DictReader(io.StringIO(csv_export["content"])))
    assert len(rows) == 6 and rows[0]["allocation_target"] == "CC-1234"
    assert sum(Decimal(r["cost_usd"]) for r in rows if r["posted"] == "true") == Decimal("135.000000001")
    assert json.loads(rows[0]["metadata"])["gl_account"] == "0000620000"

    response = await api.client.get(
        f"/api/v1/chargeback/reports/{draft['id']}/export", params={"format": "sap"}, headers=api.bearer()
    )
    assert response.status_code == 200
    assert 'filename="chargeback_2026-10_sap_fi.csv"' in response.headers["content-disposition"]
    assert '"BUKRS"' in response.text.splitlines()[0]  # every cell quoted: codes stay text
    fi = list(csv.DictReader(io.StringIO(response.text)))
    balance: dict[str, Decimal] = defaultdict(Decimal)
    for row in fi:
        balance[row["DOC_KEY"]] += Decimal(row["WRBTR"]) * (1 if row["SHKZG"] == "S" else -1)
        assert len(row["BKTXT"]) <= 25 and len(row["SGTXT"]) <= 50 and row["WAERS"] == "USD"
        assert row["BLDAT"] == row["BUDAT"] == "31.10.2026"
    assert set(balance.values()) == {Decimal(0)} and len(balance) == 2  # one balanced document per company code
    debits = [(r["BUKRS"], r["KOSTL"], r["HKONT"], r["WRBTR"]) for r in fi if r["SHKZG"] == "S"]
    assert debits == [
        ("0100", "0000004711", "0000620000", "60.00"),
        ("1000", "CC-5678", "0000620000", "30.00"),
        ("1000", "DEP-OPS", "0000620000", "30.00"),
    ]
    assert [r["SGTXT"] for r in fi if r["SHKZG"] == "S"][1:] == ["AI usage engineering 30%", "AI usage ops 100%"]
    credits = [(r["KOSTL"], r["ITEMNO_ACC"]) for r in fi if r["SHKZG"] == "H"]
    assert credits == [("0000100000", "0000000002"), ("0000100000", "0000000003")]
    assert response.headers["x-control-total"] == "120.00" and response.headers["x-documents"] == "2"

    co = (await api.data(EXPORT, {"id": draft["id"], "format": "SAP", "layout": "CO_REPOSTING"}))[
        "exportChargebackReport"
    ]
    co_rows = list(csv.DictReader(io.StringIO(co["content"])))
    assert [(r["SEND_KOSTL"], r["REC_KOSTL"], r["WTGBTR"], r["KSTAR"]) for r in co_rows] == [
        ("0000100000", "0000004711", "60.00", "0000620000"),
        ("0000100000", "CC-5678", "30.00", "0000620000"),
        ("0000100000", "DEP-OPS", "30.00", "0000620000"),
    ]
    assert co["controlTotal"] == "120" and co["report"]["status"] == "EXPORTED"


async def test_bad_periods_and_ids_are_refused(api: Api, db: Database) -> None:
    for period in ("2026-13", "26-01", "2026-12", "november"):
        error = await api.error(GENERATE, {"p": period})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "period"}, period
    assert (await api.error(REPORT, {"id": "nope"}))["extensions"]["code"] == "NOT_FOUND"
    rest = await api.client.post(
        "/api/v1/chargeback/reports/generate", headers=api.bearer(), json={"period": "2026-02"}
    )
    assert rest.status_code == 200 and rest.json()["status"] == "draft" and rest.json()["total_cost"] == 0
    await add_virtual_key(db, "sk-v", user_id="ann", team_id="eng")
    viewer = await api.login("sk-v")
    assert (await api.error("{ chargebackReports { id } }", token=viewer))["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("layout", ["fi", "co"])
async def test_an_empty_statement_exports_a_header_only_sap_file(api: Api, layout: str) -> None:
    draft = await api.client.post(
        "/api/v1/chargeback/reports/generate", headers=api.bearer(), json={"period": "2026-09"}
    )
    report_id = draft.json()["id"]
    await api.client.post(f"/api/v1/chargeback/reports/{report_id}/finalize", headers=api.bearer())
    response = await api.client.get(
        f"/api/v1/chargeback/reports/{report_id}/export",
        params={"format": "sap", "layout": layout},
        headers=api.bearer(),
    )
    assert response.status_code == 200 and len(response.text.splitlines()) == 1


async def test_a_code_too_long_for_sap_refuses_the_sap_file_and_leaves_the_status(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(10, OCTOBER, team_id="engineering"))
    await rule(
        api, teamId="engineering", allocationType="COST_CENTER", allocationTarget="CC-1234",
        metadata={"gl_account": "6200-AI-SERVICES"},  # the guide's example: fine for CSV and JSON
    )  # fmt: skip
    draft = (await api.data(GENERATE, {"p": "2026-10"}))["generateChargebackReport"]
    await api.data(FINALIZE, {"id": draft["id"]})
    error = await api.error(EXPORT, {"id": draft["id"], "format": "SAP"})
    assert error["extensions"]["field"] == "format" and "6200-AI-SERVICES" in error["message"]
    assert (await api.data(REPORT, {"id": draft["id"]}))["chargebackReport"]["status"] == "FINALIZED"
    fine = (await api.data(EXPORT, {"id": draft["id"], "format": "CSV"}))["exportChargebackReport"]
    assert "6200-AI-SERVICES" in fine["content"] and fine["report"]["status"] == "EXPORTED"
