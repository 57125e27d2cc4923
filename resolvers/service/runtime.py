"""What the running service owns (settings, database, LiteLLM's schema, event bus, tokens, clock), and the
unit of work every write goes through: one transaction, with its events published only after it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from models.db import Database
from models.litellm import LiteLLMSchema
from resolvers.auth import TokenService
from resolvers.platform.config import Settings
from resolvers.platform.events import EventBus
from resolvers.platform.jobs import JobRunner
from resolvers.platform.periods import utcnow
from resolvers.platform.work import Work
from resolvers.predictor import Counting, OutputHistory
from resolvers.pricing import PriceBook

if TYPE_CHECKING:
    from resolvers.auth import Principal
    from resolvers.auth.sessions import TokenGuard
    from resolvers.enforcement import Enforcer
    from resolvers.platform.feeds import Feed


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
    #: sha256 of spendplane's generated admin key (None with a master key), read at start-up and on every refresh
    #: of the token guard (a rotation reaches the gateway's shared-secret check too).
    admin_key_hash: str | None = None
    #: What changed since tokens were minted (admin key rotations, blocked LiteLLM keys).
    guard: TokenGuard | None = None
    #: Small per-app caches of the faces (the /health probe's last answer), by name.
    caches: dict[str, Any] = field(default_factory=dict)
    #: Where /predict counts big prompts: its own threads and queue, apart from the gateway's.
    predictor_counting: Counting = field(default_factory=lambda: Counting("predictor", workers=1, queue=8))
    #: The subscriptions' live feeds (one database read per event), by name: budgets, alerts, violations.
    feeds: dict[str, Feed[Any]] = field(default_factory=dict)
    #: When this instance started serving (the wall clock, not the injectable one).
    started_at: datetime = field(default_factory=utcnow)

    def authenticate(self, token: str) -> Principal:
        """A bearer token's principal, or Unauthenticated: signature, expiry and lifetime, then revocations."""
        return self.guard.principal(token) if self.guard is not None else self.tokens.verify(token)

    def in_flight(self) -> Callable[[tuple[str, str]], Decimal] | None:
        """In-flight holds per (ledger key, window key), as this instance's enforcement engine knows them."""
        return self.enforcer.ledger.in_flight_for if self.enforcer is not None else None

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
