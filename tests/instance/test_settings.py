"""The guide's feature switches: cost tracking and budget enforcement, persisted and admin-only to change."""

from __future__ import annotations

import pytest

from models.db import Database
from resolvers.platform.config import Settings
from tests.conftest import Clock, started
from tests.support import Api, add_virtual_key

pytestmark = pytest.mark.litellm_tables

SETTINGS = (
    "{ settings { costTrackingEnabled budgetEnforcementEnabled softLimitThreshold hardLimitThreshold updatedBy } }"
)
UPDATE = """mutation($input: SettingsInput!) { updateSettings(input: $input) {
    costTrackingEnabled budgetEnforcementEnabled updatedBy } }"""


async def test_both_switches_are_on_by_default(api: Api) -> None:
    settings = (await api.data(SETTINGS))["settings"]
    assert settings["costTrackingEnabled"] is True
    assert settings["budgetEnforcementEnabled"] is True
    assert (settings["softLimitThreshold"], settings["hardLimitThreshold"]) == ("0.8", "1")


async def test_an_admin_turns_enforcement_off_and_it_stays_off_after_a_restart(
    api: Api, settings: Settings, clock: Clock
) -> None:
    changed = (await api.data(UPDATE, {"input": {"budgetEnforcementEnabled": False}}))["updateSettings"]
    assert changed == {
        "costTrackingEnabled": True,
        "budgetEnforcementEnabled": False,
        "updatedBy": "master-key",
    }
    # A second instance while the first (the fixture's) still runs: on SQLite, beside it on purpose.
    async with started(settings, clock, embedded_lock=False) as restarted:
        again = (await restarted.data(SETTINGS))["settings"]
    assert (again["costTrackingEnabled"], again["budgetEnforcementEnabled"]) == (True, False)


async def test_thresholds_come_from_the_environment(settings: Settings, clock: Clock) -> None:
    from decimal import Decimal

    async with started(
        settings, clock, soft_limit_threshold=Decimal("0.7"), hard_limit_threshold=Decimal("0.95")
    ) as running:
        found = (await running.data(SETTINGS))["settings"]
    assert (found["softLimitThreshold"], found["hardLimitThreshold"]) == ("0.7", "0.95")


async def test_a_viewer_reads_settings_but_may_not_change_them(api: Api, db: Database) -> None:
    await add_virtual_key(db, "sk-viewer", user_id="v", team_id="t")
    token = await api.login("sk-viewer")
    assert (await api.data(SETTINGS, token=token))["settings"]["costTrackingEnabled"] is True
    error = await api.error(UPDATE, {"input": {"costTrackingEnabled": False}}, token=token)
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert (await api.data(SETTINGS))["settings"]["costTrackingEnabled"] is True
