"""The server side of resuming new_order notifications (api.resume, hub hold/release) without a broker:
cursors, the hand-over from replay to live without gap or duplicate, and the WebSocket handshake."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from api.app import WS_PATH
from api.auth import make_token
from api.connection import Connection
from api.exceptions import BadMessageError
from api.hub import Hub
from api.kafka import Feed
from api.protocol import Out, frame
from api.resume import Cursor, resume
from api.telemetry import Telemetry
from schemas.topics import partition_for
from tests.fakes import RecordingSink
from tests.unit.test_api_ws import closed_with, make_client, receive, settings


def test_cursors_parse_and_print() -> None:
    assert Cursor.parse("3:1542") == Cursor(3, 1542)
    assert str(Cursor(0, -1)) == "0:-1"
    for bad in ("", "3", "a:1", "3:-2", "3:1:2", "1:" + "9" * 30):
        with pytest.raises(BadMessageError, match="resume_after"):
            Cursor.parse(bad)


def record(partition: int, offset: int, vendor: str) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps({"vendorId": vendor, "eventId": f"e{offset}", "orderId": f"o{offset}"})
    return ConsumerRecord(
        "p-vendor-activity", partition, offset, 0, 0, vendor.encode(), value, None, 1, 1, ()
    )


class FakeReplayer:
    """Kafka as a list: what `Replayer.read` returns for a range, with an optional retention start."""

    def __init__(self, log: list[ConsumerRecord[bytes, bytes]], first: int = 0) -> None:
        self.log, self.first, self.calls = log, first, 0

    async def read(
        self, tp: TopicPartition, start: int, end: int, key: bytes
    ) -> tuple[list[ConsumerRecord[bytes, bytes]], int]:
        self.calls += 1
        await asyncio.sleep(0.01)  # live records arrive meanwhile
        begin = max(start, self.first)
        hits = [
            r for r in self.log if r.partition == tp.partition and begin <= r.offset < end and r.key == key
        ]
        return hits, begin


def setup(vendor: str) -> tuple[Feed, Hub, Connection, list[dict[str, Any]], int]:
    telemetry = Telemetry()
    hub = Hub(telemetry, lambda v: {"vendorId": v, "version": 0})
    hub.caught_up = True
    feed = Feed(settings(topic_prefix="p-"), hub, telemetry)
    feed.activity_partitions = 6
    sink = RecordingSink()
    conn = Connection(vendor, sink, telemetry)
    return feed, hub, conn, sink.frames, partition_for(vendor.encode(), 6)


async def test_replay_then_held_live_records_each_once_in_offset_order() -> None:
    feed, hub, conn, sent, p = setup("va")
    tp = TopicPartition("p-vendor-activity", p)
    log = [record(p, o, "va" if o % 3 else "other") for o in range(0, 20)]
    feed.positions[tp] = 20  # the feed delivered 0..19 before this connection existed
    conn.hold(100)
    hub.add(conn)
    replayer = FakeReplayer(log)
    task = asyncio.create_task(resume(conn, feed, replayer, Cursor(p, 4), feed.settings))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    live = [record(p, o, "va") for o in range(20, 23)]
    feed._apply({tp: live})  # arrive while the replay reads: held, then queued behind it
    await task
    feed._apply({tp: [record(p, 23, "va")]})
    for _ in range(20):
        await asyncio.sleep(0)
    orders = [m["data"]["orderId"] for m in sent if m["type"] == "new_order"]
    expected = [f"o{o}" for o in range(5, 20) if o % 3] + ["o20", "o21", "o22", "o23"]
    assert orders == expected
    status = next(m["data"] for m in sent if m["type"] == "connection_status")
    assert status == {
        "status": "resumed", "after": f"{p}:4", "replayed": 10, "skippedOffsets": 0,
        "cursor": f"{p}:19", "complete": True,
    }  # fmt: skip
    kinds = [m["type"] for m in sent]
    assert kinds[0] == "analytics_update"  # the current snapshot first
    assert kinds.index("connection_status") == 11  # after the 10 replayed ones, before the live ones
    assert [m["data"]["cursor"] for m in sent if m["type"] == "new_order"][-1] == f"{p}:23"


async def test_gaps_are_reported_and_a_lagging_feed_sends_nothing_twice() -> None:
    feed, hub, conn, sent, p = setup("vb")
    tp = TopicPartition("p-vendor-activity", p)
    feed.positions[tp] = 50
    conn.hold(100)
    hub.add(conn)
    log = [record(p, o, "vb") for o in range(0, 50)]
    s = feed.settings.model_copy(update={"resume_max_records": 20})
    await resume(conn, feed, FakeReplayer(log, first=35), Cursor(p, 9), s)  # type: ignore[arg-type]
    for _ in range(20):
        await asyncio.sleep(0)
    status = next(m["data"] for m in sent if m["type"] == "connection_status")
    assert status["complete"] is False
    assert status["skippedOffsets"] == 25  # 10..29 beyond the limit, 30..34 past retention
    assert [m["data"]["orderId"] for m in sent if m["type"] == "new_order"] == [
        f"o{o}" for o in range(35, 50)
    ]

    # A client ahead of this instance's feed (it came from a faster instance): nothing at or below its
    # cursor is delivered again when the feed catches up.
    feed, hub, conn, sent, p = setup("vc")
    tp = TopicPartition("p-vendor-activity", p)
    feed.positions[tp] = 10
    conn.hold(100)
    hub.add(conn)
    await resume(conn, feed, FakeReplayer([]), Cursor(p, 14), feed.settings)  # type: ignore[arg-type]
    feed._apply({tp: [record(p, o, "vc") for o in range(10, 17)]})
    for _ in range(20):
        await asyncio.sleep(0)
    assert [m["data"]["orderId"] for m in sent if m["type"] == "new_order"] == ["o15", "o16"]


async def test_without_kafka_the_resume_says_it_is_incomplete_and_goes_live() -> None:
    _, hub, conn, sent, _ = setup("vd")
    conn.hold(10)
    hub.add(conn)
    hub.publish_event("vd", Out.NEW_ORDER, {"orderId": "live"}, (0, 7))
    await resume(conn, None, None, Cursor(0, 3), settings())
    for _ in range(20):
        await asyncio.sleep(0)
    kinds = [(m["type"], m["data"].get("status") or m["data"].get("orderId")) for m in sent]
    assert ("connection_status", "resumed") in kinds
    assert kinds[-1] == ("new_order", "live")
    status = next(m["data"] for m in sent if m["type"] == "connection_status")
    assert status["complete"] is False
    assert "without Kafka" in status["reason"]
    assert frame(Out.PING, {}).startswith('{"type":"ping"')


def test_handshake_resume_after_and_same_origin() -> None:
    client, _, s = make_client(heartbeat_seconds=60, refresh_seconds=60)
    token = make_token("v1", settings=s)
    with client:
        with client.websocket_connect(f"{WS_PATH}?token={token}&vendor_id=v1&resume_after=junk") as ws:
            assert closed_with(ws) == 4000
        with client.websocket_connect(f"{WS_PATH}?token={token}&vendor_id=v1&resume_after=2:40") as ws:
            connected = receive(ws, "connection_status")["data"]
            assert connected["status"] == "connected"
            assert connected["cursor"] is None  # resuming: the `resumed` status carries it
            receive(ws, "analytics_update")
            resumed = receive(ws, "connection_status")["data"]
            assert resumed["status"] == "resumed"
            assert resumed["complete"] is False  # this app runs without Kafka
        # The dashboard the API serves connects from the API's own origin: allowed without configuration.
        headers = {"Origin": "http://testserver"}
        with client.websocket_connect(f"{WS_PATH}?token={token}&vendor_id=v1", headers=headers) as ws:
            assert receive(ws, "analytics_update")["data"]["vendorId"] == "v1"
        page = client.get("/dashboard")
        assert page.status_code == 200
        assert "/static/vendorpulse-client.js" in page.text
        assert client.get("/static/vendor/chartjs/LICENSE.md").text.startswith("The MIT License")
