"""A budget created while requests of its scope are in flight: they were admitted before it existed and hold
nothing on it, but their spend will be logged in its window. The new budget counts them from its first decision,
as a limit cut keeps what is held; a budget for someone else counts none of them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from models.db import Database
from resolvers.platform.config import Settings
from tests.adversarial.support import PATIENT, Tally, budget, burst
from tests.conftest import Clock, started
from tests.support import Api


async def _global(api: Api) -> None:
    """A global budget far from its limit: what the requests in flight hold on before the new budget exists."""
    await budget(api, name="Everything", entityType="GLOBAL", entityId=None, monthlyLimit="100000")


async def _running(apis: list[Api], n: int, **fields: Any) -> None:
    """n requests of 1 USD admitted and still running (no spend posted)."""
    tally = Tally()
    await burst(apis, n, tally, estimated_cost="1", **fields)
    assert tally.admitted == n, tally.statuses


async def test_a_team_budget_created_mid_traffic_counts_the_teams_requests_in_flight(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """30 requests of 1 USD from team eng running under the global budget only, then a team budget of 20 USD: the
    30 will be logged in its window, so it admits nothing more until they settle (it admitted 20 more, 50 USD
    against 20)."""
    async with started(settings, clock, **PATIENT) as api:
        await _global(api)
        await _running([api], 30)
        await budget(api, monthlyLimit="20")
        after = Tally()
        for _ in range(3):
            await burst([api], 10, after, estimated_cost="1")
        state = (await api.data("{ budgets { entityType reserved } }"))["budgets"]
    assert after.admitted == 0, after.statuses
    assert after.degraded == 0
    team = next(b for b in state if b["entityType"] == "TEAM")
    assert float(team["reserved"]) == 30  # what is in flight for the team shows on its new budget


async def test_a_tag_budget_created_mid_traffic_counts_the_tagged_requests_in_flight(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with started(settings, clock, **PATIENT) as api:
        await _global(api)
        await _running([api], 10, tags=["project-x", "other"])
        await _running([api], 10, tags=["project-y"])  # not the new budget's
        await budget(api, name="X", entityType="TAG", entityId="project-x", monthlyLimit="15")
        tagged, untagged = Tally(), Tally()
        await burst([api], 10, tagged, estimated_cost="1", tags=["project-x"])
        await burst([api], 10, untagged, estimated_cost="1", tags=["project-y"])
    assert tagged.admitted <= 5, tagged.statuses
    assert tagged.admitted >= 4, tagged.statuses  # the untagged holds were not counted on it
    assert untagged.admitted == 10, untagged.statuses
    assert tagged.degraded == untagged.degraded == 0


async def test_a_budget_for_another_team_adopts_nothing(settings: Settings, clock: Clock, db: Database) -> None:
    async with started(settings, clock, **PATIENT) as api:
        await _global(api)
        await _running([api], 30)
        await budget(api, name="Ops", entityId="ops", monthlyLimit="20")
        after = Tally()
        for _ in range(3):
            await burst([api], 10, after, estimated_cost="1", team_id="ops")
        state = (await api.data("{ budgets { entityType reserved } }"))["budgets"]
    assert after.admitted == 20, after.statuses
    assert after.degraded == 0
    ops = next(b for b in state if b["entityType"] == "TEAM")
    assert float(ops["reserved"]) == 20


async def test_a_budget_created_on_one_instance_counts_another_instances_requests_in_flight(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """The requests run on instance two; the budget is created on instance one. Two counts its holds on the new
    budget when it hears of it (LISTEN/NOTIFY) and writes them to its allowance row, so one grants nothing more."""
    if not db.is_postgres:
        pytest.skip("several instances share a database only on PostgreSQL; SQLite serves one process")
    async with started(settings, clock, **PATIENT) as one, started(settings, clock, **PATIENT) as two:
        await _global(one)
        await two.runtime().enforcement().refresh()
        await _running([two], 30)
        await budget(one, monthlyLimit="20")
        enforcer = two.runtime().enforcement()
        deadline = time.monotonic() + 10
        while not any(r.entity_type == "team" for group in enforcer.rules.values() for r in group):
            assert time.monotonic() < deadline, "the budget never reached instance two"
            await asyncio.sleep(0.02)
        await enforcer.refresh()
        await one.runtime().enforcement().refresh()
        after = Tally()
        for _ in range(3):
            await burst([one, two], 10, after, estimated_cost="1")
    assert after.admitted == 0, after.statuses
    assert after.degraded == 0


async def test_a_decision_begun_before_the_budget_existed_holds_on_it_too(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """A decision reads its budgets, then waits (counting a prompt, asking for allowance); the budget is created
    meanwhile and it holds on the old ones: its hold counts on the new budget too."""
    async with started(settings, clock, **PATIENT) as api:
        await _global(api)
        enforcer = api.runtime().enforcement()
        gate, reached = asyncio.Event(), asyncio.Event()
        estimate = enforcer._estimate

        async def slow(*args: Any) -> Any:
            reached.set()
            await gate.wait()
            return await estimate(*args)

        enforcer._estimate = slow  # type: ignore[method-assign]
        straddling = asyncio.create_task(burst([api], 1, Tally(), estimated_cost="5"))
        await reached.wait()
        enforcer._estimate = estimate  # type: ignore[method-assign]
        await budget(api, monthlyLimit="20")
        gate.set()
        await straddling
        state = (await api.data("{ budgets { entityType reserved } }"))["budgets"]
    team = next(b for b in state if b["entityType"] == "TEAM")
    assert float(team["reserved"]) == 5
