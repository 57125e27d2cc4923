"""Spend-anomaly detection on synthetic spend with injected anomalies, and on a quiet month of demo data.

    .venv/bin/python bench/anomalies.py --seed 3

A synthetic organisation (4 teams, 16 users, their keys, 5 models) spends by the hour for 86 days: business-hours
traffic on weekdays, less at the weekend, Poisson requests each with its own lognormal cost. Into its last 30 days
the seed injects anomalies on keys, made of requests that cost what the key's requests cost: single-hour spikes
(six peak hours' worth of requests), level shifts (three times the key's usual requests for 8-24 hours) and a leaked
key spending at night (its daytime peak rate of requests, 01:00-05:00 UTC, three nights running). The cubes carry
request counts, and the hourly one each bucket's most expensive request, as the job's do. The detector
the job runs (`resolvers.anomalies.scan`, default sensitivity) evaluates every hour and every day of those 30 days
with only the history before each.

A finding is a true positive when its bucket falls in an injected anomaly and its scope contains the anomalous key
(the key, its user, its team, or a model the injected spend went to); precision = true findings / all findings;
recall = anomalies found at least once / anomalies. Then the same detector runs over the last 30 days of
`spendplane demo-data` traffic (nothing injected), where every finding is a false alert; it is also counted with
the minimum excess in USD switched off (statistics alone), since demo keys spend cents an hour.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from resolvers.anomalies.detection import Granularity
from resolvers.anomalies.scan import Combo, Cube, Finding, Sensitivity, scan
from resolvers.demo import DemoPlan, generate
from resolvers.platform.config import Settings

DAYS = 86
EVALUATED = 30
END = datetime(2026, 11, 16, tzinfo=UTC)  # a midnight
START = END - timedelta(days=DAYS)
HOUR_SHAPE = np.array([0.25 + math.exp(-((h - 14) ** 2) / 18) * 2.2 for h in range(24)])
WEEKDAY = np.array([1.0, 1.08, 1.1, 1.05, 0.92, 0.38, 0.3])
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "o3")


@dataclass(frozen=True)
class Key:
    id: str
    user: str
    team: str
    mix: np.ndarray  # share of requests per model
    rate: float  # requests per hour at the peak hour of a weekday
    cost: float  # mean USD per request


@dataclass
class Injected:
    kind: str
    key: Key
    hours: set[int] = field(default_factory=set)
    models: set[str] = field(default_factory=set)

    @property
    def days(self) -> set[int]:
        return {h // 24 for h in self.hours}


def organisation(rng: np.random.Generator) -> list[Key]:
    keys = []
    for t in range(4):
        for u in range(4):
            user = f"user-{t}{u}"
            for k in range(1 + int(rng.random() < 0.5)):
                keys.append(
                    Key(
                        f"key-{t}{u}{k}",
                        user,
                        f"team-{t}",
                        rng.dirichlet(np.ones(len(MODELS))),
                        float(rng.uniform(5, 40)),
                        float(rng.lognormal(math.log(0.05), 0.5)),
                    )
                )
    return keys


def costs(rng: np.random.Generator, key: Key, n: int) -> NDArray[np.float64]:
    """USD of each of `n` requests of `key`: its own lognormal draw (sigma 0.8, mean key.cost)."""
    return rng.lognormal(math.log(key.cost) - 0.32, 0.8, n)


@dataclass
class Traffic:
    """USD, requests and the most expensive request (USD) per hour and (key, model)."""

    spend: dict[tuple[str, str], NDArray[np.float64]] = field(default_factory=dict)
    requests: dict[tuple[str, str], NDArray[np.float64]] = field(default_factory=dict)
    largest: dict[tuple[str, str], NDArray[np.float64]] = field(default_factory=dict)

    def add(self, at: NDArray[np.int64], draws: NDArray[np.float64], cell: tuple[str, str]) -> None:
        hours = DAYS * 24
        if cell not in self.spend:
            self.spend[cell], self.requests[cell], self.largest[cell] = (np.zeros(hours) for _ in range(3))
        self.spend[cell] += np.bincount(at, weights=draws, minlength=hours)
        self.requests[cell] += np.bincount(at, minlength=hours)
        np.maximum.at(self.largest[cell], at, draws)


def traffic(rng: np.random.Generator, keys: list[Key]) -> Traffic:
    hours = DAYS * 24
    weekday = np.array([WEEKDAY[(START + timedelta(hours=h)).weekday()] for h in range(hours)])
    shape = np.tile(HOUR_SHAPE / HOUR_SHAPE.max(), DAYS) * weekday
    out = Traffic()
    for key in keys:
        for m, model in enumerate(MODELS):
            counts = rng.poisson(key.rate * key.mix[m] * shape)
            # Each request costs its own lognormal draw (sigma 0.8, mean key.cost); an hour is the sum of its
            # requests' costs, as in real traffic and in demo-data.
            at = np.repeat(np.arange(hours), counts)
            out.add(at, costs(rng, key, len(at)), (key.id, model))
    return out


def inject(rng: np.random.Generator, keys: list[Key], spend: Traffic) -> list[Injected]:
    """Injected spend is made of requests, each costing what the key's requests cost (LiteLLM logs every one)."""
    first = (DAYS - EVALUATED) * 24
    found: list[Injected] = []
    chosen = rng.choice(len(keys), size=18, replace=False)

    def add(key: Key, model: str, at: int, n: int) -> None:
        spend.add(np.full(n, at), costs(rng, key, n), (key.id, model))

    for n, index in enumerate(chosen):
        key = keys[index]
        model = MODELS[int(np.argmax(key.mix))]
        day = int(rng.integers(DAYS - EVALUATED, DAYS - 3))
        if n < 8:  # a spike: six peak hours' worth of requests in one hour
            at = day * 24 + int(rng.integers(8, 20))
            add(key, model, at, int(rng.poisson(6 * key.rate)))
            found.append(Injected("spike", key, {at}, {model}))
        elif n < 14:  # a level shift: three times the usual rate for 8-24 hours
            at = day * 24 + int(rng.integers(6, 12))
            length = int(rng.integers(8, 25))
            hit = Injected("level shift", key, set(range(at, at + length)))
            for m, name in enumerate(MODELS):
                for hour in range(at, at + length):
                    usual = spend.requests[(key.id, name)][hour]
                    add(key, name, hour, int(2 * usual + rng.poisson(0.2 * key.rate * key.mix[m])))
                hit.models.add(name)
            found.append(hit)
        else:  # a leaked key: its peak rate at night, 01:00-05:00, three nights running
            hit = Injected("leaked key at night", key, set(), {model})
            for night in range(3):
                for hour in range(1, 5):
                    at = (day + night) * 24 + hour
                    add(key, model, at, int(rng.poisson(key.rate)))
                    hit.hours.add(at)
            found.append(hit)
    assert all(min(i.hours) >= first for i in found)
    return found


def cube_of(keys: list[Key], spend: Traffic, granularity: Granularity) -> Cube:
    """The cube the job reads: hourly with each bucket's most expensive request (the raw logs), daily without
    (the rollup)."""
    by_id = {k.id: k for k in keys}
    buckets = DAYS * 24 if granularity is Granularity.HOUR else DAYS
    cube = Cube(granularity, START, buckets)
    for (key_id, model), values in spend.spend.items():
        key = by_id[key_id]
        combo: Combo = (key.team, key.id, key.user, model)
        counts, largest = spend.requests[(key_id, model)], spend.largest[(key_id, model)]
        if granularity is Granularity.DAY:
            values, counts = values.reshape(DAYS, 24).sum(axis=1), counts.reshape(DAYS, 24).sum(axis=1)
        for b in np.flatnonzero(counts):
            cube.cells[combo][int(b)] = round(values[b] * 1e9)
            cube.requests[combo][int(b)] = int(counts[b])
            if granularity is Granularity.HOUR:
                cube.largest[combo][int(b)] = round(largest[b] * 1e9)
    return cube


def evaluated(granularity: Granularity) -> range:
    if granularity is Granularity.HOUR:
        return range((DAYS - EVALUATED) * 24, DAYS * 24)
    return range(DAYS - EVALUATED, DAYS)


def matches(finding: Finding, anomaly: Injected) -> bool:
    index = int((finding.bucket_start - START) / timedelta(hours=1))
    inside = index in anomaly.hours if finding.granularity is Granularity.HOUR else index // 24 in anomaly.days
    key = anomaly.key
    contains = {"key": key.id, "user": key.user, "team": key.team}.get(finding.kind) == finding.id or (
        finding.kind == "model" and finding.id in anomaly.models
    )
    return inside and contains


def demo_cubes(rows: int, seed: int) -> dict[Granularity, Cube]:
    cubes = {
        Granularity.HOUR: Cube(Granularity.HOUR, START, DAYS * 24),
        Granularity.DAY: Cube(Granularity.DAY, START, DAYS),
    }
    for log in generate(DemoPlan(rows=rows, days=DAYS, end=END, seed=seed)):
        combo: Combo = (log["team_id"] or "", log["api_key"] or "", log["user"] or "", log["model_group"] or "")
        moment = log["start_time"].replace(tzinfo=UTC, minute=0, second=0, microsecond=0)
        nanos = round(log["spend"] * 1e9)
        cubes[Granularity.HOUR].add(combo, moment, nanos, 1, nanos)  # one log, one request
        cubes[Granularity.DAY].add(combo, moment.replace(hour=0), nanos)
    return cubes


def show(f: Finding) -> str:
    v = f.verdict
    text = (
        f"{f.granularity.value} {f.kind} {f.id} {f.bucket_start:%m-%d %H}h actual {v.actual:.3f} "
        f"expected {v.expected:.3f} z {v.score:.1f}"
    )
    if v.requests is not None:
        text += (
            f"; requests {v.requests} expected {v.expected_requests:.1f} (z {v.count_score:.1f}), "
            f"cost per request z {v.cost_score:.1f}"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--quiet-rows", type=int, default=200_000, help="demo-data spend logs over the 86 days")
    parser.add_argument(
        "--statistics-alone",
        action="store_true",
        help="also count the quiet month's findings with no minimum excess (slow: decomposes every scope every day)",
    )
    parser.add_argument("--show-false", type=int, default=10, help="false findings of the synthetic run to print")
    args = parser.parse_args()
    settings = Settings()
    sensitivity = Sensitivity(settings.anomaly_threshold, float(settings.anomaly_min_usd))
    rng = np.random.default_rng(args.seed)
    keys = organisation(rng)
    spend = traffic(rng, keys)
    anomalies = inject(rng, keys, spend)
    findings: list[Finding] = []
    for granularity in Granularity:
        findings += scan(cube_of(keys, spend, granularity), evaluated(granularity), sensitivity)
    true = [f for f in findings if any(matches(f, a) for a in anomalies)]
    found_kinds: dict[str, list[bool]] = defaultdict(list)
    for anomaly in anomalies:
        found_kinds[anomaly.kind].append(any(matches(f, anomaly) for f in findings))
    precision = len(true) / len(findings) if findings else 1.0
    recall = sum(any(matches(f, a) for f in findings) for a in anomalies) / len(anomalies)
    print(f"seed {args.seed}; sensitivity: robust z >= {sensitivity.threshold}, excess >= ${sensitivity.min_usd}")
    print(
        f"synthetic: {len(keys)} keys, {len(anomalies)} injected anomalies, {len(findings)} findings "
        f"({len(findings) - len(true)} false)\n"
    )
    print("| injected | count | found | findings on it by scope kind |")
    print("|---|---|---|---|")
    for kind, hits in found_kinds.items():
        scopes: dict[str, int] = defaultdict(int)
        for f in true:
            if any(matches(f, a) and a.kind == kind for a in anomalies):
                scopes[f"{f.granularity.value} {f.kind}"] += 1
        print(f"| {kind} | {len(hits)} | {sum(hits)} | {', '.join(f'{k} {n}' for k, n in sorted(scopes.items()))} |")
    for anomaly in anomalies:
        if not any(matches(f, anomaly) for f in findings):
            key = anomaly.key
            print(
                f"missed: {anomaly.kind} {key.id} ({key.rate:.1f} requests an hour at its peak, "
                f"${key.cost:.3f} each: ${key.rate * key.cost:.2f} an hour)"
            )
    named = [f for f in true if f.driver is not None and f.kind != "key"]
    right = sum(
        1 for f in named if any(matches(f, a) and f.driver is not None and f.driver.id == a.key.id for a in anomalies)
    )
    print(f"\nparent-scope findings whose driver is the injected key: {right} of {len(named)}")
    false = [f for f in findings if f not in true]
    for f in false[: args.show_false]:
        print(f"  false: {show(f)}")
    quiet: list[Finding] = []
    loose: list[Finding] = []
    statistics_only = Sensitivity(sensitivity.threshold, 0.0)
    for granularity, cube in demo_cubes(args.quiet_rows, args.seed).items():
        quiet += scan(cube, evaluated(granularity), sensitivity)
        if args.statistics_alone:
            loose += scan(cube, evaluated(granularity), statistics_only)
    print(f"quiet month of demo data ({args.quiet_rows:,} logs over {DAYS} days): {len(quiet)} false alerts")
    if args.statistics_alone:
        print(f"  with no minimum excess (statistics alone): {len(loose)}")
    for f in [*quiet, *loose][: args.show_false]:
        print(f"  {show(f)}")
    print(f"CPU time: {time.process_time():.0f} s (this process; the machine is shared)")
    print(f"precision={precision:.2f} recall={recall:.2f} quiet_month_false_alerts={len(quiet)}")


if __name__ == "__main__":
    main()
