"""The unit of work every write goes through: one transaction, with its events published only after it
commits (the runtime opens it; see `resolvers.service.runtime.Runtime.work`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from resolvers.platform.events import Event


@dataclass
class Work:
    session: AsyncSession
    now: datetime
    dialect: str
    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)
