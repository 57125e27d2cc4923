"""Benchmark model: do the levers left for issue 12 item 5 cut false refusals? Seeds in one run, in seconds.

    .venv/bin/python bench/reservation_levers.py --seeds 1,2,3,4

`bench/reservations.py` measures the app itself (every decision is `Enforcer.admit`) and takes minutes per policy.
This replays the very same traces and budgets (its `build_trace`, limits, 200 in flight, the same random finishing
order) and scores them the same way (`score`), but decides with a model of the ledger: one instance, exact running
totals, holds from the trace's true output-length distributions (not the learned per-mille quantiles), spend
settled the moment a request finishes (no refresh interval). So its figures differ from the app's; it prints the
worst case, the median and 0.8 per request beside the levers so that the gap shows. The levers:

- `inflight φ` (lever a): a budget admits a request only while the holds in flight, with it, stay within φ of what
  is left of the limit (`held + hold <= φ x (limit - spent)`), besides fitting;
- `spread β` (lever a, on the spread): a request is admitted only when what it holds beyond its mean cost is at
  most β of what the budget would still have free, in expectation, once it is admitted
  (`hold - mean <= β x (limit - spent - means in flight - mean)`): near the limit only well-bounded requests go;
- `shorten` (lever b): a request whose hold does not fit, but whose input and at least 16 output tokens do, is
  admitted with `max_tokens` lowered to what is left and holds that worst case; its completion is cut there (its
  real cost with it): "shortened" counts such admissions, "cut" those whose completion was longer than the cap.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reservations import IN_FLIGHT, MODELS, ModelMix, TraceItem, build_trace, limits_of, score  # noqa: E402
from resolvers.predictor.tokens import count_messages  # noqa: E402
from resolvers.pricing import ModelPrice, PriceBook  # noqa: E402

SHORTEST = 16  # the fewest output tokens a shortened request is given
NORMAL = statistics.NormalDist()


def tokens_at(mix: ModelMix, quantile: Decimal) -> int:
    """The quantile of the model's true completion length (log-normal, capped at max_tokens)."""
    if quantile >= 1:
        return mix.max_tokens
    return min(mix.max_tokens, math.ceil(mix.median_output * math.exp(mix.sigma * NORMAL.inv_cdf(float(quantile)))))


def mean_tokens(mix: ModelMix) -> Decimal:
    """E[min(X, max_tokens)] for X log-normal with the model's median and sigma."""
    cap, mu, s = mix.max_tokens, math.log(mix.median_output), mix.sigma
    k = (math.log(cap) - mu) / s
    value = math.exp(mu + s * s / 2) * NORMAL.cdf(k - s) + cap * (1 - NORMAL.cdf(k))
    return Decimal(str(value))


@dataclass(frozen=True)
class Policy:
    label: str
    quantile: Decimal
    inflight: Decimal | None = None  # φ
    spread: Decimal | None = None  # β
    shorten: bool = False


@dataclass
class Result:
    false_refusals: int
    refused: int
    overshoot: Decimal
    budgets_over: int
    used: Decimal
    median_left: Decimal
    shortened: int = 0
    cut: int = 0


def replay(
    policy: Policy, seed: int, trace: list[TraceItem], limits: dict[str, Decimal], prices: dict[str, ModelPrice]
) -> Result:
    rng = random.Random(seed * 7919 + 1)  # bench/reservations.py's finishing order
    spent = dict.fromkeys(limits, Decimal(0))
    held = dict.fromkeys(limits, Decimal(0))
    means = dict.fromkeys(limits, Decimal(0))
    flying: list[tuple[str, Decimal, Decimal, Decimal]] = []  # team, hold, mean, real cost
    refused: list[TraceItem] = []
    shortened = cut = 0
    mean_of = {m.name: mean_tokens(m) for m in MODELS}

    def finish(index: int) -> None:
        team, hold, mean, cost = flying.pop(index)
        held[team] -= hold
        means[team] -= mean
        spent[team] += cost

    for item in trace:
        price = prices[item.model.name]
        input_tokens = count_messages(price.model, [dict(m) for m in item.messages]).tokens
        input_cost, _ = price.cost(input_tokens, 0)
        hold = input_cost + price.cost(0, tokens_at(item.model, policy.quantile))[1]
        mean = input_cost + price.output_per_million * mean_of[item.model.name] / 1_000_000
        team, cost = item.team, item.cost
        free = limits[team] - spent[team] - held[team]
        admit = hold <= free
        if admit and policy.inflight is not None:
            admit = held[team] + hold <= policy.inflight * (limits[team] - spent[team])
        if admit and policy.spread is not None:
            admit = hold - mean <= policy.spread * (limits[team] - spent[team] - means[team] - mean)
        if not admit and policy.shorten and free > input_cost and price.output_per_million > 0:
            cap = int((free - input_cost) * 1_000_000 / price.output_per_million)
            if SHORTEST <= cap < item.model.max_tokens:
                admit, shortened = True, shortened + 1
                hold = input_cost + price.cost(0, cap)[1]
                mean = min(mean, hold)
                if item.output_tokens > cap:
                    cut += 1
                    cost = sum(price.cost(input_tokens, cap), Decimal(0))
        if admit:
            held[team] += hold
            means[team] += mean
            flying.append((team, hold, mean, cost))
        else:
            refused.append(item)
        while len(flying) >= IN_FLIGHT:
            finish(rng.randrange(len(flying)))
    while flying:
        finish(rng.randrange(len(flying)))
    scored = score(limits, spent, refused)
    return Result(
        scored.false_refusals,
        len(refused),
        scored.overshoot,
        scored.budgets_over,
        scored.used,
        statistics.median(scored.left.values()),
        shortened,
        cut,
    )


POLICIES = (
    Policy("worst", Decimal(1)),
    Policy("median", Decimal("0.5")),
    Policy("0.8 per request", Decimal("0.8")),
    Policy("0.9 per request", Decimal("0.9")),
    Policy("0.6 per request", Decimal("0.6")),
    Policy("0.7 per request", Decimal("0.7")),
    Policy("0.8, inflight φ=0.5", Decimal("0.8"), inflight=Decimal("0.5")),
    Policy("0.8, inflight φ=0.2", Decimal("0.8"), inflight=Decimal("0.2")),
    Policy("0.8, spread β=0.05", Decimal("0.8"), spread=Decimal("0.05")),
    Policy("0.8, spread β=0.1", Decimal("0.8"), spread=Decimal("0.1")),
    Policy("0.9, spread β=0.1", Decimal("0.9"), spread=Decimal("0.1")),
    Policy("0.8, shorten", Decimal("0.8"), shorten=True),
    Policy("0.9, shorten", Decimal("0.9"), shorten=True),
    Policy("worst, shorten", Decimal(1), shorten=True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1,2,3,4")
    args = parser.parse_args()
    book = PriceBook()
    prices = {}
    for mix in MODELS:
        match = book.lookup(mix.name)
        if match is None:
            raise SystemExit(f"the baseline price book does not know {mix.name}")
        prices[mix.name] = match.price
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    traces = {seed: build_trace(seed, book) for seed in seeds}
    for seed, trace in traces.items():
        costs = sorted(item.cost for item in trace)
        spread = statistics.pstdev(costs)
        print(
            f"seed {seed}: request cost mean {float(statistics.fmean(costs)):.4f} USD, standard deviation "
            f"{float(spread):.4f} USD, 10th percentile {float(costs[len(costs) // 10]):.4f} USD, median "
            f"{float(costs[len(costs) // 2]):.4f} USD; the sum of {IN_FLIGHT // len(limits_of(trace))} requests' "
            f"costs spreads by {float(spread) * math.sqrt(IN_FLIGHT // len(limits_of(trace))):.4f} USD"
        )
    print()
    print(
        "| seed | policy | refused | false refusals | of the worst case's | overshoot (of limits) | budgets over "
        "| limits used | left at the end (median budget) | shortened | cut |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for seed, trace in traces.items():
        limits = limits_of(trace)
        worst: Result | None = None
        for policy in POLICIES:
            result = replay(policy, seed, trace, limits, prices)
            worst = worst or result
            share = result.false_refusals / worst.false_refusals if worst.false_refusals else 0.0
            print(
                f"| {seed} | {policy.label} | {result.refused} | {result.false_refusals} | {share:.2f} | "
                f"{float(result.overshoot) * 100:.2f}% | {result.budgets_over}/{len(limits)} | "
                f"{float(result.used) * 100:.1f}% | {float(result.median_left):.4f} USD | "
                f"{result.shortened if policy.shorten else '-'} | {result.cut if policy.shorten else '-'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
