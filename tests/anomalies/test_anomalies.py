"""Spend anomalies: a spike in one key's hourly spend is found for the key, its user and its team (each naming the
key as the driver), alerts once per scope and hour however often the scan runs, can be acknowledged or ignored
(muting its scope) by an admin, and is visible to a viewer only within its own team or user."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from models.alerts import AlertDeliveryRow
from models.anomalies import SpendAnomalyRow
from models.db import Database
from resolvers.anomalies import get_anomaly
from resolvers.anomalies.detection import (
    Granularity,
    Requests,
    cost_score,
    count_score,
    daily_expectation,
    driver,
    fit_request_costs,
    hourly_expectation,
    judge,
    largest_score,
    request_scores,
)
from resolvers.anomalies.series import daily_cube, hourly_cube
from resolvers.platform.config import Settings
from resolvers.platform.errors import NotFound
from resolvers.reports import report_source
from resolvers.service.schedule import scheduled_jobs
from tests.conftest import NOW, Clock, started
from tests.ledger import refresh
from tests.receivers import WebhookReceiver
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

DETECT = "mutation { detectSpendAnomalies { found new alerted } }"
FIELDS = """id scopeKind scopeId granularity bucketStart bucketEnd teamId userId actual expected excess score
  driver { kind id excess share } description status alertId handledBy note"""
ANOMALIES = f"query($status: AnomalyStatus) {{ spendAnomalies(status: $status) {{ {FIELDS} }} }}"
ACK = f"mutation($id: ID!, $note: String) {{ acknowledgeSpendAnomaly(id: $id, note: $note) {{ {FIELDS} }} }}"
IGNORE = f"mutation($id: ID!, $hours: Int!) {{ ignoreSpendAnomaly(id: $id, muteHours: $hours) {{ {FIELDS} }} }}"
LAST_HOUR = NOW - timedelta(hours=1)  # 11:00-12:00 UTC on Sunday 2026-11-15, the last closed hour at NOW


@pytest.fixture
async def quiet_api(settings: Settings, clock: Clock) -> Any:
    """The app without its periodic jobs: each test runs the scan itself."""
    async with started(settings, clock, jobs_enabled=False) as running:
        yield running


def business_hours(key: str, user: str, team: str, seed: int, days: int = 14) -> list[SpendLog]:
    """A key's usual traffic: a little at night, more in the day, every hour of the last `days` days."""
    rng = random.Random(seed)
    logs = []
    start = NOW.replace(hour=0) - timedelta(days=days)
    for hour in range(days * 24 + NOW.hour):
        moment = start + timedelta(hours=hour)
        base = 2.0 if 8 <= moment.hour < 18 else 0.4
        if moment.weekday() >= 5:
            base *= 0.5
        logs.append(
            SpendLog(
                round(base * rng.uniform(0.7, 1.3), 6),
                moment + timedelta(minutes=rng.randint(0, 59)),
                team_id=team,
                user=user,
                api_key=key,
                model="gpt-4o-mini",
            )
        )
    return logs


async def spike(db: Database, usd: float, at: Any = LAST_HOUR, key: str = "key-ann", requests: int = 8) -> None:
    """A burst: `requests` o3 requests costing `usd` in all, where the key makes one request an hour."""
    await add_spend(
        db,
        *(
            SpendLog(usd / requests, at + timedelta(minutes=20 + m), team_id="eng", user="ann", api_key=key, model="o3")
            for m in range(requests)
        ),
    )


async def usual(db: Database) -> None:
    await add_spend(
        db,
        *business_hours("key-ann", "ann", "eng", 1),
        *business_hours("key-bob", "bob", "eng", 2),
        *business_hours("key-cid", "cid", "ops", 3),
    )


async def test_a_spike_is_found_per_scope_with_its_driver_and_alerts_once_per_scope_and_hour(
    quiet_api: Api, db: Database
) -> None:
    api = quiet_api
    await usual(db)
    await spike(db, 40.0)
    first = (await api.data(DETECT))["detectSpendAnomalies"]
    found = (await api.data(ANOMALIES))["spendAnomalies"]
    by_scope = {(a["scopeKind"], a["scopeId"]): a for a in found}
    # The key, its user and its team; not bob, not the ops team, not the model (o3 has no history to judge by).
    assert set(by_scope) == {("key", "key-ann"), ("user", "ann"), ("team", "eng")}
    assert first == {"found": 3, "new": 3, "alerted": 3}
    for a in found:
        assert a["granularity"] == "HOUR" and a["status"] == "OPEN"
        assert a["bucketStart"].startswith("2026-11-15T11:00:00") and a["bucketEnd"].startswith("2026-11-15T12:00")
        assert float(a["actual"]) > 40 > float(a["expected"]) and a["score"] >= 5
    assert "in 9 requests, 1.1 expected" in by_scope[("key", "key-ann")]["description"]
    team = by_scope[("team", "eng")]
    assert team["driver"]["kind"] == "key" and team["driver"]["id"] == "key-ann"
    assert 0.9 <= team["driver"]["share"] <= 1.0 and float(team["driver"]["excess"]) > 35
    assert "key key-ann explains" in team["description"]
    assert by_scope[("key", "key-ann")]["teamId"] == "eng" and by_scope[("key", "key-ann")]["userId"] == "ann"
    # Scanning again (the job every hour, someone pressing the button) adds nothing and alerts nobody again.
    assert (await api.data(DETECT))["detectSpendAnomalies"] == {"found": 3, "new": 0, "alerted": 0}
    alerts = (await api.data("{ alerts(type: SPEND_ANOMALY) { id entityType entityId teamId details } }"))["alerts"]
    assert sorted((a["entityType"], a["entityId"]) for a in alerts) == sorted(by_scope)
    assert {a["id"] for a in alerts} == {a["alertId"] for a in found}
    team_alert = next(a for a in alerts if a["entityType"] == "team")
    assert team_alert["details"]["driver_id"] == "key-ann" and team_alert["details"]["granularity"] == "hour"


async def test_one_request_far_out_in_the_scopes_own_request_costs_is_found_and_says_so(
    quiet_api: Api, db: Database
) -> None:
    """One $200 request where the key's requests cost $0.14-2.60: its usual number of requests in the hour, but
    its dearest request is far out in the lognormal fitted to the key's request costs of the last 14 days. The
    alert says so: the request, how rare one that dear is, and its z."""
    await usual(db)
    await spike(db, 200.0, requests=1)
    await quiet_api.data(DETECT)
    found = {(a["scopeKind"], a["scopeId"]): a for a in (await quiet_api.data(ANOMALIES))["spendAnomalies"]}
    assert {("key", "key-ann"), ("user", "ann"), ("team", "eng")} <= set(found)
    key = found[("key", "key-ann")]
    assert "in 2 requests" in key["description"] and "its dearest request, $200.00, is 1 in " in key["description"]
    async with db.reader() as session:
        rows = (await session.scalars(select(SpendAnomalyRow).where(SpendAnomalyRow.scope_id == "key-ann"))).all()
    details = rows[0].details
    assert details["largest"] == 200.0 and details["largest_score"] >= 5 and details["largest_one_in"] > 3_000_000


def expensive_now_and_then(days: int = 14) -> list[SpendLog]:
    """Dee's traffic: a $0.10 request every few minutes in the day and one an hour at night, and now and then
    (eight times in the history) one long o3 answer costing $3.50."""
    rng = random.Random(7)
    logs = []
    start = NOW.replace(hour=0) - timedelta(days=days)
    for hour in range(days * 24 + NOW.hour - 1):
        moment = start + timedelta(hours=hour)
        for _ in range(6 if 8 <= moment.hour < 18 else 1):
            when = moment + timedelta(minutes=rng.randint(0, 59))
            logs.append(SpendLog(0.1, when, team_id="ops", user="dee", api_key="key-dee", model="gpt-4o-mini"))
    for day in range(1, 15, 2):
        when = NOW - timedelta(days=day, hours=rng.randint(0, 20))
        logs.append(SpendLog(3.5, when, team_id="ops", user="dee", api_key="key-dee", model="o3"))
    return logs


async def test_one_expensive_request_of_a_kind_the_scope_pays_now_and_then_raises_nothing(
    quiet_api: Api, db: Database
) -> None:
    """Hourly spend 5 times its usual, far past its robust scale, but carried by one request: the scope's usual
    number of requests, and one costing no more than those it has paid before. Its own request costs explain it."""
    await add_spend(db, *expensive_now_and_then())
    usual_hour = [
        SpendLog(
            0.1, LAST_HOUR + timedelta(minutes=m), team_id="ops", user="dee", api_key="key-dee", model="gpt-4o-mini"
        )
        for m in range(0, 60, 10)
    ]
    await add_spend(db, *usual_hour)
    await add_spend(
        db, SpendLog(3.0, LAST_HOUR + timedelta(minutes=30), team_id="ops", user="dee", api_key="key-dee", model="o3")
    )
    assert (await quiet_api.data(DETECT))["detectSpendAnomalies"] == {"found": 0, "new": 0, "alerted": 0}


async def test_a_leaked_key_spending_at_night_is_found_by_its_request_count(
    quiet_api: Api, db: Database, clock: Clock
) -> None:
    """At 03:00 UTC the key makes 40 of its usual requests, where it makes one an hour at night."""
    await usual(db)
    night = NOW.replace(hour=3)
    clock.now = night + timedelta(hours=1)
    await add_spend(
        db,
        *(
            SpendLog(
                0.5, night + timedelta(minutes=m), team_id="eng", user="ann", api_key="key-ann", model="gpt-4o-mini"
            )
            for m in range(0, 60, 1)
            if m % 3 != 0
        ),
    )
    assert (await quiet_api.data(DETECT))["detectSpendAnomalies"]["found"] >= 1
    found = {(a["scopeKind"], a["scopeId"]): a for a in (await quiet_api.data(ANOMALIES))["spendAnomalies"]}
    key = found[("key", "key-ann")]
    assert key["granularity"] == "HOUR" and key["bucketStart"].startswith("2026-11-15T03:00:00")
    assert float(key["actual"]) > 20 and "41 requests" in key["description"]
    assert found[("team", "eng")]["driver"]["id"] == "key-ann"


async def test_a_quiet_hour_raises_nothing(quiet_api: Api, db: Database) -> None:
    await usual(db)
    assert (await quiet_api.data(DETECT))["detectSpendAnomalies"] == {"found": 0, "new": 0, "alerted": 0}


async def test_anomaly_alerts_go_to_the_webhook_and_the_scopes_budget_email(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with WebhookReceiver() as receiver:
        overrides = {"jobs_enabled": False, "alert_webhook_url": receiver.url, "anomaly_alert_emails": ("ops@x.io",)}
        async with started(settings, clock, **overrides) as api:
            await api.data(
                "mutation($i: BudgetInput!) { createBudget(input: $i) { id } }",
                {
                    "i": {
                        "name": "Eng",
                        "entityType": "TEAM",
                        "entityId": "eng",
                        "monthlyLimit": "100000",
                        "alertEmail": "eng@x.io",
                    }
                },
            )
            await usual(db)
            await spike(db, 40.0)
            await api.data(DETECT)
            async with db.reader() as session:
                rows = (await session.scalars(select(AlertDeliveryRow))).all()
    targets = sorted((r.channel, r.target) for r in rows)
    # Every anomaly: the webhook and the configured address; the team's anomaly also its budget's alert email.
    assert targets.count(("webhook", receiver.url)) == 3 and targets.count(("email", "ops@x.io")) == 3
    assert targets.count(("email", "eng@x.io")) == 1


async def test_acknowledge_and_ignore_are_for_admins_and_ignoring_mutes_the_scope(
    quiet_api: Api, db: Database, clock: Clock
) -> None:
    api = quiet_api
    await usual(db)
    await spike(db, 40.0)
    await api.data(DETECT)
    found = {(a["scopeKind"], a["scopeId"]): a for a in (await api.data(ANOMALIES))["spendAnomalies"]}
    key, team = found[("key", "key-ann")], found[("team", "eng")]
    await add_virtual_key(db, "sk-ann", user_id="ann", team_id="eng")
    viewer = await api.login("sk-ann")
    assert (await api.error(ACK, {"id": key["id"]}, token=viewer))["extensions"]["code"] == "FORBIDDEN"
    acked = (await api.data(ACK, {"id": team["id"], "note": "the batch job, expected"}))["acknowledgeSpendAnomaly"]
    assert acked["status"] == "ACKNOWLEDGED" and acked["note"] == "the batch job, expected" and acked["handledBy"]
    again = (await api.data(ACK, {"id": team["id"], "note": "later"}))["acknowledgeSpendAnomaly"]
    assert again["note"] == "the batch job, expected"  # the first acknowledgement stands
    ignored = (await api.data(IGNORE, {"id": key["id"], "hours": 24}))["ignoreSpendAnomaly"]
    assert ignored["status"] == "IGNORED"
    # The next hour the key spikes again: stored (ignored, no alert) for the muted key; its user and team alert.
    clock.now = NOW + timedelta(hours=1)
    await spike(db, 40.0, at=NOW)
    result = (await api.data(DETECT))["detectSpendAnomalies"]
    later = [a for a in (await api.data(ANOMALIES))["spendAnomalies"] if a["bucketStart"].startswith("2026-11-15T12")]
    states = {(a["scopeKind"], a["status"], a["alertId"] is None) for a in later}
    assert ("key", "IGNORED", True) in states and ("team", "OPEN", False) in states
    assert result["alerted"] == result["new"] - 1
    bad = await api.error(IGNORE, {"id": key["id"], "hours": -1})
    assert bad["extensions"]["code"] == "BAD_USER_INPUT" and bad["extensions"]["field"] == "muteHours"
    bad = await api.error(ACK, {"id": "not-an-id"})
    assert bad["extensions"]["code"] == "BAD_USER_INPUT" and bad["extensions"]["field"] == "id"
    long = await api.error(ACK, {"id": key["id"], "note": "x" * 3000})
    assert long["extensions"]["field"] == "note"
    missing = await api.error(ACK, {"id": "00000000-0000-4000-8000-000000000000"})
    assert missing["extensions"]["code"] == "NOT_FOUND"


async def test_viewers_see_anomalies_of_their_own_team_and_user_only(quiet_api: Api, db: Database) -> None:
    api = quiet_api
    await usual(db)
    await spike(db, 40.0)
    await api.data(DETECT)
    await add_virtual_key(db, "sk-bob", user_id="bob", team_id="eng")
    await add_virtual_key(db, "sk-cid", user_id="cid", team_id="ops")
    bob = await api.login("sk-bob")
    cid = await api.login("sk-cid")
    seen = {(a["scopeKind"], a["scopeId"]) for a in (await api.data(ANOMALIES, token=bob))["spendAnomalies"]}
    assert seen == {("key", "key-ann"), ("user", "ann"), ("team", "eng")}  # all three belong to team eng
    assert (await api.data(ANOMALIES, token=cid))["spendAnomalies"] == []
    assert (await api.error(DETECT, token=bob))["extensions"]["code"] == "FORBIDDEN"
    # By id (resolvers.anomalies.get_anomaly), one cid may not read answers as a missing id: no existence oracle.
    runtime = api.runtime()
    eng = (await api.data(ANOMALIES, token=bob))["spendAnomalies"][0]["id"]
    missing = "00000000-0000-4000-8000-000000000000"
    answers = []
    async with runtime.read() as session:
        assert (await get_anomaly(session, runtime.authenticate(bob), eng)).id == eng
        for anomaly_id in (eng, missing):
            with pytest.raises(NotFound) as refused:
                await get_anomaly(session, runtime.authenticate(cid), anomaly_id)
            answers.append((refused.value.message.replace(anomaly_id, "<id>"), refused.value.field))
    assert answers[0] == answers[1] == ("no spend anomaly <id>", "id")


async def test_the_cubes_carry_request_counts_from_the_rollup_and_the_raw_logs(quiet_api: Api, db: Database) -> None:
    """Daily counts come from the rollup once it is built (failed requests count, as LiteLLM logs them), hourly
    counts and each hour's most expensive request from the raw logs."""
    day = NOW.date() - timedelta(days=2)
    at = NOW - timedelta(days=2)
    logs = [SpendLog(0.25, at + timedelta(minutes=m), team_id="eng", user="ann", api_key="key-ann") for m in (1, 2, 3)]
    logs.append(SpendLog(1.5, at + timedelta(minutes=9), team_id="eng", user="ann", api_key="key-ann"))
    logs.append(
        SpendLog(0.0, at + timedelta(minutes=40), team_id="eng", user="ann", api_key="key-ann", status="failure")
    )
    await add_spend(db, *logs)
    runtime = quiet_api.runtime()
    await refresh(quiet_api)
    async with runtime.read() as session:
        source = await report_source(session, runtime)
        assert source.rolled_until is not None and source.rolled_until.date() > day  # the day is in the rollup
        daily = await daily_cube(session, source, day)
        hourly = await hourly_cube(session, runtime.litellm, day)
    combo = ("eng", "key-ann", "ann", "gpt-4o")
    assert daily.requests[combo] == {daily.buckets - 1: 5} and daily.cells[combo] == {daily.buckets - 1: 2_250_000_000}
    hour = int((at - hourly.start) / timedelta(hours=1))
    assert hourly.requests[combo] == {hour: 5} and hourly.largest[combo] == {hour: 1_500_000_000}
    assert daily.largest == {}  # the rollup keeps no most expensive request


def test_detection_statistics() -> None:
    """The detector on arrays: a flat history expects its level; a spike is judged; sparse series get a scale."""
    day = NOW.date()
    hours = {
        day - timedelta(days=k): np.full(24, 2.0) + np.random.default_rng(k).normal(0, 0.1, 24) for k in range(1, 15)
    }
    expectation = hourly_expectation(day, hours)
    assert expectation is not None and np.allclose(expectation.expected, 2.0, atol=0.3)
    assert judge(2.2, 2.0, expectation.scale, 5.0, 0.0) is None
    verdict = judge(20.0, 2.0, expectation.scale, 5.0, 1.0)
    assert verdict is not None and verdict.score > 5 and verdict.excess == 18.0
    assert judge(20.0, 2.0, expectation.scale, 5.0, 50.0) is None  # material: less than the minimum excess
    sparse = np.zeros(56)
    sparse[::9] = 5.0
    daily = daily_expectation(sparse)
    assert daily is not None and daily.scale > 0  # mostly-zero residuals still get a scale
    assert daily_expectation(np.zeros(56)) is None and daily_expectation(np.ones(10)) is None
    top = driver(10.0, {("key", "a"): 9.0, ("key", "b"): 1.5}, {("key", "a"): 1.0, ("key", "b"): 1.0})
    assert top is not None and (top.kind, top.id, top.excess, top.share) == ("key", "a", 8.0, 0.8)
    assert Granularity("hour") is Granularity.HOUR


def test_request_evidence() -> None:
    """The count and the cost per request on arrays: what a scope's own requests explain is no anomaly."""
    usual = np.ones(10)  # one request at this hour on each of the 10 history days
    assert count_score(40, usual) > 5 and count_score(2, usual) < 2 and count_score(0, usual) == 0
    assert count_score(4, np.zeros(10)) < 5 < count_score(8, np.zeros(10))  # never seen: a few are not unusual
    costs = Requests(1, usual, cost_mean=0.1, cost_sd=0.1, cost_max=0.3)
    # One $1 request: ten times the mean, but a heavy-tailed cost can do that; a hundred of them cannot (a switch
    # to a model ten times dearer); no more per request than some history bucket paid is no surprise at all.
    assert cost_score(1.0, 1, costs) < 5 < cost_score(100.0, 100, costs)
    assert cost_score(30.0, 100, costs) == 0.0
    # The spend is 20 times its scale, but carried by one $3 request where the scope has paid $3.50 before.
    paid = Requests(2, usual, 0.1, 0.3, 1.8, largest=3.0, history_largest=np.array([0.1, 3.5, 0.2]))
    assert judge(3.1, 0.1, 0.05, 5.0, 1.0, paid) is None
    assert judge(3.1, 0.1, 0.05, 5.0, 1.0) is not None  # the spend alone would alert
    # A new dearest request, a little above the hours' peaks, is no anomaly; one a hundred times the median is.
    peaks = np.random.default_rng(1).lognormal(np.log(0.5), 0.8, 300)
    record = Requests(3, usual, 0.2, 0.3, 1.5, largest=float(peaks.max()) * 1.2, history_largest=peaks)
    assert largest_score(record) < 5 and request_scores(record.largest or 0.0, record)[1] < 5
    huge = Requests(2, usual, 0.2, 0.3, 1.5, largest=50.0, history_largest=peaks)
    assert largest_score(huge) > 5 and request_scores(50.5, huge)[1] > 5


def test_one_request_is_judged_against_the_scopes_request_costs_not_its_hourly_peaks() -> None:
    """A broad scope (a model many teams use) makes 50 requests an hour, each lognormal (median $0.10, sigma 0.8):
    its hourly peaks are the dearest of 50, so they sit close together. A lone request five of their standard
    deviations above them is 1 in ~100,000 of its requests, about one a week at that rate: no anomaly. The fit
    recovers the requests' costs from the peaks, and the same request in an hour of 50 is less surprising than in
    an hour of one."""
    rng = np.random.default_rng(2)
    counts = rng.poisson(50, 240).astype(float)
    peaks = np.array([rng.lognormal(np.log(0.1), 0.8, int(c)).max() for c in counts])
    tail = fit_request_costs(peaks, counts)
    assert tail is not None and abs(tail.mu - np.log(0.1)) < 0.15 and abs(tail.sigma - 0.8) < 0.1
    assert tail.requests == counts.sum()
    logs = np.log(peaks)
    beyond = float(np.exp(logs.mean() + 5 * logs.std(ddof=1)))  # z 5 against the hourly peaks
    lone = Requests(1, np.full(10, 50.0), 0.13, 0.12, 0.5, beyond, peaks=peaks, peak_counts=counts)
    assert 3 < largest_score(lone) < 5
    assert 10_000 < 1 / tail.exceedance(beyond) < 1_000_000
    busy = Requests(50, np.full(10, 50.0), 0.13, 0.12, 0.5, beyond, peaks=peaks, peak_counts=counts)
    assert largest_score(busy) < largest_score(lone) - 0.5
    # A thousand times the median request is far out in any lognormal this fit allows.
    assert largest_score(Requests(1, np.full(10, 50.0), 0.13, 0.12, 0.5, 100.0, peaks=peaks, peak_counts=counts)) > 7
    assert fit_request_costs(np.array([0.5, 0.5]), np.ones(2)) is None  # no spread to fit
    assert fit_request_costs(np.array([0.5]), np.ones(1)) is None


def test_request_evidence_of_a_leak() -> None:
    usual = np.ones(10)
    leak = Requests(41, usual, 0.1, 0.1, 0.3, largest=0.5, history_largest=np.full(3, 0.5))
    verdict = judge(20.0, 0.1, 0.05, 5.0, 1.0, leak)
    assert verdict is not None and verdict.requests == 41 and verdict.count_score is not None
    assert verdict.count_score > 5 and verdict.expected_requests == 1.05


def test_the_scan_is_an_hourly_job(settings: Settings) -> None:
    jobs = {job.name: job for job in scheduled_jobs(settings)}
    assert jobs["spend-anomalies"].schedule == "5 * * * *"
