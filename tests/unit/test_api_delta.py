"""Delta updates (contract §6, `updates=delta`) and stock alerts on the API and Python-client side,
without a broker: merge patches against an independent reading of RFC 7386, one patch per vendor update
shared by every delta client at its base, a full update for a client at another version, and the
Python client's snapshot after any sequence of patches equal to the full snapshot after canonical JSON.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import orjson
from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient, WebSocketTestSession

from api import patch
from api.app import WS_PATH
from api.auth import make_token
from api.client_state import Received
from api.connection import Connection
from api.hub import Hub
from api.protocol import Out
from api.resume import Cursor, resume
from api.settings import ApiSettings
from api.telemetry import Telemetry
from infra.simulate import EventGenerator, SimConfig
from processors.core import apply, new_state, snapshot
from tests.fakes import RecordingSink
from tests.unit.test_api_ws import closed_with, connect, env, make_client, on_loop, receive  # noqa: F401
from tests.unit.test_client_resume import FakeReplayer, setup

# --- the patch itself: any JSON objects

scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=4)
scalars |= st.floats(allow_nan=False, allow_infinity=False, width=64)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
objects = st.dictionaries(st.sampled_from("abcdef"), values, max_size=6)
SLOW_MACHINE = hypothesis.settings(deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])


class NoPatchError(Exception):
    pass


def reference_diff(old: Any, new: Any) -> Any:
    """A naive RFC 7386 diff of parsed values, independent of the server's (which works on text);
    NoPatchError where a null would have to be set."""
    changes: dict[str, Any] = {}
    for key, value in new.items():
        if key in old and old[key] == value and type(old[key]) is type(value):
            continue
        if key in old and isinstance(old[key], dict) and isinstance(value, dict):
            changes[key] = reference_diff(old[key], value)
        elif contains_null(value):
            raise NoPatchError(key)
        else:
            changes[key] = value
    changes.update(dict.fromkeys(old.keys() - new.keys()))
    return changes


def server_diff(old: Any, new: Any) -> Any:
    """The server's patch (api.patch.diff_json) between two values written as the worker writes them."""
    text = patch.diff_json(orjson.dumps(old), orjson.dumps(new))
    return None if text is None else orjson.loads(text)


def contains_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(contains_null(v) for v in value.values())
    return False  # a null inside an array is carried by the array, replaced whole


@SLOW_MACHINE
@given(objects, objects)
def test_a_patch_turns_the_old_object_into_the_new_one_unless_a_value_became_null(old: Any, new: Any) -> None:
    changes = server_diff(old, new)
    if changes is None:  # RFC 7386 cannot set a value to null: only then is there no patch
        assert contains_null(new) or b"null" in orjson.dumps(new)
        return
    assert patch.canonical(patch.apply(old, changes)) == patch.canonical(new)
    try:
        assert patch.apply(old, changes) == patch.apply(old, reference_diff(old, new))
    except NoPatchError:
        raise AssertionError("the server found a patch where none can exist") from None


@SLOW_MACHINE
@given(objects, objects)
def test_there_is_a_patch_whenever_the_reference_finds_one_and_no_string_says_null(
    old: Any, new: Any
) -> None:
    try:
        reference_diff(old, new)
    except NoPatchError:
        return
    if b"null" not in orjson.dumps(new):
        assert server_diff(old, new) is not None


def test_merge_patch_follows_rfc_7386_appendix_a() -> None:
    cases = [  # (target, patch, result) from RFC 7386 Appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ]
    for target, changes, result in cases:
        assert patch.apply(target, changes) == result


def test_a_value_that_becomes_null_has_no_patch_and_an_int_that_becomes_a_float_is_sent() -> None:
    old = {"metrics": {"revenue": {"percentage": 12.5}}}
    assert server_diff(old, {"metrics": {"revenue": {"percentage": None}}}) is None
    assert server_diff({"a": 1}, {"a": 1.0}) == {"a": 1.0}
    assert server_diff({"a": 1, "b": [1, 2]}, {"b": [1, 2]}) == {"a": None}
    assert server_diff({"a": {"b": 1, "c": [1]}}, {"a": {"b": 2, "c": [1]}}) == {"a": {"b": 2}}
    assert server_diff({"a": 1}, {"a": {"b": None}}) is None  # an object brought whole: its null would remove


# --- through the hub: real snapshots of the simulator's traffic


def simulated_snapshots(vendors: int, events: int, seed: int = 7) -> list[dict[str, Any]]:
    """The snapshot after each of `events` simulated events (the catalog first), folded by the core,
    versions rising per vendor as the worker numbers them."""
    generator = EventGenerator(SimConfig(vendors=vendors, products=12, seed=seed, start_ms=1_760_000_000_000))
    states: dict[str, Any] = {}
    out = []
    for n, (_, event, _) in enumerate(generator.records()):
        if n >= events:
            break
        state = states.setdefault(event.vendor_id, new_state(event.vendor_id))
        apply(state, event, event.occurred_at)
        out.append(snapshot(state, event.occurred_at + 1))
    return out


def hub_with(**clients: tuple[str, bool]) -> tuple[Hub, dict[str, RecordingSink]]:
    hub = Hub(Telemetry(), lambda v: {"vendorId": v, "version": 0, "asOf": ""})
    hub.caught_up = True
    sinks = {}
    for name, (vendor, delta) in clients.items():
        sinks[name] = RecordingSink()
        hub.add(Connection(vendor, sinks[name], hub.telemetry, delta=delta))
    return hub, sinks


def client_view(sink: RecordingSink) -> Received:
    """What the Python client holds after reading everything `sink` got."""
    received = Received()
    for message in sink.frames:
        received.accept(message["type"], message["data"])
    assert not received.needs_refresh
    return received


async def test_delta_clients_end_with_the_full_snapshot_byte_for_byte_on_the_simulators_traffic() -> None:
    hub, sinks = hub_with(full=("vendor-001", False), delta=("vendor-001", True), other=("vendor-002", True))
    published: dict[str, dict[str, Any]] = {}
    for data in simulated_snapshots(vendors=2, events=600):
        if hub.publish_snapshot(data):
            published[data["vendorId"]] = data
    for name, vendor in (("full", "vendor-001"), ("delta", "vendor-001"), ("other", "vendor-002")):
        assert patch.canonical(client_view(sinks[name]).snapshot) == patch.canonical(published[vendor])
    kinds = sinks["delta"].kinds()
    assert kinds.count("metrics_delta") > 250
    assert "metrics_delta" not in sinks["full"].kinds()
    full_bytes = sum(len(orjson.dumps(f)) for f in sinks["full"].frames if f["type"] == "metrics_update")
    delta_bytes = sum(len(orjson.dumps(f)) for f in sinks["delta"].frames if f["type"] == "metrics_delta")
    assert delta_bytes < full_bytes  # the figures: bench.fanout --mode delta


async def test_one_patch_per_update_shared_by_every_delta_client_at_its_base() -> None:
    hub, sinks = hub_with(a=("v1", True), b=("v1", True), c=("v1", True), f=("v1", False))
    written: dict[str, list[bytes]] = {name: [] for name in sinks}
    for name, sink in sinks.items():
        write = sink.write
        sink.write = lambda frame, write=write, name=name: (written[name].append(frame.wire), write(frame))[1]  # type: ignore[method-assign]
    calls = []
    diff = patch.diff_json
    patch.diff_json = lambda old, new: calls.append(1) or diff(old, new)  # type: ignore[assignment]
    try:
        snapshots = simulated_snapshots(vendors=1, events=40)
        for data in snapshots:
            data["vendorId"] = "v1"
            hub.publish_snapshot(data)
    finally:
        patch.diff_json = diff  # type: ignore[assignment]
    assert len(calls) == len(snapshots) - 1  # the first has no base: full; then one patch per update
    for n in range(1, len(written["a"])):
        assert written["a"][n] is written["b"][n] is written["c"][n]  # the same bytes object
        assert written["a"][n] is not written["f"][n]
    assert sinks["a"].kinds()[-1] == "metrics_delta"
    assert sinks["f"].kinds()[-1] == "metrics_update"


async def test_a_delta_client_that_skipped_versions_gets_the_full_snapshot_then_deltas_again() -> None:
    hub, sinks = hub_with(slow=("v1", True), fast=("v1", True))
    snapshots = simulated_snapshots(vendors=1, events=30)
    for data in snapshots:
        data["vendorId"] = "v1"
    for data in snapshots[:10]:
        hub.publish_snapshot(data)
    sinks["slow"].block()
    for data in snapshots[10:20]:
        hub.publish_snapshot(data)
    sinks["slow"].drain()  # holds version of snapshots[9]; the slot holds snapshots[19]: full
    for data in snapshots[20:]:
        hub.publish_snapshot(data)
    slow = [
        (f["type"], f["data"]["version"]) for f in sinks["slow"].frames if f["type"] != "analytics_update"
    ]
    versions = [d["version"] for d in snapshots]
    assert slow[0] == ("metrics_update", versions[0])  # no base yet
    assert [k for k, _ in slow[1:10]] == ["metrics_delta"] * 9
    assert slow[10] == ("metrics_update", versions[19])  # held versions[9]: full
    assert [k for k, _ in slow[11:]] == ["metrics_delta"] * 10
    for name in sinks:
        assert patch.canonical(client_view(sinks[name]).snapshot) == patch.canonical(snapshots[-1])


async def test_a_figure_that_becomes_null_goes_out_as_a_full_update_to_delta_clients() -> None:
    hub, sinks = hub_with(d=("v1", True))
    base = simulated_snapshots(vendors=1, events=30)[-1] | {"vendorId": "v1"}
    before = orjson.loads(orjson.dumps(base))
    before["metrics"]["revenue"]["percentage"] = 12.5
    after = orjson.loads(orjson.dumps(base))
    after["version"] = before["version"] + 1
    hub.publish_snapshot(before)
    hub.publish_snapshot(after)
    assert sinks["d"].kinds()[-2:] == ["metrics_update", "metrics_update"]
    held = client_view(sinks["d"]).snapshot
    assert held is not None
    assert held["metrics"]["revenue"]["percentage"] is None


def test_a_delta_for_a_version_the_client_does_not_hold_asks_for_a_refresh() -> None:
    received = Received()
    received.accept("analytics_update", {"version": 3, "a": 1})
    assert not received.accept("metrics_delta", {"baseVersion": 2, "version": 4, "patch": {"version": 4}})
    assert received.needs_refresh
    assert received.snapshot == {"version": 3, "a": 1}
    assert received.accept(
        "metrics_delta", {"baseVersion": 3, "version": 4, "patch": {"version": 4, "a": None}}
    )
    assert received.snapshot == {"version": 4}


@SLOW_MACHINE
@given(st.lists(st.integers(0, 9), min_size=1, max_size=25), st.integers(0, 2**16))
def test_any_order_of_updates_and_refreshes_leaves_the_client_at_the_full_snapshot(
    skips: list[int], seed: int
) -> None:
    """Versions published in bursts while a delta client reads or does not (a skipped one): whatever
    the sequence, the snapshot it holds at the end equals the last one, canonically."""
    snapshots = SIMULATED[seed % 200 :][: len(skips) * 3]

    async def run() -> bytes:
        hub, sinks = hub_with(d=("vendor-001", True))
        sink = sinks["d"]
        for n, data in enumerate(snapshots):
            if skips[n % len(skips)] < 3:
                sink.block()
            hub.publish_snapshot(data)
            if skips[n % len(skips)] != 0:  # 0: still not reading at the next update
                sink.drain()
        sink.drain()
        return patch.canonical(client_view(sink).snapshot)

    assert asyncio.run(run()) == patch.canonical(snapshots[-1])


SIMULATED = simulated_snapshots(vendors=1, events=300)


# --- the WebSocket route


def connect_with(client: TestClient, s: ApiSettings, query: str) -> WebSocketTestSession:
    token = make_token("v1", settings=s)
    return client.websocket_connect(f"{WS_PATH}?token={token}&vendor_id=v1&{query}")


def test_updates_delta_over_the_websocket(env: Any) -> None:  # noqa: F811
    client, hub, s = env
    snapshots = simulated_snapshots(vendors=1, events=20)
    for data in snapshots:
        data["vendorId"] = "v1"
    on_loop(client, hub.publish_snapshot, snapshots[0])
    with (
        connect_with(client, s, "updates=delta") as delta,
        connect(client, s) as full,
    ):
        status = receive(delta, "connection_status")["data"]
        assert status["updates"] == "delta"
        assert receive(full, "connection_status")["data"]["updates"] == "full"
        received = Received()
        received.accept("analytics_update", receive(delta, "analytics_update")["data"])
        receive(full, "analytics_update")
        for data in snapshots[1:]:
            on_loop(client, hub.publish_snapshot, data)
        for _ in snapshots[1:]:
            message = receive(delta, "metrics_delta")
            assert received.accept("metrics_delta", message["data"])
            assert receive(full, "metrics_update")["data"]["version"] == message["data"]["version"]
        assert patch.canonical(received.snapshot) == patch.canonical(snapshots[-1])
        assert message["data"]["baseVersion"] == snapshots[-2]["version"]
        assert set(message["data"]) == {"vendorId", "baseVersion", "version", "patch"}


def test_an_unknown_updates_mode_is_refused_with_4000() -> None:
    client, _, s = make_client()
    with client, connect_with(client, s, "updates=gzip") as ws:
        assert closed_with(ws) == 4000


# --- stock alerts: the feed, resume, the Python client


def activity(partition: int, offset: int, vendor: str, body: dict[str, Any]) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps({"vendorId": vendor, **body})
    return ConsumerRecord(
        "p-vendor-activity", partition, offset, 0, 0, vendor.encode(), value, None, 1, 1, ()
    )


def alert(event_id: str, state: str, previous: str, stock: int) -> dict[str, Any]:
    return {
        "type": "stock_alert", "productId": "p1", "name": "Lamp", "stock": stock, "threshold": 5,
        "state": state, "previous": previous, "eventId": event_id, "occurredAt": "2026-11-25T12:00:00.000Z",
    }  # fmt: skip


async def test_stock_alerts_share_the_order_feed_its_cursor_and_its_resume() -> None:
    feed, hub, conn, sent, p = setup("va")
    tp = TopicPartition("p-vendor-activity", p)
    log = [
        activity(p, 0, "va", {"eventId": "o0", "orderId": "o0"}),
        activity(p, 1, "va", alert("a1", "low", "ok", 3)),
        activity(p, 2, "va", {"eventId": "o2", "orderId": "o2"}),
        activity(p, 3, "va", alert("a3", "out", "low", 0)),
    ]
    feed.positions[tp] = 4
    conn.hold(100)
    hub.add(conn)
    await resume(conn, feed, FakeReplayer(log), Cursor(p, 0), feed.settings)  # type: ignore[arg-type]
    feed._apply({tp: [activity(p, 4, "va", alert("a4", "ok", "out", 12))]})
    for _ in range(10):
        await asyncio.sleep(0)
    feed_messages = [(m["type"], m["data"]["cursor"]) for m in sent if "cursor" in m["data"]]
    assert feed_messages == [
        ("stock_alert", f"{p}:1"), ("new_order", f"{p}:2"), ("stock_alert", f"{p}:3"),
        ("connection_status", f"{p}:3"), ("stock_alert", f"{p}:4"),
    ]  # fmt: skip
    alerts = [m["data"] for m in sent if m["type"] == "stock_alert"]
    assert set(alerts[0]) == {
        "vendorId", "productId", "name", "stock", "threshold", "state", "previous", "eventId",
        "occurredAt", "cursor",
    }  # fmt: skip
    assert [(a["previous"], a["state"]) for a in alerts] == [("ok", "low"), ("low", "out"), ("out", "ok")]


def test_the_python_client_keeps_each_alert_once_and_advances_its_cursor() -> None:
    received = Received()
    received.accept("connection_status", {"status": "connected", "cursor": "2:9"})
    first = {k: v for k, v in alert("a1", "low", "ok", 3).items() if k != "type"} | {"cursor": "2:10"}
    assert received.accept("stock_alert", first)
    assert not received.accept("stock_alert", first | {"cursor": "2:14"})  # rewritten after a crash
    assert not received.accept("stock_alert", first)  # replayed at or before the cursor
    assert received.cursor == "2:10"
    assert [a["eventId"] for a in received.alerts] == ["a1"]
    for n in range(30):
        received.accept("stock_alert", first | {"eventId": f"b{n}", "cursor": f"2:{20 + n}"})
    assert len(received.alerts) == 20
    assert received.alerts[-1]["eventId"] == "b29"
    assert received.duplicates_dropped == 2


def test_a_stock_alert_pushed_by_the_hub(env: Any) -> None:  # noqa: F811
    client, hub, s = env
    with connect(client, s) as ws:
        receive(ws, "analytics_update")
        data = {k: v for k, v in alert("a1", "out", "low", 0).items() if k != "type"}
        on_loop(client, hub.publish_event, "v1", Out.STOCK_ALERT, data | {"vendorId": "v1", "cursor": "0:5"})
        got = receive(ws, "stock_alert")["data"]
        assert got["state"] == "out"
        assert got["cursor"] == "0:5"
