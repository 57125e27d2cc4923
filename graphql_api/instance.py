"""The `instance` query: the Settings page's panel about the running instance (admin)."""

from __future__ import annotations

from datetime import date, datetime

import strawberry

from graphql_api.context import Info
from resolvers.instance import InstanceInfo, instance_info


@strawberry.type(name="InstanceInfo", description="The running instance: version, database, migrations, rollups.")
class InstanceInfoView:
    version: str
    database_dialect: str = strawberry.field(description="sqlite or postgresql.")
    migration_revision: str | None = strawberry.field(description="The database's Alembic revision.")
    migration_head: str = strawberry.field(description="The newest revision this release ships.")
    migrations_current: bool
    rollup_watermark: date | None = strawberry.field(
        description="Every closed UTC day before this date is in the daily rollup (null: not built yet)."
    )
    started_at: datetime

    @classmethod
    def from_domain(cls, found: InstanceInfo) -> InstanceInfoView:
        return cls(
            version=found.version,
            database_dialect=found.database_dialect,
            migration_revision=found.migration_revision,
            migration_head=found.migration_head,
            migrations_current=found.migrations_current,
            rollup_watermark=found.rollup_watermark,
            started_at=found.started_at,
        )


@strawberry.type
class InstanceQueries:
    @strawberry.field(description="The running instance's version, database and migrations (admin).")
    async def instance(self, info: Info) -> InstanceInfoView:
        runtime, principal = info.context.runtime, info.context.caller()
        async with runtime.read() as session:
            found = await instance_info(session, runtime, principal)
        return InstanceInfoView.from_domain(found)
