"""Cost reports and the dashboard summary: the guide's periods, breakdowns by model, user and team, every figure
equal to plain SQL over the raw logs to the cent; bad periods refused; viewers held to their own team."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import pytest

from models.db import Database
from resolvers.platform.config import Settings
from tests.conftest import NOW, Clock, started
from tests.ledger import cents, demo, raw_ledger, refresh
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

ROW = "key cost requests failedRequests inputTokens outputTokens share"
REPORT = f"""query($period: ReportPeriod!, $start: Date, $end: Date, $team: String, $user: String, $model: String) {{
  costReport(period: $period, startDate: $start, endDate: $end, teamId: $team, userId: $user, model: $model) {{
    period startDate endDate teamId totalCost totalRequests totalFailedRequests totalInputTokens totalOutputTokens
    breakdownByModel {{ {ROW} }} breakdownByUser {{ {ROW} }} breakdownByTeam {{ {ROW} }}
    modelCount userCount teamCount }} }}"""
SUMMARY = f"{{ dashboardSummary {{ date todayCost weekCost monthCost topModels {{ {ROW} }} }} }}"
TODAY = NOW.date()


async def report(api: Api, period: str = "MONTHLY", token: str | None = "admin", **variables: Any) -> dict[str, Any]:
    data = await api.data(REPORT, {"period": period, **variables}, token=token)
    found: dict[str, Any] = data["costReport"]
    return found


def _check_rows(rows: list[dict[str, Any]], ledger: Any, total: str) -> None:
    assert {r["key"] for r in rows} == {k or None for k in ledger.groups()}
    for row in rows:
        key = row["key"] if row["key"] is not None else next(k for k in ledger.groups() if not k)
        assert cents(row["cost"]) == ledger.cents(key), key
        assert row["requests"] == ledger.requests[key]
        assert (row["inputTokens"], row["outputTokens"]) == (ledger.input_tokens[key], ledger.output_tokens[key])
    assert sum(cents(r["cost"]) for r in rows) - cents(total) <= len(rows) * cents("0.01")


@pytest.mark.parametrize("source", ["rollup", "raw logs only"])
async def test_a_monthly_report_matches_plain_sql_over_the_raw_logs_to_the_cent(
    api: Api, db: Database, settings: Settings, clock: Clock, source: str
) -> None:
    await demo(db)
    status = await refresh(api)
    assert status.built_through == TODAY and status.days_rebuilt > 0
    if source == "rollup":
        found = await report(api)
    else:
        # Beside the fixture's instance on the same database (on SQLite too, on purpose).
        async with started(settings, clock, reports_from_raw=True, jobs_enabled=False, embedded_lock=False) as raw_api:
            found = await report(raw_api)
    month_start = TODAY.replace(day=1)
    assert (found["period"], found["startDate"], found["endDate"]) == ("MONTHLY", str(month_start), str(TODAY))
    everything = await raw_ledger(db, month_start, TODAY, "'all'")
    assert cents(found["totalCost"]) == everything.cents("all")
    assert found["totalRequests"] == everything.requests["all"]
    assert found["totalInputTokens"] == everything.input_tokens["all"]
    assert found["totalOutputTokens"] == everything.output_tokens["all"]
    assert str(everything.nanos("all").normalize()) == found["totalCost"]  # exact, not just to the cent
    _check_rows(found["breakdownByModel"], await raw_ledger(db, month_start, TODAY, "model"), found["totalCost"])
    _check_rows(found["breakdownByUser"], await raw_ledger(db, month_start, TODAY, '"user"'), found["totalCost"])
    _check_rows(found["breakdownByTeam"], await raw_ledger(db, month_start, TODAY, "team_id"), found["totalCost"])
    shares = [float(r["share"]) for r in found["breakdownByTeam"]]
    assert abs(sum(shares) - 1) < 1e-5 and shares == sorted(shares, reverse=True)
    assert found["teamCount"] == 6 and found["modelCount"] == len(found["breakdownByModel"])


async def test_periods_follow_the_guide(api: Api, db: Database) -> None:
    await add_spend(
        db,
        SpendLog(1.5, NOW - timedelta(hours=1), team_id="eng"),  # today (Sunday 15 Nov)
        SpendLog(2.25, NOW - timedelta(days=5), team_id="eng"),  # Tuesday: this week
        SpendLog(4.0, NOW - timedelta(days=10), team_id="eng"),  # this month, last week
        SpendLog(8.0, NOW - timedelta(days=20), team_id="eng"),  # last month
    )
    await refresh(api)
    daily, weekly, monthly = [await report(api, p) for p in ("DAILY", "WEEKLY", "MONTHLY")]
    assert (daily["startDate"], daily["totalCost"]) == (str(TODAY), "1.5")
    assert (weekly["startDate"], weekly["totalCost"]) == ("2026-11-09", "3.75")
    assert (monthly["startDate"], monthly["totalCost"]) == ("2026-11-01", "7.75")
    custom = await report(api, "CUSTOM", start="2026-10-01", end="2026-11-14")
    assert (custom["endDate"], custom["totalCost"]) == ("2026-11-14", "14.25")
    summary = (await api.data(SUMMARY))["dashboardSummary"]
    assert (summary["todayCost"], summary["weekCost"], summary["monthCost"]) == ("1.5", "3.75", "7.75")


async def test_filters_by_team_user_and_model_or_model_group(api: Api, db: Database) -> None:
    await add_spend(
        db,
        SpendLog(1, NOW, team_id="eng", user="ann", model="gpt-4o"),
        SpendLog(2, NOW, team_id="eng", user="bob", model="claude-sonnet-4-5"),
        SpendLog(4, NOW, team_id="ops", user="cid", model="gpt-4o"),
    )
    assert (await report(api, team="eng"))["totalCost"] == "3"
    assert (await report(api, user="bob"))["totalCost"] == "2"
    assert (await report(api, model="gpt-4o"))["totalCost"] == "5"
    found = await report(api, team="eng", model="gpt-4o")
    assert (found["totalCost"], [r["key"] for r in found["breakdownByUser"]]) == ("1", ["ann"])


async def test_spend_without_a_team_or_user_is_reported_under_a_null_key(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(1.25, NOW, team_id=None, user=""), SpendLog(2, NOW, team_id="eng", user="ann"))
    found = await report(api)
    assert [(r["key"], r["cost"], r["share"]) for r in found["breakdownByTeam"]] == [
        ("eng", "2", "0.615385"),
        (None, "1.25", "0.384615"),
    ]
    assert [r["key"] for r in found["breakdownByUser"]] == ["ann", None]


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"period": "CUSTOM", "start": "2026-11-10", "end": "2026-11-01"}, "endDate"),
        ({"period": "CUSTOM", "start": "2024-01-01", "end": "2026-11-01"}, "endDate"),
        ({"period": "CUSTOM"}, "startDate"),
        ({"period": "MONTHLY", "start": "2026-11-01"}, "startDate"),
    ],
)
async def test_bad_ranges_are_bad_user_input(api: Api, variables: dict[str, Any], field: str) -> None:
    error = await api.error(REPORT, variables)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "2026-11-1"])
async def test_malformed_dates_are_bad_user_input(api: Api, value: str) -> None:
    error = await api.error(REPORT, {"period": "CUSTOM", "start": value})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    rest = await api.client.get(
        "/api/v1/reports/cost", params={"period": "custom", "start_date": value}, headers=api.bearer()
    )
    assert rest.status_code == 400 and rest.json()["error"]["field"] == "start_date"


async def test_the_rest_report_speaks_the_guides_snake_case(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(1.5, NOW, team_id="engineering", user="u1", prompt_tokens=100, completion_tokens=7))
    rest = await api.client.get(
        "/api/v1/reports/cost", params={"period": "monthly", "team_id": "engineering"}, headers=api.bearer()
    )
    assert rest.status_code == 200, rest.text
    body = rest.json()
    assert body["total_cost"] == 1.5 and body["total_input_tokens"] == 100 and body["total_output_tokens"] == 7
    assert (body["start_date"], body["end_date"], body["team_id"]) == ("2026-11-01", str(TODAY), "engineering")
    assert body["breakdown_by_model"][0] == {
        "key": "gpt-4o",
        "cost": 1.5,
        "requests": 1,
        "failed_requests": 0,
        "input_tokens": 100,
        "output_tokens": 7,
        "share": 1,
    }
    assert (await api.client.get("/api/v1/reports/cost", params={"period": "hourly"}, headers=api.bearer())).json()[
        "error"
    ]["field"] == "period"
    summary = await api.client.get("/api/v1/reports/summary", headers=api.bearer())
    assert summary.json()["today_cost"] == 1.5 and summary.json()["top_models"][0]["key"] == "gpt-4o"


async def test_a_viewer_reads_only_its_own_team(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(3, NOW, team_id="eng", user="ann"), SpendLog(5, NOW, team_id="ops", user="cid"))
    await add_virtual_key(db, "sk-ann", user_id="ann", team_id="eng")
    token = await api.login("sk-ann")
    found = await report(api, token=token)
    assert (found["teamId"], found["totalCost"]) == ("eng", "3")
    error = await api.error(REPORT, {"period": "MONTHLY", "team": "ops"}, token=token)
    assert error["extensions"]["code"] == "FORBIDDEN"
    summary = (await api.data(SUMMARY, token=token))["dashboardSummary"]
    assert summary["monthCost"] == "3"
    rest = await api.client.get("/api/v1/reports/cost", params={"team_id": "ops"}, headers=api.bearer(token))
    assert rest.status_code == 403


async def test_the_summary_matches_the_raw_logs(api: Api, db: Database, clock: Clock) -> None:
    await demo(db, rows=2500, days=40)
    await refresh(api)
    summary = (await api.data(SUMMARY))["dashboardSummary"]
    month = await raw_ledger(db, TODAY.replace(day=1), TODAY, "model")
    month_total = await raw_ledger(db, TODAY.replace(day=1), TODAY, "'all'")
    week = await raw_ledger(db, TODAY - timedelta(days=TODAY.weekday()), TODAY, "'all'")
    today = await raw_ledger(db, TODAY, TODAY, "'all'")
    assert cents(summary["weekCost"]) == week.cents("all")
    assert cents(summary["todayCost"]) == today.cents("all")
    assert cents(summary["monthCost"]) == month_total.cents("all")
    top = sorted(month.groups(), key=lambda k: -math.fsum(month.spend[k]))[:5]
    assert [r["key"] for r in summary["topModels"]] == top
    assert date.fromisoformat(summary["date"]) == TODAY


async def test_any_custom_window_matches_the_raw_logs_whole_months_or_not(api: Api, db: Database) -> None:
    await demo(db, rows=3000, days=75)
    await refresh(api)
    for start, end in (
        ("2026-10-05", "2026-11-10"),  # partial months on both sides
        ("2026-10-01", "2026-10-31"),  # one whole month
        ("2026-09-20", "2026-11-15"),  # whole October, November to the open day
        ("2026-11-01", "2026-11-03"),  # the start of a month the rollup holds more of
        ("2026-09-01", "2026-11-14"),  # whole months up to the watermark
    ):
        found = await report(api, "CUSTOM", start=start, end=end)
        ledger = await raw_ledger(db, date.fromisoformat(start), date.fromisoformat(end), "team_id")
        assert found["totalRequests"] == sum(ledger.requests.values()), (start, end)
        _check_rows(found["breakdownByTeam"], ledger, found["totalCost"])


async def test_filters_with_control_characters_are_refused_not_a_server_error(api: Api) -> None:
    for params, field in (
        ({"team_id": "a\x00b"}, "team_id"),
        ({"model": "\x00"}, "model"),
        ({"user_id": "x\ny"}, "user_id"),
    ):
        response = await api.client.get("/api/v1/reports/cost", params=params, headers=api.bearer())
        assert response.status_code == 400 and response.json()["error"]["field"] == field
    rules = await api.client.get("/api/v1/cost-allocation/rules", params={"team_id": "\x00"}, headers=api.bearer())
    forecasts = await api.client.get("/api/v1/reports/forecast", params={"team_id": "\x00"}, headers=api.bearer())
    assert rules.status_code == forecasts.status_code == 400
