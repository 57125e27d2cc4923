"""What the Settings page shows about the running instance: version, database, migrations, rollup watermark."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from models.migrate import current_revision_on, head_revision
from resolvers.auth import Principal, require_admin
from resolvers.rollups import rollup_status

if TYPE_CHECKING:
    from resolvers.service.runtime import Runtime


@dataclass(frozen=True)
class InstanceInfo:
    version: str
    database_dialect: str
    migration_revision: str | None
    migration_head: str
    started_at: datetime
    rollup_watermark: date | None

    @property
    def migrations_current(self) -> bool:
        return self.migration_revision == self.migration_head


def package_version() -> str:
    try:
        return version("spendplane")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0+source"


async def instance_info(session: AsyncSession, runtime: Runtime, principal: Principal) -> InstanceInfo:
    require_admin(principal, "reading the instance's details")
    connection = await session.connection()
    return InstanceInfo(
        version=package_version(),
        database_dialect=connection.dialect.name,
        migration_revision=await current_revision_on(connection),
        migration_head=head_revision(),
        started_at=runtime.started_at,
        rollup_watermark=(await rollup_status(session)).built_through,
    )
