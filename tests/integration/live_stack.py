"""A live stack for end-to-end client tests (the dashboard in Chromium, the TypeScript client): one
simulated vendor's events on the session's Kafka, folded by a real worker, served by a real API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from itertools import islice
from typing import Any

import httpx2
from aiokafka import AIOKafkaProducer

from api.app import create_app
from api.auth import make_token
from api.server import ServerThread
from api.settings import ApiSettings
from infra.ports import free_port, wait_http_ready
from infra.simulate import EventGenerator, SimConfig
from schemas.codec import FastavroCodec
from schemas.events import OrderPlaced
from schemas.topics import Topics
from tests.integration.conftest import WorkerProcess
from tests.integration.test_api_live import settings_for

DAY = 86_400_000
VENDOR = "vendor-001"


class Shop:
    """Simulated events of one vendor: a year of history first, then orders stamped now."""

    def __init__(self, bootstrap: str, topics: Topics, history: int) -> None:
        now = int(time.time() * 1000)
        self.config = SimConfig(vendors=1, products=30, customers=300, seed=11,
                                start_ms=now - 330 * DAY, step_ms=330 * DAY // history)  # fmt: skip
        self.generator = EventGenerator(self.config)
        self.events = iter(self.generator)
        self.bootstrap, self.topics, self.codec = bootstrap, topics, FastavroCodec()

    async def send(self, n: int) -> list[str]:
        """Send the next n events; the ids of the orders placed among them."""
        topic = {"orders": self.topics.orders, "inventory": self.topics.inventory}
        batch = [(topic[kind], event) for kind, event in islice(self.events, n)]
        self.generator.config = dataclasses.replace(self.config, start_ms=None)  # next ones: wall clock
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            for name, event in batch:
                await producer.send(name, self.codec.encode(event), key=event.vendor_id.encode())
            await producer.flush()
        finally:
            await producer.stop()
        return [event.order_id for _, event in batch if isinstance(event, OrderPlaced)]


async def snapshot(port: int, token: str) -> dict[str, Any]:
    async with httpx2.AsyncClient() as http:
        response = await http.get(
            f"http://127.0.0.1:{port}/api/v1/analytics/vendors/{VENDOR}/metrics",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def settled(
    port: int, token: str, within: float = 60.0, worker: WorkerProcess | None = None, newer_than: int = 0
) -> dict[str, Any]:
    """The snapshot once its version passed `newer_than` and stayed the same for a second (the worker
    caught up). Give `newer_than` when events were just sent: on a loaded machine the worker may not
    have folded any of them a second later."""
    deadline = time.monotonic() + within
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        current = await snapshot(port, token)
        if last is not None and current["version"] == last["version"] and current["version"] > newer_than:
            return current
        last = current
        await asyncio.sleep(1.0)
    detail = worker.output() if worker is not None else ""
    raise AssertionError(f"the snapshot did not settle within {within} s; last {last}\n{detail}")


async def start_api(settings: ApiSettings, port: int) -> ServerThread:
    server = ServerThread(create_app(settings), settings, port=port)
    await asyncio.to_thread(server.start)
    await asyncio.to_thread(wait_http_ready, port, 20.0, interval=0.05)
    return server


@dataclasses.dataclass
class Stack:
    """A shop's history folded by a worker and served by an API on `port`, which can be restarted."""

    shop: Shop
    worker: WorkerProcess
    settings: ApiSettings
    token: str
    port: int
    server: ServerThread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def settled(self, newer_than: int = 0) -> dict[str, Any]:
        return await settled(self.port, self.token, worker=self.worker, newer_than=newer_than)

    async def stop_api(self) -> None:
        await asyncio.to_thread(self.server.stop)

    async def start_api(self) -> None:
        self.server = await start_api(self.settings, self.port)


@contextlib.asynccontextmanager
async def live_stack(
    bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], history: int, **settings: Any
) -> AsyncIterator[Stack]:
    """`history` events of VENDOR sent, a worker folding them, an API (with `settings`) serving them."""
    shop = Shop(bootstrap, topics, history=history)
    await shop.send(history)
    worker = make_worker().start()
    api = settings_for(bootstrap, topics, **settings)
    port = free_port()
    stack = Stack(shop, worker, api, make_token(VENDOR, settings=api), port, await start_api(api, port))
    try:
        yield stack
    finally:
        await stack.stop_api()
