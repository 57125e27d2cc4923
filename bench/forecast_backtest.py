"""The forecasting backtest table on demo data: per scope and method, MASE against seasonal naive, the calibrated
80% interval's coverage and width, the origins used, and the method each scope ships.

    .venv/bin/python bench/forecast_backtest.py --rows 60000 --days 180 --seed 42

The series are the daily spend of `spendplane demo-data` traffic (same generator, no database needed): six teams
and the platform. The backtest is the one `generateForecasts` runs (resolvers/forecasts/backtest.py): rolling
origins a week apart (as many as the history allows, up to 16), 28-day totals, intervals calibrated only with
errors known at each origin (the scope's own latest four origins', or every scope's where it has fewer than
four). `--days 60` shows what a short history gets.
"""

from __future__ import annotations

import argparse
import zlib
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np

from resolvers.demo import DemoPlan, generate
from resolvers.forecasts.backtest import METHODS, Score, choose, run_scope

END = datetime(2026, 11, 15, 0, 0, tzinfo=UTC)
SHORT = {
    "weighted_moving_average": "WMA",
    "exponential_smoothing": "ETS",
    "theta": "Theta",
    "log_exponential_smoothing": "logETS",
}


def cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row(scope: str, score: Score, ships: bool) -> str:
    return (
        f"| {scope} | {SHORT[score.method.value]} | {cell(score.mase, 3)} | {cell(score.coverage, 2)} | "
        f"{cell(score.raw_coverage, 2)} | {cell(score.width, 2)} | {score.origins} | {score.coverage_origins} "
        f"({score.calibration or 'none'}) | {'**ships**' if ships else ''} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    daily: dict[str, dict[object, float]] = defaultdict(lambda: defaultdict(float))
    for log in generate(DemoPlan(rows=args.rows, days=args.days, end=END, seed=args.seed)):
        day = log["start_time"].date()
        if day >= END.date():
            continue  # the open day: forecasts use closed days only
        daily["(platform)"][day] += log["spend"]
        daily[log["team_id"]][day] += log["spend"]
    scopes = sorted(daily, key=lambda s: (s != "(platform)", s))
    series = {s: np.array([daily[s][d] for d in sorted(daily[s])]) for s in scopes}
    runs = {s: run_scope(series[s], zlib.crc32(s.encode())) for s in scopes}
    pooled = {m: [r for scope in runs.values() for r in scope.runs.get(m, ())] for m in METHODS}
    print(f"demo-data: {args.rows:,} spend logs over {args.days} days (seed {args.seed}); 28-day totals\n")
    print(
        "| scope | method | MASE | 80% coverage (calibrated) | 80% coverage (uncalibrated) | width | origins | "
        "coverage origins (calibration) | |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    wins = 0
    reasons = []
    for scope in scopes:
        choice = choose(runs[scope], pooled)
        wins += choice.method.value != "weighted_moving_average"
        for score in choice.scores:
            print(row(scope, score, score.method is choice.method))
        reasons.append(f"- {scope}: {choice.reason}")
    print()
    print("\n".join(reasons))
    print(f"\na method other than the average ships for {wins} of {len(scopes)} scopes")


if __name__ == "__main__":
    main()
