"""Budget windows: daily to yearly, calendar-aligned in the budget's time zone, several per entity, tag budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.db import Database
from tests.adversarial.support import ask
from tests.conftest import Clock
from tests.support import Api, SpendLog, add_spend

pytestmark = pytest.mark.litellm_tables

FIELDS = "id period timeZone limit monthlyLimit currentSpend remaining status periodStart periodEnd resetsAt"
CREATE = f"mutation($input: BudgetInput!) {{ createBudget(input: $input) {{ {FIELDS} }} }}"
BUDGET = f"query($id: ID!) {{ budget(id: $id) {{ {FIELDS} }} }}"


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    values = {"name": "Eng", "entityType": "TEAM", "entityId": "eng", **fields}
    created: dict[str, Any] = (await api.data(CREATE, {"input": values}))["createBudget"]
    await api.runtime().enforcement().refresh()
    return created


async def read(api: Api, budget_id: str) -> dict[str, Any]:
    await api.runtime().enforcement().refresh()
    found: dict[str, Any] = (await api.data(BUDGET, {"id": budget_id}))["budget"]
    return found


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def test_a_daily_budget_in_los_angeles_resets_at_local_midnight(api: Api, db: Database, clock: Clock) -> None:
    clock.now = utc(2026, 11, 16, 7, 30)  # 23:30 on 15 November in Los Angeles (PST)
    daily = await create(api, period="DAILY", timeZone="America/Los_Angeles", limit="50")
    assert (daily["periodStart"], daily["resetsAt"]) == ("2026-11-15T08:00:00+00:00", "2026-11-16T08:00:00+00:00")
    await add_spend(db, SpendLog(50, utc(2026, 11, 16, 7, 0), team_id="eng"))  # 23:00 local
    await api.runtime().enforcement().refresh()
    status, body = await ask(api, "late-evening")
    assert (status, body["error"]["type"]) == (429, "budget_exceeded")
    assert body["resets_at"] == "2026-11-16T08:00:00+00:00"
    clock.now = utc(2026, 11, 16, 8, 0, 1)  # one second past local midnight: a new day, nothing spent in it
    after = await read(api, daily["id"])
    assert (after["currentSpend"], after["status"]) == ("0", "OK")
    status, _ = await ask(api, "after-midnight")
    assert status == 200


async def test_the_retry_after_of_a_daily_window_counts_to_its_reset(api: Api, db: Database, clock: Clock) -> None:
    clock.now = utc(2026, 11, 16, 7, 30)
    await create(api, period="DAILY", timeZone="America/Los_Angeles", limit="1")
    await add_spend(db, SpendLog(1, utc(2026, 11, 16, 7, 0), team_id="eng"))
    await api.runtime().enforcement().refresh()
    response = await api.client.post(
        "/webhook/pre-request",
        json={"team_id": "eng", "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": "sk-master-test"},
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == str(30 * 60)


async def test_a_local_day_across_dst_is_23_hours(api: Api, db: Database, clock: Clock) -> None:
    clock.now = utc(2026, 3, 8, 20)  # 8 March 2026, the day clocks go forward in Los Angeles
    daily = await create(api, period="DAILY", timeZone="America/Los_Angeles", limit="50")
    start, end = datetime.fromisoformat(daily["periodStart"]), datetime.fromisoformat(daily["resetsAt"])
    assert end - start == timedelta(hours=23)
    await add_spend(
        db,
        SpendLog(5, start - timedelta(seconds=1), team_id="eng"),  # 7 March
        SpendLog(7, start, team_id="eng"),  # the first instant of 8 March
        SpendLog(11, end - timedelta(seconds=1), team_id="eng"),  # its last second
    )
    clock.now = end - timedelta(seconds=1)
    assert (await read(api, daily["id"]))["currentSpend"] == "18"


async def test_a_weekly_budget_anchored_on_sunday(api: Api, db: Database, clock: Clock) -> None:
    clock.now = utc(2026, 11, 18, 12)  # a Wednesday
    weekly = await create(api, period="WEEKLY", weekStartsOn="SUNDAY", limit="100")
    assert (weekly["periodStart"], weekly["resetsAt"]) == ("2026-11-15T00:00:00+00:00", "2026-11-22T00:00:00+00:00")
    await add_spend(
        db,
        SpendLog(3, utc(2026, 11, 14, 23, 59), team_id="eng"),  # Saturday: last week
        SpendLog(4, utc(2026, 11, 15, 0, 0), team_id="eng"),  # Sunday: this week
    )
    assert (await read(api, weekly["id"]))["currentSpend"] == "4"


async def test_a_monthly_budget_anchored_on_the_15th(api: Api, db: Database, clock: Clock) -> None:
    clock.now = utc(2026, 11, 20, 12)
    monthly = await create(api, monthlyLimit="100", monthStartDay=15)
    assert (monthly["periodStart"], monthly["resetsAt"]) == ("2026-11-15T00:00:00+00:00", "2026-12-15T00:00:00+00:00")
    assert monthly["monthlyLimit"] == monthly["limit"] == "100"
    await add_spend(
        db,
        SpendLog(9, utc(2026, 11, 14, 23), team_id="eng"),
        SpendLog(10, utc(2026, 11, 15, 1), team_id="eng"),
        SpendLog(20, utc(2026, 10, 20), team_id="eng"),  # an older billing month
    )
    assert (await read(api, monthly["id"]))["currentSpend"] == "10"


async def test_a_fiscal_year_starting_in_april(api: Api, db: Database, clock: Clock) -> None:
    clock.now = utc(2026, 11, 15, 12)
    yearly = await create(api, period="YEARLY", yearStartMonth=4, limit="10000")
    assert (yearly["periodStart"], yearly["resetsAt"]) == ("2026-04-01T00:00:00+00:00", "2027-04-01T00:00:00+00:00")
    assert yearly["monthlyLimit"] is None
    await add_spend(
        db,
        SpendLog(100, utc(2026, 3, 31, 23), team_id="eng"),  # the previous fiscal year
        SpendLog(200, utc(2026, 4, 1, 0, 30), team_id="eng"),
        SpendLog(300, utc(2026, 11, 1), team_id="eng"),
    )
    assert (await read(api, yearly["id"]))["currentSpend"] == "500"


async def test_a_team_with_a_daily_and_a_monthly_budget_is_blocked_by_whichever_binds(
    api: Api, db: Database, clock: Clock
) -> None:
    clock.now = utc(2026, 11, 15, 12)
    daily = await create(api, name="Eng daily", period="DAILY", limit="50")
    monthly = await create(api, name="Eng monthly", limit="500")
    await add_spend(db, SpendLog(50, utc(2026, 11, 15, 9), team_id="eng"))
    await api.runtime().enforcement().refresh()
    status, body = await ask(api, "daily-binds")
    assert (status, body["budget"]["id"], body["budget"]["period"]) == (429, daily["id"], "daily")
    assert body["resets_at"] == "2026-11-16T00:00:00+00:00"
    assert "daily" in body["error"]["message"]
    clock.now = utc(2026, 11, 16, 12)  # a new day, but the month fills up
    await add_spend(db, SpendLog(450, utc(2026, 11, 10), team_id="eng"))
    await api.runtime().enforcement().refresh()
    status, body = await ask(api, "monthly-binds")
    assert (status, body["budget"]["id"], body["resets_at"]) == (429, monthly["id"], "2026-12-01T00:00:00+00:00")
    await add_spend(db, SpendLog(50, utc(2026, 11, 16, 11), team_id="eng"))
    await api.runtime().enforcement().refresh()
    status, body = await ask(api, "both")
    # Both are exhausted: the request waits for the one that resets last.
    assert (status, body["budget"]["id"]) == (429, monthly["id"])
    assert {b["id"] for b in body["blocked_by"]} == {daily["id"], monthly["id"]}


async def test_one_entity_has_at_most_one_budget_per_period(api: Api) -> None:
    await create(api, period="DAILY", limit="5")
    error = await api.error(
        CREATE, {"input": {"name": "again", "entityType": "TEAM", "entityId": "eng", "period": "DAILY", "limit": "9"}}
    )
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "entityId"}


async def test_a_tag_budget_blocks_requests_with_that_tag_only(api: Api, db: Database, clock: Clock) -> None:
    tagged = await create(api, entityType="TAG", entityId="batch-jobs", limit="10", name="Batch")
    await add_spend(
        db,
        SpendLog(6, clock.now - timedelta(hours=1), tags=["batch-jobs", "nightly"]),
        SpendLog(4, clock.now - timedelta(hours=2), tags=["batch-jobs"]),
        SpendLog(99, clock.now - timedelta(hours=3), tags=["interactive"]),
    )
    assert (await read(api, tagged["id"]))["currentSpend"] == "10"
    status, body = await ask(api, "tag-header", team_id=None, headers={"x-litellm-tags": "nightly, batch-jobs"})
    assert (status, body["budget"]["entity_type"]) == (429, "tag")
    status, body = await ask(api, "tag-metadata", team_id=None, metadata={"tags": ["batch-jobs"]})
    assert status == 429
    status, _ = await ask(api, "other-tag", team_id=None, tags=["interactive"])
    assert status == 200
    status, _ = await ask(api, "no-tag", team_id=None)
    assert status == 200


async def test_the_rest_api_takes_litellms_budget_duration(api: Api, clock: Clock) -> None:
    response = await api.client.post(
        "/api/v1/budgets",
        headers=api.bearer(),
        json={
            "name": "Eng weekly",
            "entity_type": "team",
            "entity_id": "eng",
            "budget_duration": "7d",
            "limit": 70,
            "time_zone": "Asia/Tokyo",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["period"], body["time_zone"], body["limit"], body["monthly_limit"]) == (
        "weekly",
        "Asia/Tokyo",
        70,
        None,
    )
    assert body["period_start"] == "2026-11-08T15:00:00+00:00"  # Monday 9 November, 00:00 in Tokyo (now: Sunday)
    refused = await api.client.post(
        "/api/v1/budgets",
        headers=api.bearer(),
        json={"name": "x", "entity_type": "team", "entity_id": "ops", "budget_duration": "fortnight", "limit": 1},
    )
    assert (refused.status_code, refused.json()["error"]["field"]) == (400, "budget_duration")


async def test_bad_windows_are_refused_naming_the_field(api: Api) -> None:
    for fields, field in (
        ({"period": "DAILY", "monthlyLimit": "5"}, "monthlyLimit"),
        ({"timeZone": "Mars/Base", "limit": "5"}, "timeZone"),
        ({"monthStartDay": 31, "limit": "5"}, "monthStartDay"),
        ({"period": "YEARLY", "yearStartMonth": 0, "limit": "5"}, "yearStartMonth"),
        ({"period": "WEEKLY"}, "limit"),
    ):
        error = await api.error(CREATE, {"input": {"name": "x", "entityType": "TEAM", "entityId": "t", **fields}})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, (fields, error)


async def test_budget_alerts_come_once_per_window(api: Api, db: Database, clock: Clock) -> None:
    from sqlalchemy import func, select

    from models.alerts import AlertRow

    clock.now = utc(2026, 11, 15, 12)
    await create(api, period="DAILY", limit="1")
    await add_spend(db, SpendLog(1, utc(2026, 11, 15, 9), team_id="eng"))
    await api.runtime().enforcement().refresh()
    for i in range(3):
        await ask(api, f"day-one-{i}")
    clock.now = utc(2026, 11, 16, 12)
    await add_spend(db, SpendLog(1, utc(2026, 11, 16, 9), team_id="eng"))
    await api.runtime().enforcement().refresh()
    for i in range(3):
        await ask(api, f"day-two-{i}")
    import asyncio

    await asyncio.gather(*list(api.runtime().enforcement()._tasks))
    async with db.reader() as session:
        count = await session.scalar(
            select(func.count()).select_from(AlertRow).where(AlertRow.type == "budget_exceeded")
        )
    assert count == 2


async def test_a_budget_alert_names_its_month_in_the_budgets_zone(api: Api, db: Database, clock: Clock) -> None:
    """A Tokyo November starts at 15:00 UTC on October 31: its alert's `details.period` is 2026-11, not the UTC
    month of that instant; the alert still comes once per window (its dedupe key is the window's UTC start)."""
    from sqlalchemy import select

    from models.alerts import AlertRow

    clock.now = utc(2026, 11, 15, 12)
    budget = await create(api, timeZone="Asia/Tokyo", limit="1")
    await add_spend(db, SpendLog(1, utc(2026, 11, 15, 9), team_id="eng"))
    await api.runtime().enforcement().refresh()
    for i in range(3):
        await ask(api, f"tokyo-{i}")
    import asyncio

    await asyncio.gather(*list(api.runtime().enforcement()._tasks))
    async with db.reader() as session:
        rows = (await session.scalars(select(AlertRow).where(AlertRow.type == "budget_exceeded"))).all()
    assert [(r.dedupe_key, r.details["period"], r.details["time_zone"], r.details["period_start"]) for r in rows] == [
        (
            f"budget:{budget['id']}:budget_exceeded:2026-10-31T15:00Z",
            "2026-11",
            "Asia/Tokyo",
            "2026-10-31T15:00:00+00:00",
        )
    ]


@pytest.mark.parametrize(
    ("window", "name", "start", "key"),
    [
        # 12:00 UTC on Sunday Nov 15 is 21:00 that day in Tokyo, 04:00 in Los Angeles.
        ({"period": "DAILY", "timeZone": "Asia/Tokyo"}, "2026-11-15", "2026-11-14T15:00", "2026-11-14T15:00Z"),
        ({"period": "WEEKLY", "timeZone": "America/Los_Angeles"}, "2026-W46", "2026-11-09T08:00", "2026-11-09T08:00Z"),
        # A week from Sunday Nov 15 is named by the ISO week of its first day (Nov 9 to 15).
        ({"period": "WEEKLY", "weekStartsOn": "SUNDAY"}, "2026-W46", "2026-11-15T00:00", "2026-11-15T00:00Z"),
        # Quarters from February: Nov 1 to Feb 1, the calendar quarter of Nov 1 (a UTC 1st keeps its YYYY-MM key).
        ({"period": "QUARTERLY", "yearStartMonth": 2}, "2026-Q4", "2026-11-01T00:00", "2026-11"),
        (
            {"period": "YEARLY", "yearStartMonth": 4, "timeZone": "Asia/Tokyo"},
            "2026",
            "2026-03-31T15:00",
            "2026-03-31T15:00Z",
        ),
    ],
)
async def test_a_budget_alert_names_its_window_by_its_cadence(
    api: Api, db: Database, clock: Clock, window: dict[str, Any], name: str, start: str, key: str
) -> None:
    """A daily budget's alert names its day, a weekly one's its ISO week, a quarter its calendar quarter, a year its
    year, in the budget's zone, never the month the window starts in; the dedupe key is still the window's UTC
    start, so the alert comes once per window."""
    import asyncio

    from sqlalchemy import select

    from models.alerts import AlertRow

    clock.now = utc(2026, 11, 15, 12)
    budget = await create(api, limit="1", **window)
    await add_spend(db, SpendLog(1, utc(2026, 11, 15, 11), team_id="eng"))
    await api.runtime().enforcement().refresh()
    for i in range(3):
        await ask(api, f"named-{i}")
    await asyncio.gather(*list(api.runtime().enforcement()._tasks))
    async with db.reader() as session:
        rows = (await session.scalars(select(AlertRow).where(AlertRow.type == "budget_exceeded"))).all()
    assert [(r.dedupe_key, r.details["period"], r.details["period_start"]) for r in rows] == [
        (f"budget:{budget['id']}:budget_exceeded:{key}", name, f"{start}:00+00:00")
    ]
