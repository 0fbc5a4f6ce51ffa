"""Stock alerts and delta updates end to end (contract §6): catalog and stock events on the session's
Kafka, folded by a real worker (`vendorpulse worker` in a child process), pushed by a real API, read by
the Python client. The fold's own rules are tested in tests/unit/test_fold.py; here: what a client sees.

- a product walking ok -> low -> out -> ok (adjustments before its first upsert included) and an
  inactive product reach the client as exactly the alerts the contract defines, in log order, while the
  same client on delta updates ends with the API's snapshot, byte for byte after canonical JSON;
- alerts written while the API is down arrive once, in order, when the client resumes after its restart;
- with the worker killed (SIGKILL) and restarted while alerts are produced, the client gets each
  eventId once, all of them, whatever the worker wrote twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from api import patch
from api.auth import make_token
from api.client import VendorPulseClient
from infra.ports import free_port
from schemas.codec import FastavroCodec
from schemas.events import Event, InventoryAdjusted, ProductUpserted
from schemas.topics import Topics
from tests.integration.conftest import WorkerProcess, read_topic
from tests.integration.live_stack import VENDOR, settled
from tests.integration.test_api_live import running_api, settings_for
from tests.integration.test_client import FAST
from tests.polling import eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")

codec = FastavroCodec()


class Catalog:
    """Hand-written inventory events for VENDOR, each with a fresh event_id and a rising occurred_at."""

    def __init__(self) -> None:
        self.n = 0
        self.start = int(time.time() * 1000) - 3_600_000

    def _next(self) -> tuple[str, int]:
        self.n += 1
        return f"ev-{self.n:05d}", self.start + self.n * 10

    def upsert(self, product: str, active: bool = True, threshold: int = 5, name: str = "Lamp") -> Event:
        event_id, at = self._next()
        return ProductUpserted(event_id, at, VENDOR, product, name, "Home", active, threshold)

    def adjust(self, product: str, delta: int) -> Event:
        event_id, at = self._next()
        return InventoryAdjusted(event_id, at, VENDOR, product, delta, None)


async def send(bootstrap: str, topics: Topics, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for event in events:
            await producer.send(topics.inventory, codec.encode(event), key=VENDOR.encode())
        await producer.flush()
    finally:
        await producer.stop()


def client_for(port: int, token: str, **options: Any) -> VendorPulseClient:
    return VendorPulseClient(f"http://127.0.0.1:{port}", VENDOR, token, backoff=FAST, **options)


def more_than(items: list[str], n: int) -> Callable[[], bool]:
    return lambda: len(items) > n


def walk(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str, int, int]]:
    return [(a["productId"], a["previous"], a["state"], a["stock"], a["threshold"]) for a in alerts]


async def test_the_alert_sequence_of_a_product_reaches_the_client_and_delta_updates_match(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    catalog = Catalog()
    worker = make_worker().start()
    settings = settings_for(kafka_bootstrap, topics)
    token = make_token(VENDOR, settings=settings)
    called: list[dict[str, Any]] = []
    async with running_api(settings) as port:
        client = client_for(port, token, updates="delta", on_alert=called.append)
        await client.connect()
        events = [
            catalog.adjust("lamp", 3),  # before the first upsert: counted, no catalog entry, "ok"
            catalog.adjust("lamp", 1),  # 4, still "ok": no alert
            catalog.upsert("lamp", threshold=5),  # active, 4 <= 5: low
            catalog.adjust("lamp", -1),  # 3: still low, no alert
            catalog.adjust("lamp", -3),  # 0: out
            catalog.adjust("lamp", -2),  # -2: still out
            catalog.adjust("lamp", 12),  # 10 > 5: ok
            catalog.upsert("kettle", active=False, threshold=5, name="Kettle"),  # inactive: ok
            catalog.adjust("kettle", -4),  # inactive at -4: still ok, no alert
            catalog.upsert("kettle", active=True, threshold=5, name="Kettle"),  # active at -4: out
            catalog.upsert("kettle", active=False, threshold=5, name="Kettle"),  # inactive again: ok
        ]
        for event in events:  # one at a time: a snapshot each (more than one: merge patches between them)
            await send(kafka_bootstrap, topics, [event])
            await asyncio.sleep(0.4)
        await eventually_async(lambda: len(client.alerts) >= 5, "five stock alerts", within=60)
        await asyncio.sleep(1.0)  # anything more would arrive now
        expected = [
            ("lamp", "ok", "low", 4, 5),
            ("lamp", "low", "out", 0, 5),
            ("lamp", "out", "ok", 10, 5),
            ("kettle", "ok", "out", -4, 5),
            ("kettle", "out", "ok", -4, 5),
        ]
        assert walk(client.alerts) == expected
        assert walk(called) == expected  # the callback: once per alert, in the same order
        by_event = [a["eventId"] for a in client.alerts]
        assert by_event == [events[i].event_id for i in (2, 4, 6, 9, 10)]
        assert client.alerts[0]["name"] == "Lamp"
        assert all(a["cursor"].count(":") == 1 for a in client.alerts)
        # On a loaded machine the worker may fold all of the above into one snapshot, which reaches a
        # client as a full frame: more single events until one came as a merge patch.
        for _ in range(20):
            if client.statistics()["deltasApplied"]:
                break
            await send(kafka_bootstrap, topics, [catalog.adjust("mug", 1)])  # never upserted: no alert
            await asyncio.sleep(1.0)
        assert client.statistics()["deltasApplied"] > 0
        # the same connection got its snapshots as merge patches: it holds what the API serves
        expected_snapshot = await settled(port, token, worker=worker)
        await eventually_async(
            lambda: (client.snapshot or {}).get("version") == expected_snapshot["version"], "the last version"
        )
        assert patch.canonical(client.snapshot) == patch.canonical(expected_snapshot)
        assert expected_snapshot["metrics"]["products"] == {
            "total": 2,
            "active": 1,
            "lowStock": 0,
            "outOfStock": 0,
        }
        assert len(client.alerts) == 5  # the extra adjustments raised none
        await client.close()


async def test_alerts_written_while_the_api_is_down_are_resumed_once_in_order(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    catalog = Catalog()
    make_worker().start()
    settings = settings_for(kafka_bootstrap, topics)
    token = make_token(VENDOR, settings=settings)
    port = free_port()
    async with running_api(settings, port=port):
        client = client_for(port, token, max_attempts=1000)  # keeps trying while the API is down
        await client.connect()
        await send(kafka_bootstrap, topics, [catalog.upsert("lamp"), catalog.adjust("lamp", 20)])  # out, ok
        await eventually_async(lambda: len(client.alerts) == 2, "two live alerts", within=60)
    down = [
        catalog.adjust("lamp", -16),
        catalog.adjust("lamp", -4),
        catalog.adjust("lamp", 9),
    ]  # low, out, ok
    await send(kafka_bootstrap, topics, down)
    await asyncio.sleep(3)  # the worker writes the alerts while no API runs
    async with running_api(settings, port=port):
        await eventually_async(
            lambda: len(client.alerts) == 5, "the alerts written while the API was down", within=30
        )
        await send(kafka_bootstrap, topics, [catalog.adjust("lamp", -9)])  # out, live again
        await eventually_async(lambda: len(client.alerts) == 6, "a live alert after the resume", within=30)
        await asyncio.sleep(1.0)
    assert [(a["previous"], a["state"]) for a in client.alerts] == [
        ("ok", "out"), ("out", "ok"), ("ok", "low"), ("low", "out"), ("out", "ok"), ("ok", "out"),
    ]  # fmt: skip
    assert [a["eventId"] for a in client.alerts[2:5]] == [e.event_id for e in down]
    stats = client.statistics()
    assert stats["reconnects"] == 1
    assert stats["resumeGaps"] == 0
    assert stats["cursor"] == client.alerts[-1]["cursor"]
    await client.close()


async def test_with_the_worker_killed_while_alerts_flow_the_client_gets_each_event_id_once(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Kills land at random points of the worker's batches; one that falls between a batch's outputs and
    its stored state makes the restarted worker write those alerts again (same eventId, later offset).
    Whether a given run hits that window is chance, so the test also writes copies of a few alert
    records itself, as such a worker would: either way each copy must reach the client and be dropped."""
    catalog = Catalog()
    products = [f"p{i:02d}" for i in range(20)]
    # every event below changes its product's state (out <-> ok): one alert each
    events: list[Event] = [catalog.upsert(p) for p in products]
    for round_ in range(40):
        events += [catalog.adjust(p, 10 if round_ % 2 == 0 else -10) for p in products]
    worker = make_worker(flush_interval_ms="20").start()
    settings = settings_for(kafka_bootstrap, topics)
    token = make_token(VENDOR, settings=settings)
    received: list[str] = []
    async with running_api(settings) as port:
        client = client_for(port, token, on_alert=lambda a: received.append(a["eventId"]))
        await client.connect()
        kills = 0
        for start in range(0, len(events), 20):  # ~20 batches a second while the worker is up
            await send(kafka_bootstrap, topics, events[start : start + 20])
            await asyncio.sleep(0.05)
            if start in (200, 400, 600):  # the worker dies mid-stream, then comes back
                await eventually_async(more_than(received, start - 100), "alerts before the kill", within=60)
                await asyncio.to_thread(worker.kill, signal.SIGKILL)
                kills += 1
                worker.start()
        await eventually_async(lambda: len(received) >= len(events), f"{len(events)} alerts", within=120)
        activity = await read_topic(kafka_bootstrap, topics.activity)
        alerts = [(k, v) for k, v, _ in activity if v and b'"stock_alert"' in v]
        copies = alerts[::100]  # as a worker that crashed after sending them would write them again
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in copies:
                await producer.send_and_wait(topics.activity, value, key=key)
        finally:
            await producer.stop()
        written = Counter(orjson.loads(v)["eventId"] for _, v in alerts)
        repeats = sum(written.values()) - len(written)
        await eventually_async(
            lambda: client.statistics()["duplicatesDropped"] == repeats + len(copies), "the copies dropped"
        )
        await asyncio.sleep(1.0)  # anything else would arrive now
        await client.close()
    print(f"\nworker kills={kills} alerts={len(events)} written={sum(written.values())} "
          f"repeats_by_the_worker={repeats} copies={len(copies)}")  # fmt: skip
    assert kills == 3
    assert set(written) == {e.event_id for e in events}  # at least once: every alert was written
    assert received == [e.event_id for e in events]  # each once at the client, all, in log order
    assert client.statistics()["duplicatesDropped"] == repeats + len(copies)
