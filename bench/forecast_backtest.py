"""The forecasting backtest table: per scope, MASE and 80% interval coverage of the guide's weighted moving average
and of exponential smoothing (Holt-Winters, weekly seasonality), and the method each scope ships.

    .venv/bin/python bench/forecast_backtest.py --rows 60000 --days 180 --seed 42

The series are the daily spend of `spendplane demo-data` traffic (same generator, no database needed): six teams
and the platform. The backtest is the one `generateForecasts` runs (resolvers/forecasts/backtest.py): six
rolling origins a week apart, 28-day horizons.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np

from resolvers.demo_data import DemoPlan, generate
from resolvers.forecasts.backtest import choose

END = datetime(2026, 11, 15, 0, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    daily: dict[str, dict[object, float]] = defaultdict(lambda: defaultdict(float))
    for row in generate(DemoPlan(rows=args.rows, days=args.days, end=END, seed=args.seed)):
        day = row["start_time"].date()
        daily["(platform)"][day] += row["spend"]
        daily[row["team_id"]][day] += row["spend"]
    print(f"demo-data: {args.rows:,} spend logs over {args.days} days (seed {args.seed}); 6 origins x 28 days\n")
    print("| scope | mean $/day | WMA MASE | WMA 80% coverage | ETS MASE | ETS 80% coverage | ships |")
    print("|---|---|---|---|---|---|---|")
    wins = 0
    for scope in sorted(daily, key=lambda s: (s != "(platform)", s)):
        days = sorted(daily[scope])
        series = np.array([daily[scope][d] for d in days])
        choice = choose(series, seed=args.seed)
        wma, ets = choice.scores
        wins += choice.method.value == "exponential_smoothing"
        print(
            f"| {scope} | {series.mean():.2f} | {wma.mase:.3f} | {wma.coverage:.2f} | {ets.mase:.3f} | "
            f"{ets.coverage:.2f} | {choice.method.value.replace('_', ' ')} |"
        )
    print(f"\nexponential smoothing ships for {wins} of {len(daily)} scopes")


if __name__ == "__main__":
    main()
