"""The WebSocket protocol of contract §6 through Starlette's TestClient (no broker: the hub is fed
directly, as the Kafka feed would)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from api.app import WS_PATH, create_app
from api.auth import make_token
from api.hub import Hub
from api.protocol import Out
from api.settings import ApiSettings, api_settings
from tests.fakes import snapshot

SECRET = "k" * 48
T = TypeVar("T")


def settings(**overrides: Any) -> ApiSettings:
    base: dict[str, Any] = {"env": "test", "jwt_secret": SECRET, "jwt_leeway_seconds": 0}
    return api_settings(**(base | overrides))


def make_client(**overrides: Any) -> tuple[TestClient, FastAPI, ApiSettings]:
    s = settings(**overrides)
    app = create_app(s, kafka=False)
    return TestClient(app), app, s


@pytest.fixture
def env() -> Iterator[tuple[TestClient, Hub, ApiSettings]]:
    client, app, s = make_client(heartbeat_seconds=60, refresh_seconds=60)
    with client:
        yield client, app.state.hub, s


def connect(
    client: TestClient, s: ApiSettings, vendor: str = "v1", token: str | None = None, **kw: Any
) -> WebSocketTestSession:
    token = token or make_token(vendor, settings=s)
    return client.websocket_connect(f"{WS_PATH}?token={token}&vendor_id={vendor}", **kw)


def receive(ws: WebSocketTestSession, kind: str, limit: int = 20) -> dict[str, Any]:
    """The next message of `kind`, skipping heartbeats and periodic refreshes."""
    for _ in range(limit):
        message: dict[str, Any] = ws.receive_json()
        assert set(message) == {"type", "data", "timestamp"}
        assert message["timestamp"].endswith("Z")
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} within {limit} messages")


def on_loop(client: TestClient, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` on the app's event loop, as the Kafka feed does (the hub writes to sockets at once)."""
    assert client.portal is not None, "use the client as a context manager"
    return client.portal.call(fn, *args)


def closed_with(ws: WebSocketTestSession, limit: int = 50) -> int:
    for _ in range(limit):
        try:
            ws.receive_json()
        except WebSocketDisconnect as exc:
            return exc.code
    raise AssertionError("connection was not closed")


def test_connect_sends_status_then_the_latest_snapshot(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, hub, s = env
    on_loop(client, hub.publish_snapshot, snapshot("v1", 7, revenue=1234))
    with connect(client, s) as ws:
        status = ws.receive_json()
        assert status["type"] == "connection_status"
        assert status["data"]["status"] == "connected"
        assert status["data"]["vendorId"] == "v1"
        first = ws.receive_json()
        assert first["type"] == "analytics_update"
        assert first["data"]["version"] == 7
        assert first["data"]["metrics"]["revenue"]["current"] == 1234


def test_vendor_without_events_gets_a_zero_filled_snapshot(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, _, s = env
    with connect(client, s, vendor="fresh") as ws:
        data = receive(ws, "analytics_update")["data"]
    assert data["vendorId"] == "fresh"
    assert data["version"] == 0
    assert data["metrics"]["revenue"]["current"] == 0
    assert len(data["monthlyTrends"]) == 12


def test_token_in_the_authorization_header(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, _, s = env
    headers = {"Authorization": f"Bearer {make_token('v1', settings=s)}"}
    with client.websocket_connect(f"{WS_PATH}?vendor_id=v1", headers=headers) as ws:
        assert receive(ws, "analytics_update")["data"]["vendorId"] == "v1"


def test_metrics_update_on_change_coalesced_and_never_older(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, hub, s = env
    on_loop(client, hub.publish_snapshot, snapshot("v1", 1))
    with connect(client, s) as ws:
        assert receive(ws, "analytics_update")["data"]["version"] == 1
        assert on_loop(client, hub.publish_snapshot, snapshot("v1", 3))
        assert not on_loop(client, hub.publish_snapshot, snapshot("v1", 2))  # older: dropped by the hub
        on_loop(client, hub.publish_snapshot, snapshot("v2", 9))  # another vendor: not for this client
        assert receive(ws, "metrics_update")["data"]["version"] == 3
        ws.send_json({"type": "refresh", "data": None, "timestamp": "2026-11-25T12:00:00.000Z"})
        refreshed = receive(ws, "analytics_update")["data"]
        assert refreshed["version"] == 3
        assert refreshed["vendorId"] == "v1"


def test_new_order_and_broadcast_frames(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, hub, s = env
    with connect(client, s) as ws:
        receive(ws, "analytics_update")
        order = {"vendorId": "v1", "orderId": "o-1", "total": 500, "currency": "EUR", "version": 4}
        on_loop(client, hub.publish_event, "v1", Out.NEW_ORDER, order)
        assert receive(ws, "new_order")["data"] == order
        on_loop(client, hub.broadcast, {"message": "hello", "broadcastId": "b1"}, None)
        status = receive(ws, "connection_status")["data"]
        assert status == {"status": "broadcast", "message": "hello", "broadcastId": "b1"}


def test_ping_is_answered_with_pong_echoing_data(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, _, s = env
    with connect(client, s) as ws:
        ws.send_json({"type": "ping", "data": {"n": 42}, "timestamp": "x"})
        assert receive(ws, "pong")["data"] == {"n": 42}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        ('{"type": "dance"}', "unknown type"),
        ('{"type": "pong", "data": {"id": 999}}', "pong data"),
        ('{"type": "refresh_token", "data": {}}', "refresh_token data"),
    ],
)
def test_bad_messages_get_an_error_and_the_connection_stays(
    env: tuple[TestClient, Hub, ApiSettings], raw: str, fragment: str
) -> None:
    client, _, s = env
    with connect(client, s) as ws:
        ws.send_text(raw)
        err = receive(ws, "error")["data"]
        assert err["code"] == "bad_message"
        assert fragment in err["message"]
        ws.send_json({"type": "ping", "data": 1, "timestamp": "x"})
        assert receive(ws, "pong")["data"] == 1


def test_binary_frames_get_an_error(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, _, s = env
    with connect(client, s) as ws:
        ws.send_bytes(b"\x00\x01")
        assert "binary" in receive(ws, "error")["data"]["message"]


def test_oversized_message_gets_error_then_close_1009(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, _, s = env
    with connect(client, s) as ws:
        ws.send_json({"type": "ping", "data": "x" * s.max_message_bytes, "timestamp": "x"})
        assert receive(ws, "error")["data"]["code"] == "message_too_big"
        assert closed_with(ws) == 1009


def test_rate_limit_errors_then_close_4029() -> None:
    client, _, s = make_client(messages_per_second=1, message_burst=3, heartbeat_seconds=60)
    with client, connect(client, s) as ws:
        for _ in range(4):
            ws.send_json({"type": "ping", "data": None, "timestamp": "x"})
        assert receive(ws, "error")["data"]["code"] == "rate_limited"
        for _ in range(5):
            ws.send_json({"type": "ping", "data": None, "timestamp": "x"})
        assert closed_with(ws) == 4029


def test_connections_per_token_are_limited_with_4029() -> None:
    client, _, s = make_client(max_connections_per_token=2, heartbeat_seconds=60)
    token = make_token("v1", settings=s)
    with client, connect(client, s, token=token) as a, connect(client, s, token=token) as b:
        receive(a, "analytics_update")
        receive(b, "analytics_update")
        with connect(client, s, token=token) as c:
            assert closed_with(c) == 4029
        other = make_token("v1", ttl=1800, settings=s)
        with connect(client, s, token=other) as other_token:  # another token of the same vendor is fine
            assert receive(other_token, "analytics_update")["data"]["vendorId"] == "v1"


def test_origin_allowlist_on_the_handshake() -> None:
    client, _, s = make_client(allowed_origins=["https://dash.example"])
    with client:
        with connect(client, s, headers={"Origin": "https://dash.example"}) as ws:
            assert receive(ws, "analytics_update")["data"]["vendorId"] == "v1"
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            connect(client, s, headers={"Origin": "https://evil.example"}),
        ):
            pass
        assert refused.value.code == 4003  # closed before accept: browsers see HTTP 403


def test_heartbeat_pings_measure_rtt_and_two_missed_pongs_close_4008() -> None:
    client, _, s = make_client(heartbeat_seconds=0.2, refresh_seconds=60)
    with client, connect(client, s) as ws:
        ping = receive(ws, "ping")["data"]
        ws.send_json({"type": "pong", "data": {"id": ping["id"]}, "timestamp": "x"})
        following = receive(ws, "ping")["data"]
        assert following["id"] == ping["id"] + 1
        assert following["rttMs"] is not None
        assert following["rttMs"] >= 0
        started = time.monotonic()
        assert closed_with(ws) == 4008  # no more pongs: closed after two missed
        assert time.monotonic() - started < 5.0  # 2 periods of 0.2 s, with room for a loaded machine


def test_periodic_analytics_update_follows_the_refresh_period() -> None:
    client, app, s = make_client(refresh_seconds=0.2, heartbeat_seconds=60)
    with client:
        on_loop(client, app.state.hub.publish_snapshot, snapshot("v1", 5))
        with connect(client, s) as ws:
            times = []
            for _ in range(3):
                assert receive(ws, "analytics_update")["data"]["version"] == 5
                times.append(time.monotonic())
            assert 0.1 < times[2] - times[1] < 3.0  # the 0.2 s period, not the 30 s default


def test_expiring_token_gets_error_then_4001() -> None:
    client, _, s = make_client(heartbeat_seconds=60)
    with client, connect(client, s, token=make_token("v1", ttl=1, settings=s)) as ws:
        assert receive(ws, "error")["data"]["code"] == "token_expired"
        assert closed_with(ws) == 4001


def test_refresh_token_before_expiry_keeps_the_connection() -> None:
    client, _, s = make_client(heartbeat_seconds=60)
    with client, connect(client, s, token=make_token("v1", ttl=1, settings=s)) as ws:
        receive(ws, "analytics_update")
        ws.send_json({"type": "refresh_token", "data": {"token": "garbage"}, "timestamp": "x"})
        assert receive(ws, "error")["data"]["code"] == "invalid_token"
        fresh = make_token("v1", ttl=60, settings=s)
        ws.send_json({"type": "refresh_token", "data": {"token": fresh}, "timestamp": "x"})
        assert receive(ws, "connection_status")["data"]["status"] == "token_refreshed"
        time.sleep(1.5)  # past the first token's expiry
        ws.send_json({"type": "ping", "data": "alive", "timestamp": "x"})
        assert receive(ws, "pong")["data"] == "alive"


def test_refresh_token_for_another_vendor_closes_4003(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, _, s = env
    with connect(client, s) as ws:
        receive(ws, "analytics_update")
        other = make_token("v2", settings=s)
        ws.send_json({"type": "refresh_token", "data": {"token": other}, "timestamp": "x"})
        assert receive(ws, "error")["data"]["code"] == "forbidden"
        assert closed_with(ws) == 4003


def test_status_and_prometheus_report_connections(env: tuple[TestClient, Hub, ApiSettings]) -> None:
    client, _, s = env
    admin = {"Authorization": f"Bearer {make_token(None, admin=True, settings=s)}"}
    with connect(client, s, vendor="v1") as a, connect(client, s, vendor="v2") as b:
        receive(a, "analytics_update")
        receive(b, "analytics_update")
        body = client.get("/api/v1/analytics/websocket/status", headers=admin).json()
        assert body["connections"] == {"total": 2, "perVendor": {"v1": 1, "v2": 1}}
        assert body["messagesSent"] >= 4
        assert body["sendLatencyMs"]["p99"] is not None
        assert body["uptimeSeconds"] > 0
        text = client.get("/metrics").text
        assert "vendorpulse_ws_connections 2.0" in text
        assert 'vendorpulse_ws_vendor_connections{vendor_id="v2"} 1.0' in text
        assert 'vendorpulse_ws_messages_sent_total{type="analytics_update"}' in text
        assert "vendorpulse_ws_send_latency_seconds_bucket" in text
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
