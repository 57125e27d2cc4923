"""Cost trends: a dense daily series and a direction judged on whole weeks, so weekends and zero-spend days do
not read as declines; the series matches the raw logs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from models.db import Database
from resolvers.reports.trends import TrendDirection, comparison_window, direction_of
from tests.conftest import NOW
from tests.ledger import cents, demo, raw_ledger, refresh
from tests.support import Api, SpendLog, add_spend

pytestmark = pytest.mark.litellm_tables

TREND = """query($days: Int!, $model: String, $team: String) { costTrend(days: $days, model: $model, teamId: $team) {
  days direction changePercent recentStart recentEnd recentCost earlierStart earlierEnd earlierCost
  points { date cost requests } } }"""
WEEKDAY = (10.0, 11.0, 12.0, 11.0, 9.0, 2.0, 1.0)  # Monday .. Sunday


async def trend(api: Api, days: int = 30, **variables: Any) -> dict[str, Any]:
    found: dict[str, Any] = (await api.data(TREND, {"days": days, **variables}))["costTrend"]
    return found


async def seasonal(db: Database, days: int, growth: float = 0.0, team: str = "eng") -> None:
    logs = []
    for back in range(1, days + 1):
        moment = NOW - timedelta(days=back)
        logs.append(SpendLog(WEEKDAY[moment.weekday()] * (1 + growth) ** (days - back), moment, team_id=team))
    await add_spend(db, *logs)


def test_the_windows_are_whole_weeks() -> None:
    assert [comparison_window(d) for d in (1, 7, 14, 15, 28, 29, 30, 90)] == [7, 7, 7, 7, 7, 14, 14, 42]


@pytest.mark.parametrize(
    ("recent", "earlier", "expected"),
    [
        (105, 100, (TrendDirection.INCREASING, Decimal("5.00"))),  # the boundary itself is a change
        (104, 100, (TrendDirection.STABLE, Decimal("4.00"))),
        (106, 100, (TrendDirection.INCREASING, Decimal("6.00"))),
        (50, 100, (TrendDirection.DECREASING, Decimal("-50.00"))),
        (0, 0, (TrendDirection.STABLE, Decimal(0))),
        (3, 0, (TrendDirection.INCREASING, None)),
    ],
)
def test_the_direction_rule(recent: int, earlier: int, expected: tuple[TrendDirection, Decimal | None]) -> None:
    assert direction_of(recent, earlier) == expected


async def test_weekday_seasonality_alone_reads_stable_whatever_the_window(api: Api, db: Database) -> None:
    await seasonal(db, 70)
    await refresh(api)
    for days in (7, 10, 30, 45):
        found = await trend(api, days)
        assert (found["direction"], found["changePercent"]) == ("STABLE", "0"), days


async def test_growth_reads_increasing_and_a_drop_decreasing(api: Api, db: Database) -> None:
    await seasonal(db, 60, growth=0.02, team="growing")
    await seasonal(db, 60, growth=-0.02, team="shrinking")
    await refresh(api)
    up = await trend(api, 30, team="growing")
    down = await trend(api, 30, team="shrinking")
    assert up["direction"] == "INCREASING" and Decimal(up["changePercent"]) > 30
    assert down["direction"] == "DECREASING" and Decimal(down["changePercent"]) < -20
    assert (up["recentStart"], up["recentEnd"], up["earlierStart"]) == ("2026-11-01", "2026-11-14", "2026-10-18")


async def test_spend_from_nothing_is_increasing_without_a_percentage(api: Api, db: Database) -> None:
    await add_spend(db, SpendLog(2, NOW - timedelta(days=1), team_id="eng"))
    found = await trend(api, 14)
    assert (found["direction"], found["changePercent"]) == ("INCREASING", None)
    assert [p["cost"] for p in found["points"]][-3:] == ["0", "2", "0"]


async def test_the_series_is_dense_and_matches_the_raw_logs(api: Api, db: Database) -> None:
    await demo(db, rows=1500, days=20)
    await refresh(api)
    found = await trend(api, 30, model="smart")
    assert len(found["points"]) == 30 and found["points"][-1]["date"] == str(NOW.date())
    where = "AND (model = 'smart' OR model_group = 'smart')"
    for point in found["points"][::3]:
        day = NOW.date().fromisoformat(point["date"])
        ledger = await raw_ledger(db, day, day, "'all'", where)
        assert cents(point["cost"]) == (ledger.cents("all") if ledger.requests else 0)
        assert point["requests"] == ledger.requests["all"]


async def test_bad_days_are_refused(api: Api) -> None:
    for days in (0, 367):
        error = await api.error(TREND, {"days": days})
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "days"}
    rest = await api.client.get("/api/v1/reports/trend", params={"days": "many"}, headers=api.bearer())
    assert rest.status_code == 400 and rest.json()["error"]["field"] == "days"
    ok = await api.client.get("/api/v1/reports/trend", params={"days": 30}, headers=api.bearer())
    assert ok.json()["direction"] == "stable" and len(ok.json()["points"]) == 30
