"""The aging backfill against the real broker: the records a consumer reads carry the Kafka timestamps
the generator gave them (just after each event's occurred_at), and the live traffic that follows
carries the producer's send time."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from itertools import islice

from aiokafka import AIOKafkaConsumer

from infra.backfill import DAY_MS, AgingGenerator, Backfill
from infra.simulate import SimConfig, produce
from schemas.codec import FastavroCodec
from schemas.events import Event
from schemas.topics import Topics
from tests.integration.conftest import ROOT

CODEC = FastavroCodec()


async def read_stamped(bootstrap: str, topics: list[str], expected: int) -> list[tuple[Event, int, int]]:
    """(event, record timestamp, timestamp type) of every record, until `expected` arrived."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[tuple[Event, int, int]] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            got += [
                (CODEC.decode(r.value), r.timestamp, r.timestamp_type)
                for rs in batch.values()
                for r in rs
                if r.value is not None
            ]
    finally:
        await consumer.stop()
    return got


def test_history_records_carry_their_aged_timestamps_and_live_ones_the_send_time(
    kafka_bootstrap: str, topics: Topics
) -> None:
    config = SimConfig(vendors=3, products=8, customers=40, seed=21)
    backfill = Backfill(days=30, events=2000, end_ms=int(time.time() * 1000))
    expected = {e.event_id: ts for _, e, ts in islice(AgingGenerator(config, backfill).records(), 2000)}
    before = int(time.time() * 1000)
    summary = asyncio.run(
        produce(
            kafka_bootstrap, topics.orders, topics.inventory, config,
            rate=0, count=100, generator=AgingGenerator(config, backfill),
        )
    )  # fmt: skip
    after = int(time.time() * 1000)
    assert (summary.history, summary.total) == (2000, 2100)

    records = asyncio.run(read_stamped(kafka_bootstrap, [topics.orders, topics.inventory], 2100))
    assert len(records) == 2100
    assert {kind for _, _, kind in records} == {0}  # CreateTime: the producer's timestamp is kept
    history = [(e, ts) for e, ts, _ in records if e.event_id in expected]
    live = [(e, ts) for e, ts, _ in records if e.event_id not in expected]
    assert len(history) == 2000
    assert all(ts == expected[e.event_id] for e, ts in history)
    assert all(5 <= ts - e.occurred_at <= 1000 for e, ts in history)
    assert min(e.occurred_at for e, _ in history) < backfill.start_ms + DAY_MS
    assert len(live) == 100
    assert all(before <= ts <= after for _, ts in live)


def test_simulate_backfill_days_sends_history_stamped_as_it_aged(
    kafka_bootstrap: str, topics: Topics
) -> None:
    prefix = topics.prefix
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "VENDORPULSE_TOPIC_PREFIX": prefix}
    started = int(time.time() * 1000)
    proc = subprocess.run(
        [sys.executable, "-m", "infra", "simulate", "--vendors", "2", "--backfill-days", "30",
         "--backfill-events", "600", "--resend-rate", "0.02"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    finished = int(time.time() * 1000)
    assert proc.returncode == 0, proc.stderr
    assert "history: 600 events" in " ".join(proc.stderr.split())
    records = asyncio.run(read_stamped(kafka_bootstrap, [topics.orders, topics.inventory], 600))
    assert len(records) == 600  # history only: without --count or --duration it stops there
    stamps = sorted(ts for _, ts, _ in records)
    assert started - 30 * DAY_MS <= stamps[0] < started - 29 * DAY_MS
    assert stamps[-1] <= finished + 1000
    assert all(ts >= e.occurred_at for e, ts, _ in records)
    first_sends = {}
    for event, ts, _ in sorted(records, key=lambda r: r[1]):
        first_sends.setdefault(event.event_id, (event, ts))
    assert 560 < len(first_sends) < 600  # some events were sent twice
    assert all(5 <= ts - e.occurred_at <= 1000 for e, ts in first_sends.values())
