"""The exhaustion-date benchmark's core (bench/exhaustion_accuracy.py): production's pipeline on a series whose
crossing day is known, and the rules that judge an answer against what happened."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy as np

from bench.exhaustion_accuracy import Spend, judge, run
from resolvers.forecasts.exhaustion import Exhaustion, ExhaustionStatus

LIMIT = Decimal(100)


def test_a_constant_series_is_dated_exactly_through_the_production_pipeline() -> None:
    # $10 every day: October's total is $310, the limit half of it ($155), reached on October 16 ($160 by its
    # end, $150 the day before). Seen on October 8 with $70 spent, every method forecasts $10 a day with no error
    # at any backtest origin, so the calibrated band has no width: date, earliest and latest are all the 16th.
    spend = Spend.of(np.full(182, 10.0))
    [found] = run([("constant", spend)], np.full((1, 3), 0.5), [(date(2026, 10, 8), date(2026, 11, 1))])
    assert found.limit == Decimal("155.00")
    assert found.realised == date(2026, 10, 16)
    assert found.answer.status is ExhaustionStatus.EXPECTED
    assert found.answer.date == found.answer.earliest == found.answer.latest == date(2026, 10, 16)
    # Not rounded to days either: halfway through the 16th ($150 + $5 of its $10), realised and forecast alike.
    assert found.realised_at == 15.5
    assert found.band_at == (15.5, 15.5)
    assert found.instant_covered
    verdict = judge(found.answer, found.realised)
    assert verdict.covered and verdict.error_days == 0
    assert not verdict.missed and not verdict.false_alarm


def expected(day: int, earliest: int, latest: int | None) -> Exhaustion:
    return Exhaustion(
        LIMIT,
        ExhaustionStatus.EXPECTED,
        date(2026, 10, day),
        date(2026, 10, earliest),
        None if latest is None else date(2026, 10, latest),
    )


def test_the_interval_is_judged_with_a_null_latest_open_past_the_period() -> None:
    inside = judge(expected(12, 10, 15), date(2026, 10, 15))
    assert inside.covered and inside.error_days == 3 and inside.side is None
    assert judge(expected(12, 10, 15), date(2026, 10, 9)).side == "early"
    assert judge(expected(12, 10, 15), date(2026, 10, 16)).side == "late"
    # Latest null: the 10th percentile does not get there this period, so "never" and any day from earliest on
    # are inside; a date said for a month that never exhausts is still a false alarm.
    never = judge(expected(20, 10, None), None)
    assert never.covered and never.false_alarm and never.error_days is None
    assert judge(expected(20, 10, None), date(2026, 10, 31)).covered
    closed = judge(expected(20, 10, 25), None)
    assert closed.side == "late" and closed.false_alarm


def test_not_this_period_for_a_month_that_exhausts_is_a_miss_and_possible_is_counted_apart() -> None:
    missed = judge(Exhaustion(LIMIT, ExhaustionStatus.NOT_THIS_PERIOD), date(2026, 10, 20))
    assert missed.missed and not missed.possible_hit
    possible = judge(Exhaustion(LIMIT, ExhaustionStatus.POSSIBLE), date(2026, 10, 20))
    assert possible.possible_hit and not possible.missed
    for status in (ExhaustionStatus.POSSIBLE, ExhaustionStatus.NOT_THIS_PERIOD):
        assert not judge(Exhaustion(LIMIT, status), None).missed
        assert not judge(Exhaustion(LIMIT, status), None).possible_hit
    reached = judge(Exhaustion(LIMIT, ExhaustionStatus.REACHED), date(2026, 10, 3))
    assert reached.covered is None and not reached.missed
