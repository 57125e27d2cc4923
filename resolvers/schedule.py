"""Every periodic job the service runs, in one list (each area contributes its own jobs)."""

from __future__ import annotations

from resolvers.config import Settings
from resolvers.forecasts import forecast_job
from resolvers.jobs import Job
from resolvers.rollups import rollup_job


def scheduled_jobs(settings: Settings) -> list[Job]:
    jobs: list[Job] = []
    # Not at start: until the first tick, reports read the raw logs past the watermark and stay exact.
    jobs.append(Job("rollups", settings.rollup_schedule, rollup_job))
    jobs.append(Job("forecasts", settings.forecast_schedule, forecast_job))
    return jobs
