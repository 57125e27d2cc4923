"""Throttling (webhook/throttle.py, the `limits` library): wrong keys at /auth/login, /budget/check and /predict's
X-Api-Key are counted per client address and per key prefix, refused with 429 and Retry-After, with a wait that
doubles on every further run of wrong keys; right keys are never slowed. Most tests run at the default rates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from resolvers.platform.config import Settings
from tests.conftest import MASTER_KEY, Clock, started
from tests.support import Api, add_virtual_key
from webhook.throttle import client_address

pytestmark = pytest.mark.litellm_tables

DEFAULTS = Settings()
#: The default failures per address in the first window (10/minute).
ADDRESS_FAILURES = int(DEFAULTS.throttle_failures_per_address.split("/")[0])
PREFIX_FAILURES = int(DEFAULTS.throttle_failures_per_key_prefix.split("/")[0])
REQUESTS = int(DEFAULTS.throttle_requests_per_address.split("/")[0])


@asynccontextmanager
async def from_address(api: Api, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same running app that connects from `host`."""
    transport = httpx.ASGITransport(app=api.lifespan_app, client=(host, 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://spendplane.test") as client:
        yield client


async def login(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/auth/login", json={"api_key": key})


def retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    return int(response.headers["retry-after"])


async def test_wrong_keys_at_login_are_refused_with_429_and_retry_after_at_the_default_rates(api: Api) -> None:
    for n in range(ADDRESS_FAILURES):
        assert (await login(api.client, f"sk-guess-{n:04d}-xxxxxxxx")).status_code == 401, n
    refused = await login(api.client, "sk-guess-next-xxxxxxxx")
    assert 1 <= retry_after(refused) <= 60
    # While refused, the right key is refused too: otherwise the answer would still tell right from wrong.
    assert retry_after(await login(api.client, MASTER_KEY)) >= 1
    # Another address is not affected.
    async with from_address(api, "192.0.2.7") as other:
        assert (await login(other, MASTER_KEY)).status_code == 200


async def test_a_successful_login_is_never_slowed(api: Api) -> None:
    for _ in range(ADDRESS_FAILURES - 1):
        assert (await login(api.client, "sk-wrong-key-xxxxxxxx")).status_code == 401
    # Far more right keys than the failure limits allow wrong ones (per minute and per hour): none is counted.
    for n in range(60):
        assert (await login(api.client, MASTER_KEY)).status_code == 200, n
    # The one wrong key left is still there.
    assert (await login(api.client, "sk-wrong-key-xxxxxxxx")).status_code == 401
    assert (await login(api.client, "sk-wrong-key-xxxxxxxx")).status_code == 429


async def test_every_further_run_of_wrong_keys_doubles_the_wait(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock, throttle_failures_per_address="2/second") as api:
        waits = []
        for _ in range(3):
            # Two wrong keys a second are allowed (more only if the machine is so slow a second passes between
            # them); the bounded loop runs until the refusal.
            for _attempt in range(50):
                response = await login(api.client, "sk-guess-xxxxxxxxxxxx")
                if response.status_code == 429:
                    break
                assert response.status_code == 401
            waits.append(retry_after(response))
            await asyncio.sleep(waits[-1] + 0.2)
        assert waits[1] == 2 * waits[0] and waits[2] == 2 * waits[1], waits


async def test_the_wait_never_exceeds_the_max_backoff(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock, throttle_failures_per_address="1/hour", throttle_max_backoff_seconds=30) as api:
        assert (await login(api.client, "sk-guess-xxxxxxxxxxxx")).status_code == 401
        assert retry_after(await login(api.client, "sk-guess-xxxxxxxxxxxx")) == 30


async def test_wrong_keys_sharing_a_prefix_are_refused_from_any_address(api: Api) -> None:
    for n in range(PREFIX_FAILURES):
        # One address per guess, so only the prefix count can stop them.
        async with from_address(api, f"198.51.100.{n + 1}") as client:
            assert (await login(client, f"sk-victim-12{n:04d}")).status_code == 401, n
    async with from_address(api, "203.0.113.200") as fresh:
        assert retry_after(await login(fresh, "sk-victim-12-something-else")) >= 1
        # Keys with another prefix from the same fresh address still get an answer.
        assert (await login(fresh, MASTER_KEY)).status_code == 200


async def test_a_burst_of_concurrent_wrong_keys_cannot_outrun_the_count(api: Api) -> None:
    responses = await asyncio.gather(*(login(api.client, f"sk-burst-{n:06d}-xxxx") for n in range(40)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) <= ADDRESS_FAILURES, statuses
    assert statuses.count(429) >= 40 - ADDRESS_FAILURES, statuses


async def test_budget_check_counts_wrong_keys_with_the_same_limiter_as_login(api: Api) -> None:
    await add_virtual_key(api.runtime().db, "sk-known-key", user_id="u1", team_id="t1")
    half = ADDRESS_FAILURES // 2
    for n in range(half):
        assert (await login(api.client, f"sk-guess-{n:04d}-xxxxxxxx")).status_code == 401
    for n in range(ADDRESS_FAILURES - half):
        check = {"api_key": f"sk-probe-{n:04d}-xxxxxxxx", "estimated_cost": 1}
        assert (await api.client.post("/budget/check", json=check)).status_code == 401
    check = {"api_key": "sk-known-key", "estimated_cost": 1}
    refused = await api.client.post("/budget/check", json=check)
    assert retry_after(refused) >= 1
    assert retry_after(await login(api.client, MASTER_KEY)) >= 1


async def test_predict_with_wrong_api_keys_is_throttled_but_plain_predictions_are_not(api: Api) -> None:
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    for n in range(ADDRESS_FAILURES):
        response = await api.client.post("/predict", json=body, headers={"x-api-key": f"sk-probe-{n:04d}-xxxx"})
        assert response.status_code == 401, n
    refused = await api.client.post("/predict", json=body, headers={"x-api-key": "sk-probe-last-xxxx"})
    assert retry_after(refused) >= 1
    # The prediction without a key does not test a key: it is still answered.
    assert (await api.client.post("/predict", json=body)).status_code == 200


async def test_budget_check_and_predict_count_every_call_per_address_at_the_default_rate(api: Api) -> None:
    statuses = [(await api.client.post("/budget/check", json={})).status_code for _ in range(REQUESTS)]
    assert set(statuses) == {400}
    refused = await api.client.post("/budget/check", json={"api_key": "sk-x", "estimated_cost": 1})
    assert 1 <= retry_after(refused) <= 60
    assert retry_after(await api.client.post("/predict", json={"model": "gpt-4o", "prompt": "hi"})) >= 1
    # Logins are not part of the request count.
    assert (await login(api.client, MASTER_KEY)).status_code == 200
    async with from_address(api, "192.0.2.9") as other:
        assert (await other.post("/predict", json={"model": "gpt-4o", "prompt": "hi"})).status_code == 200


async def test_ipv6_clients_are_counted_by_their_slash_64(api: Api) -> None:
    for n in range(ADDRESS_FAILURES):
        async with from_address(api, f"2001:db8:1:2::{n + 1:x}") as client:
            assert (await login(client, f"sk-g{n:02d}-{n}-xxxxxxxxxxxx")).status_code == 401
    async with from_address(api, "2001:db8:1:2:ffff::1") as same_net:
        assert retry_after(await login(same_net, "sk-another-guess-xxxx")) >= 1
    async with from_address(api, "2001:db8:1:3::1") as next_net:
        assert (await login(next_net, MASTER_KEY)).status_code == 200


@pytest.mark.parametrize(
    ("host", "counted_as"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        ("2001:db8::1", "2001:db8::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_client_addresses_are_counted_by_host_or_ipv6_network(host: str, counted_as: str) -> None:
    from starlette.requests import Request

    request = Request({"type": "http", "client": (host, 1), "headers": []})
    assert client_address(request) == counted_as


async def test_graphql_still_works_while_login_is_throttled(api: Api) -> None:
    for n in range(ADDRESS_FAILURES + 1):
        await login(api.client, f"sk-guess-{n:04d}-xxxxxxxx")
    assert (await api.data("{ me { role } }"))["me"]["role"] == "ADMIN"


async def test_wrong_gateway_keys_are_throttled_per_address_and_answered_401_never_429(api: Api) -> None:
    """With SPENDPLANE_WEBHOOK_KEY unset the gateway takes the master key: guessing it there is throttled too, but a
    refusal is a 401 (LiteLLM reads a 429 from the pre-request webhook as a budget block)."""
    for n in range(ADDRESS_FAILURES):
        response = await api.client.post("/spend/litellm", json=[], headers={"x-api-key": f"sk-guess-{n:04d}-xx"})
        assert response.status_code == 401, n
    refused = await api.client.post("/spend/litellm", json=[], headers={"x-api-key": MASTER_KEY})
    assert refused.status_code == 401 and "too many wrong keys" in refused.json()["error"]["message"]
    async with from_address(api, "192.0.2.50") as litellm:
        accepted = await litellm.post("/spend/litellm", json=[], headers={"x-api-key": MASTER_KEY})
        # The key passed; the empty batch is then refused as bad input.
        assert accepted.status_code == 400 and accepted.json()["error"]["field"] == "body", accepted.text


async def test_wrong_logins_from_litellms_address_do_not_lock_the_gateway(api: Api) -> None:
    for n in range(ADDRESS_FAILURES + 1):
        await login(api.client, f"sk-guess-{n:04d}-xxxxxxxx")
    assert retry_after(await login(api.client, MASTER_KEY)) >= 1
    accepted = await api.client.post("/spend/litellm", json=[], headers={"x-api-key": MASTER_KEY})
    # The key passed; the empty batch is then refused as bad input.
    assert accepted.status_code == 400 and accepted.json()["error"]["field"] == "body", accepted.text
