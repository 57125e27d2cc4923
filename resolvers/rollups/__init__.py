"""The daily rollup of LiteLLM_SpendLogs (the guide's `cost_tracking_daily`, plus daily and monthly summaries
without key and end user) and the one way every report reads spend: `reading` (rollup below the watermark, raw
logs after it, merged exactly) and `maintenance` (the watermark, late rows, re-runs, the job).
"""

from __future__ import annotations

from resolvers.rollups.maintenance import (
    RollupStatus,
    finish_on_cancel,
    refresh_rollups,
    refresh_rollups_of,
    rollup_job,
    rollup_status,
)
from resolvers.rollups.reading import (
    ROLLUP_GRAIN,
    SUMMARY_GRAIN,
    DayRange,
    Dim,
    Filters,
    SpendSource,
    Totals,
    aggregate,
    aggregate_span,
    as_date,
    local_bounds,
    raw_dimension,
    rollup_spend_by_scope,
    spend_source,
    spend_to_date,
    stream_aggregate,
)

__all__ = [
    "ROLLUP_GRAIN",
    "SUMMARY_GRAIN",
    "DayRange",
    "Dim",
    "Filters",
    "RollupStatus",
    "SpendSource",
    "Totals",
    "aggregate",
    "aggregate_span",
    "as_date",
    "finish_on_cancel",
    "local_bounds",
    "raw_dimension",
    "refresh_rollups",
    "refresh_rollups_of",
    "rollup_job",
    "rollup_spend_by_scope",
    "rollup_status",
    "spend_source",
    "spend_to_date",
    "stream_aggregate",
]
