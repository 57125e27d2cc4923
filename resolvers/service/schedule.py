"""Every periodic job the service runs, in one list (each area contributes its own jobs)."""

from __future__ import annotations

from resolvers.anomalies import anomaly_job
from resolvers.enforcement import prune_settlements
from resolvers.forecasts import forecast_job
from resolvers.platform.config import Settings
from resolvers.platform.jobs import Job
from resolvers.predictor import refresh_output_history
from resolvers.pricing import refresh_price_map, reload_overrides
from resolvers.rollups import rollup_job
from resolvers.sla.collector import JOB_NAME as SLA_HEALTH_JOB
from resolvers.sla.collector import collect_health


def scheduled_jobs(settings: Settings) -> list[Job]:
    return [
        # Prices and learned output lengths live in each process's memory: every replica refreshes its own.
        Job(
            "price-map", "17 3 * * *", refresh_price_map, at_start=settings.price_map_url is not None, per_replica=True
        ),
        Job("price-overrides", "* * * * *", reload_overrides, per_replica=True),
        Job("output-lengths", "23 * * * *", refresh_output_history, at_start=True, per_replica=True),
        Job("prune-settlements", "*/10 * * * *", prune_settlements),
        # Not at start: until the first tick, reports read the raw logs past the watermark and stay exact.
        Job("rollups", settings.rollup_schedule, rollup_job),
        Job("forecasts", settings.forecast_schedule, forecast_job),
        Job("spend-anomalies", settings.anomaly_schedule, anomaly_job),
        # SLA monitoring: at start-up too, so a restarted service has current health (and failover) at once.
        Job(SLA_HEALTH_JOB, settings.sla.collector_cron, collect_health, at_start=True),
    ]
