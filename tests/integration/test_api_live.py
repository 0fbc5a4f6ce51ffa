"""The API against the session's real Kafka, served by a real uvicorn on loopback, with real
WebSocket clients: what a dashboard sees (messages, versions, close codes) end to end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.app import WS_PATH, create_app
from api.auth import make_token
from api.server import ServerThread
from api.settings import ApiSettings, api_settings
from infra.ports import wait_http_ready
from schemas.topics import Topics, partition_for
from tests.fakes import snapshot

SECRET = "integration-secret-" + "x" * 32


def settings_for(bootstrap: str, topics: Topics, **overrides: Any) -> ApiSettings:
    base: dict[str, Any] = {
        "env": "test",
        "jwt_secret": SECRET,
        "bootstrap_servers": bootstrap,
        "topic_prefix": topics.prefix,
        "lag_interval_seconds": 0.5,
    }
    return api_settings(**(base | overrides))


async def produce(bootstrap: str, topic: str, records: list[tuple[str, dict[str, Any]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, orjson.dumps(value), key=key.encode()) for key, value in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running_api(settings: ApiSettings, port: int = 0, log_level: str = "warning") -> AsyncIterator[int]:
    server = ServerThread(create_app(settings), settings, port=port, log_level=log_level)
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(wait_http_ready, server.port, 20.0, interval=0.05)
        yield server.port
    finally:
        await asyncio.to_thread(server.stop)


def ws_url(port: int, token: str, vendor: str) -> str:
    return f"ws://127.0.0.1:{port}{WS_PATH}?token={token}&vendor_id={vendor}"


async def recv_type(ws: ClientConnection, kind: str, within: float = 10.0, **match: Any) -> dict[str, Any]:
    """The next message of `kind` (whose data matches `match`), skipping the others and answering
    pings as a dashboard would."""
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {kind} {match} within {within} s"
        try:
            message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), remaining))
        except TimeoutError:
            raise AssertionError(f"no {kind} {match} within {within} s") from None
        if message["type"] == kind and all(message["data"].get(k) == v for k, v in match.items()):
            return message
        if message["type"] == "ping":
            pong = {"type": "pong", "data": {"id": message["data"]["id"]}, "timestamp": message["timestamp"]}
            await ws.send(orjson.dumps(pong).decode())


async def test_every_message_type_live(
    kafka_bootstrap: str, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await produce(kafka_bootstrap, topics.metrics, [("va", snapshot("va", 2)), ("va", snapshot("va", 3))])
    settings = settings_for(kafka_bootstrap, topics, heartbeat_seconds=0.5, refresh_seconds=0.8)
    token = make_token("va", settings=settings)
    async with running_api(settings, log_level="info") as port:
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await http.get(
                "/api/v1/analytics/vendors/va/metrics", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200
            assert response.json()["version"] == 3
        async with connect(ws_url(port, token, "va"), proxy=None) as ws:
            status = orjson.loads(await ws.recv())
            assert status["type"] == "connection_status"
            assert status["data"]["status"] == "connected"
            assert (await recv_type(ws, "analytics_update"))["data"]["version"] == 3
            await produce(kafka_bootstrap, topics.metrics, [("va", snapshot("va", 4))])
            update = await recv_type(ws, "metrics_update")
            assert update["data"]["version"] == 4
            assert update["data"]["metrics"]["orders"]["current"] == 4
            order = {
                "vendorId": "va",
                "eventId": "e1",
                "orderId": "o1",
                "customerId": "c1",
                "currency": "EUR",
                "total": 1500,
                "items": 2,
                "occurredAt": "2026-11-25T12:00:00.000Z",
                "version": 5,
            }
            await produce(kafka_bootstrap, topics.activity, [("va", order)])
            received = (await recv_type(ws, "new_order"))["data"]
            cursor = received.pop("cursor")  # its vendor-activity "<partition>:<offset>" (api.resume)
            assert received == order
            assert cursor == f"{partition_for(b'va', 6)}:0"
            await ws.send(
                orjson.dumps(
                    {"type": "ping", "data": {"n": 1}, "timestamp": "2026-11-25T12:00:00.000Z"}
                ).decode()
            )
            assert (await recv_type(ws, "pong"))["data"] == {"n": 1}
            await ws.send('{"type": "refresh", "data": null, "timestamp": "2026-11-25T12:00:00.000Z"}')
            assert (await recv_type(ws, "analytics_update"))["data"]["version"] == 4
            ping = await recv_type(ws, "ping")
            await ws.send(
                orjson.dumps({"type": "pong", "data": {"id": ping["data"]["id"]}, "timestamp": "t"}).decode()
            )
            assert (await recv_type(ws, "ping"))["data"]["rttMs"] is not None
            periodic = [await recv_type(ws, "analytics_update", within=3) for _ in range(2)]
            assert [m["data"]["version"] for m in periodic] == [4, 4]
            await ws.send("{broken")
            assert (await recv_type(ws, "error"))["data"]["code"] == "bad_message"
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            metrics = (await http.get("/metrics")).text
        assert f'vendorpulse_consumer_lag{{topic="{topics.metrics}"}} 0.0' in metrics
    assert "WebSocket" in caplog.text
    assert "token=REDACTED" in caplog.text
    assert token not in caplog.text


def slow_socket(port: int) -> socket.socket:
    """A client socket with a tiny receive buffer: once its reader stops, the server must wait."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_slow_client_gets_the_newest_snapshot_and_does_not_delay_a_fast_one(
    kafka_bootstrap: str, topics: Topics
) -> None:
    settings = settings_for(kafka_bootstrap, topics)
    token = make_token("vs", settings=settings)
    total = 60
    async with running_api(settings) as port:
        fast_client = connect(ws_url(port, token, "vs"), proxy=None, max_size=2**22)
        slow_client = connect(
            ws_url(port, token, "vs"), proxy=None, max_size=2**22, max_queue=1, sock=slow_socket(port)
        )
        async with fast_client as fast, slow_client as slow:
            await recv_type(fast, "analytics_update")
            await recv_type(slow, "analytics_update")  # then the slow client stops reading
            await produce(
                kafka_bootstrap,
                topics.metrics,
                [("vs", snapshot("vs", v, padding=256_000)) for v in range(1, total + 1)],
            )
            produced = time.monotonic()
            fast_versions: list[int] = []
            while not fast_versions or fast_versions[-1] < total:
                fast_versions.append((await recv_type(fast, "metrics_update"))["data"]["version"])
            assert time.monotonic() - produced < 10.0  # while the slow client still reads nothing
            assert fast_versions == sorted(set(fast_versions))
            slow_versions: list[int] = []
            while not slow_versions or slow_versions[-1] < total:
                slow_versions.append((await recv_type(slow, "metrics_update"))["data"]["version"])
            assert slow_versions == sorted(set(slow_versions))
            assert slow_versions[-1] == total
            assert len(slow_versions) < total // 2, slow_versions  # the latest state, not a backlog


async def test_two_instances_both_deliver_one_broadcast(kafka_bootstrap: str, topics: Topics) -> None:
    one = settings_for(kafka_bootstrap, topics, instance_id="api-one")
    two = settings_for(kafka_bootstrap, topics, instance_id="api-two")
    admin = make_token(None, admin=True, settings=one)
    async with running_api(one) as port_one, running_api(two) as port_two:
        clients = (
            connect(ws_url(port_one, make_token("v1", settings=one), "v1"), proxy=None),
            connect(ws_url(port_two, make_token("v1", ttl=1800, settings=two), "v1"), proxy=None),
            connect(ws_url(port_two, make_token("v2", settings=two), "v2"), proxy=None),
        )
        async with clients[0] as a, clients[1] as b, clients[2] as c:
            for ws in (a, b, c):
                await recv_type(ws, "analytics_update")
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port_one}") as http:
                headers = {"Authorization": f"Bearer {admin}"}
                sent = await http.post(
                    "/api/v1/analytics/websocket/test-broadcast",
                    headers=headers,
                    json={"message": "hello all"},
                )
                assert sent.status_code == 202
                everyone = sent.json()["broadcastId"]
                for ws in (a, b, c):
                    got = await recv_type(ws, "connection_status", status="broadcast")
                    assert got["data"]["message"] == "hello all"
                    assert got["data"]["broadcastId"] == everyone
                    assert got["data"]["origin"] == "api-one"
                sent = await http.post(
                    "/api/v1/analytics/websocket/test-broadcast",
                    headers=headers,
                    json={"message": "v1 only", "vendor_id": "v1"},
                )
                only_v1 = sent.json()["broadcastId"]
                for ws in (a, b):
                    assert (await recv_type(ws, "connection_status", status="broadcast"))["data"][
                        "broadcastId"
                    ] == only_v1
                with pytest.raises(AssertionError, match="no connection_status"):
                    await recv_type(c, "connection_status", within=1.0, status="broadcast")
                status = (await http.get("/api/v1/analytics/websocket/status", headers=headers)).json()
                assert status["instance"] == "api-one"
                assert status["connections"]["perVendor"] == {"v1": 1}


async def test_restart_clients_reconnect_and_receive_current_data(
    kafka_bootstrap: str, topics: Topics
) -> None:
    settings = settings_for(kafka_bootstrap, topics)
    token = make_token("vr", settings=settings)
    await produce(kafka_bootstrap, topics.metrics, [("vr", snapshot("vr", 1))])
    async with running_api(settings) as port:
        ws = await connect(ws_url(port, token, "vr"), proxy=None)
        assert (await recv_type(ws, "analytics_update"))["data"]["version"] == 1
    with pytest.raises(ConnectionClosed) as closed:  # the server went away under the client
        await recv_type(ws, "never")
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
    await produce(kafka_bootstrap, topics.metrics, [("vr", snapshot("vr", 2))])  # while the API is down
    async with running_api(settings, port=port), connect(ws_url(port, token, "vr"), proxy=None) as again:
        assert (await recv_type(again, "analytics_update"))["data"]["version"] == 2


async def test_readyz_waits_for_the_worker_topics(kafka_bootstrap: str) -> None:
    missing = Topics.for_prefix(f"absent{time.time_ns()}-")
    settings = settings_for(kafka_bootstrap, missing)
    server = ServerThread(create_app(settings), settings)
    await asyncio.to_thread(server.start)
    try:
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            await asyncio.sleep(1.0)
            response = await http.get("/readyz")
            assert response.status_code == 503
            assert response.json()["waitingForTopics"] == [missing.metrics, missing.activity]
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await asyncio.to_thread(server.stop)
