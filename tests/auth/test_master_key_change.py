"""Changing LITELLM_MASTER_KEY (a leaked one is replaced, the service restarted) ends the tokens the old key minted,
as `spendplane rotate-admin-key` ends those of the generated admin key: before, a token taken with the leaked key
kept the admin role until it expired (an hour)."""

from __future__ import annotations

from dataclasses import replace

from models.db import Database
from resolvers.platform.config import Settings
from tests.conftest import Clock, started


async def test_tokens_of_a_replaced_master_key_are_refused(settings: Settings, clock: Clock, db: Database) -> None:
    async with started(settings, clock) as api:
        old_token = api.admin_token
        assert (await api.client.get("/api/v1/budgets", headers=api.bearer(old_token))).status_code == 200
    renewed = replace(settings, litellm_master_key="sk-master-renewed")
    async with started(renewed, clock) as api:
        refused = await api.client.get("/api/v1/budgets", headers=api.bearer(old_token))
        assert refused.status_code == 401, refused.text
        assert "master key" in refused.json()["error"]["message"]
        assert (await api.gql("{ me { role } }", token=old_token))["errors"][0]["extensions"]["code"] == (
            "UNAUTHENTICATED"
        )
        assert (await api.client.post("/auth/login", json={"api_key": settings.litellm_master_key})).status_code == 401
        assert (await api.client.get("/api/v1/budgets", headers=api.bearer())).status_code == 200  # the new key's
    async with started(settings, clock) as api:  # the first key again: its tokens are its own
        assert (await api.client.get("/api/v1/budgets", headers=api.bearer(old_token))).status_code == 200
