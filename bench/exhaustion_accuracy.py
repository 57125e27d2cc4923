"""Exhaustion dates against what happened, on the synthetic families of bench/forecast_accuracy.py.

    .venv/bin/python bench/exhaustion_accuracy.py --seed 7 --series 3

The series are forecast_accuracy's (its generators, same seeds: `--series` of each of its six families, 182 days
ending 2026-11-14). Each series gets a monthly budget (UTC calendar month) in each of the last three whole months
of its history (August, September, October 2026): its limit is that month's realised total times a factor drawn
from `--factor` (seeded, 0.6-1.3 by default, one per series and month), so some months exhaust early, some late,
some never. Each budget is looked at on days 1, 8, 15 and 22 of its month, at 00:00 UTC (the origin): every series'
history up to the day before (closed days, at most 182, from its first day with spend, spend in whole nano-USD as
the rollup keeps it) goes through production's `forecast_scopes` together, as one generation (so the pooled
calibration pools them), and its `Outlook` with the month's spend so far goes to `exhaustion`. The answer is
compared with the realised day (`reached_day` on the series' daily spend: the first UTC day cumulative spend
reaches the limit; none when the month's total stays under it).

Per family, by origin day and pooled: cases; REACHED (the limit was already reached at the origin: nothing to
forecast), no forecast (no spend yet); EXPECTED, and of those the coverage of [earliest, latest] (a null `latest`
means the 10th percentile does not reach the limit this period: the interval is [earliest, after the period], so
it covers a realised day on or after `earliest` and a month that never exhausts), the realised day before
`earliest` / after `latest`; the same coverage on instants instead of days (the realised crossing's instant,
each day's spend spread evenly over it, within those of the band's edges: `exhaustion`'s own rule before it
rounds to days); the coverage of the answers whose `latest` is set and their mean width in days
(latest - earliest + 1); the mean absolute error of `date` in days (EXPECTED answers for months that did exhaust);
missed (NOT_THIS_PERIOD for a month that did exhaust: not even the 90th percentile got there) and, apart, POSSIBLE
for a month that did exhaust (only `earliest` said; neither says a date, so neither raises the projected-limit
alert); false alarms (a date said, EXPECTED, for a month that did not exhaust); POSSIBLE and NOT_THIS_PERIOD.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.forecast_accuracy import END, FAMILIES  # noqa: E402
from models.types import nanos_to_usd  # noqa: E402
from resolvers.forecasts import HISTORY_DAYS, ScopeHistory, forecast_scopes  # noqa: E402
from resolvers.forecasts.exhaustion import (  # noqa: E402
    Exhaustion,
    ExhaustionStatus,
    Outlook,
    exhaustion,
    project_period,
    reached_day,
)
from resolvers.platform.periods import month_of  # noqa: E402
from resolvers.spend import ScopeKind  # noqa: E402

CENT = Decimal("0.01")
MONTHS = (date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1))
ORIGIN_DAYS = (1, 8, 15, 22)


@dataclass(frozen=True)
class Spend:
    """A series' spend per UTC day in whole nano-USD (as the rollup keeps it), its first day `first`."""

    first: date
    nanos: np.ndarray

    @classmethod
    def of(cls, series: np.ndarray) -> Spend:
        return cls(END - timedelta(days=len(series)), np.round(np.asarray(series) * 1e9).astype(np.int64))

    def index(self, day: date) -> int:
        return (day - self.first).days

    def history(self, origin: date) -> tuple[float, ...]:
        """What `load_histories` reads at `origin`: closed days, at most HISTORY_DAYS of them, from the first day
        with spend (empty where there is none yet)."""
        upto = max(self.index(origin), 0)
        days = self.nanos[max(upto - HISTORY_DAYS, 0) : upto]
        spent = np.flatnonzero(days)
        if not len(spent):
            return ()
        return tuple(float(x) / 1e9 for x in days[int(spent[0]) :])

    def daily(self, start: date, end: date) -> dict[date, Decimal]:
        """USD per day in [start, end) (days before the series' first count 0)."""
        out = {}
        for n in range((end - start).days):
            day = start + timedelta(days=n)
            i = self.index(day)
            out[day] = nanos_to_usd(int(self.nanos[i])) if 0 <= i < len(self.nanos) else Decimal(0)
        return out


@dataclass(frozen=True)
class Case:
    family: str
    origin: date
    limit: Decimal
    answer: Exhaustion
    realised: date | None  # the day the month's spend reached the limit; None: it never did
    #: The same in days from the month's start, spend spread evenly over each day (exhaustion's rule within a day),
    #: and, for EXPECTED, the instants the band's upper and lower edges reach the limit (None: not this period).
    realised_at: float | None = None
    band_at: tuple[float | None, float | None] | None = None

    @property
    def instant_covered(self) -> bool:
        """Whether the realised instant lies within the band's instants (not rounded to whole days)."""
        assert self.band_at is not None
        first, last = self.band_at
        if self.realised_at is None:
            return last is None
        return first is not None and first <= self.realised_at and (last is None or self.realised_at <= last)


@dataclass(frozen=True)
class Verdict:
    covered: bool | None  # EXPECTED only: the realised day (or "never") within [earliest, latest]
    side: str | None  # "early" (before earliest) or "late" (after latest, or never with a latest) when not covered
    error_days: int | None  # EXPECTED for a month that did exhaust: |date - realised|
    missed: bool  # NOT_THIS_PERIOD for a month that did exhaust
    possible_hit: bool  # POSSIBLE for a month that did exhaust
    false_alarm: bool


def judge(answer: Exhaustion, realised: date | None) -> Verdict:
    """One answer against what happened (see the module's docstring for the rules)."""
    if answer.status is not ExhaustionStatus.EXPECTED:
        missed = realised is not None and answer.status is ExhaustionStatus.NOT_THIS_PERIOD
        possible = realised is not None and answer.status is ExhaustionStatus.POSSIBLE
        return Verdict(None, None, None, missed, possible, False)
    assert answer.date is not None
    assert answer.earliest is not None
    side = None
    if realised is not None and realised < answer.earliest:
        side = "early"
    elif answer.latest is not None and (realised is None or realised > answer.latest):
        side = "late"
    error = abs((answer.date - realised).days) if realised is not None else None
    return Verdict(side is None, side, error, False, False, realised is None)


def case(family: str, spend: Spend, origin: date, limit: Decimal, outlook: Outlook | None, month_end: date) -> Case:
    """The budget's answer at `origin` (00:00 UTC) and the realised day, for the month holding `origin`."""
    now = datetime.combine(origin, clock(0), tzinfo=UTC)
    period = month_of(now)
    start = period.start.date()
    spent = sum(spend.daily(start, origin).values(), Decimal(0))
    realised = reached_day(start, spend.daily(start, month_end), limit)
    reached_on = realised if realised is not None and realised < origin else None
    answer = exhaustion(period, spent, limit, now, outlook, reached_on)
    target = float(limit)
    realised_at = _instant(np.cumsum([float(v) for v in spend.daily(start, month_end).values()]), 0.0, target, 0)
    band_at = None
    path = project_period(period, spent, now, outlook) if outlook is not None else None
    if answer.status is ExhaustionStatus.EXPECTED and path is not None:
        offset = (origin - start).days
        band_at = (_instant(path.high, float(spent), target, offset), _instant(path.low, float(spent), target, offset))
    return Case(family, origin, limit, answer, realised, realised_at, band_at)


def _instant(values: np.ndarray, base: float, target: float, offset: int) -> float | None:
    """When cumulative `values` (at the end of each day from day `offset`, `base` before) reach `target`, in days
    from day 0, spread evenly within the day."""
    hits = np.flatnonzero(values >= target)
    if not len(hits):
        return None
    i = int(hits[0])
    before = base if i == 0 else float(values[i - 1])
    return offset + i + (target - before) / (float(values[i]) - before)


@dataclass
class Tally:
    cases: int = 0
    reached: int = 0
    no_forecast: int = 0
    expected: int = 0
    covered: int = 0
    open_latest: int = 0
    closed_covered: int = 0
    instant_covered: int = 0
    widths: list[int] = field(default_factory=list)
    early: int = 0
    late: int = 0
    errors: list[int] = field(default_factory=list)
    missed: int = 0
    possible_hits: int = 0
    false_alarms: int = 0
    possible: int = 0
    not_this_period: int = 0
    exhausted: int = 0

    def add(self, c: Case) -> None:
        v = judge(c.answer, c.realised)
        status = c.answer.status
        self.cases += 1
        self.reached += status is ExhaustionStatus.REACHED
        self.no_forecast += status in (ExhaustionStatus.NO_FORECAST, ExhaustionStatus.BEYOND_FORECAST)
        self.possible += status is ExhaustionStatus.POSSIBLE
        self.not_this_period += status is ExhaustionStatus.NOT_THIS_PERIOD
        if status is not ExhaustionStatus.REACHED:
            self.exhausted += c.realised is not None
        if status is ExhaustionStatus.EXPECTED:
            self.expected += 1
            self.covered += bool(v.covered)
            self.open_latest += c.answer.latest is None
            self.instant_covered += c.instant_covered
            if c.answer.latest is not None and c.answer.earliest is not None:
                self.closed_covered += bool(v.covered)
                self.widths.append((c.answer.latest - c.answer.earliest).days + 1)
            self.early += v.side == "early"
            self.late += v.side == "late"
        if v.error_days is not None:
            self.errors.append(v.error_days)
        self.missed += v.missed
        self.possible_hits += v.possible_hit
        self.false_alarms += v.false_alarm

    @property
    def coverage(self) -> float:
        return self.covered / self.expected if self.expected else math.nan

    @property
    def instant_coverage(self) -> float:
        return self.instant_covered / self.expected if self.expected else math.nan

    @property
    def closed_coverage(self) -> float:
        closed = self.expected - self.open_latest
        return self.closed_covered / closed if closed else math.nan

    @property
    def width(self) -> float:
        return float(np.mean(self.widths)) if self.widths else math.nan

    @property
    def mae(self) -> float:
        return float(np.mean(self.errors)) if self.errors else math.nan

    def row(self, label: str) -> str:
        return (
            f"| {label} | {self.cases} | {self.reached} | {self.no_forecast} | {self.expected} | "
            f"{self.coverage:.2f} | {self.instant_coverage:.2f} | {self.open_latest} | "
            f"{self.closed_coverage:.2f} | {self.width:.1f} | "
            f"{self.early} | {self.late} | {self.mae:.1f} | "
            f"{self.missed} of {self.exhausted} | {self.possible_hits} | {self.false_alarms} | {self.possible} | "
            f"{self.not_this_period} |"
        )


HEADER = (
    "| {} | cases | reached | no forecast | expected | coverage80 | coverage, instants | latest null "
    "| coverage, latest set | width days "
    "| early | late | mae days "
    "| missed (of exhausting) | possible, exhausted | false alarms | possible | not this period |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def origins() -> list[tuple[date, date]]:
    """(origin, the first day after its month) for every origin."""
    out = []
    for month in MONTHS:
        following = (month + timedelta(days=32)).replace(day=1)
        out += [(month.replace(day=d), following) for d in ORIGIN_DAYS]
    return out


def run(
    made: Sequence[tuple[str, Spend]], factors: np.ndarray, chosen: Iterable[tuple[date, date]] | None = None
) -> list[Case]:
    """Every series at every origin; `factors[s, m]` scales series s's realised total in MONTHS[m] to its limit."""
    cases = []
    for origin, following in chosen or origins():
        month = MONTHS.index(origin.replace(day=1))
        now = datetime.combine(origin, clock(0), tzinfo=UTC)
        histories: dict[int, ScopeHistory] = {}
        for s, (family, spend) in enumerate(made):
            daily = spend.history(origin)
            if daily:
                mtd = int(spend.nanos[max(spend.index(origin.replace(day=1)), 0) : max(spend.index(origin), 0)].sum())
                histories[s] = ScopeHistory(ScopeKind.TEAM, f"{family}:{s}", daily, mtd)
        results = forecast_scopes(list(histories.values()), origin, now)
        outlooks = {s: r.outlook for s, r in zip(histories, results, strict=True)}
        for s, (family, spend) in enumerate(made):
            total = sum(spend.daily(origin.replace(day=1), following).values(), Decimal(0))
            if total <= 0:
                continue  # no spend in the month: no budget to speak of
            limit = (total * Decimal(repr(float(factors[s, month])))).quantize(CENT)
            cases.append(case(family, spend, origin, limit, outlooks.get(s), following))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--series",
        type=int,
        default=8,
        help="series per family (the series forecast_accuracy.py makes with the same --seed and --series)",
    )
    parser.add_argument("--factor", type=float, nargs=2, default=(0.6, 1.3), metavar=("LOW", "HIGH"))
    args = parser.parse_args()
    started, wall = time.process_time(), time.monotonic()
    # forecast_accuracy's series in its order (family by family, `--series` of each), from the same generator.
    rng = np.random.default_rng(args.seed)
    made = [(family, Spend.of(make(rng).series)) for family, (make, _) in FAMILIES.items() for _ in range(args.series)]
    low, high = args.factor
    factors = np.random.default_rng(args.seed + 1).uniform(low, high, size=(len(made), len(MONTHS)))
    cases = run(made, factors)
    families: dict[str, Tally] = defaultdict(Tally)
    days: dict[int, Tally] = defaultdict(Tally)
    pooled = Tally()
    for c in cases:
        families[c.family].add(c)
        days[c.origin.day].add(c)
        pooled.add(c)
    print(
        f"seed {args.seed}: {len(made)} series ({args.series} per family), monthly UTC budgets in "
        f"{', '.join(f'{m:%Y-%m}' for m in MONTHS)}, limit = month total x U({args.factor[0]}, {args.factor[1]}), "
        f"origins days {', '.join(map(str, ORIGIN_DAYS))} at 00:00 UTC; {len(cases)} cases; "
        f"{time.process_time() - started:.0f} s CPU, {time.monotonic() - wall:.0f} s wall\n"
    )
    print(HEADER.format("family"))
    for family in FAMILIES:
        print(families[family].row(family))
    print(pooled.row("**pooled**"))
    print()
    print(HEADER.format("origin day"))
    for day in ORIGIN_DAYS:
        print(days[day].row(f"day {day}"))
    print()
    print(
        f"pooled: coverage80={pooled.coverage:.2f} mae_days={pooled.mae:.1f} missed={pooled.missed} "
        f"false_alarms={pooled.false_alarms} cases={pooled.cases}"
    )


if __name__ == "__main__":
    main()
