"""Forecast accuracy on families of synthetic daily spend series that the methods were not tuned to.

    .venv/bin/python bench/forecast_accuracy.py --seed 7

Six families, `--series` of each (seeded): steady growth, a step change, strong weekly seasonality, month-end
spikes, sparse and bursty spend, and a team that starts mid-period (its history begins at its first spend, as
`generateForecasts` reads it). Each series is 182 days ending on the same day (the history `generateForecasts`
reads). Every method is evaluated by the backtest `generateForecasts` runs (resolvers/forecasts/backtest.py):
rolling origins a week apart, 28-day totals, intervals calibrated only with errors known at each origin (the
series' own most recent four origins' (RECENT_ORIGINS), or every series' where it has fewer than four). The
method that ships per series is chosen by the same rule as in production. `--compare-recent 6 8 0` also prints
the pooled line had only the latest K origins calibrated (0: all), from the same fits.

Figures per family and method: mean MASE over series (against seasonal naive, m = 7), 80% coverage pooled over
the family's calibrated origins, mean interval width over the mean actual 28-day total, and counts. The last
line is the shipped method's coverage and mean MASE pooled over every series. Before it, a table of the MASE that
each family's law (its noise-free spend) scores as the forecast, of the law as known at the origin (a step change
still to come unforeseen) and of what ships, on the same origins, split for a step change by where the step
falls; and the MASE scale's drift (seasonal naive's error over the last 56 training days over all of them).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from resolvers.forecasts.backtest import HORIZON, METHODS, Score, choose, run_scope
from resolvers.forecasts.calibration import RECENT_ORIGINS, SCALE_DAYS, Run
from resolvers.forecasts.methods import ForecastMethod, Series, seasonal_naive_mae

DAYS = 182
END = date(2026, 11, 15)  # the day after the last one in every series
WEEKDAY = np.array([1.0, 1.08, 1.1, 1.05, 0.92, 0.38, 0.3])  # Monday first


def _days() -> list[date]:
    return [END - timedelta(days=DAYS - i) for i in range(DAYS)]


def _weekday(days: list[date], strength: float) -> Series:
    return np.array([1 + strength * (WEEKDAY[d.weekday()] - 1) for d in days])


@dataclass(frozen=True)
class Synthetic:
    """A series and its law: the noise-free spend (the median of each day's lognormal noise is 1, so the law is
    each day's median, the best forecast under absolute error), None where there is none to speak of."""

    series: Series
    law: Series | None = None
    #: The day index (in `series`) of a step change, and the law without it (what is known before the step).
    step_at: int | None = None
    unstepped: Series | None = None

    def known_law(self, cut: int) -> Series | None:
        """The law as far as it can be known at an origin `cut`: a step still to come is not foreseen."""
        if self.step_at is not None and self.unstepped is not None and self.step_at >= cut:
            return self.unstepped
        return self.law


def steady_growth(rng: np.random.Generator) -> Synthetic:
    days = _days()
    level = rng.lognormal(np.log(50), 1.0)
    weekly = rng.uniform(0.01, 0.04)
    t = np.arange(DAYS)
    law = level * (1 + weekly) ** (t / 7) * _weekday(days, 0.5)
    return Synthetic(law * rng.lognormal(0, 0.15, DAYS), law)


def step_change(rng: np.random.Generator) -> Synthetic:
    days = _days()
    level = rng.lognormal(np.log(50), 1.0)
    at = int(rng.integers(60, 150))
    factor = rng.choice([0.5, 1.8, 2.5])
    steps = np.where(np.arange(DAYS) >= at, factor, 1.0)
    unstepped = level * _weekday(days, 0.5)
    law = unstepped * steps
    return Synthetic(law * rng.lognormal(0, 0.15, DAYS), law, at, unstepped)


def weekly_seasonality(rng: np.random.Generator) -> Synthetic:
    days = _days()
    level = rng.lognormal(np.log(50), 1.0)
    law = level * _weekday(days, 1.0)
    return Synthetic(law * rng.lognormal(0, 0.1, DAYS), law)


def month_end_spikes(rng: np.random.Generator) -> Synthetic:
    days = _days()
    level = rng.lognormal(np.log(50), 1.0)
    spike = rng.uniform(2.0, 5.0)
    month_end = np.array([2 if (d + timedelta(days=2)).month != d.month else 1 for d in days]) == 2
    law = level * np.where(month_end, spike, 1.0) * _weekday(days, 0.3)
    return Synthetic(law * rng.lognormal(0, 0.15, DAYS), law)


def sparse_bursty(rng: np.random.Generator) -> Synthetic:
    level = rng.lognormal(np.log(20), 1.0)
    active = rng.random(DAYS) < rng.uniform(0.15, 0.4)
    return Synthetic(np.where(active, level * rng.lognormal(0, 1.0, DAYS), 0.0))


def starts_mid_period(rng: np.random.Generator) -> Synthetic:
    days = _days()
    start = int(rng.integers(60, 130))
    level = rng.lognormal(np.log(50), 1.0)
    t = np.arange(DAYS) - start
    ramp = np.clip(0.3 + 0.7 * t / 21, 0, 1)  # ramps up over three weeks, then steady
    law = level * ramp * _weekday(days, 0.7)
    series = law * rng.lognormal(0, 0.15, DAYS)
    return Synthetic(series[start:], law[start:])  # histories start at the first day with spend


FAMILIES: dict[str, tuple[Callable[[np.random.Generator], Synthetic], bool]] = {
    # name: (generator, has a seasonal (weekly) pattern)
    "steady growth": (steady_growth, True),
    "step change": (step_change, True),
    "weekly seasonality": (weekly_seasonality, True),
    "month-end spikes": (month_end_spikes, True),
    "sparse and bursty": (sparse_bursty, False),
    "starts mid-period": (starts_mid_period, True),
}


@dataclass
class Tally:
    mases: list[float] = field(default_factory=list)
    covered: float = 0.0
    origins: int = 0
    widths: list[float] = field(default_factory=list)
    series: int = 0
    judged: int = 0

    def add(self, score: Score) -> None:
        self.series += 1
        if score.mase is not None:
            self.mases.append(score.mase)
        if score.coverage is not None:
            self.covered += score.coverage * score.coverage_origins
            self.origins += score.coverage_origins
            self.judged += 1
        if score.width is not None:
            self.widths.append(score.width)

    @property
    def mase(self) -> float:
        return float(np.mean(self.mases)) if self.mases else math.nan

    @property
    def coverage(self) -> float:
        return self.covered / self.origins if self.origins else math.nan

    @property
    def width(self) -> float:
        return float(np.mean(self.widths)) if self.widths else math.nan


@dataclass
class LawTally:
    """Per family (and, for a step change, by where the step falls against the origin), the MASE of the law itself
    as the forecast (no method can expect to beat it: it knows the future's noise-free spend, steps included), of
    the law as known at the origin (a step still to come unforeseen: the best any forecast made then can do) and of
    the shipped method, on the same origins; and how the MASE scale (seasonal naive's in-sample error over all the
    training days) compares with that error over the last 56 training days."""

    law: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    known: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    shipped: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    recent_scale: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, family: str, synth: Synthetic, runs: Sequence[Run]) -> None:
        if synth.law is None:
            return
        n = len(synth.series)
        for run in runs:
            cut = run.cut + n
            if len(run.actual) < HORIZON or not run.naive_mae > 0:
                continue
            actual = run.actual[:HORIZON]
            group = family
            if synth.step_at is not None:
                weeks = (cut - synth.step_at) // 7
                group += (
                    ": step 4+ weeks before the origin"
                    if weeks >= 4
                    else ": step under 4 weeks before the origin"
                    if synth.step_at < cut
                    else ": step inside the 28 days scored"
                    if synth.step_at < cut + HORIZON
                    else ": step after the 28 days scored"
                )
            known = synth.known_law(cut)
            assert known is not None
            for key in {family, group}:
                self.law[key].append(float(np.mean(np.abs(actual - synth.law[cut : cut + HORIZON]))) / run.naive_mae)
                self.known[key].append(float(np.mean(np.abs(actual - known[cut : cut + HORIZON]))) / run.naive_mae)
                self.shipped[key].append(float(np.mean(np.abs(actual - run.point[:HORIZON]))) / run.naive_mae)
                self.recent_scale[key].append(seasonal_naive_mae(synth.series[:cut][-SCALE_DAYS:]) / run.naive_mae)

    def print(self) -> None:
        print(
            "| family (origins) | mean MASE over origins: the law | the law known at the origin | what ships "
            "| scale: last 56 days / all days |"
        )
        print("|---|---|---|---|---|")
        for key in sorted(self.law, key=lambda k: (list(FAMILIES).index(k.split(":")[0]), k)):
            print(
                f"| {key} ({len(self.law[key])}) | {np.mean(self.law[key]):.3f} | {np.mean(self.known[key]):.3f} | "
                f"{np.mean(self.shipped[key]):.3f} | {np.mean(self.recent_scale[key]):.3f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--series", type=int, default=8, help="series per family")
    parser.add_argument(
        "--without",
        choices=[m.value for m in METHODS[1:]],
        action="append",
        default=[],
        help="leave a candidate method out (what shipped before it was added)",
    )
    parser.add_argument(
        "--compare-recent",
        type=int,
        nargs="*",
        default=[],
        metavar="K",
        help="also report the pooled figures calibrating with the latest K origins (0: all), same fits",
    )
    args = parser.parse_args()
    methods = tuple(m for m in METHODS if m.value not in args.without)
    started = time.process_time()
    rng = np.random.default_rng(args.seed)
    made = [(family, i, make(rng)) for family, (make, _) in FAMILIES.items() for i in range(args.series)]
    runs = [run_scope(synth.series, args.seed * 1000 + n, methods=methods) for n, (_, _, synth) in enumerate(made)]
    pooled = {m: [r for scope in runs for r in scope.runs.get(m, ())] for m in METHODS}
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    everything = Tally()
    shipped_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    law = LawTally()
    for (family, _, synth), scope in zip(made, runs, strict=True):
        choice = choose(scope, pooled)
        law.add(family, synth, scope.runs.get(choice.method, ()))
        for score in choice.scores:
            tallies[(family, score.method.value)].add(score)
        shipped = next(s for s in choice.scores if s.method is choice.method)
        tallies[(family, "shipped")].add(shipped)
        everything.add(shipped)
        shipped_counts[family][choice.method.value] += 1
    names = {
        ForecastMethod.WEIGHTED_MOVING_AVERAGE.value: "WMA",
        ForecastMethod.EXPONENTIAL_SMOOTHING.value: "ETS",
        ForecastMethod.THETA.value: "Theta",
        ForecastMethod.LOG_EXPONENTIAL_SMOOTHING.value: "logETS",
    }
    print(
        f"seed {args.seed}: {len(made)} series ({args.series} per family), {DAYS} days each, 28-day totals; "
        f"{time.process_time() - started:.0f} s CPU"
        + (f"; without {', '.join(args.without)}" if args.without else "")
        + "\n"
    )
    print("| family | method | mean MASE | 80% coverage | width | coverage origins | series judged |")
    print("|---|---|---|---|---|---|---|")
    for family, (_, seasonal) in FAMILIES.items():
        for method in [*(m.value for m in methods), "shipped"]:
            t = tallies[(family, method)]
            label = names.get(method, "shipped")
            if method == "shipped":
                counts = shipped_counts[family]
                label += " (" + ", ".join(f"{names[m]} {n}" for m, n in sorted(counts.items())) + ")"
            print(
                f"| {family}{' (weekly)' if seasonal else ''} | {label} | {t.mase:.3f} | {t.coverage:.2f} | "
                f"{t.width:.2f} | {t.origins} | {t.judged} of {t.series} |"
            )
    print()
    law.print()
    print()
    for k in args.compare_recent:
        other = Tally()
        for scope in runs:
            choice = choose(scope, pooled, recent=k or None)
            other.add(next(s for s in choice.scores if s.method is choice.method))
        print(
            f"compare: calibrating with the latest {k or 'all'} origins: coverage80={other.coverage:.3f} "
            f"mase={other.mase:.3f}"
        )
    print(f"(calibration: latest {RECENT_ORIGINS} origins; coverage80={everything.coverage:.3f})")
    print(f"pooled: coverage80={everything.coverage:.2f} mase={everything.mase:.2f} series={len(made)}")


if __name__ == "__main__":
    main()
