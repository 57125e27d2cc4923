"""What the attacks share: budgets made through the API, the gateway's questions, bursts and spend posts."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests import support
from tests.conftest import MASTER_KEY, NOW
from tests.support import Api

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "litellm"
GATEWAY = {"x-api-key": MASTER_KEY}
#: The attacks are about the ledger and the decision path: a generous deadline keeps a loaded CI machine from
#: turning a slow answer into a fail-open one, so any `degraded` answer below is a real defect.
PATIENT = {"enforcement_timeout_ms": 30_000}

CREATE = "mutation($input: BudgetInput!) { createBudget(input: $input) { id monthlyLimit currentSpend status } }"
UPDATE = "mutation($id: ID!, $input: BudgetUpdateInput!) { updateBudget(id: $id, input: $input) { id monthlyLimit } }"


async def budget(api: Api, **fields: Any) -> dict[str, Any]:
    """A team budget (team `eng`, 100 USD a month unless said otherwise) that enforcement sees at once."""
    values = {"name": "Eng", "entityType": "TEAM", "entityId": "eng", "monthlyLimit": "100", **fields}
    created: dict[str, Any] = (await api.data(CREATE, {"input": values}))["createBudget"]
    await api.runtime().enforcement().refresh()
    return created


def ask_body(call_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "litellm_call_id": call_id,
        "team_id": "eng",
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10,
        **fields,
    }


async def ask(api: Api, call_id: str, **fields: Any) -> tuple[int, dict[str, Any]]:
    response = await api.client.post("/webhook/pre-request", json=ask_body(call_id, **fields), headers=GATEWAY)
    return response.status_code, response.json()


class Tally:
    """Answers of the gateway: how many were admitted, refused, and admitted only because it failed open."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.degraded = 0
        self.admitted_ids: list[str] = []

    def add(self, status: int, body: dict[str, Any], call_id: str) -> None:
        self.statuses[status] += 1
        if status == 200:
            self.admitted_ids.append(call_id)
            if body.get("degraded"):
                self.degraded += 1

    @property
    def admitted(self) -> int:
        return self.statuses[200]


async def burst(apis: list[Api], n: int, tally: Tally, *, call_id: str | None = None, **fields: Any) -> None:
    """n requests at once, spread over the instances; every one with the same call id when `call_id` is set."""

    async def one(i: int) -> None:
        cid = call_id or f"burst-{id(tally)}-{len(tally.admitted_ids)}-{i}"
        status, body = await ask(apis[i % len(apis)], cid, **fields)
        tally.add(status, body, cid)

    await asyncio.gather(*(one(i) for i in range(n)))


def spend_event(call_id: str, request_id: str, cost: float, *, team: str = "eng") -> dict[str, Any]:
    """LiteLLM's logging-callback payload for one finished request (the captured sample, re-aimed)."""
    sample: dict[str, Any] = json.loads((FIXTURES / "spend_post_success.json").read_text())["body"]
    sample["metadata"]["user_api_key_team_id"] = team
    return {
        **sample,
        "startTime": (NOW - timedelta(seconds=30)).timestamp(),
        "endTime": NOW.timestamp(),
        "litellm_call_id": call_id,
        "id": request_id,
        "response_cost": cost,
    }


async def post_spend(api: Api, events: list[dict[str, Any]]) -> dict[str, Any]:
    """LiteLLM's logging callback posting `events`, and the rows LiteLLM writes beside us (`tests.support`)."""
    return await support.post_spend(api, events)


class Served:
    """A real `spendplane serve` in its own process (its own event loop and CPU), on the test's database."""

    def __init__(self, database_url: str, tmp: Path, **env: str) -> None:
        import os
        import socket
        import sys

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_PRICE_MAP_URL": "off",
            "LITELLM_PRICE_MAP_CACHE": str(tmp / "prices.json"),
            "SPENDPLANE_EMBEDDED": "true",
            "SPENDPLANE_LOG_LEVEL": "warning",
            "GLOBAL_BUDGET_USD": "0",  # the attacks count budgets of their own making
            **env,
        }
        self.command = [str(Path(sys.executable).with_name("spendplane")), "serve", "--port", str(self.port)]
        self.tmp = tmp
        self.process: Any = None

    async def __aenter__(self) -> Served:
        import time

        import httpx

        self.process = await asyncio.create_subprocess_exec(*self.command, env=self.env, cwd=self.tmp)
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(f"{self.url}/health", timeout=2)).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or self.process.returncode is not None:
                    raise AssertionError("spendplane serve never came up")
                await asyncio.sleep(0.2)

    async def __aexit__(self, *exc: object) -> None:
        self.process.terminate()
        await asyncio.wait_for(self.process.wait(), 30)
