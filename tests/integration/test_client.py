"""The Python client (`api.VendorPulseClient`) against a real API served by uvicorn on loopback: the
backoff schedule and attempt limit while the API is down, the outbound queue flushed in order after
it returns, health figures, token refresh, and new_order notifications resumed from Kafka without gap
or duplicate across an API restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api import Backoff, ConnectionState, Message, ReconnectFailedError, VendorPulseClient
from api.app import create_app
from api.auth import make_token
from api.server import ServerThread
from api.settings import ApiSettings, api_settings
from infra.ports import free_port
from schemas.topics import Topics, partition_for
from tests.fakes import snapshot
from tests.integration.test_api_live import SECRET, produce, running_api, settings_for
from tests.polling import eventually_async

FAST = Backoff(base_delay=0.05, max_delay=0.4)


def offline_settings(**overrides: Any) -> ApiSettings:
    return api_settings(**({"env": "test", "jwt_secret": SECRET} | overrides))


@contextlib.asynccontextmanager
async def offline_api(settings: ApiSettings, port: int) -> AsyncIterator[int]:
    """A real API without Kafka (snapshots zero-filled): enough for connection behaviour."""
    server = ServerThread(create_app(settings, kafka=False), settings, port=port)
    await asyncio.to_thread(server.start)
    try:
        yield port
    finally:
        await asyncio.to_thread(server.stop)


async def next_of(client: VendorPulseClient, kind: str, within: float = 10.0, **match: Any) -> Message:
    async with asyncio.timeout(within):
        async for message in client:
            if message.type == kind and all(message.data.get(k) == v for k, v in match.items()):
                return message
    raise AssertionError(f"the client ended before a {kind}")


async def wait_for_state(client: VendorPulseClient, state: ConnectionState, within: float = 10.0) -> float:
    started = time.monotonic()
    while client.state is not state:
        assert time.monotonic() - started < within, f"still {client.state} after {within} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_backoff_schedule_then_reconnect_then_attempt_limit() -> None:
    settings, port = offline_settings(), free_port()
    token = make_token("vb", settings=settings)
    client = VendorPulseClient(
        f"http://127.0.0.1:{port}", "vb", token, max_attempts=5, backoff=FAST, rng=random.Random(7)
    )
    async with offline_api(settings, port):
        await client.connect()
        assert client.connection_health()["connectionState"] == "connected"
    # The API is gone: the client retries with full-jitter waits drawn from the same seeded sequence.
    await wait_for_state(client, ConnectionState.RECONNECTING)
    await eventually_async(
        lambda: client.connection_health()["reconnectAttempts"] >= 2, "two failed attempts"
    )
    health = client.connection_health()
    assert health["isHealthy"] is False
    assert health["connectionState"] == "reconnecting"
    async with offline_api(settings, port):
        took = await wait_for_state(client, ConnectionState.CONNECTED, within=5)
        assert client.connection_health()["reconnectAttempts"] == 0
        assert client.reconnects == 1
        first_outage = list(client.delays)
    expected = random.Random(7)
    assert first_outage == [FAST.delay(n, expected) for n in range(1, len(first_outage) + 1)]
    assert took < FAST.max_delay + 1.0
    # Down for good: after max_attempts failures in a row the iterator raises a clear error.
    with pytest.raises(ReconnectFailedError, match=r"gave up after 5 failed connection attempts"):
        await next_of(client, "never", within=10)
    assert client.disconnected_at is not None
    elapsed = time.monotonic() - client.disconnected_at
    outage = client.delays[len(first_outage) :]  # the attempt count starts again after a connection
    assert outage == [FAST.delay(n, expected) for n in range(1, 5)]
    assert sum(outage) <= elapsed < sum(outage) + 2.0
    assert client.connection_health()["connectionState"] == "failed"
    await client.close()


async def test_attempt_limit_when_the_api_never_answers() -> None:
    port = free_port()
    client = VendorPulseClient(f"http://127.0.0.1:{port}", "vx", "t", max_attempts=3, backoff=FAST)
    with pytest.raises(ReconnectFailedError, match=r"3 failed connection attempts .* is the API"):
        await client.connect()
    assert len(client.delays) == 2  # two waits between three attempts
    assert client.delays[0] <= FAST.ceiling(1)
    assert client.delays[1] <= FAST.ceiling(2)
    await client.close()


async def test_queue_is_bounded_and_flushed_in_order_after_reconnect() -> None:
    settings, port = offline_settings(), free_port()
    token = make_token("vq", settings=settings)
    client = VendorPulseClient(f"http://127.0.0.1:{port}", "vq", token, queue_limit=5, backoff=FAST)
    async with offline_api(settings, port):
        await client.connect()
        client.send("ping", {"seq": -1})
        assert (await next_of(client, "pong")).data == {"seq": -1}
    await wait_for_state(client, ConnectionState.RECONNECTING)
    for seq in range(8):  # 8 into a queue of 5: the 3 oldest are dropped and counted
        client.send("ping", {"seq": seq})
    health = client.connection_health()
    assert health["queuedMessages"] == 5
    assert client.statistics()["droppedMessages"] == 3
    async with offline_api(settings, port):
        pongs = [(await next_of(client, "pong")).data["seq"] for _ in range(5)]
        assert pongs == [3, 4, 5, 6, 7]
        assert client.connection_health()["queuedMessages"] == 0
    await client.close()


async def test_health_figures_latency_warning_and_token_refresh(caplog: pytest.LogCaptureFixture) -> None:
    settings, port = offline_settings(jwt_leeway_seconds=0), free_port()
    issued: list[str] = []

    def renew() -> str:
        issued.append(make_token("vh", ttl=60, settings=settings))
        return issued[-1]

    short = make_token("vh", ttl=3, settings=settings)
    async with offline_api(settings, port):
        client = VendorPulseClient(
            f"http://127.0.0.1:{port}", "vh", short,
            token_provider=renew, refresh_margin=2.0, ping_interval=0.2,
        )  # fmt: skip
        async with client:
            assert (await next_of(client, "analytics_update")).data["vendorId"] == "vh"
            assert client.snapshot is not None
            assert client.snapshot["version"] == 0
            started = time.monotonic()
            health = await client.health_check()
            assert time.monotonic() - started < 1.0
            assert health["isHealthy"] is True
            assert health["connectionState"] == "connected"
            assert health["reconnectAttempts"] == 0
            assert health["queuedMessages"] == 0
            assert 0 < health["latency"] < 150
            assert health["uptime"] > 0
            # The token would expire after 3 s; the client renews it after 1 s.
            refreshed = await next_of(client, "connection_status", within=5, status="token_refreshed")
            assert refreshed.data["expiresAt"] > time.time() + 30
            assert len(issued) == 1
            await asyncio.sleep(3.0)  # past the first token's expiry: still the same connection
            assert client.state is ConnectionState.CONNECTED
            assert client.reconnects == 0
            assert len(client.latency.samples) >= 10  # the pinger kept measuring
            assert client.connection_health()["uptime"] > 3.5
            caplog.set_level(logging.WARNING, logger="vendorpulse.client")
            client.latency_warning_ms = 0.001  # every real round trip is above that
            await client.health_check()
            assert client.latency_warnings == 1
            assert "above 0 ms" in caplog.text
            assert client.connection_health()["isHealthy"] is False
    # Down: the health check still answers within 1 s, unhealthy.
    started = time.monotonic()
    assert (await client.health_check())["isHealthy"] is False
    assert time.monotonic() - started < 1.0


def order(vendor: str, n: int) -> dict[str, Any]:
    return {
        "vendorId": vendor, "eventId": f"e-{vendor}-{n}", "orderId": f"o{n}", "customerId": "c1",
        "currency": "EUR", "total": 100 + n, "items": 1, "occurredAt": "2026-01-01T00:00:00.000Z",
        "version": n + 1,
    }  # fmt: skip


async def test_resume_across_an_api_restart_without_gap_or_duplicate(
    kafka_bootstrap: str, topics: Topics
) -> None:
    vendor = "vendor-r"
    partition = partition_for(vendor.encode(), 6)
    neighbour = next(f"n{i}" for i in range(1000) if partition_for(f"n{i}".encode(), 6) == partition)

    async def orders(numbers: range) -> None:  # interleaved with another vendor on the same partition
        records = [(v, order(v, n)) for n in numbers for v in (vendor, neighbour)]
        await produce(kafka_bootstrap, topics.activity, records)

    await produce(kafka_bootstrap, topics.metrics, [(vendor, snapshot(vendor, 1))])
    await orders(range(0, 3))  # before anyone listens: never delivered
    settings = settings_for(kafka_bootstrap, topics)
    token = make_token(vendor, settings=settings)
    port = free_port()
    seen: list[str] = []
    async with running_api(settings, port=port):
        client = VendorPulseClient(f"http://127.0.0.1:{port}", vendor, token, backoff=FAST)
        await client.connect()
        assert client.cursor is not None  # the live starting point, acknowledged even before any order
        await orders(range(3, 8))
        while len(seen) < 5:
            seen.append((await next_of(client, "new_order")).data["orderId"])
    await wait_for_state(client, ConnectionState.RECONNECTING)
    await orders(range(8, 30))  # while the API is down
    await produce(kafka_bootstrap, topics.metrics, [(vendor, snapshot(vendor, 2))])
    async with running_api(settings, port=port):
        down_since = time.monotonic()
        await wait_for_state(client, ConnectionState.CONNECTED)
        reconnected_in = time.monotonic() - down_since
        await orders(range(30, 40))  # live again, possibly while the replay is still being read
        resumed: dict[str, Any] | None = None
        versions: list[int] = []
        async with asyncio.timeout(20):
            async for m in client:
                if m.type == "connection_status" and m.data["status"] == "resumed":
                    resumed = m.data
                elif m.type == "analytics_update":
                    versions.append(m.data["version"])
                elif m.type == "new_order":
                    seen.append(m.data["orderId"])
                    if len(seen) == 37:
                        break
        assert versions[0] == 2  # the current snapshot came at once with the reconnect
        assert client.snapshot is not None
        assert client.snapshot["version"] == 2
    assert seen == [f"o{n}" for n in range(3, 40)]
    assert resumed is not None
    assert resumed["complete"] is True
    assert resumed["replayed"] >= 22
    assert client.statistics()["duplicatesDropped"] == 0
    assert reconnected_in < FAST.max_delay + 5
    await client.close()
