"""Which records of the input topics a replay (or an export) reads, and reading them: per partition,
the offsets [start, stop), with no consumer group (the partitions are assigned and sought, nothing is
committed; the worker's group never sees this consumer)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import OffsetOutOfRangeError

from processors.exceptions import ReplayError
from processors.progress import Meter
from processors.replay.states import ReplayStates
from processors.schema_ids import with_schemas

STALL_SECONDS = 60.0
"""A read that gets no record for this long while offsets remain fails instead of hanging."""


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets [start, stop) of one partition to read; `first` is the partition's beginning."""

    topic: str
    partition: int
    start: int
    stop: int
    first: int

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)


def consumer_for(bootstrap: str) -> AIOKafkaConsumer:
    """A group-less consumer: partitions are assigned and sought, nothing is committed."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",  # a start offset deleted under us is an error, not a silent skip
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=64 << 20,
    )


async def partition_counts(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
    if missing := [t for t in topics if not counts.get(t)]:
        raise ReplayError(
            f"topic {', '.join(map(repr, missing))} does not exist on {bootstrap}; "
            "is VENDORPULSE_TOPIC_PREFIX (or KAFKA_BOOTSTRAP_SERVERS) right?"
        )
    return counts


def check_range(from_ms: int | None, to_ms: int | None) -> None:
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ReplayError(f"--from ({from_ms}) is after --to ({to_ms}); swap them")


async def plan(
    consumer: AIOKafkaConsumer,
    bootstrap: str,
    topics: Sequence[str],
    from_ms: int | None,
    to_ms: int | None,
) -> list[Span]:
    """Each partition's offsets to read for the range (see the module docstring)."""
    check_range(from_ms, to_ms)
    counts = await partition_counts(bootstrap, topics)
    tps = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
    first = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)  # captured once: later records are not this replay's
    start, stop = dict(first), dict(end)
    if from_ms is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, from_ms))
        start = {tp: end[tp] if o is None else max(o.offset, first[tp]) for tp, o in found.items()}
    if to_ms is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, to_ms + 1))
        stop = {tp: end[tp] if o is None else min(o.offset, end[tp]) for tp, o in found.items()}
    return [Span(tp.topic, tp.partition, start[tp], max(start[tp], stop[tp]), first[tp]) for tp in tps]


async def read(
    consumer: AIOKafkaConsumer, spans: Sequence[Span], meter: Meter | None = None
) -> AsyncIterator[tuple[str, list[Any]]]:
    """(topic, records) batches of every span, each partition in offset order, up to its stop offset."""
    todo = {TopicPartition(s.topic, s.partition): s for s in spans if s.size}
    if not todo:
        return
    consumer.assign(list(todo))
    position = {}
    for tp, planned in todo.items():
        consumer.seek(tp, planned.start)
        position[tp] = planned.start
    last_progress = time.monotonic()
    while todo:
        try:
            batch = await consumer.getmany(*todo, timeout_ms=500, max_records=20_000)
        except OffsetOutOfRangeError as exc:
            raise ReplayError(
                f"records of {exc} were deleted (retention) while being read; run the replay again"
            ) from exc
        records_read = 0
        for tp, records in batch.items():
            span = todo.get(tp)
            if span is None or not records:
                continue
            if records[-1].offset >= span.stop:  # a live topic: records after the end captured at start
                records = records[: bisect_left(records, span.stop, key=lambda r: r.offset)]
            if records:
                records_read += len(records)
                yield tp.topic, records
        moved = 0
        for tp in list(todo):
            now_at = min(await consumer.position(tp), todo[tp].stop)
            moved += now_at - position[tp]
            position[tp] = now_at
            if now_at >= todo[tp].stop:
                consumer.pause(tp)
                del todo[tp]
        if meter is not None:
            meter.advance(moved, records_read)
        if moved:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_SECONDS:
            left = {f"{tp.topic}[{tp.partition}]": s.stop - position[tp] for tp, s in todo.items()}
            raise ReplayError(f"no progress for {STALL_SECONDS:.0f}s with offsets left to read: {left}")


async def replay_spans(
    bootstrap: str, spans: Sequence[Span], orders_topic: str, states: ReplayStates, m: Meter,
    registry_url: str | None = None,
) -> None:  # fmt: skip
    consumer = consumer_for(bootstrap)
    await consumer.start()
    try:
        async for topic, records in with_schemas(read(consumer, spans, m), states.codec, registry_url):
            states.take(topic == orders_topic, records)
    finally:
        await consumer.stop()
