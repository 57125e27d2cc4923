"""Scanning spend for anomalies: from spend per bucket and (team, key, user, model) combination (a `Cube`), every
team, key, user and model whose spend in the evaluated bucket is unusual (`detection`), with its driver and
whose it is (for a viewer's scope). Pure CPU work, shared by the job and bench/anomalies.py."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np

from resolvers.anomalies.detection import (
    DAILY_HISTORY_DAYS,
    HOURLY_HISTORY_DAYS,
    Driver,
    Expectation,
    Granularity,
    Series,
    Verdict,
    daily_expectation,
    driver,
    hourly_days,
    hourly_expectation,
    judge,
    request_scores,
    requests_of,
)

#: The scope kinds anomalies are found for, and each one's position in a cube combination.
KINDS = ("team", "key", "user", "model")
Combo = tuple[str, str, str, str]  # team, key, user, model ('' when the log has none)


@dataclass(frozen=True)
class Sensitivity:
    threshold: float  # robust z at or above which spend is unusual
    min_usd: float  # ... and by at least this many USD


@dataclass
class Cube:
    """Spend (nano-USD) and requests per bucket and combination; bucket i starts at `start + i x step` (`start` a
    UTC midnight)."""

    granularity: Granularity
    start: datetime
    buckets: int
    cells: dict[Combo, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    requests: dict[Combo, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    #: The most expensive single request (nano-USD) per bucket and combination, where known (hourly buckets read
    #: from the raw logs); the daily rollup does not keep it.
    largest: dict[Combo, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))

    @property
    def step(self) -> timedelta:
        return timedelta(hours=1) if self.granularity is Granularity.HOUR else timedelta(days=1)

    def add(self, combo: Combo, moment: datetime, nanos: int, requests: int = 1, largest: int | None = None) -> None:
        """`largest`: the most expensive of the `requests` (nano-USD), when known."""
        index = int((moment - self.start) / self.step)
        if 0 <= index < self.buckets and (nanos or requests):
            row = self.cells[combo]
            row[index] = row.get(index, 0) + nanos
            counts = self.requests[combo]
            counts[index] = counts.get(index, 0) + requests
            if largest is not None:
                tops = self.largest[combo]
                tops[index] = max(tops.get(index, 0), largest)

    def bucket_start(self, index: int) -> datetime:
        return self.start + index * self.step


@dataclass(frozen=True)
class Finding:
    kind: str
    id: str
    granularity: Granularity
    bucket_start: datetime
    actual_nanos: int
    verdict: Verdict
    scale: float
    driver: Driver | None
    team_id: str | None
    user_id: str | None


class _Matrix:
    def __init__(self, cube: Cube) -> None:
        self.combos: list[Combo] = list(cube.cells)
        self.nanos = np.zeros((len(self.combos), cube.buckets), dtype=np.int64)
        for i, combo in enumerate(self.combos):
            for b, nanos in cube.cells[combo].items():
                self.nanos[i, b] = nanos
        self.usd = self.nanos / 1e9
        self.counts = np.zeros((len(self.combos), cube.buckets), dtype=np.float64)
        self.largest = np.zeros((len(self.combos), cube.buckets), dtype=np.float64)
        for i, combo in enumerate(self.combos):
            for b, count in cube.requests.get(combo, {}).items():
                self.counts[i, b] = count
            for b, top in cube.largest.get(combo, {}).items():
                self.largest[i, b] = top / 1e9
        self.knows_largest = bool(cube.largest)
        self.by_value: list[dict[str, list[int]]] = [defaultdict(list) for _ in KINDS]
        for i, combo in enumerate(self.combos):
            for d, value in enumerate(combo):
                if value:
                    self.by_value[d][value].append(i)


def scan(cube: Cube, evaluate: Iterable[int], sensitivity: Sensitivity, kinds: Iterable[str] = KINDS) -> list[Finding]:
    """Anomalies in the buckets `evaluate` (indexes into the cube), for every scope of `kinds` with spend."""
    matrix = _Matrix(cube)
    found: list[Finding] = []
    expectations: dict[tuple[str, str, date], Expectation | None] = {}
    wanted = list(evaluate)
    for d, kind in enumerate(KINDS):
        if kind not in kinds:
            continue
        for value, rows in matrix.by_value[d].items():
            series = matrix.usd[rows].sum(axis=0)
            counts = matrix.counts[rows].sum(axis=0)
            largest = matrix.largest[rows].max(axis=0) if matrix.knows_largest else None
            for b in wanted:
                # Cheap and exact: an excess of min_usd needs at least that much actual spend.
                if series[b] < sensitivity.min_usd or series[b] <= 0:
                    continue
                finding = _judge_bucket(
                    cube, matrix, kind, d, value, rows, (series, counts, largest), b, sensitivity, expectations
                )
                if finding is not None:
                    found.append(finding)
    return found


def _history(cube: Cube, b: int) -> tuple[list[int], int]:
    """The history bucket indexes for bucket b and b's position in the expectation's period."""
    start = cube.bucket_start(b)
    if cube.granularity is Granularity.HOUR:
        day = start.date()
        first = cube.start.date()
        hours: list[int] = []
        for past in hourly_days(day):
            offset = (past - first).days * 24
            hours.extend(range(offset, offset + 24))
        return hours, start.hour
    return list(range(b - DAILY_HISTORY_DAYS, b)), 0


def _judge_bucket(
    cube: Cube,
    matrix: _Matrix,
    kind: str,
    d: int,
    value: str,
    rows: list[int],
    spend_and_counts: tuple[Series, Series, Series | None],
    b: int,
    sensitivity: Sensitivity,
    expectations: dict[tuple[str, str, date], Expectation | None],
) -> Finding | None:
    series, counts, largest = spend_and_counts
    history, position = _history(cube, b)
    if not history or min(history) < 0:
        return None
    actual = float(series[b])
    # The same position of the history: the same hour of the same kind of day, the same weekday.
    same = [h for h in history if (h - b) % (24 if cube.granularity is Granularity.HOUR else 7) == 0]
    window = range(b - position - HOURLY_HISTORY_DAYS * 24, b - position)  # every hour of the 14 days before
    requests = requests_of(
        int(counts[b]),
        counts[same],
        series[history],
        counts[history],
        None if largest is None else float(largest[b]),
        None if largest is None else largest[history],
        None if largest is None or window.start < 0 else (largest[window], counts[window]),
    )
    # Cheap and exact: without unusual requests there is no anomaly, whatever the decomposition expects.
    if max(request_scores(actual, requests)) < sensitivity.threshold:
        return None
    day = cube.bucket_start(b).date()
    key = (kind, value, day)
    if key not in expectations:
        if cube.granularity is Granularity.HOUR:
            per_day = {}
            for past in hourly_days(day):
                offset = (past - cube.start.date()).days * 24
                per_day[past] = series[offset : offset + 24]
            expectations[key] = hourly_expectation(day, per_day)
        else:
            expectations[key] = daily_expectation(series[history])
    expectation = expectations[key]
    if expectation is None:
        return None
    verdict = judge(
        actual,
        float(expectation.expected[position]),
        expectation.scale,
        sensitivity.threshold,
        sensitivity.min_usd,
        requests,
    )
    if verdict is None:
        return None
    now: dict[tuple[str, str], float] = {}
    baseline: dict[tuple[str, str], float] = {}
    for j, other in enumerate(KINDS):
        if j == d:
            continue
        groups: dict[str, list[int]] = defaultdict(list)
        for i in rows:
            if matrix.combos[i][j]:
                groups[matrix.combos[i][j]].append(i)
        for ident, members in groups.items():
            now[(other, ident)] = float(matrix.usd[members, b].sum())
            baseline[(other, ident)] = float(matrix.usd[members][:, same].sum(axis=0).mean()) if same else 0.0
    team_id, user_id = _owners(matrix, kind, d, value, rows)
    return Finding(
        kind=kind,
        id=value,
        granularity=cube.granularity,
        bucket_start=cube.bucket_start(b),
        actual_nanos=int(matrix.nanos[rows, b].sum()),
        verdict=verdict,
        scale=expectation.scale,
        driver=driver(verdict.excess, now, baseline),
        team_id=team_id,
        user_id=user_id,
    )


def _owners(matrix: _Matrix, kind: str, d: int, value: str, rows: list[int]) -> tuple[str | None, str | None]:
    """Whose scope it is, for a viewer: a team's own id; a key's (or user's) team and user by most spend."""
    if kind == "team":
        return value, None
    if kind == "model":
        return None, None

    def top(position: int) -> str | None:
        totals: dict[str, float] = defaultdict(float)
        for i in rows:
            if matrix.combos[i][position]:
                totals[matrix.combos[i][position]] += float(matrix.usd[i].sum())
        return max(totals, key=lambda k: (totals[k], k)) if totals else None

    return top(KINDS.index("team")), value if kind == "user" else top(KINDS.index("user"))
