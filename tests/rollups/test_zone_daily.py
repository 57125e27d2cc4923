"""The daily summary by local day in the organisation's zone (SPENDPLANE_TIME_ZONE): built by the rollup job for the
local days the watermark has closed, rebuilt with every UTC day it overlaps (late rows), emptied and refilled when
the zone changes, read by figures per local day in that zone only; every answer equals plain SQL over the raw logs
with that zone's bounds, and equals the offset-piece read of another zone at the same offset."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import BigInteger, delete, func, select, type_coerce, update

from models.db import Database
from models.litellm import spend_logs
from models.migrate import downgrade, upgrade
from models.rollups import RollupStateRow
from resolvers.rollups import refresh_rollups
from resolvers.rollups.reading import (
    BLOCKS,
    BUCKETS,
    SUMMARY_BUCKETS,
    TOTAL_BUCKETS,
    ZONE_DAILY,
    ZONE_STATE,
    DayRange,
    Dim,
    Filters,
    aggregate,
    spend_source,
)
from tests.conftest import NOW
from tests.reports.test_report_zones import TREND, bounds, raw_sql
from tests.support import Api, SpendLog, add_spend

pytestmark = pytest.mark.litellm_tables

DAYS = DayRange(date(2026, 10, 26), date(2026, 11, 16))  # to the open local day (the 15th) included


async def dense(db: Database) -> None:
    """A request every quarter hour for three weeks (the Los Angeles DST change included), models rotating, so a
    local day one bucket off, or a group counted twice, changes the figures."""
    logs = []
    moment = datetime(2026, 10, 24, 0, 7, tzinfo=UTC)
    cents = 1
    while moment < NOW:
        model = ("gpt-4o", "claude", "mistral")[cents % 3]
        logs.append(
            SpendLog(
                cents / 100,
                moment,
                team_id=("eng", "ops")[cents % 2],
                model=model,
                prompt_tokens=cents % 7,
                api_key=("k1", "k2")[cents % 5 % 2],
            )
        )
        moment += timedelta(minutes=15)
        cents = cents % 997 + 1
    await add_spend(db, *logs)


async def refresh(api: Api, zone: str | None, **kwargs: Any) -> None:
    runtime = api.runtime()
    await refresh_rollups(runtime.db, runtime.litellm, NOW, recheck_days=62, zone=zone, **kwargs)


async def per_day_and_model(db: Database, api: Api, zone: str) -> dict[tuple[date, str], tuple[Decimal, int, int]]:
    async with db.reader() as session:
        source = await spend_source(session, api.runtime().litellm)
        grouped = await aggregate(session, source, DAYS, (Dim.DAY, Dim.MODEL), Filters(), ZoneInfo(zone))
    return {(d, m): (t.cost, t.requests, t.input_tokens) for (d, m), t in grouped.items()}


async def expected(db: Database, zone: str) -> dict[tuple[date, str], tuple[Decimal, int, int]]:
    found = {}
    for day in DAYS.days():
        start, end = bounds(day, zone)
        for model, (usd, requests, prompt, _) in (await raw_sql(db, start, min(end, NOW), "model")).items():
            found[(day, model)] = (usd, requests, prompt)
    return found


async def state(db: Database) -> tuple[str | None, date | None]:
    async with db.reader() as session:
        row = await session.get(RollupStateRow, ZONE_STATE)
        return (None, None) if row is None else (row.zone, row.built_through)


async def zone_days(db: Database) -> dict[date, tuple[int, int]]:
    async with db.reader() as session:
        rows = await session.execute(
            select(
                ZONE_DAILY.c.day, func.sum(ZONE_DAILY.c.requests), func.sum(type_coerce(ZONE_DAILY.c.spend, BigInteger))
            ).group_by(ZONE_DAILY.c.day)
        )
        return {d: (int(r), int(s)) for d, r, s in rows}


async def test_the_zones_local_days_are_summed_once_read_from_there_and_equal_raw_sql(api: Api, db: Database) -> None:
    await dense(db)
    await refresh(api, "Asia/Tokyo")
    # NOW is 21:00 on the 15th in Tokyo, the watermark the 15th 00:00 UTC (09:00 there): the 14th is the last
    # local day wholly rolled up; the first bucket (Oct 24 00:07 UTC) is on the 24th in Tokyo.
    assert await state(db) == ("Asia/Tokyo", date(2026, 11, 15))
    held = await zone_days(db)
    assert min(held) == date(2026, 10, 24) and max(held) == date(2026, 11, 14)
    assert held[date(2026, 11, 1)][0] == 96  # a request every quarter hour of the local day
    want = await expected(db, "Asia/Tokyo")
    assert await per_day_and_model(db, api, "Asia/Tokyo") == want
    # Asia/Seoul (+09:00 too, not the organisation's zone) reads the offset pieces: the same figures.
    assert await per_day_and_model(db, api, "Asia/Seoul") == want
    # The Tokyo read takes its closed days from the table (a change there shows), Seoul's does not.
    async with db.sessions() as session, session.begin():
        await session.execute(
            update(ZONE_DAILY)
            .where(ZONE_DAILY.c.day == date(2026, 11, 3), ZONE_DAILY.c.model == "claude", ZONE_DAILY.c.team_id == "eng")
            .values(requests=ZONE_DAILY.c.requests + 1000)
        )
    tampered = await per_day_and_model(db, api, "Asia/Tokyo")
    assert tampered[(date(2026, 11, 3), "claude")][1] == want[(date(2026, 11, 3), "claude")][1] + 1000
    assert await per_day_and_model(db, api, "Asia/Seoul") == want
    # By key (not in the table's grain): the pieces, exact.
    async with db.reader() as session:
        source = await spend_source(session, api.runtime().litellm)
        by_key = await aggregate(session, source, DAYS, (Dim.DAY, Dim.KEY), Filters(), ZoneInfo("Asia/Tokyo"))
    for day in DAYS.days():
        start, end = bounds(day, "Asia/Tokyo")
        raw = await raw_sql(db, start, min(end, NOW), "api_key")
        assert {k: (t.cost, t.requests) for (d, k), t in by_key.items() if d == day} == {
            k: (v[0], v[1]) for k, v in raw.items()
        }, day
    # A forced rebuild of a UTC day rebuilds the local days it overlaps (the 3rd and the 4th in Tokyo).
    await refresh(api, "Asia/Tokyo", since=date(2026, 11, 3))
    assert await per_day_and_model(db, api, "Asia/Tokyo") == want
    # The trend (GraphQL) in the service's zone reads the same way.
    points = (await api.data(TREND, {"days": 14, "zone": "Asia/Tokyo"}))["costTrend"]["points"]
    for point in points:
        day = date.fromisoformat(point["date"])
        assert Decimal(point["cost"]) == sum((v[0] for (d, _), v in want.items() if d == day), Decimal(0)), day


async def test_late_rows_in_a_closed_local_day_are_in_its_row_after_the_recheck(api: Api, db: Database) -> None:
    await dense(db)
    await refresh(api, "Asia/Tokyo")
    before = await zone_days(db)
    # 20:00 UTC on Nov 10 is 05:00 on the 11th in Tokyo: the UTC day is rebuilt, and with it the local 11th.
    await add_spend(db, SpendLog(2.5, datetime(2026, 11, 10, 20, 0, tzinfo=UTC), team_id="eng", model="late"))
    await refresh(api, None)  # a run that names no zone (e.g. before a chargeback) keeps the table's
    after = await zone_days(db)
    assert after[date(2026, 11, 11)] == (
        before[date(2026, 11, 11)][0] + 1,
        before[date(2026, 11, 11)][1] + 2_500_000_000,
    )
    assert {d: v for d, v in after.items() if d != date(2026, 11, 11)} == {
        d: v for d, v in before.items() if d != date(2026, 11, 11)
    }
    assert await per_day_and_model(db, api, "Asia/Tokyo") == await expected(db, "Asia/Tokyo")


async def test_a_new_zone_empties_the_table_and_refills_it_and_reads_never_mix_zones(api: Api, db: Database) -> None:
    await dense(db)
    await refresh(api, "Asia/Tokyo")
    tokyo = await expected(db, "Asia/Tokyo")
    # Los Angeles: the 25-hour day (Nov 1) included; the watermark (Nov 15 00:00 UTC) is 16:00 on the 14th there.
    await refresh(api, "America/Los_Angeles")
    assert await state(db) == ("America/Los_Angeles", date(2026, 11, 14))
    held = await zone_days(db)
    assert held[date(2026, 11, 1)][0] == 100 and held[date(2026, 11, 2)][0] == 96
    assert await per_day_and_model(db, api, "America/Los_Angeles") == await expected(db, "America/Los_Angeles")
    assert await per_day_and_model(db, api, "Asia/Tokyo") == tokyo  # the pieces, now
    # A table switched but not filled yet (a run stopped half way) is read by nobody.
    async with db.sessions() as session, session.begin():
        await session.execute(
            update(RollupStateRow.__table__).where(RollupStateRow.name == ZONE_STATE).values(built_through=None)
        )
    assert await per_day_and_model(db, api, "America/Los_Angeles") == await expected(db, "America/Los_Angeles")
    # UTC (or any zone at offset zero) keeps no table: its local days are the UTC days.
    await refresh(api, "UTC")
    assert await state(db) == (None, None) and await zone_days(db) == {}
    await refresh(api, "Africa/Abidjan")
    assert await state(db) == (None, None) and await zone_days(db) == {}
    assert await per_day_and_model(db, api, "Asia/Tokyo") == tokyo


async def test_a_downgrade_past_the_zones_table_and_back_refills_it(api: Api, db: Database) -> None:
    await dense(db)
    await refresh(api, "Asia/Kathmandu")
    built = await zone_days(db)
    assert len(built) == 22
    await downgrade(db, embedded=True, revision="0013_first_start_soft_limit")
    await upgrade(db, embedded=True)
    assert await state(db) == (None, None) and await zone_days(db) == {}
    assert await per_day_and_model(db, api, "Asia/Kathmandu") == await expected(db, "Asia/Kathmandu")
    await refresh(api, "Asia/Kathmandu")
    assert await zone_days(db) == built
    assert await per_day_and_model(db, api, "Asia/Kathmandu") == await expected(db, "Asia/Kathmandu")


async def test_a_day_rolled_up_before_the_buckets_reads_as_the_pieces_read_it(api: Api, db: Database) -> None:
    # A UTC day whose raw logs are gone and that has daily rows but no buckets (rolled up before migration 0010):
    # its local days cannot be exact in any zone; the zone's table must answer as the offset pieces do (Seoul).
    await dense(db)
    await refresh(api, "Asia/Tokyo")
    day = datetime(2026, 11, 5, tzinfo=UTC)
    async with db.sessions() as session, session.begin():
        for table in (BUCKETS, SUMMARY_BUCKETS, TOTAL_BUCKETS, BLOCKS):
            await session.execute(delete(table).where(table.c.bucket >= day, table.c.bucket < day + timedelta(days=1)))
        await session.execute(
            delete(spend_logs).where(spend_logs.c.start_time >= day, spend_logs.c.start_time < day + timedelta(days=1))
        )
    await refresh(api, "UTC")
    await refresh(api, "Asia/Tokyo")
    assert (await state(db))[0] == "Asia/Tokyo"
    tokyo, seoul = await per_day_and_model(db, api, "Asia/Tokyo"), await per_day_and_model(db, api, "Asia/Seoul")
    assert tokyo == seoul
    # Not the raw figures (the day's evening is missing from the local 6th and its morning counted on the 5th).
    assert tokyo != await expected(db, "Asia/Tokyo")
