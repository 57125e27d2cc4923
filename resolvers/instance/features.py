"""The guide's Settings > Features switches: cost tracking and budget enforcement, persisted per instance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from models.instance import FeatureSettingsRow
from resolvers.auth import Principal, require_admin
from resolvers.platform.errors import Unavailable
from resolvers.platform.events import Event
from resolvers.platform.work import Work

FEATURES_TOPIC = "features"
_ROW_ID = 1


@dataclass(frozen=True)
class FeatureSettings:
    cost_tracking_enabled: bool = True
    budget_enforcement_enabled: bool = True
    updated_at: datetime | None = None
    updated_by: str | None = None


async def get_features(session: AsyncSession) -> FeatureSettings:
    row = await session.get(FeatureSettingsRow, _ROW_ID)
    if row is None:  # nobody changed anything yet: the guide's defaults (both on)
        return FeatureSettings()
    return FeatureSettings(row.cost_tracking_enabled, row.budget_enforcement_enabled, row.updated_at, row.updated_by)


async def update_features(
    work: Work,
    principal: Principal,
    *,
    cost_tracking_enabled: bool | None = None,
    budget_enforcement_enabled: bool | None = None,
) -> FeatureSettings:
    require_admin(principal, "changing settings")
    # The migration seeds the single row, so this is always an update.
    row = await work.session.get(FeatureSettingsRow, _ROW_ID, with_for_update=True)
    if row is None:
        raise Unavailable("the feature settings row is missing; run `spendplane migrate`")
    if cost_tracking_enabled is not None:
        row.cost_tracking_enabled = cost_tracking_enabled
    if budget_enforcement_enabled is not None:
        row.budget_enforcement_enabled = budget_enforcement_enabled
    row.updated_at = work.now
    row.updated_by = principal.subject
    await work.session.flush()
    work.emit(Event(FEATURES_TOPIC, {"change": "updated"}))
    return FeatureSettings(row.cost_tracking_enabled, row.budget_enforcement_enabled, row.updated_at, row.updated_by)
