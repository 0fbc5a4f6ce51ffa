"""The worker's per-message logic without Kafka: DLQ records, redelivery, snapshots, coalescing."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson

from processors.worker.vendor_log import restore
from processors.worker.vendors import VendorStates
from schemas.codec import FastavroCodec
from schemas.events import InventoryAdjusted, OrderItem, OrderPlaced, ProductUpserted

codec = FastavroCodec()
NOW = int(time.time() * 1000)
DLQ = {"orders": "orders.dlq", "inventory": "inventory.dlq"}


def make_vendor_states(
    interval_ms: int = 50, table: dict[bytes, bytes] | None = None, clock: str = "wall"
) -> VendorStates:
    """The worker's vendor states over an empty table (a dict)."""
    table = table if table is not None else {}
    return VendorStates(
        codec, orders_topic="orders", inventory_topic="inventory", metrics_topic="vendor-metrics",
        activity_topic="vendor-activity", dlq_topics=DLQ, load=lambda v, p: restore(v, p, table.get, codec),
        snapshot_interval_ms=interval_ms, clock=clock,
    )  # fmt: skip


def order(
    event_id: str = "e1", order_id: str = "o1", currency: str = "EUR", quantity: int = 2
) -> OrderPlaced:
    return OrderPlaced(
        event_id,
        NOW - 1000,
        "v1",
        order_id,
        "c1",
        currency,
        2 * 500,
        (OrderItem("p1", "Books", quantity, 500),),
    )


def test_an_order_is_applied_announced_and_snapshotted() -> None:
    states = make_vendor_states()
    out = states.handle("orders", 2, 10, b"v1", codec.encode(order()))
    assert [r.topic for r in out] == ["vendor-activity"]
    assert orjson.loads(out[0].value or b"")["orderId"] == "o1"
    (snap,) = states.due_snapshots(NOW)
    body = orjson.loads(snap.value or b"")
    assert (snap.key, body["version"], body["metrics"]["revenue"]["current"]) == (b"v1", 1, 1000)
    assert states.due_snapshots(NOW + 1000) == []  # nothing changed since


def test_redelivered_offsets_are_skipped() -> None:
    states = make_vendor_states()
    states.handle("orders", 0, 5, b"v1", codec.encode(order()))
    assert states.handle("orders", 0, 5, b"v1", codec.encode(order("e2", "o2"))) == []
    assert states.vendors["v1"].state.version == 1
    assert states.counts.redelivered == 1
    states.handle("orders", 0, 6, b"v1", codec.encode(order("e2", "o2")))
    assert states.vendors["v1"].state.version == 2


def test_bad_input_becomes_dlq_records_with_reasons() -> None:
    states = make_vendor_states()
    good = codec.encode(order())
    cases = {
        "bad_marker": ("orders", b"v1", b"garbage"),
        "unknown_fingerprint": ("orders", b"v1", b"\xc3\x01" + b"\x01" * 8 + good[10:]),
        "invalid_event": ("orders", b"v1", codec.encode(order("e9", "o9", quantity=-1))),
        "wrong_topic": ("inventory", b"v1", good),
        "bad_key": ("orders", b"\xff\xfe", good),
    }
    for offset, (code, (topic, key, value)) in enumerate(cases.items()):
        (record,) = states.handle(topic, 1, offset, key, value)
        headers = dict(record.headers)
        assert record.topic == DLQ[topic]
        assert (record.key, record.value) == (key, value)  # original bytes, unchanged
        assert headers["vp.error.code"] == code.encode()
        assert headers["vp.source.offset"] == str(offset).encode()
        assert headers["vp.source.topic"] == topic.encode()
    assert states.counts.dead_lettered == len(cases)


def test_snapshots_coalesce_per_vendor_interval() -> None:
    states = make_vendor_states(interval_ms=50)
    states.handle(
        "inventory",
        0,
        0,
        b"v1",
        codec.encode(ProductUpserted("u1", NOW - 5, "v1", "p1", "Pen", "Office", True)),
    )
    assert len(states.due_snapshots(NOW)) == 1
    states.handle("inventory", 0, 1, b"v1", codec.encode(InventoryAdjusted("a1", NOW - 4, "v1", "p1", 3)))
    assert states.due_snapshots(NOW + 10) == []  # within 50 ms of the last one: held back
    (late,) = states.due_snapshots(NOW + 60)
    assert orjson.loads(late.value or b"")["metrics"]["products"] == {
        "total": 1,
        "active": 1,
        "lowStock": 1,
        "outOfStock": 0,
    }


def test_flush_writes_only_changed_vendors_of_the_partition() -> None:
    states = make_vendor_states()
    states.handle("orders", 0, 0, b"v1", codec.encode(order()))
    assert states.flush(1) == []
    writes = states.flush(0)
    assert [k.split(b"\x00")[0] for k, _ in writes] == [b"v1"]
    assert states.flush(0) == []


def test_at_utc_midnight_every_vendor_is_re_emitted_as_of_the_new_day() -> None:
    day = 86_400_000
    midnight = (NOW // day + 1) * day
    states = make_vendor_states()
    placed = OrderPlaced(
        "e1", midnight - 29 * day - 1, "v1", "o1", "c1", "EUR", 700, (OrderItem("p1", "Books", 1, 700),)
    )
    states.handle("orders", 0, 0, b"v1", codec.encode(placed))
    states.due_snapshots(midnight - 1)
    assert states.roll(midnight - 1, lambda: [("v1", 0)]) == []  # first tick: learns the day
    before = snapshot_of(states.snapshot_record(states.vendors["v1"], midnight - 1).value)
    (after,) = states.roll(midnight + 5, lambda: [("v1", 0)])
    body = snapshot_of(after.value)
    assert body["asOf"].endswith("00:00:00.005Z")
    # the order was on the first day of the 30-day window; at midnight it moves to the previous one
    assert before["metrics"]["revenue"] == {"current": 700, "previous": 0, "trend": "up", "percentage": None}
    assert body["metrics"]["revenue"] == {
        "current": 0,
        "previous": 700,
        "trend": "down",
        "percentage": -100.0,
    }
    assert states.vendors["v1"].state.floor == midnight + 5  # pruned: no snapshot asks for an earlier T
    assert [key for key, _ in states.flush(0)] == [b"v1\x000000000000000000"]  # no forced checkpoint


def snapshot_of(value: bytes | None) -> dict:  # type: ignore[type-arg]
    return orjson.loads(value or b"")


def test_a_restored_vendor_is_snapshotted_even_if_all_its_input_is_redelivered() -> None:
    # The previous owner stored version 1 (offset 0) and was killed before emitting its snapshot.
    table: dict[bytes, bytes] = {}
    previous = make_vendor_states(table=table)
    previous.handle("orders", 0, 0, b"v1", codec.encode(order()))
    for key, value in previous.flush(0):
        if value is not None:
            table[key] = value
    states = make_vendor_states(table=table)
    assert states.handle("orders", 0, 0, b"v1", codec.encode(order())) == []  # redelivered: skipped
    (snap,) = states.due_snapshots(NOW)
    assert snap.key == b"v1"


def test_a_stock_alert_for_each_change_of_a_products_stock_state_in_log_order() -> None:
    """Contract §6: ok -> low -> out -> ok, with stock counted before the product's first upsert, an
    inactive product never alerting, and nothing for events that leave the state as it was."""
    states = make_vendor_states()
    events = [
        InventoryAdjusted("a1", NOW - 9000, "v1", "p1", 3),  # no catalog entry yet: "ok"
        ProductUpserted("u1", NOW - 8000, "v1", "p1", "Lamp", "Home", True, 5),  # active, 3 <= 5: low
        InventoryAdjusted("a2", NOW - 7000, "v1", "p1", -1),  # 2: still low, no alert
        InventoryAdjusted("a3", NOW - 6000, "v1", "p1", -2),  # 0: out
        InventoryAdjusted("a4", NOW - 5000, "v1", "p1", 10),  # 10 > 5: ok
        ProductUpserted("u2", NOW - 4000, "v1", "p1", "Lamp", "Home", True, 20),  # threshold 20: low
        ProductUpserted("u3", NOW - 3000, "v1", "p1", "Lamp", "Home", False, 20),  # inactive: ok
        InventoryAdjusted("a5", NOW - 2000, "v1", "p1", -10),  # 0 but inactive: ok, no alert
        ProductUpserted(
            "u4", NOW - 10_000, "v1", "p1", "Lamp", "Home", True, 20
        ),  # dated earlier, last in log order: out
        InventoryAdjusted("a5", NOW - 1000, "v1", "p1", 50),  # a duplicate event_id: ignored, no alert
    ]
    alerts = []
    for offset, e in enumerate(events):
        for record in states.handle("inventory", 0, offset, b"v1", codec.encode(e)):
            assert record.topic == "vendor-activity"
            alerts.append(orjson.loads(record.value or b""))
    assert [(a["eventId"], a["previous"], a["state"], a["stock"], a["threshold"]) for a in alerts] == [
        ("u1", "ok", "low", 3, 5),
        ("a3", "low", "out", 0, 5),
        ("a4", "out", "ok", 10, 5),
        ("u2", "ok", "low", 10, 20),
        ("u3", "low", "ok", 10, 20),
        ("u4", "ok", "out", 0, 20),
    ]
    assert {a["type"] for a in alerts} == {"stock_alert"}
    assert alerts[0]["name"] == "Lamp"
    assert alerts[0]["occurredAt"].endswith("Z")
    assert states.stock_alerts == 6


def test_with_many_vendors_due_snapshots_wait_their_turn_within_the_budget_and_none_is_lost() -> None:
    states = make_vendor_states(interval_ms=0)
    states.snapshot_budget_s = 0.0  # at least one a call, whatever the budget
    vendors = [f"v{i}" for i in range(5)]
    for offset, vendor in enumerate(vendors):
        placed = OrderPlaced(
            f"e{offset}",
            NOW - 1000,
            vendor,
            f"o{offset}",
            "c1",
            "EUR",
            100,
            (OrderItem("p1", "Books", 1, 100),),
        )
        states.handle("orders", 0, offset, vendor.encode(), codec.encode(placed))
    emitted = []
    for call in range(5):
        (record,) = states.due_snapshots(NOW + call)
        emitted.append(record.key)
    assert emitted == [v.encode() for v in vendors]  # the longest waiting first, one a call here
    assert states.due_snapshots(NOW + 10) == []
    assert states.snapshots_deferred == 4 + 3 + 2 + 1


def test_live_a_call_builds_every_due_snapshot_the_live_budget_allows_and_a_backlog_rations_them() -> None:
    def five_changed() -> VendorStates:
        states = make_vendor_states(interval_ms=0)
        for offset in range(5):
            vendor = f"v{offset}"
            placed = OrderPlaced(
                f"e{offset}",
                NOW - 1000,
                vendor,
                f"o{offset}",
                "c1",
                "EUR",
                100,
                (OrderItem("p1", "Books", 1, 100),),
            )
            states.handle("orders", 0, offset, vendor.encode(), codec.encode(placed))
        states.snapshot_cost_s = 1e-3  # so the budgets below decide, not the measured cost
        states.snapshot_budget_s = 1e-3  # a backlog: one snapshot a call
        states.live_budget_s = 10e-3  # live: ten a call
        return states

    assert len(five_changed().due_snapshots(NOW, backlog=True)) == 1
    live = five_changed()
    assert len(live.due_snapshots(NOW, backlog=False)) == 5
    assert live.snapshots_deferred == 0


# --- the stream clock (VENDORPULSE_CLOCK=stream) ---------------------------------------------------------

DAY = 86_400_000


def test_the_stream_clock_is_the_greatest_timestamp_read_and_never_goes_back() -> None:
    states = make_vendor_states(clock="stream")
    assert states.now(NOW) is None  # no timestamp read yet: nothing to be as of
    states.begin_batch(NOW)
    assert states.floor < 0  # nor a floor
    states.read_up_to(NOW - 5 * DAY)
    states.read_up_to(-1)  # a record without a timestamp leaves it as it is
    states.read_up_to(NOW - 7 * DAY)  # out of order: read, but stream time does not go back
    assert states.now(NOW) == NOW - 5 * DAY
    states.begin_batch(NOW)
    assert states.floor == NOW - 5 * DAY
    assert make_vendor_states().now(NOW) == NOW  # the wall clock


def test_with_the_stream_clock_snapshots_are_as_of_stream_time_and_throttled_by_the_wall_clock() -> None:
    states = make_vendor_states(clock="stream")
    at = NOW - 40 * DAY
    placed = OrderPlaced("e1", at - 1000, "v1", "o1", "c1", "EUR", 700, (OrderItem("p1", "Books", 1, 700),))
    states.handle("orders", 0, 0, b"v1", codec.encode(placed), at)
    states.read_up_to(at)
    (snap,) = states.due_snapshots(NOW, states.now(NOW))
    body = snapshot_of(snap.value)
    assert body["asOf"] == iso(at)
    assert body["metrics"]["revenue"]["current"] == 700  # in the window as of stream time, 40 days ago
    states.handle("orders", 0, 1, b"v1", codec.encode(order("e2", "o2")), at + 1)
    assert states.due_snapshots(NOW + 10, at + 1) == []  # within 50 ms of wall time: held back


def test_with_the_stream_clock_the_day_rolls_with_stream_time_and_prunes() -> None:
    states = make_vendor_states(clock="stream")
    midnight = (NOW // DAY - 100) * DAY
    placed = OrderPlaced(
        "e1", midnight - 29 * DAY - 1, "v1", "o1", "c1", "EUR", 700, (OrderItem("p1", "Books", 1, 700),)
    )
    states.handle("orders", 0, 0, b"v1", codec.encode(placed), midnight - 1)
    assert states.roll(midnight - 1, lambda: [("v1", 0)], NOW) == []  # first tick: learns the day
    (after,) = states.roll(midnight + 5, lambda: [("v1", 0)], NOW)
    assert snapshot_of(after.value)["asOf"] == iso(midnight + 5)
    assert snapshot_of(after.value)["metrics"]["revenue"]["previous"] == 700
    assert states.vendors["v1"].state.floor == midnight + 5  # pruned as of the new day of stream time
    assert states.last_emit["v1"] == NOW  # the throttle's clock is the wall's


def test_a_loaded_state_raises_stream_time_to_its_floor() -> None:
    table: dict[bytes, bytes] = {}
    first = make_vendor_states(table=table, clock="stream")
    at = NOW - 10 * DAY
    first.read_up_to(at)
    first.begin_batch(NOW)  # the floor: stream time when the batch began
    first.handle("orders", 0, 0, b"v1", codec.encode(order()), at + 5)
    for key, value in first.flush(0):
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    second = make_vendor_states(table=table, clock="stream")  # a restart, or the vendor's next owner
    second.vendor("v1", 0)
    assert second.now(NOW) == at
    (snap,) = second.due_snapshots(NOW, second.now(NOW))
    assert snapshot_of(snap.value)["asOf"] == iso(at)


def iso(at: int) -> str:
    return datetime.fromtimestamp(at / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at % 1000:03d}Z"
