"""Periodic jobs: each tick runs once across replicas; failures are logged and counted, never silent."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from models.jobs import JobRunRow
from resolvers.platform.config import Settings
from resolvers.platform.jobs import Job, JobRunner
from tests.conftest import Clock, started

TICK = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def _job(name: str, calls: list[datetime], *, fail: bool = False, delay: float = 0.0) -> Job:
    async def run(runtime: object, tick: datetime) -> str:
        await asyncio.sleep(delay)
        calls.append(tick)
        if fail:
            raise RuntimeError("the job broke")
        return f"ran {len(calls)}"

    return Job(name, "*/5 * * * *", run)


async def test_a_tick_runs_once_across_two_replicas(settings: Settings, clock: Clock) -> None:
    calls: list[datetime] = []
    # Two replicas on one database; on SQLite in one process on purpose (the lock against a second `serve` is off).
    two_replicas = {"jobs_enabled": False, "embedded_lock": False}
    async with started(settings, clock, **two_replicas) as one, started(settings, clock, **two_replicas) as two:
        runners = [JobRunner(api.runtime(), [_job("collect", calls, delay=0.05)]) for api in (one, two)]
        outcomes = await asyncio.gather(*(r.run("collect", tick=TICK) for r in runners))
        assert sorted(o.ran for o in outcomes) == [False, True]
        assert calls == [TICK]
        again = await runners[0].run("collect", tick=TICK)
        assert not again.ran and calls == [TICK]
        assert (await runners[1].run("collect", tick=TICK + timedelta(minutes=5))).ran
        async with one.runtime().db.reader() as session:
            rows = (await session.scalars(select(JobRunRow).order_by(JobRunRow.tick))).all()
    assert [(r.tick, r.status) for r in rows] == [(TICK, "ok"), (TICK + timedelta(minutes=5), "ok")]


async def test_overlapping_runs_in_one_process_are_skipped(settings: Settings, clock: Clock) -> None:
    calls: list[datetime] = []
    async with started(settings, clock, jobs_enabled=False) as api:
        runner = JobRunner(api.runtime(), [_job("slow", calls, delay=0.1)])
        first, second = await asyncio.gather(runner.run("slow", claim=False), runner.run("slow", claim=False))
    assert (first.ran, second.ran) == (True, False)
    assert runner.stats["slow"].skipped == 1


async def test_a_failing_job_is_logged_counted_and_recorded(
    settings: Settings, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[datetime] = []
    async with started(settings, clock, jobs_enabled=False) as api:
        runner = JobRunner(api.runtime(), [_job("broken", calls, fail=True)])
        with caplog.at_level(logging.ERROR, logger="spendplane.jobs"):
            outcome = await runner.run("broken", tick=TICK)
        async with api.runtime().db.reader() as session:
            row = await session.get(JobRunRow, ("broken", TICK))
    assert outcome.error == "RuntimeError: the job broke"
    assert runner.stats["broken"].failures == 1
    assert "job broken failed" in caplog.text and "Traceback" in caplog.text
    assert row is not None and (row.status, row.summary) == ("failed", "RuntimeError: the job broke")


async def test_scheduled_jobs_fire_on_the_running_loop(settings: Settings, clock: Clock) -> None:
    calls: list[datetime] = []
    every_minute = Job("tick", "* * * * *", _job("tick", calls).run, at_start=True)
    # The cron fires on the wall clock's minutes: started within 3 s of one, its tick could land beside the
    # start-up run (seen once in a full run). Start clear of the boundary, so one call means the start-up run.
    second = datetime.now(UTC).second + datetime.now(UTC).microsecond / 1e6
    if second > 57:
        await asyncio.sleep(60.5 - second)
    async with started(settings, clock, jobs_enabled=False) as api:
        runner = JobRunner(api.runtime(), [every_minute])
        runner.start()
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.02)
        await runner.stop()
    assert len(calls) == 1  # the start-up run; the next minute's tick is not awaited here


def test_a_bad_schedule_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="bad schedule"):
        Job("x", "@hourly", _job("x", []).run)
