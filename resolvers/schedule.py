"""Every periodic job the service runs, in one list (each area contributes its own jobs)."""

from __future__ import annotations

from resolvers.config import Settings
from resolvers.jobs import Job


def scheduled_jobs(settings: Settings) -> list[Job]:
    jobs: list[Job] = []
    return jobs
