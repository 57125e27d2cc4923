"""The budget under pressure from outside the request: a limit cut mid-traffic, an instance that dies with holds
open, floods of unauthenticated calls and subscriptions, a second server on the embedded database."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.db import Database
from resolvers.platform.config import Settings
from tests.adversarial.support import CREATE, GATEWAY, PATIENT, UPDATE, Served, Tally, ask_body, budget, burst
from tests.conftest import MASTER_KEY, Clock, started
from tests.support import Api, add_virtual_key, graphql_ws, watching


async def _until(predicate: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never came true")
        await asyncio.sleep(0.02)


async def test_a_limit_cut_mid_traffic_binds_the_next_decision(settings: Settings, clock: Clock, db: Database) -> None:
    """1000 USD, ten 1 USD requests in flight, the limit cut to 20: what is held counts against the new cap and
    the allowance granted under the old one is gone, so at most 10 more are admitted."""
    async with started(settings, clock, **PATIENT) as api:
        created = await budget(api, monthlyLimit="1000")
        before = Tally()
        await burst([api], 10, before, estimated_cost="1")
        assert before.admitted == 10
        await api.data(UPDATE, {"id": created["id"], "input": {"monthlyLimit": "20"}})
        after = Tally()
        for _ in range(25):
            await burst([api], 10, after, estimated_cost="1")
    assert after.admitted <= 10, after.statuses
    assert after.admitted >= 8, after.statuses
    assert after.degraded == 0


async def test_a_limit_cut_binds_every_instance(settings: Settings, clock: Clock, db: Database) -> None:
    if not db.is_postgres:
        pytest.skip("several instances share a database only on PostgreSQL; SQLite serves one process")
    async with started(settings, clock, **PATIENT) as one, started(settings, clock, **PATIENT) as two:
        created = await budget(one, monthlyLimit="1000")
        await two.runtime().enforcement().refresh()
        before = Tally()
        await burst([one, two], 20, before, estimated_cost="1")  # both instances now hold allowances
        assert before.admitted == 20
        await one.data(UPDATE, {"id": created["id"], "input": {"monthlyLimit": "30"}})
        # The change reaches the other instance by LISTEN/NOTIFY (at the latest by its periodic reload).
        enforcer = two.runtime().enforcement()
        await _until(lambda: any(r.limit == 30 for group in enforcer.rules.values() for r in group))
        after = Tally()
        for _ in range(20):
            await burst([one, two], 10, after, estimated_cost="1")
    assert after.admitted <= 10, after.statuses
    assert after.degraded == 0


async def test_a_crashed_instances_holds_stay_counted_after_a_restart(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """An instance admits 50 requests against 50 USD and dies without a word (its shutdown never runs, as with
    kill -9). 130 s later a new instance starts: the dead one's holds still count until RESERVATION_TTL_SECONDS,
    so the budget does not reopen; after the TTL it does."""
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="50")
        first = Tally()
        await burst([api], 100, first, estimated_cost="1")
        enforcer = api.runtime().enforcement()

        async def killed() -> None:  # what kill -9 leaves behind: nothing handed back
            return None

        enforcer.ledger.close = killed  # type: ignore[method-assign]
    assert first.admitted == 50
    clock.now += timedelta(seconds=130)
    async with started(settings, clock, **PATIENT) as restarted:
        second = Tally()
        await burst([restarted], 100, second, estimated_cost="1")
        clock.now += timedelta(seconds=settings.reservation_ttl_seconds)
        await restarted.runtime().enforcement().refresh()
        after_ttl = Tally()
        await burst([restarted], 10, after_ttl, estimated_cost="1")
    assert second.admitted == 0, second.statuses
    assert after_ttl.admitted == 10  # the dead instance's holds expired: nothing was spent, the money is back


async def test_a_clean_restart_keeps_the_holds_of_requests_still_running(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with started(settings, clock, **PATIENT) as api:
        await budget(api, monthlyLimit="50")
        first = Tally()
        await burst([api], 30, first, estimated_cost="1")
    async with started(settings, clock, **PATIENT) as restarted:
        second = Tally()
        await burst([restarted], 100, second, estimated_cost="1")
    assert (first.admitted, second.admitted) == (30, 20)


async def test_two_instances_one_killed_do_not_reopen_the_budget(
    settings: Settings, clock: Clock, db: Database
) -> None:
    if not db.is_postgres:
        pytest.skip("several instances share a database only on PostgreSQL; SQLite serves one process")
    async with started(settings, clock, **PATIENT) as survivor:
        await budget(survivor, monthlyLimit="50")
        async with started(settings, clock, **PATIENT) as doomed:
            await doomed.runtime().enforcement().refresh()
            first = Tally()
            await burst([survivor, doomed], 100, first, estimated_cost="1")

            async def killed() -> None:
                return None

            doomed.runtime().enforcement().ledger.close = killed  # type: ignore[method-assign]
        clock.now += timedelta(seconds=130)
        await survivor.runtime().enforcement().refresh()
        second = Tally()
        await burst([survivor], 100, second, estimated_cost="1")
    assert first.admitted + second.admitted <= 50, (first.statuses, second.statuses)
    assert first.admitted >= 40


async def test_unauthenticated_floods_cannot_push_a_decision_into_fail_open(
    migrated: str, db: Database, tmp_path: Path
) -> None:
    """Against a real server process: 150 loops of GET /health and 10 of /predict with 800 KB prompts, beside 100
    gateway decisions at 1 USD against 20 USD, with the default deadline: nothing the flood does makes a
    decision fail open (the probe is cached, /predict counts on its own threads, the gateway has its own
    connections)."""
    async with Served(migrated, tmp_path) as server, httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        token = (await client.post("/auth/login", json={"api_key": MASTER_KEY})).json()["access_token"]
        created = await client.post(
            "/graphql",
            headers={"authorization": f"Bearer {token}"},
            json={
                "query": CREATE,
                "variables": {"input": {"name": "Eng", "entityType": "TEAM", "entityId": "eng", "monthlyLimit": "20"}},
            },
        )
        assert "errors" not in created.json(), created.text
        stop = asyncio.Event()
        prompt = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x " * 400_000}]}

        async def health_loop() -> None:
            for _ in range(100):
                if stop.is_set():
                    return
                await client.get("/health")

        async def predict_loop() -> None:
            for _ in range(10):
                if stop.is_set():
                    return
                await client.post("/predict", json=prompt)

        flood = [asyncio.create_task(health_loop()) for _ in range(150)]
        flood += [asyncio.create_task(predict_loop()) for _ in range(10)]
        tally = Tally()
        try:
            await asyncio.sleep(0.5)  # the flood is on
            for wave in range(10):
                answers = await asyncio.gather(
                    *(
                        client.post(
                            "/webhook/pre-request", headers=GATEWAY, json=ask_body(f"f-{wave}-{i}", estimated_cost="1")
                        )
                        for i in range(10)
                    )
                )
                for i, answer in enumerate(answers):
                    tally.add(answer.status_code, answer.json(), f"f-{wave}-{i}")
        finally:
            stop.set()
            await asyncio.gather(*flood, return_exceptions=True)
    assert tally.admitted <= 20, tally.statuses
    assert tally.degraded == 0, tally.statuses


async def test_health_does_not_take_a_connection_per_call(api: Api) -> None:
    runtime = api.runtime()
    answers = await asyncio.gather(*(api.client.get("/health") for _ in range(200)))
    assert {a.status_code for a in answers} == {200}
    # One probe answered all of them (a second one only if the answers spanned the cache's second).
    assert 1 <= runtime.caches["health"].probes <= 2


SUBSCRIBE = "subscription { budgetUpdated { id currentSpend } }"


async def test_a_viewer_opening_a_thousand_subscriptions_is_capped_and_decisions_stay_sharp(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """One viewer asks for 1,000 budgetUpdated subscriptions (40 connections x 25): beyond the per-principal cap
    each is refused with TOO_MANY_SUBSCRIPTIONS; five budget edits are read once each for all subscribers; 40
    decisions meanwhile all decide on the budget, none fails open."""
    async with started(settings, clock, max_subscriptions_per_principal=50, **PATIENT) as api:
        created = await budget(api, monthlyLimit="1000")
        await add_virtual_key(db, "sk-flooder", user_id="mallory", team_id="eng")
        token = await api.login("sk-flooder")
        refusals: list[str] = []
        updates = 0
        ready = asyncio.Event()
        done = asyncio.Event()

        async def connection(n: int) -> None:
            nonlocal updates
            async with graphql_ws(api) as ws:
                await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
                assert (await ws.receive_json())["type"] == "connection_ack"
                for i in range(25):
                    await ws.send_json({"id": f"{n}-{i}", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
                while not done.is_set():
                    try:
                        message = await asyncio.wait_for(ws.receive_json(), 0.5)
                    except TimeoutError:
                        continue
                    errors = message.get("payload") if message["type"] == "error" else None
                    errors = errors or (message.get("payload") or {}).get("errors")
                    if errors:
                        refusals.append(errors[0]["extensions"]["code"])
                    elif message["type"] == "next":
                        updates += 1

        async def traffic() -> None:
            await watching(api, "budgets", 50)
            await ready.wait()
            feed = api.runtime().feeds["budgets"]
            reads_before = feed.reads
            tally = Tally()
            for edit in range(5):
                await api.data(UPDATE, {"id": created["id"], "input": {"name": f"Eng {edit}"}})
                await burst([api], 8, tally, estimated_cost="1")
            await asyncio.sleep(1)
            done.set()
            assert tally.degraded == 0
            assert tally.admitted == 40
            assert feed.reads - reads_before <= 5 + 2  # the edits, and at most a figures event or two

        async def all_refused() -> None:
            for _ in range(500):
                if len(refusals) >= 1000 - 50:
                    break
                await asyncio.sleep(0.02)
            ready.set()

        async with asyncio.TaskGroup() as group:
            for n in range(40):
                group.create_task(connection(n))
            group.create_task(all_refused())
            group.create_task(traffic())
        assert api.runtime().feeds["budgets"].watchers == 0
    assert len(refusals) == 1000 - 50
    assert set(refusals) == {"TOO_MANY_SUBSCRIPTIONS"}
    assert updates >= 5 * 50  # every admitted subscription heard every edit


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_second_server_on_one_embedded_database_is_refused(tmp_path: Path) -> None:
    """Two `spendplane serve` on one SQLite file would each hand out the same budget: the second one stops
    with a clear message (exit 3) while the first keeps serving."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "LITELLM_MASTER_KEY": "sk-master-test",
        "LITELLM_PRICE_MAP_URL": "off",
        "SPENDPLANE_JOBS": "false",
        "LITELLM_PRICE_MAP_CACHE": str(tmp_path / "prices.json"),
    }
    spendplane = str(Path(sys.executable).with_name("spendplane"))
    port = _free_port()
    first = subprocess.Popen([spendplane, "serve", "--port", str(port)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the first server never came up"
            time.sleep(0.2)
        second = subprocess.run(
            [spendplane, "serve", "--port", str(_free_port())],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 3, second.stderr
        assert "another spendplane process" in second.stderr
        assert "Traceback" not in second.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        first.terminate()
        first.wait(timeout=30)
