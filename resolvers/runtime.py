"""What the running service owns (settings, database, LiteLLM's schema, event bus, tokens, clock), and the
unit of work every write goes through: one transaction, with its events published only after it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from models.db import Database
from models.litellm import LiteLLMSchema
from resolvers.auth import TokenService
from resolvers.config import Settings
from resolvers.events import Event, EventBus
from resolvers.jobs import JobRunner
from resolvers.periods import utcnow
from resolvers.predictor import OutputHistory
from resolvers.pricing import PriceBook

if TYPE_CHECKING:
    from resolvers.enforcement import Enforcer


@dataclass
class Work:
    session: AsyncSession
    now: datetime
    dialect: str
    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    litellm: LiteLLMSchema
    bus: EventBus
    tokens: TokenService
    clock: Callable[[], datetime] = utcnow
    prices: PriceBook = field(default_factory=PriceBook)
    #: Recent completion lengths per model, for the predictor.
    history: OutputHistory = field(default_factory=OutputHistory)
    #: Set by the app once the periodic jobs are scheduled (on-demand runs go through it too).
    jobs: JobRunner | None = None
    #: The pre-request decision engine (set up in the lifespan, after the runtime exists).
    enforcer: Enforcer | None = None
    #: sha256 of spendplane's generated admin key (None with a master key), read at start-up.
    admin_key_hash: str | None = None

    def enforcement(self) -> Enforcer:
        if self.enforcer is None:
            raise RuntimeError("enforcement is not running (the app lifespan sets it up)")
        return self.enforcer

    @asynccontextmanager
    async def work(self) -> AsyncIterator[Work]:
        async with self.db.sessions() as session:
            async with session.begin():
                work = Work(session=session, now=self.clock(), dialect=self.db.dialect)
                yield work
                # Other replicas get the events with this transaction (pg_notify), so they exist iff it commits.
                await self.bus.send_with(session, work.events)
            for event in work.events:
                self.bus.deliver(event)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.db.reader() as session, session.begin():
            yield session
