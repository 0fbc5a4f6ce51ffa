"""Replay takes records exactly as the live worker does: same records in, same snapshots, same
refusals (by DLQ code) out, whatever the interleaving of partitions; plus its filter and outputs."""

from __future__ import annotations

import random
import time
import zlib
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.simulate import EventGenerator, SimConfig
from processors.core.calendar import DAY_MS
from processors.core.snapshot import snapshot
from processors.exceptions import ReplayError
from processors.intake import InputCounts
from processors.replay import (
    ReplayStates,
    ReplaySummary,
    Span,
    check_publish_topic,
    run_replay,
    write_jsonl,
)
from processors.replay.jobs import Part, merge, split
from processors.worker.vendor_log import restore
from processors.worker.vendors import VendorStates
from schemas.codec import FastavroCodec
from schemas.events import ORDER_EVENTS, Event, OrderItem, OrderPlaced
from schemas.settings import KafkaSettings
from schemas.topics import Topics
from tests.unit.test_core_imports import modules_after
from tests.unit.test_metrics_properties import BASE, logs

codec = FastavroCodec()
ORDERS, INVENTORY = "orders", "inventory"
PARTITIONS = 3
NOW = int(time.time() * 1000)


@dataclass(frozen=True)
class Rec:
    """A consumed record, as replay and the worker see it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = -1


Raw = tuple[str, bytes | None, bytes | None]
"""topic, key, value: what a producer sends."""


def as_records(sent: list[Raw], stamps: list[int] | None = None) -> list[Rec]:
    """Partitioned by key (as a producer would) and numbered per partition in send order; `stamps` are
    their Kafka timestamps (none by default)."""
    next_offset: dict[tuple[str, int], int] = {}
    out = []
    for i, (topic, key, value) in enumerate(sent):
        partition = zlib.crc32(key or b"") % PARTITIONS
        offset = next_offset.get((topic, partition), 0)
        next_offset[(topic, partition)] = offset + 1
        out.append(Rec(topic, partition, offset, key, value, stamps[i] if stamps is not None else -1))
    return out


def aging_stamps(sent: list[Raw], seed: int = 1) -> list[int]:
    """Timestamps of a live producer: a little after each event occurred; now for what does not decode."""
    rng = random.Random(seed)
    out = []
    for _, _, value in sent:
        try:
            at = codec.decode(value or b"", validate=False).occurred_at
        except Exception:
            at = NOW
        out.append(at + rng.randrange(0, 3_600_000) if rng.random() > 0.02 else -1)
    return out


def right_topic(event: Event) -> str:
    return ORDERS if isinstance(event, ORDER_EVENTS) else INVENTORY


def simulated(n: int, seed: int = 3, vendors: int = 4) -> list[Raw]:
    """Simulated traffic over the last 40 days with the awkward cases mixed in: re-sent events, a
    re-placed order_id, an order in another currency, a record keyed by another vendor, bad keys,
    undecodable bytes, an event on the wrong topic, no value."""
    config = SimConfig(vendors, 15, 80, seed, start_ms=NOW - 40 * DAY_MS, step_ms=40 * DAY_MS // n)
    events = [e for _, e in islice(EventGenerator(config), n)]
    sent: list[Raw] = [(right_topic(e), e.vendor_id.encode(), codec.encode(e)) for e in events]
    placed = next(e for e in events if isinstance(e, OrderPlaced))
    good = codec.encode(placed)
    item = OrderItem("p", "Books", 1, 100)
    other_currency = OrderPlaced("fx", NOW, placed.vendor_id, "fx-o", "c", "JPY", 100, (item,))
    poison: list[Raw] = [
        *sent[:: n // 7],  # re-sent
        (ORDERS, placed.vendor_id.encode(), codec.encode(replace(placed, event_id="again"))),
        (ORDERS, placed.vendor_id.encode(), codec.encode(other_currency)),
        (ORDERS, b"vendor-999", good),  # keyed by another vendor
        (ORDERS, b"", good),
        (ORDERS, b"\xff\xfe", good),
        (ORDERS, placed.vendor_id.encode(), b"not avro at all"),
        (ORDERS, placed.vendor_id.encode(), good[:-3]),
        (INVENTORY, placed.vendor_id.encode(), good),  # wrong topic
        (ORDERS, placed.vendor_id.encode(), None),
    ]
    return sent[: n // 2] + poison + sent[n // 2 :]


def live_worker(records: list[Rec], lateness_days: int = 400) -> VendorStates:
    """The worker's per-record logic over an empty table, fed in the order given."""
    table: dict[bytes, bytes] = {}
    live = VendorStates(
        codec, orders_topic=ORDERS, inventory_topic=INVENTORY, metrics_topic="vendor-metrics",
        activity_topic="vendor-activity", dlq_topics={ORDERS: "orders.dlq", INVENTORY: "inventory.dlq"},
        load=lambda v, p: restore(v, p, table.get, codec, lateness_days),
    )  # fmt: skip
    for r in records:
        live.handle(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
    return live


def replayed(records: list[Rec], vendors: set[str] | None = None, lateness_days: int = 400) -> ReplayStates:
    """Replay's states, fed partition by partition (orders first): another interleaving than the worker's."""
    replay = ReplayStates(codec, vendors, lateness_days)
    for topic in (ORDERS, INVENTORY):
        for p in range(PARTITIONS):
            replay.take(topic == ORDERS, [r for r in records if (r.topic, r.partition) == (topic, p)])
    return replay


def assert_same(live: VendorStates, replay: ReplayStates, instants: list[int]) -> None:
    assert set(replay.states) == set(live.vendors)
    for vendor, log in live.vendors.items():
        for t in instants:
            assert snapshot(replay.states[vendor], t, 30) == snapshot(log.state, t, 30), (vendor, t)
    assert dict(replay.counts.refused) == live.counts.refused
    assert (replay.counts.applied, replay.counts.duplicates) == (live.counts.applied, live.counts.duplicates)


def test_replay_folds_simulated_traffic_as_the_worker_does() -> None:
    records = as_records(simulated(1500))
    live, replay = live_worker(records), replayed(records)
    assert_same(live, replay, [NOW, NOW - 10 * DAY_MS, NOW + 40 * DAY_MS])
    assert replay.counts.records == len(records)
    assert replay.counts.duplicates >= 8  # the re-sent events and the re-placed order
    assert dict(replay.counts.refused) == {
        "bad_key": 2, "bad_marker": 1, "truncated_body": 1, "wrong_topic": 1, "no_value": 1,
        "invalid_event": 2,  # the other currency, the other vendor's key
    }  # fmt: skip


def test_with_timestamps_and_a_short_horizon_replay_folds_as_the_worker_does() -> None:
    """Forty days of traffic, stamped as it happened, with L = 3 days: the re-sent events of the old
    days come back too late or new; replay agrees with the worker on every verdict and figure."""
    sent = simulated(1500)
    sent += [s for s in sent[:200:9] if s[2] is not None]  # re-sent long after: too late by now
    records = as_records(sent, aging_stamps(sent))
    records[-1] = replace(records[-1], timestamp=NOW + 40 * DAY_MS)  # a clock far ahead
    live, replay = live_worker(records, lateness_days=3), replayed(records, lateness_days=3)
    assert_same(live, replay, [NOW, NOW - 2 * DAY_MS, NOW + 40 * DAY_MS])
    assert replay.counts.refused["too_late"] >= 10
    assert live.counts.refused["too_late"] == replay.counts.refused["too_late"]


@dataclass(frozen=True)
class Mishap:
    """How a drawn event is sent: right, or keyed/routed/encoded the way the worker refuses."""

    key: str  # "own", "other", "bad"
    topic: str  # "right", "wrong"
    value: str  # "event", "garbage", "cut"


mishaps = st.builds(
    Mishap,
    st.sampled_from(["own"] * 18 + ["other", "bad"]),
    st.sampled_from(["right"] * 19 + ["wrong"]),
    st.sampled_from(["event"] * 18 + ["garbage", "cut"]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_replay_refuses_and_folds_exactly_what_the_worker_does(data: st.DataObject) -> None:
    # Event ids collide within a topic, never across the two: which of two such events counts depends on
    # how the worker happened to interleave orders and inventory, which no replay can know (docs/REPLAY.md).
    events = [
        e if right_topic(e) == ORDERS or not e.event_id else replace(e, event_id=f"i-{e.event_id}")
        for e in data.draw(logs())
    ]
    sent: list[Raw] = []
    for e in events:
        how = data.draw(mishaps)
        topic = right_topic(e) if how.topic == "right" else ({ORDERS, INVENTORY} - {right_topic(e)}).pop()
        key = {"own": e.vendor_id.encode(), "other": b"v2" if e.vendor_id != "v2" else b"v1", "bad": b""}
        value = codec.encode(e)
        value = {"event": value, "garbage": value[:2] + value[10:], "cut": value[:-1]}[how.value]
        sent.append((topic, key[how.key], value))
    records = as_records(sent)
    t = BASE + data.draw(st.integers(-3, 2)) * DAY_MS + data.draw(st.integers(0, DAY_MS - 1))
    assert_same(live_worker(records), replayed(records), [t])


def test_the_vendor_filter_skips_other_vendors_undecoded_and_zero_fills_absent_ones() -> None:
    records = as_records(simulated(600))
    everyone = replayed(records)
    some = replayed(records, {"vendor-002", "nobody"})
    snaps = {s["vendorId"]: s for s in some.snapshots(NOW, 30)}
    assert set(snaps) == {"vendor-002", "nobody"}
    assert snaps["vendor-002"] == snapshot(everyone.states["vendor-002"], NOW, 30)
    assert snaps["nobody"]["version"] == 0
    assert snaps["nobody"]["metrics"]["revenue"]["current"] == 0
    keyed_002 = sum(r.key == b"vendor-002" for r in records)
    bad_keys = sum(not r.key or r.key == b"\xff\xfe" for r in records)
    assert some.counts.filtered == len(records) - keyed_002 - bad_keys


def test_refused_records_are_counted_and_the_first_located() -> None:
    records = as_records(simulated(300))
    replay = replayed(records)
    assert sum(replay.counts.refused.values()) == len(replay.samples) == 8
    cut = next(s for s in replay.samples if s.code == "truncated_body")
    original = next(
        r for r in records if (r.topic, r.partition, r.offset) == (cut.topic, cut.partition, cut.offset)
    )
    assert (original.value or b"")[:2] == b"\xc3\x01"


def test_snapshots_go_to_json_lines_one_vendor_a_line(tmp_path: Path) -> None:
    replay = replayed(as_records(simulated(300)))
    snaps = replay.snapshots(NOW, 30)
    out = tmp_path / "snapshots.jsonl"
    write_jsonl(out, snaps)
    lines = out.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == snaps
    assert [orjson.loads(line)["vendorId"] for line in lines] == ["vendor-001", "vendor-002", "vendor-003", "vendor-004"]  # fmt: skip
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left


def test_json_lines_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    snaps = replayed(as_records(simulated(200))).snapshots(NOW, 7)
    write_jsonl("-", snaps)
    assert [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()] == snaps


def test_publishing_to_a_live_topic_is_refused() -> None:
    settings = KafkaSettings(topic_prefix="p-")
    for topic in Topics.for_prefix("p-").all():
        with pytest.raises(ReplayError, match="live pipeline"):
            check_publish_topic(settings, topic)
    check_publish_topic(settings, "p-vendor-metrics.replay")
    check_publish_topic(settings, "vendor-metrics")  # another prefix's: not this pipeline's


def test_the_summary_is_json_ready() -> None:
    replay = replayed(as_records(simulated(300)))
    summary = ReplaySummary(
        "test",
        NOW,
        30,
        replay.counts,
        replay.samples,
        replay.snapshots(NOW, 30),
        fold_seconds=0.5,
        seconds=0.6,
    )
    doc = orjson.loads(orjson.dumps(summary.to_dict()))
    assert doc["vendors"] == 4
    assert doc["counts"]["refused"]["bad_key"] == 2
    assert doc["events_per_s"] == pytest.approx(replay.counts.records / 0.5, abs=0.1)
    assert "snapshots" not in doc


def test_jobs_get_whole_partitions_of_both_topics_balanced_by_size() -> None:
    spans = [
        Span(t, p, 0, size, 0) for t in (ORDERS, INVENTORY) for p, size in enumerate([50, 10, 40, 0, 30, 20])
    ]
    groups = split(spans, 2)
    assert [sorted({(s.partition) for s in g}) for g in groups] == [[0, 1, 5], [2, 3, 4]]
    assert [sum(s.size for s in g) for g in groups] == [160, 140]
    assert all({s.topic for s in g if s.partition == p} == {ORDERS, INVENTORY} for g in groups for p in {s.partition for s in g})  # fmt: skip
    assert split(spans[:1], 4) == [spans[:1]]  # no job without work


def test_parts_merge_into_one_snapshot_per_vendor_unless_a_vendor_is_split() -> None:
    records = as_records(simulated(600))
    whole = replayed(records, {"vendor-001", "vendor-003", "nobody"})
    halves = [
        replayed([r for r in records if r.partition == p], {"vendor-001", "vendor-003", "nobody"})
        for p in range(PARTITIONS)
    ]
    parts = [Part(h.snapshots(NOW, 30), set(h.states), h.counts, h.samples) for h in halves]
    snapshots, counts, _ = merge(parts)
    assert snapshots == whole.snapshots(NOW, 30)
    assert counts == whole.counts
    split_vendor = Part([], {"vendor-001"}, InputCounts(), [])
    with pytest.raises(ReplayError, match="vendor-001"):
        merge([*parts, split_vendor])


def test_replay_and_archive_load_no_faust_or_web_framework() -> None:
    """`vendorpulse replay` starts fast and runs where the worker's Faust is not installed."""
    for statement in ("import processors.replay", "import processors.archive"):
        loaded = modules_after(statement)
        assert [
            m for m in loaded if m.split(".")[0] in ("faust", "mode", "fastapi", "starlette", "uvicorn")
        ] == []


def test_a_range_that_ends_before_it_starts_is_refused_before_connecting() -> None:
    settings = KafkaSettings(bootstrap_servers="localhost:1")  # nothing listens there
    with pytest.raises(ReplayError, match="swap them"):
        run_replay(settings, from_ms=2_000, to_ms=1_000)


def test_replay_gives_the_stock_alerts_the_worker_writes() -> None:
    records = as_records(simulated(3000, vendors=3))
    table: dict[bytes, bytes] = {}
    live = VendorStates(
        codec, orders_topic=ORDERS, inventory_topic=INVENTORY, metrics_topic="vendor-metrics",
        activity_topic="vendor-activity", dlq_topics={ORDERS: "orders.dlq", INVENTORY: "inventory.dlq"},
        load=lambda v, p: restore(v, p, table.get, codec),
    )  # fmt: skip
    written = []
    for r in records:
        for out in live.handle(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp):
            if out.topic == "vendor-activity" and b'"stock_alert"' in (out.value or b""):
                written.append(orjson.loads(out.value or b""))
    replay = ReplayStates(codec)
    replay.alerts = []
    for topic in (INVENTORY, ORDERS):  # another interleaving of the two topics than the worker's
        for p in range(PARTITIONS):
            replay.take(topic == ORDERS, [r for r in records if (r.topic, r.partition) == (topic, p)])
    assert len(written) > 20
    by_vendor = sorted(written, key=lambda a: a["vendorId"])  # stable: each vendor's in log order
    assert sorted(replay.alerts, key=lambda a: a["vendorId"]) == by_vendor
