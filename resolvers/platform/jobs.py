"""Periodic jobs: aiocron schedules them in UTC inside the lifespan; each tick runs once across replicas.

A run is skipped when the same job is still running in this process (an asyncio lock), when another replica holds
the job's PostgreSQL advisory lock, or when the tick was already claimed in `spendplane_job_runs`. A failing job
is logged with its traceback and counted, never silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import aiocron
from cronsim import CronSim, CronSimError
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from models.db import insert_or_ignore
from models.jobs import JobRunRow
from resolvers.platform.errors import ExpectedFailure

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime

log = logging.getLogger("spendplane.jobs")

#: A job gets the runtime and the tick it runs for; it returns a one-line summary for logs and /health.
JobFunction = Callable[["Runtime", datetime], Awaitable[str | None]]

KEEP_RUNS = timedelta(days=30)
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Job:
    name: str
    schedule: str  # five-field cron expression, UTC
    run: JobFunction
    at_start: bool = False  # also run once when the service starts
    #: Every replica runs it (it refreshes this process's memory, e.g. prices), instead of one per tick.
    per_replica: bool = False

    def __post_init__(self) -> None:
        try:
            CronSim(self.schedule, datetime.now(UTC))
        except CronSimError as exc:
            raise ValueError(f"job {self.name}: bad schedule {self.schedule!r}: {exc}") from exc

    def last_tick(self, now: datetime) -> datetime:
        """The scheduled time this run belongs to (a replica firing a few seconds late finds the same one)."""
        return next(iter(CronSim(self.schedule, now + timedelta(seconds=5), reverse=True)))


@dataclass
class JobStats:
    runs: int = 0
    failures: int = 0
    skipped: int = 0
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_duration_ms: float | None = None
    last_summary: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Outcome:
    ran: bool
    summary: str | None = None
    error: str | None = None


@dataclass
class JobRunner:
    runtime: Runtime
    jobs: Sequence[Job]
    stats: dict[str, JobStats] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _crons: list[aiocron.Cron] = field(default_factory=list)
    _tasks: set[asyncio.Task[Outcome]] = field(default_factory=set)

    def __post_init__(self) -> None:
        for job in self.jobs:
            self.stats[job.name] = JobStats()
            self._locks[job.name] = asyncio.Lock()

    def job(self, name: str) -> Job:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def start(self) -> None:
        """Schedule every job on the running loop (aiocron binds to the loop it is given)."""
        loop = asyncio.get_running_loop()
        for job in self.jobs:
            self._crons.append(
                aiocron.Cron(job.schedule, func=self._on_tick, args=(job,), start=True, loop=loop, tz=UTC)
            )
            if job.at_start:
                self._spawn(self.run(job.name, claim=False))

    async def stop(self) -> None:
        for cron in self._crons:
            cron.stop()
        self._crons.clear()
        # Let running jobs finish their transaction first: a write cancelled half-way can leave SQLite locked
        # until the connection is collected. Only what is still running after the grace period is cancelled.
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_GRACE_SECONDS)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[Outcome]) -> None:
        task: asyncio.Task[Outcome] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_tick(self, job: Job) -> None:
        self._spawn(self.run(job.name))

    async def run(self, name: str, *, tick: datetime | None = None, claim: bool = True) -> Outcome:
        """Run a job now. `claim` makes it the run for its scheduled tick (skipped if already claimed)."""
        job = self.job(name)
        stats = self.stats[name]
        lock = self._locks[name]
        if lock.locked():
            stats.skipped += 1
            return Outcome(ran=False, summary="already running in this process")
        async with lock:
            now = self.runtime.clock()
            if job.per_replica:
                return await self._execute(job, tick or now, stats, record=False)
            tick = tick or (job.last_tick(now) if claim else now)
            async with self._cluster_lock(name) as held:
                if not held:
                    stats.skipped += 1
                    return Outcome(ran=False, summary="running on another replica")
                if claim and not await self._claim(name, tick, now):
                    stats.skipped += 1
                    return Outcome(ran=False, summary=f"tick {tick.isoformat()} already run")
                return await self._execute(job, tick, stats, record=claim)

    async def _execute(self, job: Job, tick: datetime, stats: JobStats, *, record: bool) -> Outcome:
        stats.runs += 1
        stats.last_started = self.runtime.clock()
        started = time.perf_counter()
        try:
            summary = await job.run(self.runtime, tick)
        except asyncio.CancelledError:
            raise
        except ExpectedFailure as exc:  # offline and the like: one line, no traceback
            stats.failures += 1
            stats.last_error = str(exc)[:500]
            log.warning("job %s: %s", job.name, exc)
            if record:
                await self._finish(job.name, tick, "failed", stats.last_error)
            return Outcome(ran=True, error=stats.last_error)
        except Exception as exc:  # a job failure is logged and counted, never raised into the loop
            stats.failures += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("job %s failed for tick %s", job.name, tick.isoformat())
            if record:
                await self._finish(job.name, tick, "failed", stats.last_error)
            return Outcome(ran=True, error=stats.last_error)
        finally:
            stats.last_finished = self.runtime.clock()
            stats.last_duration_ms = round((time.perf_counter() - started) * 1000, 2)
        stats.last_summary = summary
        stats.last_error = None
        log.info(
            "job %s ran for tick %s in %.0f ms: %s",
            job.name,
            tick.isoformat(),
            stats.last_duration_ms,
            summary or "done",
        )
        if record:
            await self._finish(job.name, tick, "ok", summary)
        return Outcome(ran=True, summary=summary)

    async def _claim(self, name: str, tick: datetime, now: datetime) -> bool:
        db = self.runtime.db
        statement = insert_or_ignore(db.dialect, JobRunRow.__table__).returning(JobRunRow.job)  # type: ignore[arg-type]
        async with db.sessions() as session, session.begin():
            claimed = (
                await session.execute(statement, {"job": name, "tick": tick, "started_at": now, "status": "running"})
            ).first()
            await session.execute(delete(JobRunRow).where(JobRunRow.job == name, JobRunRow.tick < now - KEEP_RUNS))
        return claimed is not None

    async def _finish(self, name: str, tick: datetime, status: str, summary: str | None) -> None:
        async with self.runtime.db.sessions() as session, session.begin():
            await session.execute(
                update(JobRunRow)
                .where(JobRunRow.job == name, JobRunRow.tick == tick)
                .values(status=status, summary=summary, finished_at=self.runtime.clock())
            )

    def _cluster_lock(self, name: str) -> _AdvisoryLock:
        return _AdvisoryLock(self.runtime, name)


class _AdvisoryLock:
    """On PostgreSQL, a session advisory lock on a dedicated connection for the whole run (released on the same
    connection); on SQLite there is one process, and the asyncio lock already serialises."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.key = zlib.crc32(f"spendplane:job:{name}".encode())
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> bool:
        if not self.runtime.db.is_postgres:
            return True
        conn = await self.runtime.db.engine.connect()
        held = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})).scalar())
        await conn.commit()
        if not held:
            await conn.close()
            return False
        self._conn = conn
        return True

    async def __aexit__(self, *exc: object) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            await conn.commit()
        finally:
            await conn.close()
