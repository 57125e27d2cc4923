"""The daily rollup: built from a watermark for closed days only, rebuilt for late spend logs, never double
counted on re-runs, kept when the raw logs are purged; reports read it for closed days and the raw logs after."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import delete, func, select, text

from models.db import Database
from models.litellm import spend_logs
from models.rollups import CostSummaryDailyRow, CostTrackingDailyRow
from resolvers.platform.config import Settings
from resolvers.platform.periods import month_of
from resolvers.rollups import rollup_spend_by_scope
from resolvers.service.schedule import scheduled_jobs
from resolvers.spend import Scope, ScopeKind, spend_by_scope
from tests.conftest import NOW, Clock
from tests.ledger import demo, raw_ledger, refresh
from tests.support import Api, SpendLog, add_spend

pytestmark = pytest.mark.litellm_tables

TODAY = NOW.date()
STATUS = "{ rollupStatus { builtThrough } }"
MONTH = "{ costReport(period: MONTHLY) { totalCost totalRequests totalFailedRequests } }"


async def rollup_days(db: Database) -> dict[date, tuple[int, int]]:
    """Requests and nano-USD per day, straight from the rollup table."""
    t = CostTrackingDailyRow
    async with db.reader() as session:
        rows = await session.execute(select(t.day, func.sum(t.requests), func.count()).group_by(t.day))
        return {d: (int(r), int(n)) for d, r, n in rows}


async def test_closed_days_are_rolled_up_and_the_open_day_is_not(api: Api, db: Database) -> None:
    await demo(db, rows=1500, days=20)
    status = await refresh(api)
    assert status.built_through == TODAY
    days = await rollup_days(db)
    assert TODAY not in days and max(days) == TODAY - timedelta(days=1)
    for day, (requests, _) in days.items():
        assert requests == (await raw_ledger(db, day, day, "'all'")).requests["all"]
    assert (await api.data(STATUS))["rollupStatus"]["builtThrough"] == str(TODAY)


async def test_every_grain_column_is_kept_and_failures_are_counted(api: Api, db: Database) -> None:
    yesterday = NOW - timedelta(days=1)
    await add_spend(
        db,
        SpendLog(1, yesterday, team_id="eng", user="ann", api_key="k1", end_user="c1", model="gpt-4o"),
        SpendLog(2, yesterday, team_id="eng", user="ann", api_key="k1", end_user="c1", model="gpt-4o"),
        SpendLog(0, yesterday, team_id="eng", user="ann", api_key="k1", end_user="c1", status="failure"),
        SpendLog(4, yesterday, team_id=None, user="", api_key="k2"),
    )
    await refresh(api)
    async with db.reader() as session:
        rows = (await session.scalars(select(CostTrackingDailyRow).order_by(CostTrackingDailyRow.api_key))).all()
    assert [(r.day, r.model_group, r.model, r.provider, r.api_key, r.user_id, r.team_id, r.end_user) for r in rows] == [
        (yesterday.date(), "gpt-4o", "gpt-4o", "openai", "k1", "ann", "eng", "c1"),
        (yesterday.date(), "gpt-4o", "gpt-4o", "openai", "k2", "", "", ""),
    ]
    assert [(r.requests, r.failures, str(r.spend), r.input_tokens, r.output_tokens) for r in rows] == [
        (3, 1, "3", 30, 60),
        (1, 0, "4", 10, 20),
    ]


async def test_late_spend_logs_are_rolled_up_on_the_next_run_and_reruns_never_double_count(
    api: Api, db: Database
) -> None:
    three_days_ago = NOW - timedelta(days=3)
    await add_spend(db, SpendLog(10, three_days_ago, team_id="eng"), SpendLog(1, NOW, team_id="eng"))
    await refresh(api)
    assert (await api.data(MONTH))["costReport"]["totalCost"] == "11"
    await add_spend(db, SpendLog(5, three_days_ago + timedelta(hours=2), team_id="eng"))  # arrives late
    status = await refresh(api)
    assert status.rebuilt == (three_days_ago.date(),)
    for _ in range(2):
        assert (await refresh(api)).days_rebuilt == 0
    assert (await api.data(MONTH))["costReport"]["totalCost"] == "16"
    assert (await rollup_days(db))[three_days_ago.date()][0] == 2


async def test_a_day_the_raw_logs_lost_to_retention_keeps_its_rollup(api: Api, db: Database) -> None:
    old = NOW - timedelta(days=9)
    await add_spend(db, SpendLog(7, old, team_id="eng"), SpendLog(2, NOW - timedelta(days=1), team_id="eng"))
    await refresh(api)
    async with db.engine.begin() as conn:  # LiteLLM's maximum_spend_logs_retention_period at work
        await conn.execute(delete(spend_logs).where(spend_logs.c.start_time < NOW - timedelta(days=5)))
    await refresh(api)
    assert (await api.data(MONTH))["costReport"]["totalCost"] == "9"


async def test_a_forced_rebuild_from_a_date_rebuilds_only_days_with_logs(api: Api, db: Database) -> None:
    await add_spend(db, *[SpendLog(1, NOW - timedelta(days=d), team_id="eng") for d in (1, 2, 4)])
    await refresh(api)
    data = await api.data('mutation { refreshRollups(since: "2026-11-12") { builtThrough daysRebuilt } }')
    assert data["refreshRollups"] == {"builtThrough": str(TODAY), "daysRebuilt": 2}
    viewer_error = await api.error("mutation { refreshRollups { daysRebuilt } }", token=None)
    assert viewer_error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_reports_read_raw_logs_for_days_the_rollup_has_not_reached(api: Api, db: Database, clock: Clock) -> None:
    await add_spend(db, SpendLog(3, NOW - timedelta(days=2), team_id="eng"))
    await refresh(api)
    clock.now = NOW + timedelta(days=3)  # the job has not run for three days
    await add_spend(db, SpendLog(4, NOW + timedelta(days=1), team_id="eng"), SpendLog(5, clock.now, team_id="eng"))
    assert (await api.data(MONTH))["costReport"]["totalCost"] == "12"
    assert (await refresh(api)).built_through == clock.now.date()
    assert (await api.data(MONTH))["costReport"]["totalCost"] == "12"


async def test_the_view_with_the_guides_name_shows_spend_in_usd(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(1.25, NOW - timedelta(days=1), team_id="eng"))
    await refresh(api)
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT team_id, requests, spend_usd FROM cost_tracking_daily"))).one()
    assert (row[0], row[1], float(row[2])) == ("eng", 1, 1.25)


async def test_the_refresh_is_a_scheduled_job(settings: Settings) -> None:
    jobs = {job.name: job for job in scheduled_jobs(settings)}
    assert jobs["rollups"].schedule == "*/10 * * * *" and not jobs["rollups"].at_start
    tick = jobs["rollups"].last_tick(datetime.combine(TODAY, time(12, 3), tzinfo=NOW.tzinfo))
    assert tick == datetime.combine(TODAY, time(12, 0), tzinfo=NOW.tzinfo)


async def test_the_summary_table_holds_the_same_figures_without_key_and_end_user(api: Api, db: Database) -> None:
    await demo(db, rows=1500, days=20)
    await refresh(api)
    fine, summary = CostTrackingDailyRow, CostSummaryDailyRow
    async with db.reader() as session:
        by_fine = (
            await session.execute(
                select(fine.day, fine.team_id, func.sum(fine.requests), func.sum(fine.input_tokens), func.count())
                .group_by(fine.day, fine.team_id)
                .order_by(fine.day, fine.team_id)
            )
        ).all()
        by_summary = (
            await session.execute(
                select(summary.day, summary.team_id, func.sum(summary.requests), func.sum(summary.input_tokens))
                .group_by(summary.day, summary.team_id)
                .order_by(summary.day, summary.team_id)
            )
        ).all()
        spend = [await session.scalar(select(func.sum(t.spend))) for t in (fine, summary)]
    assert [tuple(r[:4]) for r in by_fine] == [tuple(r) for r in by_summary]
    assert spend[0] == spend[1] and sum(r[4] for r in by_fine) > len(by_summary)  # fewer rows, same money


async def test_budgets_can_read_the_same_spend_from_the_rollup(api: Api, db: Database) -> None:
    await demo(db, rows=1500, days=40)
    await refresh(api)
    runtime = api.runtime()
    scopes = [Scope.global_(), Scope(ScopeKind.TEAM, "engineering"), Scope(ScopeKind.USER, "user-001")]
    async with db.reader() as session:
        from_logs = await spend_by_scope(session, runtime.litellm, scopes, month_of(NOW))
        from_rollup = await rollup_spend_by_scope(session, runtime.litellm, scopes, month_of(NOW))
    assert from_rollup == from_logs and from_logs[Scope.global_()] > 0


async def test_names_longer_than_the_rollup_keeps_are_clipped_the_same_in_raw_and_rolled_reads(
    api: Api, db: Database
) -> None:
    """LiteLLM's text columns are unbounded: a 300-character user or team must not stop the rollup (PostgreSQL
    refuses values longer than the column), and raw and rolled-up reads must group it the same way."""
    long_team, long_user = "t" * 300, "u" * 300
    three_days_ago = NOW - timedelta(days=3)
    await add_spend(
        db,
        SpendLog(2, three_days_ago, team_id=long_team, user=long_user, end_user="e" * 400, model="m" * 300),
        SpendLog(3, NOW, team_id=long_team, user=long_user),
    )
    query = "{ costReport(period: MONTHLY) { breakdownByTeam { key cost } breakdownByUser { key cost } } }"
    raw = await api.data(query)
    status = await refresh(api)
    assert status.built_through == TODAY
    rolled = await api.data(query)
    assert raw == rolled
    assert rolled["costReport"]["breakdownByTeam"] == [{"key": "t" * 256, "cost": "5"}]
    assert rolled["costReport"]["breakdownByUser"] == [{"key": "u" * 256, "cost": "5"}]
