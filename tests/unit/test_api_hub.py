"""The hub's connections: one shared frame per update, newest snapshot only for a client that stopped
reading, versions never going back, a blocked client never delaying another, bounded event queues."""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

from api.connection import Connection, State
from api.frames import OutFrame, VendorSnapshot, text_frame
from api.hub import REFRESH_SLICES, Hub
from api.protocol import Close, Out
from api.telemetry import Telemetry
from api.uvicorn_ws import HubWebSocketProtocol
from tests.fakes import RecordingSink, snapshot


def connect(hub: Hub, vendor: str = "v1", queue_size: int = 64) -> tuple[Connection, RecordingSink]:
    sink = RecordingSink()
    conn = Connection(vendor, sink, hub.telemetry, queue_size, close_grace=0.05)
    hub.add(conn)
    return conn, sink


def dropped(hub: Hub, kind: str) -> float | None:
    return hub.telemetry.registry.get_sample_value("vendorpulse_ws_messages_dropped_total", {"type": kind})


async def test_one_update_is_one_shared_frame_written_at_once_to_every_reading_client() -> None:
    hub = Hub(Telemetry(), snapshot)
    hub.caught_up = True
    sinks = [connect(hub)[1] for _ in range(3)]
    written: list[bytes] = []
    for sink in sinks:
        write = sink.write
        sink.write = lambda frame, write=write: (written.append(frame.wire), write(frame))[1]  # type: ignore[method-assign]
    hub.publish_snapshot(snapshot("v1", 7))
    assert [s.versions() for s in sinks] == [[7], [7], [7]]  # no await: written during the fan-out
    assert len({id(w) for w in written}) == 1  # the same bytes object for all three
    assert hub.telemetry.messages_sent == 6  # 3 analytics_update on connect + 3 metrics_update


async def test_slow_client_gets_only_the_newest_snapshot_and_never_delays_a_fast_one() -> None:
    hub = Hub(Telemetry(), snapshot)
    hub.caught_up = True
    fast = connect(hub)[1]
    slow = connect(hub)[1]
    hub.publish_snapshot(snapshot("v1", 1))
    slow.block()  # the slow client stops reading
    for version in range(2, 201):
        hub.publish_snapshot(snapshot("v1", version))
    assert fast.versions() == list(range(1, 201))
    assert slow.versions() == [1]
    slow.drain()
    # afterwards it gets the newest, not a backlog of 199
    assert slow.versions() == [1, 200]
    assert dropped(hub, "metrics_update") == 198


async def test_versions_never_go_back_per_connection() -> None:
    hub = Hub(Telemetry(), snapshot)
    hub.caught_up = True
    conn, sink = connect(hub)
    assert conn.update(VendorSnapshot("v1", 5, "a", b'{"version":5}'))
    assert not conn.update(VendorSnapshot("v1", 4, "a", b'{"version":4}'))
    assert not conn.update(VendorSnapshot("v1", 5, "b", b'{"version":5}'))
    hub.send_analytics(conn)  # the hub holds no snapshot: zero-filled version 0 < 5, not sent
    sink.block()
    conn.update(VendorSnapshot("v1", 9, "a", b'{"version":9}'))
    conn.full(VendorSnapshot("v1", 8, "a", b'{"version":8}'))  # older than the one waiting: refused
    conn.update(VendorSnapshot("v1", 6, "a", b'{"version":6}'))
    sink.drain()
    assert sink.versions() == [5, 9]
    assert sink.versions("analytics_update") == [0]  # only the one sent on connect
    conn.full(VendorSnapshot("v1", 9, "a", b'{"version":9}'))  # a full refresh may repeat it
    assert [(f["type"], f["data"]["version"]) for f in sink.frames[-1:]] == [("analytics_update", 9)]


async def test_a_client_behind_the_order_feed_is_closed_to_resume_never_silently_dropped() -> None:
    hub = Hub(Telemetry(), snapshot)
    conn, sink = connect(hub, queue_size=3)
    sink.block()
    for n in range(10):
        hub.publish_event("v1", Out.NEW_ORDER, {"n": n})
    assert conn.state is State.CLOSING
    assert not conn.closing.done()
    sink.drain()
    await asyncio.wait_for(conn.closing, 1)
    # what it got (queued frames are not sent once closing) has no hole; the rest comes through
    # resume_after on the reconnect
    got = [f["data"]["n"] for f in sink.frames if f["type"] == "new_order"]
    assert got == []
    assert sink.frames[-1]["type"] == "error"
    assert sink.frames[-1]["data"]["code"] == "slow_consumer"
    assert conn.close_with == (1013, "slow consumer")
    assert hub.telemetry.registry.get_sample_value("vendorpulse_ws_closes_total", {"code": "1013"}) == 1


async def test_events_keep_their_order_behind_a_blocked_socket() -> None:
    hub = Hub(Telemetry(), snapshot)
    conn, sink = connect(hub, queue_size=100)
    hub.publish_event("v1", Out.NEW_ORDER, {"n": 0})
    sink.block()
    for n in range(1, 50):
        hub.publish_event("v1", Out.NEW_ORDER, {"n": n})
    conn.control(Out.PONG, '{"type":"pong","data":{},"timestamp":"t"}')
    sink.drain()
    assert [f["data"].get("n") for f in sink.frames] == [0, None, *range(1, 50)]  # control first
    assert conn.state is State.OPEN


async def test_close_sends_queued_control_frames_then_closes() -> None:
    hub = Hub(Telemetry(), snapshot)
    conn, sink = connect(hub)
    conn.close(
        Close.UNAUTHORIZED,
        "token expired",
        '{"type":"error","data":{"code":"token_expired"},"timestamp":"t"}',
    )
    await asyncio.wait_for(conn.closing, 1)
    assert sink.frames[-1]["type"] == "error"
    assert conn.close_with == (4001, "token expired")
    hub.publish_event("v1", Out.NEW_ORDER, {"late": True})
    assert all(f["type"] != "new_order" for f in sink.frames)


async def test_a_socket_that_never_takes_the_close_is_aborted_after_the_grace() -> None:
    hub = Hub(Telemetry(), snapshot)
    conn, sink = connect(hub)
    sink.block()
    conn.close(Close.HEARTBEAT_TIMEOUT, "missed pongs")
    await asyncio.wait_for(conn.closing, 1)
    assert sink.aborted
    assert conn.state is State.CLOSED


async def test_no_pushes_while_rebuilding_then_one_full_update() -> None:
    hub = Hub(Telemetry(), snapshot)
    conn, sink = connect(hub)
    for version in (1, 2, 3):
        hub.publish_snapshot(snapshot("v1", version))
    assert sink.frames == []
    hub.mark_caught_up()
    assert [(f["type"], f["data"]["version"]) for f in sink.frames] == [("analytics_update", 3)]
    conn.detach()


def test_a_frame_header_is_what_websockets_writes_for_every_length_class() -> None:
    for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        payload = b"x" * size
        expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=())
        assert text_frame(payload) == expected == OutFrame(Out.METRICS_UPDATE, payload).wire


async def test_the_periodic_refresh_reaches_every_connection_once_per_period_one_slice_per_tick() -> None:
    hub = Hub(Telemetry(), snapshot)
    hub.caught_up = True
    pairs = [connect(hub, f"v{n % 3}") for n in range(2 * REFRESH_SLICES + 5)]
    for _, sink in pairs:
        sink.frames.clear()  # the analytics_update on connect
    per_tick = []
    for index in range(REFRESH_SLICES):
        before = sum(len(sink.frames) for _, sink in pairs)
        hub.refresh_slice(index)
        per_tick.append(sum(len(sink.frames) for _, sink in pairs) - before)
    assert [sink.kinds() for _, sink in pairs] == [["analytics_update"]] * len(pairs)  # each once
    assert max(per_tick) <= 3  # a thirtieth of them at a time, not all at once
    pairs[0][0].detach()
    hub.remove(pairs[0][0])
    hub.refresh_slice(pairs[0][0].id % REFRESH_SLICES)  # a connection gone is no longer refreshed
    assert pairs[0][1].kinds() == ["analytics_update"]


async def test_the_transports_flow_control_and_close_show_in_one_flag() -> None:
    config = uvicorn.Config(app=lambda *_: None, ws=HubWebSocketProtocol, ws_per_message_deflate=False)
    config.load()
    protocol = HubWebSocketProtocol(config, ServerState(), {})
    assert protocol.takes_data
    protocol.pause_writing()
    assert not protocol.takes_data
    protocol.resume_writing()
    assert protocol.takes_data
    protocol.close_sent = True
    assert not protocol.takes_data
    assert protocol.close_sent
    protocol.close_sent = False
    protocol.disconnected = True
    assert not protocol.takes_data
