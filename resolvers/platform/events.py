"""The event bus: domain events (ids only) fanned out to live subscribers after their transaction commits.

`InMemoryEventBus` serves one process (the SQLite default). Each subscriber reads from a bounded queue; a
subscriber that falls behind by a whole queue is dropped (its stream ends) rather than slowing publishers.

`PgNotifyEventBus` (PostgreSQL) also carries events to every other replica: the unit of work sends them with
`pg_notify` inside the transaction that made them (so a notification exists if and only if the rows committed),
each process LISTENs on one dedicated connection and fans what it hears out exactly like the in-memory bus. After
that connection was lost it reconnects with backoff and asks `catch_up` for what it missed (alerts), because
PostgreSQL does not keep notifications for a listener that was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import Database, asyncpg_dsn
from resolvers.platform.backoff import backoff_seconds

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_SIZE = 256


@dataclass(frozen=True)
class Event:
    topic: str
    payload: dict[str, str] = field(default_factory=dict)


class EventBus(Protocol):
    async def start(self) -> None:
        """Open what the bus needs (the lifespan calls it once, before serving)."""
        ...

    async def publish(self, event: Event) -> None:
        """Send an event to every subscriber now, outside any transaction."""
        ...

    async def send_with(self, session: AsyncSession, events: Sequence[Event]) -> None:
        """Inside the transaction that produced `events`, just before it commits: hand them to the other
        processes with that transaction (a cross-process bus), or nothing (one process)."""
        ...

    def deliver(self, event: Event) -> None:
        """After that commit: fan the event out to this process's subscribers (once)."""
        ...

    def subscribe(self, topic: str) -> AbstractAsyncContextManager[AsyncIterable[Event]]: ...

    def on(self, topic: str, callback: Callable[[Event], None]) -> None:
        """Call `callback` synchronously as each event of `topic` is delivered here, before any subscriber runs
        (for state that must be marked stale at once, not when a task gets round to it)."""
        ...

    async def close(self) -> None: ...


class _Closed:
    """Marks the end of a subscriber's stream."""


_CLOSED = _Closed()


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | _Closed] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)

    def offer(self, item: Event | _Closed) -> bool:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            item = await self.queue.get()
            if isinstance(item, _Closed):
                return
            yield item


class InMemoryEventBus:
    def __init__(self) -> None:
        self._topics: dict[str, set[_Subscriber]] = {}
        self._callbacks: dict[str, list[Callable[[Event], None]]] = {}

    def on(self, topic: str, callback: Callable[[Event], None]) -> None:
        self._callbacks.setdefault(topic, []).append(callback)

    async def start(self) -> None:
        return None

    async def publish(self, event: Event) -> None:
        self.deliver(event)

    async def send_with(self, session: AsyncSession, events: Sequence[Event]) -> None:
        return None  # one process: every subscriber is here, and `deliver` reaches it after the commit

    def deliver(self, event: Event) -> None:
        for callback in self._callbacks.get(event.topic, ()):
            callback(event)
        for subscriber in list(self._topics.get(event.topic, ())):
            if not subscriber.offer(event):
                log.warning(
                    "dropping a subscriber of %s that fell %d events behind",
                    event.topic,
                    SUBSCRIBER_QUEUE_SIZE,
                )
                self._remove(event.topic, subscriber)
                subscriber.queue.get_nowait()  # make room for the end-of-stream marker
                subscriber.offer(_CLOSED)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterable[Event]]:
        subscriber = _Subscriber()
        self._topics.setdefault(topic, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            self._remove(topic, subscriber)

    def _remove(self, topic: str, subscriber: _Subscriber) -> None:
        subscribers = self._topics.get(topic)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._topics[topic]

    def subscriber_count(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    async def close(self) -> None:
        for topic in list(self._topics):
            for subscriber in list(self._topics.get(topic, ())):
                if not subscriber.offer(_CLOSED):
                    subscriber.queue.get_nowait()
                    subscriber.offer(_CLOSED)
        self._topics.clear()


#: The one channel every replica LISTENs on; the topic travels in the payload.
CHANNEL = "spendplane_events"
#: pg_notify refuses payloads of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7999
#: How far before the last moment the listener was known alive a catch-up looks: covers transactions that were
#: still open when the connection dropped (an alert's created_at is taken before its commit) and clock skew
#: between replicas. Events this process already delivered are skipped, so a wide margin costs only a query.
CATCH_UP_MARGIN = timedelta(minutes=5)
#: Remember this many recently delivered events to skip them in a catch-up.
RECENT_EVENTS = 10_000
PING_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
RECONNECT_BASE_SECONDS = 0.5
RECONNECT_CAP_SECONDS = 30.0

#: Given the moment since which events may have been missed, the events to deliver again (alerts, oldest first).
CatchUp = Callable[[datetime], Awaitable[Sequence[Event]]]


class PgNotifyEventBus:
    """Fan-out across replicas with PostgreSQL LISTEN/NOTIFY; see the module docstring."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime],
        catch_up: CatchUp | None = None,
        channel: str = CHANNEL,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.clock = clock
        self.catch_up = catch_up
        self.channel = channel
        #: How the reconnect loop waits between attempts (replaceable, so a test can hold a reconnect).
        self.sleep = sleep
        self.reconnects = 0
        self.caught_up = 0
        self._local = InMemoryEventBus()
        # Our own notifications come back to us; we delivered those after commit already.
        self._origin = uuid.uuid4().hex
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._started_at = datetime.min.replace(tzinfo=UTC)
        self._alive_at = self._started_at

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @property
    def listener_pid(self) -> int | None:
        """The PostgreSQL backend pid of the LISTEN connection (for operators and tests)."""
        return self._conn.get_server_pid() if self.connected and self._conn is not None else None

    async def start(self) -> None:
        self._started_at = self._alive_at = self.clock()
        await self._connect()
        self._supervisor = asyncio.create_task(self._supervise(), name="spendplane-event-listener")

    async def publish(self, event: Event) -> None:
        async with self.db.sessions() as session, session.begin():
            await self.send_with(session, [event])
        self.deliver(event)

    async def send_with(self, session: AsyncSession, events: Sequence[Event]) -> None:
        for event in events:
            await session.execute(
                text("SELECT pg_notify(:channel, :payload)"), {"channel": self.channel, "payload": self._encode(event)}
            )

    def deliver(self, event: Event) -> None:
        self._remember(event)
        self._local.deliver(event)

    def subscribe(self, topic: str) -> AbstractAsyncContextManager[AsyncIterable[Event]]:
        return self._local.subscribe(topic)

    def on(self, topic: str, callback: Callable[[Event], None]) -> None:
        self._local.on(topic, callback)

    def subscriber_count(self, topic: str) -> int:
        return self._local.subscriber_count(topic)

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
        await self._local.close()

    def _encode(self, event: Event) -> str:
        payload = json.dumps({"o": self._origin, "t": event.topic, "p": event.payload}, separators=(",", ":"))
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"a {event.topic} event is {len(payload.encode())} bytes; events carry ids only "
                f"(NOTIFY takes at most {MAX_PAYLOAD_BYTES})"
            )
        return payload

    def _on_notification(self, conn: object, pid: int, channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            origin, topic, data = message["o"], message["t"], message["p"]
            if not isinstance(topic, str) or not isinstance(data, dict):
                raise TypeError("topic or payload of the wrong type")
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed notification on %s from backend %d", channel, pid)
            return
        self._alive_at = self.clock()
        if origin != self._origin:
            self.deliver(Event(topic, {str(k): str(v) for k, v in data.items()}))

    def _on_terminated(self, conn: object) -> None:
        if conn is self._conn:
            self._lost.set()

    def _remember(self, event: Event) -> None:
        key = _key(event)
        self._recent[key] = None
        self._recent.move_to_end(key)
        while len(self._recent) > RECENT_EVENTS:
            self._recent.popitem(last=False)

    async def _connect(self) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.db.engine.url), timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            self._lost.clear()
            self._conn = conn
            conn.add_termination_listener(self._on_terminated)
            await conn.add_listener(self.channel, self._on_notification)
        except BaseException:
            self._conn = None
            conn.terminate()
            raise

    async def _supervise(self) -> None:
        while True:
            await self._watch()
            missed_since = self._alive_at
            log.warning("the LISTEN connection for %s was lost; reconnecting", self.channel)
            attempt = 0
            while True:
                attempt += 1
                await self.sleep(
                    backoff_seconds(attempt, base=RECONNECT_BASE_SECONDS, cap=RECONNECT_CAP_SECONDS, jitter=0.2)
                )
                try:
                    await self._connect()
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("reconnecting the LISTEN connection failed (attempt %d): %s", attempt, exc)
                    continue
                break
            self.reconnects += 1
            log.info("the LISTEN connection for %s is back after %d attempt(s)", self.channel, attempt)
            await self._fill_gap(missed_since)

    async def _watch(self) -> None:
        """Return once the LISTEN connection is gone: terminated, or silent past a ping (a half-open socket)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), PING_SECONDS)
                return
            conn = self._conn
            if conn is None:
                return
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    await conn.execute("SELECT 1")
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
                return
            self._alive_at = self.clock()

    async def _fill_gap(self, missed_since: datetime) -> None:
        if self.catch_up is None:
            return
        since = max(missed_since - CATCH_UP_MARGIN, self._started_at)
        try:
            events = await self.catch_up(since)
        except Exception:  # a failed catch-up is logged; live events flow again regardless
            log.exception("catching up on events missed since %s failed", since.isoformat())
            return
        missed = [event for event in events if _key(event) not in self._recent]
        for event in missed:
            self.deliver(event)
        self.caught_up += len(missed)
        log.info("caught up on %d event(s) missed while the LISTEN connection was down", len(missed))


def _key(event: Event) -> tuple[str, str]:
    return event.topic, json.dumps(event.payload, sort_keys=True)


def event_bus_for(db: Database, *, clock: Callable[[], datetime], catch_up: CatchUp | None = None) -> EventBus:
    """PostgreSQL: replicas share events through LISTEN/NOTIFY. SQLite: one process, in memory."""
    if db.is_postgres:
        return PgNotifyEventBus(db, clock=clock, catch_up=catch_up)
    return InMemoryEventBus()
