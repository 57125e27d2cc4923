"""Secrets at rest: the embedded database (which holds the JWT secret) with its -wal and -shm, and the price-map
cache are owner-only (0600) whatever the umask, and looser existing files are tightened at start with a log line.
Tokens live no longer than SPENDPLANE_JWT_TTL_SECONDS, however they were signed."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import jwt
import pytest

from models.db import normalize_database_url
from resolvers.auth import ALGORITHM, AUDIENCE, ISSUER
from resolvers.platform.config import Settings
from resolvers.pricing import _write_atomically
from tests.conftest import MASTER_KEY, Clock, started
from tests.support import Api

ME = "{ me { role } }"


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask a service could be started with: nothing is masked."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=normalize_database_url(f"sqlite:///{tmp_path / 'spendplane.db'}"),
        litellm_master_key=MASTER_KEY,
        embedded=True,
        price_map_cache=str(tmp_path / "price-map.json"),
        spend_refresh_seconds=0.2,
    )


@pytest.mark.usefixtures("open_umask")
async def test_the_embedded_database_and_its_wal_and_shm_are_created_owner_only_whatever_the_umask(
    tmp_path: Path, clock: Clock
) -> None:
    database = tmp_path / "spendplane.db"
    async with started(embedded_settings(tmp_path), clock) as api:
        assert (await api.data(ME, token=api.admin_token))["me"]["role"] == "ADMIN"
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            assert path.exists(), path
            assert mode(path) == 0o600, (path, oct(mode(path)))
    assert mode(database) == 0o600


@pytest.mark.usefixtures("open_umask")
async def test_a_world_readable_database_is_tightened_at_start_with_a_log_line(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = embedded_settings(tmp_path)
    database = tmp_path / "spendplane.db"
    async with started(settings, clock):
        pass
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        if path.exists():
            os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="spendplane.files"):
        async with started(settings, clock):
            assert mode(database) == 0o600
            assert mode(f"{database}-wal") == 0o600
    logged = [r.getMessage() for r in caplog.records]
    assert any("tightened the permissions" in m and str(database) in m for m in logged), logged


@pytest.mark.usefixtures("open_umask")
def test_the_price_map_cache_is_written_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    cache = tmp_path / "price-map.json"
    cache.write_text("{}")
    os.chmod(cache, 0o666)  # noqa: S103 - the world-writable file the write must not keep
    _write_atomically(str(cache), json.dumps({"gpt-x": {"input_cost_per_token": 1e-6}}))
    assert mode(cache) == 0o600
    assert json.loads(cache.read_text())["gpt-x"]["input_cost_per_token"] == 1e-6
    assert not Path(f"{cache}.tmp").exists()


async def test_a_world_readable_price_cache_is_tightened_at_start(
    settings: Settings, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Path(settings.price_map_cache)
    with open(cache, "w") as handle:  # noqa: ASYNC230 - test setup
        json.dump({"gpt-cached": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}, handle)
    os.chmod(cache, 0o644)
    with caplog.at_level(logging.WARNING, logger="spendplane.files"):
        async with started(settings, clock) as api:
            assert mode(cache) == 0o600
            assert (await api.client.get("/pricing", params={"model": "gpt-cached"})).status_code == 200
    assert any("tightened the permissions" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------ token lifetime


def _forge(api: Api, lifetime_seconds: int) -> str:
    """A token signed with the instance's own secret (as someone holding it could), living `lifetime_seconds`."""
    secret = api.runtime().tokens.secret
    now = int(time.time())
    claims = {"sub": "master-key", "role": "admin", "iss": ISSUER, "aud": AUDIENCE, "iat": now}
    claims["exp"] = now + lifetime_seconds
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


async def test_a_correctly_signed_token_living_ten_years_is_refused(api: Api) -> None:
    token = _forge(api, 10 * 365 * 86400)
    error = await api.error(ME, token=token)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    response = await api.client.get("/api/v1/budgets", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "SPENDPLANE_JWT_TTL_SECONDS" in response.json()["error"]["message"]


async def test_a_token_living_exactly_the_configured_ttl_is_accepted(api: Api) -> None:
    ttl = api.runtime().settings.jwt_ttl_seconds
    assert (await api.data(ME, token=_forge(api, ttl)))["me"]["role"] == "ADMIN"
    assert (await api.error(ME, token=_forge(api, ttl + 1)))["extensions"]["code"] == "UNAUTHENTICATED"


async def test_lowering_the_ttl_refuses_tokens_issued_for_longer(settings: Settings, clock: Clock) -> None:
    async with started(replace(settings, jwt_ttl_seconds=7200), clock) as long_lived:
        token = long_lived.admin_token
    async with started(replace(settings, jwt_ttl_seconds=3600), clock) as short_lived:
        assert (await short_lived.error(ME, token=token))["extensions"]["code"] == "UNAUTHENTICATED"
        assert (await short_lived.data(ME, token=short_lived.admin_token))["me"]["role"] == "ADMIN"
