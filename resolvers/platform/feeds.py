"""Live feeds behind the subscriptions: one database read per event, shared by every subscriber.

A thousand subscribers of one topic cost one read of each event's row, not a thousand: the feed listens on the
bus once, reads the row the event names (only while somebody watches), and hands the same object to each
subscriber's bounded queue; each subscriber then filters what it may see in memory. A subscriber that falls a
whole queue behind is dropped (its stream ends) rather than slowing the feed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from resolvers.platform.events import Event, EventBus

log = logging.getLogger("spendplane.feeds")

T = TypeVar("T")
QUEUE_SIZE = 64


class _End:
    """Marks the end of a watcher's stream."""


_END = _End()


class Feed(Generic[T]):
    def __init__(
        self, bus: EventBus, topics: Sequence[str], load: Callable[[Event], Awaitable[T | None]], name: str
    ) -> None:
        self.bus = bus
        self.topics = tuple(topics)
        self.load = load
        self.name = name
        self._watchers: set[asyncio.Queue[T | _End]] = set()
        #: How many rows the feed has read (a test's way to see one read per event).
        self.reads = 0

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._follow(topic)) for topic in self.topics]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for queue in list(self._watchers):
                self._end(queue)

    async def _follow(self, topic: str) -> None:
        async with self.bus.subscribe(topic) as events:
            async for event in events:
                if not self._watchers:
                    continue  # nobody listens: nothing to read
                try:
                    self.reads += 1
                    item = await self.load(event)
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("%s feed could not read %s: %s", self.name, event.payload, exc)
                    continue
                if item is None:
                    continue
                for queue in list(self._watchers):
                    try:
                        queue.put_nowait(item)
                    except asyncio.QueueFull:
                        log.warning("dropping a %s subscriber that fell %d events behind", self.name, QUEUE_SIZE)
                        self._watchers.discard(queue)
                        self._end(queue)

    @staticmethod
    def _end(queue: asyncio.Queue[T | _End]) -> None:
        while True:
            try:
                queue.put_nowait(_END)
                return
            except asyncio.QueueFull:
                queue.get_nowait()

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[AsyncIterator[T]]:
        queue: asyncio.Queue[T | _End] = asyncio.Queue(QUEUE_SIZE)
        self._watchers.add(queue)

        async def items() -> AsyncIterator[T]:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    return
                yield item

        try:
            yield items()
        finally:
            self._watchers.discard(queue)

    @property
    def watchers(self) -> int:
        return len(self._watchers)
