"""Reports in a time zone: a local day (23, 24 or 25 hours, starting on any quarter hour) read from whole rollup
buckets equals plain SQL over the raw logs with that zone's bounds, exactly; budget windows in a zone read the
same way; late rows are counted after the recheck; bad zones are refused naming the field."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select, text

from models.db import Database
from models.litellm import spend_logs
from models.migrate import downgrade, upgrade
from models.rollups import CostTrackingBucketRow, RollupStateRow
from resolvers.platform.config import Settings
from resolvers.platform.periods import Cadence, Period, Window
from resolvers.rollups import spend_to_date
from resolvers.rollups.reading import (
    BLOCK_MINUTES,
    BLOCKS,
    SUMMARY_BUCKETS,
    DayRange,
    Dim,
    Filters,
    _blocks,
    aggregate,
    midnight,
    spend_source,
)
from resolvers.spend import Scope, ScopeKind, spend_by_scope
from tests.conftest import NOW, Clock, started
from tests.ledger import demo, refresh
from tests.support import Api, SpendLog, add_spend

pytestmark = pytest.mark.litellm_tables

REPORT = """query($start: Date, $end: Date, $zone: String) {
  costReport(period: CUSTOM, startDate: $start, endDate: $end, timeZone: $zone) {
    startDate endDate timeZone totalCost totalRequests totalInputTokens totalOutputTokens
    breakdownByModel { key cost requests } breakdownByTeam { key cost requests } } }"""
TREND = """query($days: Int!, $zone: String) {
  costTrend(days: $days, timeZone: $zone) { points { date cost requests } } }"""
SUMMARY = """query($zone: String) { dashboardSummary(timeZone: $zone) { date todayCost weekCost monthCost } }"""


def bounds(day: date, zone: str, days: int = 1) -> tuple[datetime, datetime]:
    """A local day's first instant and the instant after its last, in UTC: computed here, independently."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=days), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


async def raw_sql(db: Database, start: datetime, end: datetime, by: str = "'all'") -> dict[Any, list[Any]]:
    """Plain SQL over LiteLLM_SpendLogs: per `by`, [exact USD (each row to the nano, as LiteLLM's float is
    stored), requests, input tokens, output tokens]."""
    naive = {"s": start.astimezone(UTC).replace(tzinfo=None), "e": end.astimezone(UTC).replace(tzinfo=None)}
    params: dict[str, Any] = naive if db.is_postgres else {k: v.isoformat(sep=" ") for k, v in naive.items()}
    sql = (
        f'SELECT {by}, spend, prompt_tokens, completion_tokens FROM "LiteLLM_SpendLogs" '
        'WHERE "startTime" >= :s AND "startTime" < :e'
    )
    out: dict[Any, list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0, 0])
    async with db.engine.connect() as conn:
        for key, spend, prompt, completion in await conn.execute(text(sql), params):
            row = out[key]
            row[0] += Decimal(round(float(spend) * 10**9)) / 10**9
            row[1] += 1
            row[2] += int(prompt)
            row[3] += int(completion)
    return out


async def purge_raw_before(db: Database, moment: datetime) -> None:
    """What LiteLLM's retention does: the raw logs go, the rollup stays."""
    async with db.sessions() as session, session.begin():
        await session.execute(delete(spend_logs).where(spend_logs.c.start_time < moment))


async def zone_report(api: Api, day: date, zone: str, last: date | None = None) -> dict[str, Any]:
    variables = {"start": str(day), "end": str(last or day), "zone": zone}
    found: dict[str, Any] = (await api.data(REPORT, variables))["costReport"]
    return found


def assert_matches(found: dict[str, Any], raw: dict[Any, list[Any]]) -> None:
    total = raw["all"]
    assert total[1] > 0, "the day under test has spend"
    assert Decimal(found["totalCost"]) == total[0]
    assert (found["totalRequests"], found["totalInputTokens"], found["totalOutputTokens"]) == tuple(total[1:])


async def test_a_report_for_yesterday_in_tokyo_equals_raw_sql_with_tokyos_bounds_even_after_the_raw_logs_go(
    api: Api, db: Database
) -> None:
    await demo(db, rows=2000, days=12)
    await refresh(api)
    tokyo = "Asia/Tokyo"
    tokyo_today = NOW.astimezone(ZoneInfo(tokyo)).date()
    yesterday = tokyo_today - timedelta(days=1)
    start, end = bounds(yesterday, "Asia/Tokyo")
    assert start.hour == 15  # a local day that is no UTC day: it must be cut inside UTC days
    raw = await raw_sql(db, start, end)
    by_model = await raw_sql(db, start, end, "model")
    by_team = await raw_sql(db, start, end, "coalesce(team_id, '')")
    found = await zone_report(api, yesterday, "Asia/Tokyo")
    assert (found["startDate"], found["endDate"], found["timeZone"]) == (str(yesterday), str(yesterday), "Asia/Tokyo")
    assert_matches(found, raw)
    assert {r["key"]: Decimal(r["cost"]) for r in found["breakdownByModel"]} == {k: v[0] for k, v in by_model.items()}
    assert {r["key"] or "": Decimal(r["cost"]) for r in found["breakdownByTeam"]} == {
        k: v[0] for k, v in by_team.items()
    }
    # The same figures with no raw logs left for closed days: they came from whole buckets.
    await purge_raw_before(db, datetime.combine(NOW.date(), time(0), tzinfo=UTC))
    assert await zone_report(api, yesterday, "Asia/Tokyo") == found
    # The REST twin takes time_zone.
    rest = await api.client.get(
        "/api/v1/reports/cost",
        params={
            "period": "custom",
            "start_date": str(yesterday),
            "end_date": str(yesterday),
            "time_zone": "Asia/Tokyo",
        },
        headers=api.bearer(),
    )
    assert rest.status_code == 200, rest.text
    assert rest.json()["time_zone"] == "Asia/Tokyo"
    assert Decimal(str(rest.json()["total_cost"])) == raw["all"][0]


async def test_a_week_in_kathmandu_at_plus_five_forty_five_is_exact_day_by_day_and_in_total(
    api: Api, db: Database
) -> None:
    await demo(db, rows=3000, days=14)
    await refresh(api)
    zone = "Asia/Kathmandu"
    today = NOW.astimezone(ZoneInfo(zone)).date()
    first = today - timedelta(days=7)
    start, end = bounds(first, zone, days=7)
    assert (start.hour, start.minute) == (18, 15)
    # Seven local days spanning six whole UTC days and two quarter-hour-cut edges.
    assert_matches(await zone_report(api, first, zone, today - timedelta(days=1)), await raw_sql(db, start, end))
    points = (await api.data(TREND, {"days": 8, "zone": zone}))["costTrend"]["points"]
    assert [p["date"] for p in points] == [str(first + timedelta(days=i)) for i in range(8)]
    for point in points:
        day = date.fromisoformat(point["date"])
        expected = (await raw_sql(db, *bounds(day, zone)))["all"]
        assert (Decimal(point["cost"]), point["requests"]) == (expected[0], expected[1]), day


async def test_the_day_los_angeles_leaves_dst_has_25_hours_and_every_one_is_counted(api: Api, db: Database) -> None:
    zone = "America/Los_Angeles"
    dst_end = date(2026, 11, 1)
    start, end = bounds(dst_end, zone)
    assert end - start == timedelta(hours=25)
    # A request in every quarter hour around the day, so a bound one bucket off changes the total.
    logs = []
    moment = start - timedelta(hours=2)
    cents = 1
    while moment < end + timedelta(hours=2):
        logs.append(SpendLog(cents / 100, moment + timedelta(minutes=7), team_id="eng"))
        moment += timedelta(minutes=15)
        cents += 1
    await add_spend(db, *logs)
    await refresh(api)
    found = await zone_report(api, dst_end, zone)
    assert found["totalRequests"] == 100  # 25 hours x 4
    assert_matches(found, await raw_sql(db, start, end))
    # The day before is 24 hours, the trend's point for the DST day the same 25.
    found = await zone_report(api, dst_end - timedelta(days=1), zone)
    assert found["totalRequests"] == 8  # only the two hours before the DST day were written
    spring = date(2026, 3, 8)  # and the 23-hour day in spring
    s_start, s_end = bounds(spring, zone)
    assert s_end - s_start == timedelta(hours=23)


async def test_a_dashboard_and_an_export_follow_the_zones_today_and_days(api: Api, db: Database) -> None:
    await demo(db, rows=2000, days=10)
    await refresh(api)
    zone = "Asia/Tokyo"
    today = NOW.astimezone(ZoneInfo(zone)).date()
    summary = (await api.data(SUMMARY, {"zone": zone}))["dashboardSummary"]
    assert summary["date"] == str(today)
    today_start, _ = bounds(today, zone)
    assert Decimal(summary["todayCost"]) == (await raw_sql(db, today_start, NOW + timedelta(days=1)))["all"][0]
    month_start, _ = bounds(today.replace(day=1), zone)
    assert Decimal(summary["monthCost"]) == (await raw_sql(db, month_start, NOW + timedelta(days=1)))["all"][0]
    first = today - timedelta(days=4)
    response = await api.client.get(
        "/api/v1/reports/export",
        params={
            "format": "csv",
            "period": "custom",
            "start_date": str(first),
            "end_date": str(today),
            "time_zone": zone,
        },
        headers=api.bearer(),
    )
    assert response.status_code == 200, response.text
    per_day: dict[str, Decimal] = defaultdict(Decimal)
    for row in csv.DictReader(io.StringIO(response.text)):
        per_day[row["date"]] += Decimal(row["cost_usd"])
    for i in range(5):
        day = first + timedelta(days=i)
        assert per_day[str(day)] == (await raw_sql(db, *bounds(day, zone)))["all"][0], day


async def test_a_budget_window_in_a_zone_reads_the_rollup_for_closed_time_and_equals_the_raw_logs(
    api: Api, db: Database
) -> None:
    await demo(db, rows=3000, days=40)
    await refresh(api)
    runtime = api.runtime()
    scopes = [Scope.global_(), Scope(ScopeKind.TEAM, "engineering"), Scope(ScopeKind.USER, "user-001")]
    windows = [
        Window(Cadence.MONTHLY, "Asia/Kathmandu"),
        Window(Cadence.WEEKLY, "America/Los_Angeles"),
        Window(Cadence.MONTHLY, "America/Los_Angeles", month_start_day=15),
        Window(Cadence.DAILY, "Asia/Tokyo"),
    ]
    last_month = NOW - timedelta(days=20)  # a closed window: wholly from the rollup
    for window in windows:
        for moment in (NOW, last_month):
            period = window.period_at(moment)
            async with db.reader() as session:
                raw = await spend_by_scope(session, runtime.litellm, scopes, period)
                split = await spend_to_date(session, runtime.litellm, scopes, period, NOW)
            assert split == raw, (window, moment)
            assert raw[Scope.global_()] > 0
    # Closed windows keep their figures once the raw logs are gone: rollup days and buckets.
    period = Window(Cadence.MONTHLY, "Asia/Kathmandu").period_at(last_month)
    async with db.reader() as session:
        before = await spend_to_date(session, runtime.litellm, scopes, period, NOW)
    await purge_raw_before(db, NOW - timedelta(days=3))
    async with db.reader() as session:
        assert await spend_to_date(session, runtime.litellm, scopes, period, NOW) == before


async def test_late_rows_in_a_closed_local_day_are_counted_after_the_recheck(api: Api, db: Database) -> None:
    zone = "Asia/Kolkata"
    day = NOW.astimezone(ZoneInfo(zone)).date() - timedelta(days=3)
    start, end = bounds(day, zone)
    await add_spend(db, SpendLog(10, start + timedelta(minutes=1), team_id="eng"), SpendLog(1, NOW, team_id="eng"))
    await refresh(api)
    assert Decimal((await zone_report(api, day, zone))["totalCost"]) == 10
    # Arrives late, in the last minute of the local day (a UTC day already rolled up).
    await add_spend(db, SpendLog(5, end - timedelta(minutes=1), team_id="eng"))
    await refresh(api)
    found = await zone_report(api, day, zone)
    assert Decimal(found["totalCost"]) == 15
    assert_matches(found, await raw_sql(db, start, end))


async def test_rollups_from_before_the_buckets_are_backfilled_on_the_next_run(api: Api, db: Database) -> None:
    """What migration 0010 leaves: daily rows, no buckets, no `hourly` state row. Until the job runs, zoned reads
    use the raw logs for partial days; after it, the buckets."""
    await demo(db, rows=1500, days=8)
    await refresh(api)
    async with db.sessions() as session, session.begin():
        await session.execute(delete(CostTrackingBucketRow))
        await session.execute(delete(RollupStateRow).where(RollupStateRow.name == "hourly"))
    zone = "Asia/Tokyo"
    yesterday = NOW.astimezone(ZoneInfo(zone)).date() - timedelta(days=1)
    raw = await raw_sql(db, *bounds(yesterday, zone))
    assert_matches(await zone_report(api, yesterday, zone), raw)
    status = await refresh(api)
    assert status.days_rebuilt >= 8
    async with db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(CostTrackingBucketRow)) > 0
    await purge_raw_before(db, datetime.combine(NOW.date(), time(0), tzinfo=UTC))
    assert_matches(await zone_report(api, yesterday, zone), raw)


async def test_a_bad_time_zone_is_refused_naming_the_field(api: Api) -> None:
    for query, variables in (
        (REPORT, {"start": "2026-11-01", "end": "2026-11-02", "zone": "Mars/Olympus"}),
        (TREND, {"days": 7, "zone": "../../etc/passwd"}),
        (SUMMARY, {"zone": "UTC\x00"}),
    ):
        error = await api.error(query, variables)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["extensions"]["field"] == "timeZone"
    for path in ("cost", "trend", "summary", "export"):
        response = await api.client.get(
            f"/api/v1/reports/{path}", params={"time_zone": "Not/AZone"}, headers=api.bearer()
        )
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["field"] == "time_zone"


async def test_reports_default_to_the_services_time_zone(
    api: Api, db: Database, settings: Settings, clock: Clock
) -> None:
    await add_spend(
        db,
        SpendLog(3, datetime(2026, 11, 14, 16, 0, tzinfo=UTC), team_id="eng"),  # the 15th in Tokyo
        SpendLog(4, datetime(2026, 11, 14, 14, 0, tzinfo=UTC), team_id="eng"),  # the 14th in Tokyo
    )
    await refresh(api)
    query = "{ costReport(period: DAILY) { startDate timeZone totalCost } }"
    assert (await api.data(query))["costReport"] == {"startDate": "2026-11-15", "timeZone": "UTC", "totalCost": "0"}
    async with started(settings, clock, time_zone="Asia/Tokyo", jobs_enabled=False, embedded_lock=False) as tokyo:
        found = (await tokyo.data(query))["costReport"]
    assert found == {"startDate": "2026-11-15", "timeZone": "Asia/Tokyo", "totalCost": "3"}


CHARGEBACK = """mutation($p: String!, $zone: String) {
  generateChargebackReport(period: $p, timeZone: $zone) { id period timeZone totalCost currentTotal difference } }"""
FINALIZE = "mutation($id: ID!) { finalizeChargebackReport(id: $id) { status } }"


async def test_a_chargeback_month_is_that_zones_month_and_finalizes_when_it_ends_there(
    api: Api, db: Database, clock: Clock
) -> None:
    zone = "America/Los_Angeles"
    # October in Los Angeles runs from 07:00 UTC on October 1 to 07:00 UTC on November 1.
    await add_spend(
        db,
        SpendLog(1, datetime(2026, 10, 1, 6, 59, tzinfo=UTC), team_id="eng"),  # still September there
        SpendLog(2, datetime(2026, 10, 1, 7, 0, tzinfo=UTC), team_id="eng"),
        SpendLog(4, datetime(2026, 11, 1, 6, 59, tzinfo=UTC), team_id="eng"),  # still October there
        SpendLog(8, datetime(2026, 11, 1, 7, 0, tzinfo=UTC), team_id="eng"),
    )
    in_zone = (await api.data(CHARGEBACK, {"p": "2026-10", "zone": zone}))["generateChargebackReport"]
    assert (in_zone["timeZone"], in_zone["totalCost"], in_zone["difference"]) == (zone, "6", "0")
    start, end = bounds(date(2026, 10, 1), zone, days=31)
    assert Decimal(in_zone["totalCost"]) == (await raw_sql(db, start, end))["all"][0]
    # Regenerating the draft in UTC makes it a UTC month.
    utc = (await api.data(CHARGEBACK, {"p": "2026-10", "zone": None}))["generateChargebackReport"]
    assert (utc["id"], utc["timeZone"], utc["totalCost"]) == (in_zone["id"], "UTC", "3")
    again = (await api.data(CHARGEBACK, {"p": "2026-10", "zone": zone}))["generateChargebackReport"]
    # Midnight UTC on November 1 is still October 31 in Los Angeles: too early to freeze October there.
    clock.now = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    error = await api.error(FINALIZE, {"id": again["id"]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and zone in error["message"]
    clock.now = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
    assert (await api.data(FINALIZE, {"id": again["id"]}))["finalizeChargebackReport"]["status"] == "FINALIZED"
    refused = await api.error(CHARGEBACK, {"p": "2026-11", "zone": "Nowhere/Land"})
    assert (refused["extensions"]["code"], refused["extensions"]["field"]) == ("BAD_USER_INPUT", "timeZone")
    body = {"period": "2026-11", "time_zone": "Nowhere/Land"}
    rest = await api.client.post("/api/v1/chargeback/reports/generate", json=body, headers=api.bearer())
    assert rest.status_code == 400 and rest.json()["error"]["field"] == "time_zone", rest.text


ZONES_FOR_DAYS = ["Asia/Tokyo", "Asia/Kathmandu", "America/Los_Angeles", "Pacific/Chatham", "America/St_Johns"]


async def test_figures_per_local_day_from_the_daily_rollup_and_offset_pieces_equal_raw_sql_in_every_zone(
    api: Api, db: Database
) -> None:
    # A request in every quarter hour for three weeks (the Los Angeles DST change included), so a piece one bucket
    # off, counted twice or never subtracted changes a local day's figures; models rotate so groups differ too.
    logs = []
    moment = datetime(2026, 10, 24, 0, 7, tzinfo=UTC)
    cents = 1
    while moment < NOW:
        model = ("gpt-4o", "claude", "mistral")[cents % 3]
        logs.append(SpendLog(cents / 100, moment, team_id="eng", model=model, prompt_tokens=cents % 7))
        moment += timedelta(minutes=15)
        cents = cents % 997 + 1
    # One request of a model nobody else uses, late in a UTC day: in Tokyo its UTC day counts for the local day
    # before, minus the evening piece; the model must show up on its own local day only, never as a zero row.
    rare = datetime(2026, 11, 10, 20, 7, tzinfo=UTC)
    logs.append(SpendLog(1.23, rare, team_id="eng", model="rare-model"))
    await add_spend(db, *logs)
    await refresh(api)
    runtime = api.runtime()
    days = DayRange(date(2026, 10, 26), date(2026, 11, 15))

    async def per_day_and_model(zone: str) -> dict[tuple[date, str], tuple[Decimal, int, int]]:
        async with db.reader() as session:
            source = await spend_source(session, runtime.litellm)
            grouped = await aggregate(session, source, days, (Dim.DAY, Dim.MODEL), Filters(), ZoneInfo(zone))
        return {(d, m): (t.cost, t.requests, t.input_tokens) for (d, m), t in grouped.items()}

    found = {zone: await per_day_and_model(zone) for zone in ZONES_FOR_DAYS}
    for zone in ZONES_FOR_DAYS:
        expected = {}
        for day in days.days():
            for model, (usd, requests, prompt, _) in (await raw_sql(db, *bounds(day, zone), "model")).items():
                expected[(day, model)] = (usd, requests, prompt)
        assert found[zone] == expected, zone
        tokyo_day = rare.astimezone(ZoneInfo(zone)).date()
        assert [k for k in found[zone] if k[1] == "rare-model"] == [(tokyo_day, "rare-model")], zone
        # The trend (GraphQL) reads the same way.
        points = (await api.data(TREND, {"days": 14, "zone": zone}))["costTrend"]["points"]
        for point in points:
            day = date.fromisoformat(point["date"])
            if days.start <= day < days.end:
                per_day = [v for (d, _), v in found[zone].items() if d == day]
                assert Decimal(point["cost"]) == sum((v[0] for v in per_day), Decimal(0)), (zone, day)
                assert point["requests"] == sum(v[1] for v in per_day), (zone, day)
    # And from the rollup alone once the raw logs of closed days are gone.
    purged = datetime.combine(NOW.date(), time(0), tzinfo=UTC)
    await purge_raw_before(db, purged)
    for zone in ZONES_FOR_DAYS:
        closed = {k: v for k, v in found[zone].items() if bounds(k[0], zone)[1] <= purged}
        assert len(closed) >= 3 * 18
        after = await per_day_and_model(zone)
        assert {k: v for k, v in after.items() if k in closed} == closed, zone


async def test_a_month_in_any_zone_is_the_utc_month_plus_and_minus_its_offset_pieces_exactly(
    api: Api, db: Database
) -> None:
    # A request every quarter hour from late September to mid November, and one of a model nobody else uses in
    # the evening of October 31 (UTC): in Kathmandu that is already November, so the October report reads the
    # UTC month and subtracts that evening; the model must not appear as a zero row.
    logs = []
    moment = datetime(2026, 9, 29, 0, 7, tzinfo=UTC)
    cents = 1
    while moment < datetime(2026, 11, 3, tzinfo=UTC):
        logs.append(SpendLog(cents / 100, moment, team_id=("eng", "ops")[cents % 2], model=("a", "b")[cents % 2]))
        moment += timedelta(minutes=15)
        cents = cents % 991 + 1
    logs.append(SpendLog(2.5, datetime(2026, 10, 31, 22, 7, tzinfo=UTC), team_id="eng", model="rare-model"))
    await add_spend(db, *logs)
    await refresh(api)
    for zone in ZONES_FOR_DAYS:
        start, end = bounds(date(2026, 10, 1), zone, days=31)
        found = await zone_report(api, date(2026, 10, 1), zone, date(2026, 10, 31))
        assert_matches(found, await raw_sql(db, start, end))
        by_model = {k: v[0] for k, v in (await raw_sql(db, start, end, "model")).items()}
        assert {r["key"]: Decimal(r["cost"]) for r in found["breakdownByModel"]} == by_model, zone
        assert ("rare-model" in by_model) == (start <= datetime(2026, 10, 31, 22, 7, tzinfo=UTC) < end), zone
    # The same from the rollup alone.
    reports = {zone: await zone_report(api, date(2026, 10, 1), zone, date(2026, 10, 31)) for zone in ZONES_FOR_DAYS}
    await purge_raw_before(db, datetime(2026, 11, 3, tzinfo=UTC))
    for zone in ZONES_FOR_DAYS:
        assert await zone_report(api, date(2026, 10, 1), zone, date(2026, 10, 31)) == reports[zone], zone


BUDGET = """mutation($input: BudgetInput!) { createBudget(input: $input) { id } }"""
REACHED = """query($id: ID!) { budget(id: $id) { forecast { soft { status date } hard { status date } } } }"""


async def test_a_budget_past_its_limit_was_reached_on_a_day_of_its_own_zone(api: Api, db: Database) -> None:
    # 100 $ a day at 20:00 UTC (05:00 the next day in Tokyo) and at 03:00 UTC (19:00 the day before in Los
    # Angeles): counted in UTC days, each budget would reach its limit a day off the local one.
    logs = [SpendLog(100, datetime(2026, 11, d, 20, 0, tzinfo=UTC), team_id="tokyo") for d in range(1, 11)]
    logs += [SpendLog(100, datetime(2026, 11, d, 3, 0, tzinfo=UTC), team_id="la") for d in range(2, 12)]
    await add_spend(db, *logs)
    await refresh(api)
    for team, zone, hard, soft in (
        ("tokyo", "Asia/Tokyo", "2026-11-06", "2026-11-05"),  # local Nov 2..11; 500 >= 450 on the 6th
        ("la", "America/Los_Angeles", "2026-11-05", "2026-11-04"),  # local Nov 1..10; 500 >= 450 on the 5th
    ):
        budget = {"name": team, "entityType": "TEAM", "entityId": team, "monthlyLimit": "450", "timeZone": zone}
        made = await api.data(BUDGET, {"input": budget})
        found = (await api.data(REACHED, {"id": made["createBudget"]["id"]}))["budget"]
        assert found["forecast"]["hard"] == {"status": "REACHED", "date": hard}, zone
        assert found["forecast"]["soft"] == {"status": "REACHED", "date": soft}, zone  # 400 >= 360 (80%)


def test_a_piece_is_the_fewest_whole_hour_blocks_and_the_quarter_hours_off_them() -> None:
    day = datetime(2026, 11, 2, tzinfo=UTC)

    def at(hours: float) -> datetime:
        return day + timedelta(hours=hours)

    assert _blocks(Period(at(15), at(24))) == ([(60, at(15)), (480, at(16))], [])  # Tokyo's evening piece
    assert _blocks(Period(at(0), at(7))) == ([(240, at(0)), (120, at(4)), (60, at(6))], [])  # Los Angeles (PDT)
    assert _blocks(Period(at(18.25), at(24))) == ([(60, at(19)), (240, at(20))], [Period(at(18.25), at(19))])
    assert _blocks(Period(at(0), at(5.75))) == ([(240, at(0)), (60, at(4))], [Period(at(5), at(5.75))])
    assert _blocks(Period(at(22), at(26))) == ([(120, at(22)), (120, at(24))], [])  # across midnight
    assert _blocks(Period(at(3.5), at(3.75))) == ([], [Period(at(3.5), at(3.75))])


async def test_summary_blocks_sum_the_quarter_hours_and_the_migration_fills_them_the_same_way(
    api: Api, db: Database
) -> None:
    logs = []
    moment = datetime(2026, 11, 9, 0, 7, tzinfo=UTC)
    cents = 1
    while moment < NOW:
        logs.append(SpendLog(cents / 100, moment, team_id=("eng", "ops")[cents % 2], model=("a", "b", "c")[cents % 3]))
        moment += timedelta(minutes=10)
        cents = cents % 997 + 1
    await add_spend(db, *logs)
    await refresh(api)

    async def blocks() -> list[tuple[Any, ...]]:
        async with db.reader() as session:
            rows = await session.execute(select(BLOCKS).order_by(*BLOCKS.primary_key.columns))
            return [tuple(r) for r in rows]

    built = await blocks()
    async with db.reader() as session:
        buckets = Decimal((await session.scalar(select(func.sum(SUMMARY_BUCKETS.c.spend)))) or 0)
    assert {m for m, *_ in built} == set(BLOCK_MINUTES)
    for minutes in BLOCK_MINUTES:
        rows = [r for r in built if r[0] == minutes]
        assert sum(Decimal(r[-1]) for r in rows) == buckets > 0, minutes  # every quarter hour once per length
        assert all((r[1] - midnight(r[1].date())) % timedelta(minutes=minutes) == timedelta(0) for r in rows)
    assert len([r for r in built if r[0] == 480]) == 6 * 3 * 2 * 3  # 6 days x 3 blocks x 2 teams x 3 models
    await downgrade(db, embedded=True, revision="0011")
    await upgrade(db, embedded=True)
    assert await blocks() == built


async def test_a_zoned_export_has_the_zoned_reports_figures_day_by_day(api: Api, db: Database) -> None:
    await demo(db, rows=3000, days=12)
    await refresh(api)
    first, last = date(2026, 11, 5), NOW.astimezone(ZoneInfo("Asia/Kathmandu")).date()
    for zone in ("Asia/Kathmandu", "America/Los_Angeles"):
        params = {"period": "custom", "start_date": str(first), "end_date": str(last), "time_zone": zone}
        response = await api.client.get(
            "/api/v1/reports/export", params={"format": "csv", **params}, headers=api.bearer()
        )
        assert response.status_code == 200, response.text
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)  # ordered by day
        keys = [(r["date"], r["team_id"], r["user_id"], r["model_group"], r["model"], r["provider"]) for r in rows]
        assert len(keys) == len(set(keys))  # each group once
        by_day: dict[str, Decimal] = defaultdict(Decimal)
        by_model: dict[str, Decimal] = defaultdict(Decimal)
        for r in rows:
            by_day[r["date"]] += Decimal(r["cost_usd"])
            by_model[r["model"]] += Decimal(r["cost_usd"])
        report = await zone_report(api, first, zone, last)
        assert sum(by_day.values()) == Decimal(report["totalCost"]) > 0, zone
        assert dict(by_model) == {r["key"]: Decimal(r["cost"]) for r in report["breakdownByModel"]}, zone
        for i in range((last - first).days + 1):
            day = first + timedelta(days=i)
            one = await zone_report(api, day, zone)
            assert by_day.get(str(day), Decimal(0)) == Decimal(one["totalCost"]), (zone, day)
        # FOCUS in the same zone: the same total.
        focus = await api.client.get(
            "/api/v1/reports/export", params={"format": "focus", **params}, headers=api.bearer()
        )
        assert focus.status_code == 200, focus.text
        billed = sum((Decimal(r["BilledCost"]) for r in csv.DictReader(io.StringIO(focus.text))), Decimal(0))
        assert billed == Decimal(report["totalCost"]), zone
