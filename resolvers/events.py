"""The event bus: domain events (ids only) fanned out to live subscribers after their transaction commits.

`InMemoryEventBus` serves one process (the SQLite default). Each subscriber reads from a bounded queue; a
subscriber that falls behind by a whole queue is dropped (its stream ends) rather than slowing publishers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_SIZE = 256


@dataclass(frozen=True)
class Event:
    topic: str
    payload: dict[str, str] = field(default_factory=dict)


class EventBus(Protocol):
    async def publish(self, event: Event) -> None: ...

    def subscribe(self, topic: str) -> AbstractAsyncContextManager[AsyncIterable[Event]]: ...

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

    async def publish(self, event: Event) -> None:
        self.deliver(event)

    def deliver(self, event: Event) -> None:
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
