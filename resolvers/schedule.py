"""Every periodic job the service runs, in one list (each area contributes its own jobs)."""

from __future__ import annotations

from resolvers.config import Settings
from resolvers.jobs import Job
from resolvers.rollups import rollup_job


def scheduled_jobs(settings: Settings) -> list[Job]:
    jobs: list[Job] = []
    jobs.append(Job("rollups", settings.rollup_schedule, rollup_job, at_start=True))
    return jobs
