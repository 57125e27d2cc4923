"""Events across replicas (PostgreSQL LISTEN/NOTIFY): an alert raised on one instance reaches `alertRaised`
subscribers on another, only once its transaction commits, once per process, and after a dropped LISTEN
connection too (what was raised meanwhile is caught up). One SQLite file serves one process, whose events stay in
memory, so these tests need PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from httpx_ws import AsyncWebSocketSession
from sqlalchemy import text

from models.db import Database
from resolvers.alerts import ALERT_TOPIC, AlertType, raise_alert
from resolvers.platform.config import Settings
from resolvers.platform.events import Event, PgNotifyEventBus
from tests.alerts.test_alerts import draft
from tests.conftest import Clock, started
from tests.support import Api, graphql_ws, watching

SUBSCRIBE = "subscription { alertRaised { id type teamId } }"


@pytest.fixture
def replicas(settings: Settings, clock: Clock, db: Database) -> tuple[started, started]:
    if not db.is_postgres:
        pytest.skip("one process per SQLite file: events stay in that process's memory")
    return started(settings, clock, jobs_enabled=False), started(settings, clock, jobs_enabled=False)


def bus_of(api: Api) -> PgNotifyEventBus:
    bus = api.runtime().bus
    assert isinstance(bus, PgNotifyEventBus)
    return bus


async def raise_on(api: Api, team: str, kind: AlertType = AlertType.APPROACHING_LIMIT) -> str:
    async with api.runtime().work() as work:
        alert = await raise_alert(work, draft(team, kind))
    assert alert is not None
    return alert.id


@asynccontextmanager
async def alert_subscriber(api: Api) -> AsyncIterator[AsyncWebSocketSession]:
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        await ws.send_json({"id": "a", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
        await watching(api, "alerts")
        yield ws


async def next_alert_id(ws: AsyncWebSocketSession) -> str:
    message = await asyncio.wait_for(ws.receive_json(), 10)
    assert message["type"] == "next", message
    return str(message["payload"]["data"]["alertRaised"]["id"])


async def test_an_alert_reaches_a_subscriber_on_another_instance(replicas: tuple[started, started]) -> None:
    async with replicas[0] as one, replicas[1] as two, alert_subscriber(two) as ws:
        raised = await raise_on(one, "engineering")
        assert await next_alert_id(ws) == raised


async def test_the_publishing_instance_hears_its_own_alert_once(replicas: tuple[started, started]) -> None:
    async with replicas[0] as one, replicas[1] as two, bus_of(one).subscribe(ALERT_TOPIC) as events:
        heard: list[str] = []
        first = await raise_on(one, "engineering")  # delivered here after commit; its NOTIFY comes back too
        second = await raise_on(two, "marketing")  # reaches `one` only through NOTIFY, after the first's echo
        async for event in events:
            heard.append(event.payload["id"])
            if event.payload["id"] == second:
                break
    assert heard == [first, second]


async def test_a_rolled_back_alert_is_never_announced(replicas: tuple[started, started]) -> None:
    async with replicas[0] as one, replicas[1] as two, bus_of(two).subscribe(ALERT_TOPIC) as events:
        with pytest.raises(RuntimeError, match="the request failed"):  # noqa: PT012 - the failure is inside the work
            async with one.runtime().work() as work:
                await raise_alert(work, draft("engineering"))
                raise RuntimeError("the request failed")
        committed = await raise_on(one, "marketing")
        event = await asyncio.wait_for(anext(aiter(events)), 10)
    assert event == Event(ALERT_TOPIC, {"id": committed})


async def test_an_event_too_large_for_notify_fails_its_transaction(replicas: tuple[started, started]) -> None:
    async with replicas[0] as one:
        with pytest.raises(ValueError, match="events carry ids only"):  # noqa: PT012 - raised as the work commits
            async with one.runtime().work() as work:
                await raise_alert(work, draft("engineering"))
                work.emit(Event(ALERT_TOPIC, {"id": "x" * 8000}))
        async with one.runtime().read() as session:
            assert await session.scalar(text("SELECT count(*) FROM spendplane_alerts")) == 0


class HeldReconnect:
    """Stands in for the bus's sleep between reconnect attempts, so a test decides when it reconnects."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.released = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.waiting.set()
        await self.released.wait()


async def test_a_dropped_listen_connection_reconnects_and_catches_up(
    replicas: tuple[started, started], db: Database
) -> None:
    async with replicas[0] as one, replicas[1] as two, alert_subscriber(two) as ws:
        bus = bus_of(two)
        held = HeldReconnect()
        bus.sleep = held.sleep
        pid = bus.listener_pid
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.wait_for(held.waiting.wait(), 10)  # `two` is deaf now
        missed = await raise_on(one, "engineering")
        held.released.set()
        assert await next_alert_id(ws) == missed  # caught up after reconnecting
        assert (bus.reconnects, bus.caught_up) == (1, 1)
        assert bus.listener_pid not in (None, pid)
        live = await raise_on(one, "marketing")
        assert await next_alert_id(ws) == live  # and listening again
        assert bus.caught_up == 1
