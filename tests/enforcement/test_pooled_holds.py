"""Pooled holds (RESERVATION_MARGIN=pooled): each admitted request holds its mean predicted cost, and
each budget a margin of z x sqrt(sum of its in-flight requests' variances) beside them, so n requests in flight
need a margin sqrt(n) times one request's, not n times. The margin lives inside the instance's allowance like
any hold: crashes, limit cuts and other instances are bounded exactly as before."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from statistics import NormalDist

import numpy as np
import pytest
from sqlalchemy import select

from models.db import Database
from models.ledger import AllowanceRow
from models.types import whole_nanos
from resolvers.enforcement.ledger import IDLE_RELEASE_AFTER, Claim, Ledger, margin_z
from resolvers.platform.config import Settings
from tests.budgets.test_budgets import create as create_budget
from tests.conftest import Clock, started
from tests.enforcement.test_ledger import TTL, claim, ledgers, settle
from tests.enforcement.test_reservations import GATEWAY, GPT_4O_OUT, HI, MAX_TOKENS, PATIENT, learn, lengths, predicted

Z = margin_z(Decimal("0.8"), pooled=True)
#: The quantile the gateway uses when nothing is set, here held pooled.
DEFAULT_QUANTILE = Settings.from_env({}).reservation_quantile
DEFAULT_Z = margin_z(DEFAULT_QUANTILE, pooled=True)
POOLED = {"reservation_margin": "pooled"}
AMOUNT, VARIANCE = Decimal("0.1"), Decimal("0.01")  # each request: mean 0.10 USD, standard deviation 0.10 USD


def pooled(ledger: Ledger) -> Ledger:
    ledger.margin_z = Z
    return ledger


async def fill(ledger: Ledger, budget: Claim, prefix: str, limit: int = 300) -> int:
    """Reserve alike requests until the budget refuses one; how many were admitted."""
    for i in range(limit):
        if await ledger.reserve(f"{prefix}{i}", AMOUNT, [budget], variance=VARIANCE) is not None:
            return i
    raise AssertionError("never refused")


def test_z_is_the_normal_quantile_of_the_setting_and_zero_per_request_or_at_the_ends() -> None:
    assert Decimal(str(round(NormalDist().inv_cdf(0.8), 6))) == Z
    assert margin_z(Decimal("0.8"), pooled=False) == 0
    assert margin_z(Decimal("0.5"), pooled=True) == margin_z(Decimal(1), pooled=True) == 0


async def test_n_requests_in_flight_hold_their_means_and_one_margin_growing_as_sqrt_n(
    db: Database, clock: Clock
) -> None:
    (ledger,) = await ledgers(db, clock, 1)
    pooled(ledger)
    admitted = await fill(ledger, claim("10"), "r")
    # Independently: the most n with n x 0.1 + z x 0.1 x sqrt(n) <= 10 (it is 91 at z = 0.84).
    z = float(Z)
    expected = max(n for n in range(1, 101) if n * 0.1 + z * 0.1 * math.sqrt(n) <= 10 + 1e-12)
    assert admitted == expected == 91
    # Holding each request's own 0.8 quantile (mean + z x sd) would have admitted only 54.
    assert int(10 / (0.1 + z * 0.1)) == 54
    account = ledger.account(claim("10"))
    assert account.held == admitted * AMOUNT
    assert account.variance == admitted * VARIANCE
    assert account.margin == whole_nanos(Z * (admitted * VARIANCE).sqrt(), up=True)
    assert account.held + account.margin <= Decimal(10) < account.held + account.margin + account.need(AMOUNT, VARIANCE)


async def test_a_request_whose_mean_fits_but_not_the_margins_growth_is_refused(db: Database, clock: Clock) -> None:
    (ledger,) = await ledgers(db, clock, 1)
    pooled(ledger)
    budget = claim("0.15")
    refused = await ledger.reserve("a", AMOUNT, [budget], variance=VARIANCE)
    # 0.10 fits in 0.15, but its margin (z x 0.10 = 0.084) does not: refused, saying what the margin needed.
    assert refused is not None
    assert refused.margin == whole_nanos(Z * VARIANCE.sqrt(), up=True)
    assert refused.available == Decimal("0.15")
    assert await ledger.reserve("b", AMOUNT, [budget]) is None  # the same request with no spread fits


async def test_settling_releases_the_variance_and_the_margin_shrinks_back_to_nothing(
    db: Database, clock: Clock
) -> None:
    (ledger,) = await ledgers(db, clock, 1)
    pooled(ledger)
    for i in range(4):
        assert await ledger.reserve(f"s{i}", AMOUNT, [claim()], variance=VARIANCE) is None
    account = ledger.account(claim())
    assert account.margin == whole_nanos(Z * Decimal("0.2"), up=True)  # sqrt(4 x 0.01) = 0.2
    assert await settle(ledger, db, "s0", "0.3", "chatcmpl-s0") == 1
    # The settled request counts its real cost and no spread; three are left in flight.
    assert account.variance == 3 * VARIANCE
    assert account.margin == whole_nanos(Z * (3 * VARIANCE).sqrt(), up=True)
    assert account.held == Decimal("0.3") + 3 * AMOUNT
    assert await settle(ledger, db, "s1", "0", "chatcmpl-s1", failed=True) == 1  # failed: dropped with its spread
    assert (account.variance, account.held) == (2 * VARIANCE, Decimal("0.3") + 2 * AMOUNT)
    assert account.margin == whole_nanos(Z * (2 * VARIANCE).sqrt(), up=True)
    clock.now += TTL + timedelta(seconds=1)
    await ledger.reconcile([])  # the rest expire
    assert (account.variance, account.margin, account.held) == (0, 0, 0)


async def test_the_margin_stays_inside_the_allowance_written_for_other_instances(db: Database, clock: Clock) -> None:
    one, two = await ledgers(db, clock)
    pooled(one), pooled(two)
    for i in range(9):
        assert await one.reserve(f"o{i}", AMOUNT, [claim()], variance=VARIANCE) is None
    account = one.account(claim())
    await one.reconcile([])  # used a moment ago: keeps its allowance
    clock.now += IDLE_RELEASE_AFTER + timedelta(seconds=1)
    await one.reconcile([])  # idle: the free part goes back, the holds and their margin stay
    margin = whole_nanos(Z * Decimal("0.3"), up=True)  # sqrt(9 x 0.01)
    assert account.granted == 9 * AMOUNT + margin
    assert account.free == 0
    async with db.reader() as session:
        row = (await session.scalars(select(AllowanceRow).where(AllowanceRow.instance_id == one.instance_id))).one()
    assert (row.granted, row.held) == (9 * AMOUNT + margin, 9 * AMOUNT + margin)
    # The other instance can take only what is left beside all of that (as a crashed one's would be).
    refused = await two.reserve("t", Decimal(10) - 9 * AMOUNT - margin + Decimal("0.000001"), [claim()])
    assert refused is not None and refused.available == Decimal(10) - 9 * AMOUNT - margin


async def test_two_instances_filling_one_budget_never_hold_past_it_and_cover_the_joint_margin(
    db: Database, clock: Clock
) -> None:
    one, two = await ledgers(db, clock)
    pooled(one), pooled(two)
    budget = claim("10")
    admitted = {0: 0, 1: 0}
    for i in range(300):
        who = i % 2
        if await (one, two)[who].reserve(f"c{i}", AMOUNT, [budget], variance=VARIANCE) is None:
            admitted[who] += 1
    accounts = [one.account(budget), two.account(budget)]
    assert all(a.granted >= a.held + a.margin for a in accounts)
    assert sum((a.held + a.margin for a in accounts), Decimal(0)) <= Decimal(10)
    # Each instance's margin covers its own requests; together they cover the margin of all of them at once
    # (sqrt is subadditive), so the budget's quantile holds across instances without sharing variances.
    total = admitted[0] + admitted[1]
    assert sum((a.margin for a in accounts), Decimal(0)) >= whole_nanos(Z * (total * VARIANCE).sqrt())
    assert total >= 85  # near the single instance's 91: the split costs a few requests of margin, not half


async def test_a_limit_cut_keeps_only_the_holds_and_their_margin(db: Database, clock: Clock) -> None:
    (ledger,) = await ledgers(db, clock, 1)
    pooled(ledger)
    for i in range(4):
        assert await ledger.reserve(f"k{i}", AMOUNT, [claim("10")], variance=VARIANCE) is None
    account = ledger.account(claim("10"))
    assert account.granted > account.held + account.margin
    cut = claim("1")
    refused = await ledger.reserve("after-cut", Decimal("0.5"), [cut], variance=VARIANCE)
    assert account.granted == 4 * AMOUNT + whole_nanos(Z * Decimal("0.2"), up=True)
    assert refused is not None  # 0.4 held + a margin of about 0.19 (five in flight) + 0.5 > 1


@pytest.mark.parametrize("raw", ["pool", "median", "quantile"])
def test_an_unknown_reservation_margin_is_refused_with_what_is_accepted(raw: str) -> None:
    with pytest.raises(ValueError, match=r"RESERVATION_MARGIN.*pooled.*per_request"):
        Settings.from_env({"RESERVATION_MARGIN": raw})


async def test_predict_reports_the_mean_and_spread_that_a_pooled_hold_takes(
    settings: Settings, clock: Clock, db: Database
) -> None:
    history = lengths(400, seed=11)
    async with started(settings, clock, **POOLED) as api:
        await learn(api, db, history)
        body = await predicted(api, max_tokens=MAX_TOKENS)
        sample = np.array(history, dtype=float)
        assert body["held_output_tokens"] == math.ceil(sample.mean())
        assert Decimal(str(body["held_quantile"])) == DEFAULT_QUANTILE
        spread = Decimal(str(body["held_std_dev_usd"]))
        assert abs(spread - GPT_4O_OUT * Decimal(float(sample.std()))) < Decimal("1e-8")
        data = await api.data(
            """query($input: PredictCostInput!) {
            predictCost(input: $input) { heldOutputTokens heldCost heldStdDev } }""",
            {"input": {"model": "gpt-4o", "maxTokens": MAX_TOKENS, "messages": HI}},
        )
        view = data["predictCost"]
        assert view["heldOutputTokens"] == body["held_output_tokens"]
        assert Decimal(view["heldStdDev"]) == spread
        assert Decimal(view["heldCost"]) == Decimal(str(body["held_cost_usd"]))
        # Under a lower max_tokens the mean and spread are of the capped lengths.
        capped = await predicted(api, max_tokens=300)
        cut = np.minimum(sample, 300)
        assert abs(capped["held_output_tokens"] - math.ceil(cut.mean())) <= 1
        assert Decimal(str(capped["held_std_dev_usd"])) < spread


async def test_the_gateway_refuses_a_request_whose_mean_fits_but_not_its_margin_and_says_so(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with started(settings, clock, **PATIENT, **POOLED) as api:
        await learn(api, db, lengths(400, seed=12))
        body = await predicted(api, max_tokens=MAX_TOKENS)
        held, spread = Decimal(str(body["held_cost_usd"])), Decimal(str(body["held_std_dev_usd"]))
        assert held > 0 and spread > 0
        # A limit between the mean and the mean plus its margin (z x spread).
        limit = (held + DEFAULT_Z * spread / 2).quantize(Decimal("0.000001"))
        await create_budget(api, entityId="eng", monthlyLimit=str(limit))
        await api.runtime().enforcement().refresh()
        answer = await api.client.post(
            "/webhook/pre-request",
            headers=GATEWAY,
            json={
                "litellm_call_id": "m-1",
                "model": "gpt-4o",
                "messages": HI,
                "max_tokens": MAX_TOKENS,
                "team_id": "eng",
            },
        )
        assert answer.status_code == 429, answer.text
        message = answer.json()["error"]["message"]
        six = Decimal("0.000001")
        assert message.startswith(
            f"this request (held at {held.quantize(six).normalize():f} USD, plus "
            f"{(DEFAULT_Z * spread).quantize(six).normalize():f} USD of margin for the spread of the requests in "
            "flight) does not fit in what is left of team budget"
        ), message
        budget = (await api.data("{ budgets { reserved } }"))["budgets"][0]
        assert Decimal(budget["reserved"]) == 0  # refused: nothing held


async def test_per_request_holds_take_no_margin(settings: Settings, clock: Clock, db: Database) -> None:
    async with started(settings, clock, **PATIENT, reservation_margin="per_request") as api:
        await learn(api, db, lengths(400, seed=13))
        body = await predicted(api, max_tokens=MAX_TOKENS)
        assert Decimal(str(body["held_std_dev_usd"])) == 0
        assert api.runtime().enforcement().ledger.margin_z == 0
        await create_budget(api, entityId="eng", monthlyLimit="100")
        await api.runtime().enforcement().refresh()
        for i in range(3):
            answer = await api.client.post(
                "/webhook/pre-request",
                headers=GATEWAY,
                json={
                    "litellm_call_id": f"p-{i}",
                    "model": "gpt-4o",
                    "messages": HI,
                    "max_tokens": MAX_TOKENS,
                    "team_id": "eng",
                },
            )
            assert answer.status_code == 200, answer.text
        budget = (await api.data("{ budgets { reserved } }"))["budgets"][0]
        assert Decimal(budget["reserved"]) == 3 * Decimal(str(body["held_cost_usd"]))
