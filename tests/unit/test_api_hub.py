"""The hub's per-connection writers: newest snapshot only, versions never going back, a blocked
client never delaying another, bounded event queues."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from api.hub import Connection, Hub
from api.protocol import Close, Out
from api.telemetry import Telemetry


class FakeSocket:
    """Records what a connection's writer sends; `gate` cleared = a client that stopped reading."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()

    async def send(self, text: str) -> None:
        await self.gate.wait()
        self.frames.append(orjson.loads(text))
        self.arrived.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def versions(self, kind: str = "metrics_update") -> list[int]:
        return [f["data"]["version"] for f in self.frames if f["type"] == kind]


def zero(vendor: str) -> dict[str, Any]:
    return {"vendorId": vendor, "version": 0, "asOf": "2026-01-01T00:00:00.000Z"}


def snap(vendor: str, version: int) -> dict[str, Any]:
    return {"vendorId": vendor, "version": version, "asOf": "2026-11-25T00:00:00.000Z"}


def connect(hub: Hub, vendor: str = "v1", queue_size: int = 64) -> tuple[Connection, FakeSocket]:
    sock = FakeSocket()
    conn = Connection(vendor, sock.send, sock.close, hub.telemetry, queue_size)
    conn.start()
    hub.add(conn)
    return conn, sock


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_slow_client_gets_only_the_newest_snapshot_and_never_delays_a_fast_one() -> None:
    hub = Hub(Telemetry(), zero)
    hub.caught_up = True
    fast_conn, fast = connect(hub)
    slow_conn, slow = connect(hub)
    await settle()
    slow.gate.clear()  # the slow client stops reading
    for version in range(1, 201):
        hub.publish_snapshot(snap("v1", version))
        await settle()
    assert fast.versions()[-1] == 200
    assert fast.versions() == sorted(set(fast.versions()))
    slow.gate.set()
    await settle()
    # the slow client was blocked on version 1; afterwards it gets the newest, not a backlog of 199
    assert slow.versions() == [1, 200]
    for conn in (fast_conn, slow_conn):
        conn.abort()


async def test_versions_never_go_back_per_connection() -> None:
    hub = Hub(Telemetry(), zero)
    hub.caught_up = True
    conn, sock = connect(hub)
    await settle()
    conn.snapshot(
        Out.METRICS_UPDATE, 5, orjson.dumps({"type": "metrics_update", "data": snap("v1", 5)}).decode()
    )
    await settle()
    conn.snapshot(
        Out.METRICS_UPDATE, 4, orjson.dumps({"type": "metrics_update", "data": snap("v1", 4)}).decode()
    )
    conn.snapshot(
        Out.METRICS_UPDATE, 5, orjson.dumps({"type": "metrics_update", "data": snap("v1", 5)}).decode()
    )
    hub.send_analytics(conn)  # the hub holds no snapshot: zero-filled version 0 < 5, not sent
    await settle()
    assert sock.versions() == [5]
    assert sock.versions("analytics_update") == [0]  # only the one sent on connect
    conn.abort()


async def test_a_client_behind_the_order_feed_is_closed_to_resume_never_silently_dropped() -> None:
    hub = Hub(Telemetry(), zero)
    conn, sock = connect(hub, queue_size=3)
    await settle()
    sock.gate.clear()
    for n in range(10):
        hub.publish_event("v1", Out.NEW_ORDER, {"n": n})
    await settle()
    sock.gate.set()
    assert conn.writer is not None
    await asyncio.wait_for(conn.writer, 1)
    # what it got (queued frames are not sent once closing) has no hole; the rest comes through
    # resume_after on the reconnect
    got = [f["data"]["n"] for f in sock.frames if f["type"] == "new_order"]
    assert got == list(range(len(got)))
    assert sock.frames[-1]["type"] == "error"
    assert sock.frames[-1]["data"]["code"] == "slow_consumer"
    assert sock.closed == (1013, "slow consumer")


async def test_close_sends_queued_control_frames_then_closes() -> None:
    hub = Hub(Telemetry(), zero)
    conn, sock = connect(hub)
    conn.close(
        Close.UNAUTHORIZED,
        "token expired",
        '{"type":"error","data":{"code":"token_expired"},"timestamp":"t"}',
    )
    assert conn.writer is not None
    await asyncio.wait_for(conn.writer, 1)
    assert sock.frames[-1]["type"] == "error"
    assert sock.closed == (4001, "token expired")
    hub.publish_event("v1", Out.NEW_ORDER, {"late": True})
    assert all(f["type"] != "new_order" for f in sock.frames)


async def test_no_pushes_while_rebuilding_then_one_full_update() -> None:
    hub = Hub(Telemetry(), zero)
    conn, sock = connect(hub)
    for version in (1, 2, 3):
        hub.publish_snapshot(snap("v1", version))
    await settle()
    assert sock.frames == []
    hub.mark_caught_up()
    await settle()
    assert [(f["type"], f["data"]["version"]) for f in sock.frames] == [("analytics_update", 3)]
    conn.abort()
