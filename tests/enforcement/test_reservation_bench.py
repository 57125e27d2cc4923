"""The reservations benchmark's scoring (bench/reservations.py `score`), shared by its model of levers
(bench/reservation_levers.py): as issue 12 defines it, whichever bench decides."""

from __future__ import annotations

from decimal import Decimal

from bench.reservations import MODELS, TraceItem, limits_of, score


def item(team: str, cost: str) -> TraceItem:
    return TraceItem(team, MODELS[0], (), 100, Decimal(cost))


def test_a_refusal_is_false_when_its_cost_fits_in_what_its_own_budget_had_left_at_the_end() -> None:
    limits = {"a": Decimal("2.00"), "b": Decimal("1.00")}
    spent = {"a": Decimal("1.99"), "b": Decimal("1.05")}  # a ends 0.01 under, b 0.05 over
    refused = [item("a", "0.01"), item("a", "0.011"), item("b", "0.0001")]
    scored = score(limits, spent, refused)
    assert scored.false_refusals == 1  # a's 0.01 fitted in its 0.01; a's 0.011 did not; b had nothing left
    assert scored.left == {"a": Decimal("0.01"), "b": Decimal("-0.05")}
    assert scored.overshoot == Decimal("0.05") / Decimal("3.00")  # summed over budgets, of the limits' sum
    assert scored.worst_budget_overshoot == Decimal("0.05")
    assert scored.budgets_over == 1
    assert scored.used == Decimal("2.99") / Decimal("3.00")  # spend capped at each limit


def test_each_budget_is_its_teams_demand_over_the_oversubscription() -> None:
    trace = [item("a", "1.00"), item("a", "0.25"), item("b", "0.50")]
    assert limits_of(trace) == {"a": Decimal("1.00"), "b": Decimal("0.40")}  # 1.25x oversubscribed
