"""Feature settings in GraphQL: the guide's cost-tracking and budget-enforcement switches."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from graphql_api.context import Info
from resolvers.instance import features
from resolvers.instance.features import FeatureSettings


@strawberry.type(
    name="Settings",
    description="Instance settings. The switches are changed with updateSettings "
    "(admin); the thresholds come from the environment.",
)
class SettingsType:
    cost_tracking_enabled: bool = strawberry.field(
        description="When off, spend posted by LiteLLM's logging callback is not recorded."
    )
    budget_enforcement_enabled: bool = strawberry.field(
        description="When off, the pre-request webhook never blocks (warnings and alerts still happen)."
    )
    soft_limit_threshold: Decimal = strawberry.field(description="SOFT_LIMIT_THRESHOLD: default soft limit.")
    hard_limit_threshold: Decimal = strawberry.field(description="HARD_LIMIT_THRESHOLD: default hard limit.")
    updated_at: datetime | None
    updated_by: str | None

    @classmethod
    def from_domain(cls, found: FeatureSettings, info: Info) -> SettingsType:
        settings = info.context.runtime.settings
        return cls(
            cost_tracking_enabled=found.cost_tracking_enabled,
            budget_enforcement_enabled=found.budget_enforcement_enabled,
            soft_limit_threshold=settings.soft_limit_threshold,
            hard_limit_threshold=settings.hard_limit_threshold,
            updated_at=found.updated_at,
            updated_by=found.updated_by,
        )


@strawberry.input(description="Switches to change; omitted ones stay as they are.")
class SettingsInput:
    cost_tracking_enabled: bool | None = None
    budget_enforcement_enabled: bool | None = None


@strawberry.type
class SettingsQueries:
    @strawberry.field(description="The instance's feature settings.")
    async def settings(self, info: Info) -> SettingsType:
        info.context.caller()
        async with info.context.runtime.read() as session:
            found = await features.get_features(session)
        return SettingsType.from_domain(found, info)


@strawberry.type
class SettingsMutations:
    @strawberry.mutation(description="Turn cost tracking or budget enforcement on or off (admin).")
    async def update_settings(self, info: Info, input: SettingsInput) -> SettingsType:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.work() as work:
            found = await features.update_features(
                work,
                principal,
                cost_tracking_enabled=input.cost_tracking_enabled,
                budget_enforcement_enabled=input.budget_enforcement_enabled,
            )
        return SettingsType.from_domain(found, info)
