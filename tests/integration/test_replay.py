"""Replay, export and import against a real broker: replayed snapshots equal the live worker's for the
same log and as-of instant; ranges cut the log by record time; a live topic still ends; archives
round-trip through Kafka; no consumer group is ever joined."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from infra.simulate import EventGenerator, SimConfig
from processors.archive import run_export, run_import, run_replay_files
from processors.exceptions import ReplayError
from processors.replay import run_replay
from processors.topics_admin import ensure_topics
from schemas.codec import FastavroCodec
from schemas.events import Event
from schemas.topics import Topics
from tests.conftest import make_topics
from tests.fakes import kafka_settings
from tests.integration.conftest import WorkerProcess, latest_snapshots, read_topic
from tests.integration.test_worker import DAY, Message, assert_converges, history, send
from tests.unit.reference import reference_snapshot

codec = FastavroCodec()


def millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def consumer_groups(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {group for group, *_ in await admin.list_consumer_groups()}
    finally:
        await admin.close()


def test_replayed_snapshots_equal_the_live_workers(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    messages, log = history(topics, 2500, seed=17)  # with re-sent events, re-placed orders, cancellations
    asyncio.run(send(kafka_bootstrap, messages))
    worker = make_worker().start()
    assert_converges(kafka_bootstrap, topics, log, worker)
    live = latest_snapshots(kafka_bootstrap, topics.metrics)
    groups = asyncio.run(consumer_groups(kafka_bootstrap))
    settings = kafka_settings(kafka_bootstrap, topics)
    for vendor, snap in sorted(live.items()):
        out = tmp_path / f"{vendor}.jsonl"
        summary = run_replay(settings, vendors=[vendor], as_of_ms=millis(str(snap["asOf"])), out_path=out)  # fmt: skip
        (line,) = out.read_bytes().splitlines()
        assert orjson.loads(line) == snap, vendor
        assert summary.complete
        assert summary.counts.duplicates > 0
    everyone = run_replay(settings)
    assert [s["vendorId"] for s in everyone.snapshots] == sorted(live)
    assert everyone.counts.refused == {"invalid_event": 1}  # the order in another currency: the worker's DLQ
    assert asyncio.run(consumer_groups(kafka_bootstrap)) == groups  # no group joined or created
    assert worker.alive()


def generated(n: int, seed: int, start_ms: int) -> list[Event]:
    config = SimConfig(vendors=3, products=8, customers=40, seed=seed, start_ms=start_ms, step_ms=60_000)
    return [e for _, e in islice(EventGenerator(config), n)]


def messages_of(topics: Topics, events: list[Event]) -> list[Message]:
    topic = {True: topics.orders, False: topics.inventory}
    return [
        (topic[type(e).__name__.startswith("Order")], e.vendor_id.encode(), codec.encode(e)) for e in events
    ]


def expected(events: list[Event], vendor: str, as_of: int) -> dict[str, object]:
    of_vendor = [e for e in events if e.vendor_id == vendor]
    return reference_snapshot(of_vendor, vendor, as_of, 30)


def test_ranges_cut_the_log_by_record_time_and_a_live_topic_still_ends(
    kafka_bootstrap: str, topics: Topics
) -> None:
    start = int(time.time() * 1000) - 5 * DAY
    first, second = generated(600, 1, start), generated(400, 2, start + DAY)
    second = [e for e in second if e.event_id not in {f.event_id for f in first}]
    asyncio.run(send(kafka_bootstrap, messages_of(topics, first)))
    time.sleep(0.05)
    middle = int(time.time() * 1000)
    time.sleep(0.05)
    asyncio.run(send(kafka_bootstrap, messages_of(topics, second)))
    settings = kafka_settings(kafka_bootstrap, topics)

    early = run_replay(settings, to_ms=middle)  # as of --to by default
    assert early.as_of_ms == middle
    assert early.counts.records == early.counts.applied == len(first)
    assert {s["vendorId"]: s for s in early.snapshots} == {
        v: expected(first, v, middle) for v in ("vendor-001", "vendor-002", "vendor-003")
    }
    late = run_replay(settings, from_ms=middle)
    assert late.counts.records == len(second)
    assert not late.complete
    assert any("--from" in w for w in late.warnings)
    one = run_replay(settings, vendors=["vendor-002"])
    assert [s["vendorId"] for s in one.snapshots] == ["vendor-002"]
    assert one.counts.filtered == len(first) + len(second) - sum(
        e.vendor_id == "vendor-002" for e in first + second
    )

    # a producer keeps writing while a replay runs: the replay reads to the end offsets it found at start
    more = messages_of(topics, generated(3000, 3, start + 2 * DAY))
    producer = threading.Thread(target=lambda: asyncio.run(send(kafka_bootstrap, more, rate=1500)))
    producer.start()
    time.sleep(0.5)
    try:
        during = run_replay(settings)
    finally:
        producer.join()
    assert len(first) + len(second) < during.counts.records < len(first) + len(second) + len(more)
    assert during.counts.records == sum(s.size for s in during.spans)


def test_publishes_one_snapshot_per_vendor_never_to_a_live_topic_and_jobs_agree(
    kafka_bootstrap: str, topics: Topics
) -> None:
    events = generated(300, 4, int(time.time() * 1000) - DAY)
    asyncio.run(send(kafka_bootstrap, messages_of(topics, events)))
    settings = kafka_settings(kafka_bootstrap, topics)
    with pytest.raises(ReplayError, match="live pipeline"):
        run_replay(settings, publish_topic=topics.metrics)
    target = topics.metrics + ".replay"
    summary = run_replay(settings, publish_topic=target)
    assert summary.published == 3
    records = asyncio.run(read_topic(kafka_bootstrap, target))
    assert {key: orjson.loads(value or b"") for key, value, _ in records} == {
        s["vendorId"].encode(): s for s in summary.snapshots
    }
    parallel = run_replay(settings, as_of_ms=summary.as_of_ms, jobs=2)
    assert parallel.snapshots == summary.snapshots
    assert parallel.counts == summary.counts


def test_export_and_import_round_trip_through_kafka(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    messages, _ = history(topics, 1500, seed=23)
    poison: list[Message] = [
        (topics.orders, b"", messages[-1][2]),
        (topics.inventory, b"vendor-001", b"\xc3\x01" + b"\x00" * 8 + b"junk"),
    ]
    asyncio.run(send(kafka_bootstrap, messages[:700] + poison + messages[700:]))
    source = kafka_settings(kafka_bootstrap, topics)
    exported = run_export(source, out_dir=tmp_path / "archive")
    assert exported.records == len(messages) + len(poison)
    assert dict(exported.skipped) == {"bad_key": 1, "unknown_fingerprint": 1}
    assert sum(exported.files.values()) == len(messages)
    assert exported.complete

    copy = make_topics()
    asyncio.run(ensure_topics(kafka_bootstrap, copy, partitions=3))  # another layout: vendors still whole
    target = kafka_settings(kafka_bootstrap, copy)
    imported = run_import(target, [tmp_path / "archive"])
    assert imported.records == len(messages)
    assert not imported.skipped

    as_of = int(time.time() * 1000)
    original = run_replay(source, as_of_ms=as_of)
    once = run_replay(target, as_of_ms=as_of)
    from_files = run_replay_files(source, [tmp_path / "archive"], as_of_ms=as_of)
    assert once.snapshots == original.snapshots == from_files.snapshots
    run_import(target, [tmp_path / "archive"])  # again: every event is a duplicate now
    twice = run_replay(target, as_of_ms=as_of)
    assert twice.snapshots == original.snapshots
    assert twice.counts.applied == once.counts.applied
    assert twice.counts.duplicates == 2 * once.counts.duplicates + once.counts.applied


def test_an_import_keeps_each_records_timestamp_so_the_horizon_replays_the_same(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """Thirty days of traffic stamped as it happened, and old events re-sent today (too late with
    L = 5): exported and imported, every record keeps its timestamp and its topic's order, so a replay of
    the copy, and of the files, gives the source's snapshots and refusals."""
    now = int(time.time() * 1000)
    config = SimConfig(
        vendors=3, products=10, customers=40, seed=41, start_ms=now - 30 * DAY, step_ms=30 * DAY // 1200
    )
    events = [e for _, e in islice(EventGenerator(config), 1200)]
    stamped = [(e.occurred_at + 5_000, e) for e in events] + [(now, e) for e in events[:300:25]]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for ts, e in stamped:
                topic = topics.orders if type(e).__name__.startswith("Order") else topics.inventory
                await producer.send(topic, codec.encode(e), key=e.vendor_id.encode(), timestamp_ms=ts)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    source = kafka_settings(kafka_bootstrap, topics).model_copy(update={"lateness_days": 5})
    run_export(source, out_dir=tmp_path / "archive")
    copy = make_topics()
    asyncio.run(ensure_topics(kafka_bootstrap, copy, partitions=3))
    target = kafka_settings(kafka_bootstrap, copy).model_copy(update={"lateness_days": 5})
    run_import(target, [tmp_path / "archive"])
    stamps = {
        t: sorted((r.key, r.timestamp, r.value) for r in asyncio.run(read_records(kafka_bootstrap, t)))
        for t in (topics.orders, copy.orders)
    }
    assert stamps[topics.orders] == stamps[copy.orders]  # every record, with its own timestamp
    as_of = int(time.time() * 1000)
    original = run_replay(source, as_of_ms=as_of)
    imported = run_replay(target, as_of_ms=as_of)
    from_files = run_replay_files(source, [tmp_path / "archive"], as_of_ms=as_of)
    assert original.counts.refused["too_late"] == 12
    assert imported.snapshots == original.snapshots == from_files.snapshots
    assert imported.counts.refused == original.counts.refused == from_files.counts.refused


async def read_records(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list[Any] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            out += [r for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    return out
