"""Cost exports: CSV, JSON and FOCUS 1.2 files streamed from the rollup and raw logs, reconciling with the report
to the nano-dollar; FOCUS rows carry every mandatory 1.2 column, one row per day, model and token meter."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from models.db import Database
from resolvers.reports import ReportPeriod
from resolvers.reports.focus import MANDATORY_COLUMNS
from tests.conftest import NOW
from tests.ledger import demo, refresh
from tests.support import Api, SpendLog, add_spend

pytestmark = pytest.mark.litellm_tables

EXPORT = """query($format: CostExportFormat!, $team: String) {
  exportCostReport(format: $format, period: MONTHLY, teamId: $team) { format filename contentType url content } }"""
TOTAL = "{ costReport(period: MONTHLY) { totalCost totalRequests totalInputTokens totalOutputTokens } }"

#: FOCUS 1.2, specification/columns/*.md at tag v1.2: the columns whose "Feature level" is Mandatory.
FOCUS_12_MANDATORY = {
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodEnd",
    "ChargePeriodStart", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity",
    "PricingUnit", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
}  # fmt: skip
#: Mandatory columns that may hold null (empty in CSV): ChargeClass is null unless a row corrects another.
NULLABLE = {"ChargeClass"}


async def download(api: Api, **params: str) -> Any:
    response = await api.client.get("/api/v1/reports/export", params=params, headers=api.bearer())
    assert response.status_code == 200, response.text
    return response


async def test_csv_and_json_exports_reconcile_with_the_report(api: Api, db: Database) -> None:
    await demo(db, rows=2000, days=30)
    await refresh(api)
    report = (await api.data(TOTAL))["costReport"]
    response = await download(api, format="csv", period="monthly")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="cost_report_2026-11-01_2026-11-15.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal(report["totalCost"])
    assert sum(int(r["requests"]) for r in rows) == report["totalRequests"]
    assert sum(int(r["input_tokens"]) for r in rows) == report["totalInputTokens"]
    assert len(
        {(r["date"], r["team_id"], r["user_id"], r["model_group"], r["model"], r["provider"]) for r in rows}
    ) == len(rows)
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)

    body = (await download(api, format="json", period="monthly")).json(parse_float=Decimal)
    assert body["total_cost"] == Decimal(report["totalCost"]) == sum(r["cost_usd"] for r in body["rows"])
    assert body["total_requests"] == report["totalRequests"] and len(body["rows"]) == len(rows)


async def test_the_focus_export_has_every_mandatory_column_and_one_row_per_day_model_and_meter(
    api: Api, db: Database
) -> None:
    await demo(db, rows=2000, days=30)
    await refresh(api)
    report = (await api.data(TOTAL))["costReport"]
    response = await download(api, format="focus", period="monthly")
    assert 'filename="focus_cost_2026-11-01_2026-11-15.csv"' in response.headers["content-disposition"]
    reader = csv.DictReader(io.StringIO(response.text))
    assert set(reader.fieldnames or ()) >= FOCUS_12_MANDATORY and set(MANDATORY_COLUMNS) == FOCUS_12_MANDATORY
    rows = list(reader)
    for row in rows:
        assert all(row[c] for c in FOCUS_12_MANDATORY - NULLABLE), row
        assert row["ChargeCategory"] == "Usage" and row["BillingCurrency"] == "USD"
        assert row["SkuMeter"] in {"Input Tokens", "Output Tokens"} and row["PricingUnit"] == "1000000 Tokens"
        assert row["BilledCost"] == row["EffectiveCost"] == row["ContractedCost"]
        assert row["ChargePeriodStart"].endswith("T00:00:00Z") and row["BillingPeriodStart"] == "2026-11-01T00:00:00Z"
        assert Decimal(row["PricingQuantity"]) * 1_000_000 == int(row["ConsumedQuantity"])
    grain = Counter((r["ChargePeriodStart"], r["ProviderName"], r["ResourceName"], r["SkuMeter"]) for r in rows)
    assert max(grain.values()) == 1
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal(report["totalCost"])
    meters = {(r["SkuMeter"]): int(r["ConsumedQuantity"]) for r in rows if r["ResourceName"] == "gpt-4o"}
    assert meters and {r["x_CostSplitBasis"] for r in rows if r["ResourceName"] == "gpt-4o"} == {"list_price"}
    free = [r for r in rows if r["ProviderName"] == "ollama"]
    assert free and all(Decimal(r["BilledCost"]) == 0 for r in free)


async def test_graphql_gives_the_download_url_and_small_files_inline(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(1.5, NOW, team_id="eng", user="ann"), SpendLog(2, NOW, team_id="ops"))
    found = (await api.data(EXPORT, {"format": "JSON", "team": "eng"}))["exportCostReport"]
    # The zone is spelled out, so the download is the same file whatever the default zone later becomes.
    assert found["url"] == "/api/v1/reports/export?format=json&period=monthly&time_zone=UTC&team_id=eng"
    assert (found["filename"], found["contentType"]) == ("cost_report_2026-11-01_2026-11-15.json", "application/json")
    content = json.loads(found["content"], parse_float=Decimal)
    assert content["team_id"] == "eng" and content["total_cost"] == Decimal("1.5")
    assert [(r["user_id"], r["cost_usd"]) for r in content["rows"]] == [("ann", Decimal("1.5"))]
    same = (await api.client.get(found["url"], headers=api.bearer())).json(parse_float=Decimal)
    assert same == content


async def test_bad_export_requests_are_refused_before_anything_streams(api: Api) -> None:
    for params, field in (
        ({"format": "xlsx"}, "format"),
        ({"period": "custom", "start_date": "2026-02-30"}, "start_date"),
        ({"period": "custom", "start_date": "2026-11-10", "end_date": "2026-11-01"}, "end_date"),
    ):
        response = await api.client.get("/api/v1/reports/export", params=params, headers=api.bearer())
        assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert (await api.client.get("/api/v1/reports/export")).status_code == 401


async def test_a_large_export_is_produced_in_chunks_from_a_cursor_not_as_one_file(api: Api, db: Database) -> None:
    from resolvers.reports import ReportWindow, report_source
    from resolvers.reports.exports import CHUNK_ROWS, CostExport, CostExportFormat
    from resolvers.rollups import Filters

    await demo(db, rows=6000, days=30)
    await refresh(api)
    runtime = api.runtime()
    window = ReportWindow(ReportPeriod.CUSTOM, NOW.date().replace(day=1) - timedelta(days=20), NOW.date())
    for fmt in CostExportFormat:
        async with runtime.read() as session:
            source = await report_source(session, runtime)
            chunks = [c async for c in CostExport(fmt, window, Filters()).chunks(session, source)]
        row = b'"date": ' if fmt is CostExportFormat.JSON else b"\n"
        per_chunk = [c.count(row) for c in chunks]
        # Bounded pieces, never the whole file at once (FOCUS has fewer rows here: days x models x 2).
        assert fmt is CostExportFormat.FOCUS or sum(per_chunk) > 2 * CHUNK_ROWS, fmt
        assert max(per_chunk) <= CHUNK_ROWS + 1 and len(chunks) >= sum(per_chunk) // CHUNK_ROWS, fmt
