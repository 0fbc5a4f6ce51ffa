"""What the Kafka feed does with the records it reads (no broker: records handed to it directly)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition

from api.connection import Connection
from api.hub import Hub
from api.kafka import Feed
from api.settings import api_settings
from api.telemetry import Telemetry
from tests.fakes import RecordingSink

SETTINGS = api_settings(env="dev", topic_prefix="p-")


def record(topic: str, offset: int, key: str, value: Any) -> ConsumerRecord[bytes, bytes]:
    raw = None if value is None else value if isinstance(value, bytes) else orjson.dumps(value)
    return ConsumerRecord(topic, 0, offset, 0, 0, key.encode(), raw, None, len(key), len(raw or b""), ())


def feed() -> tuple[Feed, Hub]:
    telemetry = Telemetry()
    hub = Hub(telemetry, lambda v: {"vendorId": v, "version": 0})
    return Feed(SETTINGS, hub, telemetry), hub


def test_snapshots_keep_the_newest_per_vendor_and_tombstones_forget() -> None:
    f, hub = feed()
    tp = TopicPartition("p-vendor-metrics", 0)
    snaps = [{"vendorId": "a", "version": v, "asOf": "2026-11-25T00:00:00.000Z"} for v in (1, 3, 2)]
    f._apply({tp: [record(tp.topic, i, "a", s) for i, s in enumerate(snaps)]})
    assert hub.snapshots["a"].version == 2  # the batch is coalesced to its last record, which is older...
    f._apply({tp: [record(tp.topic, 3, "a", {"vendorId": "a", "version": 5, "asOf": "x"})]})
    assert hub.snapshots["a"].version == 5
    f._apply({tp: [record(tp.topic, 4, "a", {"vendorId": "a", "version": 4, "asOf": "y"})]})
    assert hub.snapshots["a"].version == 5  # ...and an older version never replaces a newer one
    assert f.positions[tp] == 5
    f._apply({tp: [record(tp.topic, 5, "a", None)]})
    assert "a" not in hub.snapshots


def test_unreadable_records_are_counted_and_skipped() -> None:
    f, hub = feed()
    tp = TopicPartition("p-vendor-metrics", 0)
    bad = [
        b"{not json",
        {"vendorId": "b"},
        {"vendorId": "c", "version": "7"},
        b'{"vendorId":"d","version":1,"metrics":{"orders":',  # the head is fine, the rest is cut off
        b"[1, 2]",
    ]
    f._apply({tp: [record(tp.topic, n, f"k{n}", value) for n, value in enumerate(bad)]})
    assert hub.snapshots == {}
    assert hub.telemetry.registry.get_sample_value(
        "vendorpulse_consumer_bad_records_total", {"topic": tp.topic}
    ) == len(bad)
    good = b'{"vendorId":"e","asOf":"2026-11-25T00:00:00.000Z","metrics":{"x":[1,{"y":null}]},"version":3}'
    f._apply({tp: [record(tp.topic, 9, "e", good)]})
    assert hub.snapshots["e"].version == 3
    assert hub.latest("e") == (3, good)  # passed on as read, never re-encoded


async def test_activity_and_broadcast_records_reach_the_vendor_connections() -> None:
    f, hub = feed()
    sinks = {"a": RecordingSink(), "b": RecordingSink()}
    frames = {vendor: sink.frames for vendor, sink in sinks.items()}
    conns = []
    for vendor, sink in sinks.items():
        conn = Connection(vendor, sink, hub.telemetry)
        hub.add(conn)
        conns.append(conn)
    order = {"vendorId": "a", "orderId": "o1", "total": 5}
    f._apply({TopicPartition("p-vendor-activity", 2): [record("p-vendor-activity", 0, "a", order)]})
    note = {"id": "b1", "message": "hi", "vendorId": None, "sentAt": "t", "origin": "api-1"}
    f._apply({TopicPartition("p-api-broadcast", 0): [record("p-api-broadcast", 0, "", note)]})
    for _ in range(5):
        await asyncio.sleep(0)
    assert [(m["type"], m["data"]) for m in frames["a"]] == [
        ("new_order", order | {"cursor": "0:0"}),  # its vendor-activity partition:offset (api.resume)
        (
            "connection_status",
            {
                "status": "broadcast",
                "message": "hi",
                "broadcastId": "b1",
                "vendorId": None,
                "sentAt": "t",
                "origin": "api-1",
            },
        ),
    ]
    assert [m["type"] for m in frames["b"]] == ["connection_status"]
    for conn in conns:
        conn.detach()
