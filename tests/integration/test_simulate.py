"""`vendorpulse simulate` against the real broker: what it sends is what a consumer decodes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import defaultdict

from aiokafka import AIOKafkaConsumer

from infra.simulate import SimConfig, produce
from schemas.codec import FastavroCodec
from schemas.events import Event
from schemas.topics import Topics


async def consume_all(
    bootstrap: str, topics: list[str], expected: int, within: float = 30.0
) -> list[tuple[str, int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[tuple[str, int, bytes, bytes]] = []
    try:
        deadline = asyncio.get_running_loop().time() + within
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            got += [(r.topic, r.partition, r.key, r.value) for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return got


def test_simulated_events_come_back_decoded_in_per_vendor_order(kafka_bootstrap: str, topics: Topics) -> None:
    sent: list[tuple[str, Event]] = []
    config = SimConfig(vendors=4, products=10, customers=50, seed=3)
    summary = asyncio.run(
        produce(kafka_bootstrap, topics.orders, topics.inventory, config, rate=0, count=3000, keep=sent)
    )
    assert summary.total == len(sent) == 3000
    records = asyncio.run(consume_all(kafka_bootstrap, [topics.orders, topics.inventory], 3000))
    assert len(records) == 3000

    codec = FastavroCodec()
    expected: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for topic, event in sent:
        expected[(topic, event.vendor_id)].append(event)
    received: dict[tuple[str, str], list[Event]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for topic, partition, key, value in records:
        event = codec.decode(value)
        assert key == event.vendor_id.encode()
        received[(topic, event.vendor_id)].append(event)
        partitions[event.vendor_id].add(partition)
    assert received == expected  # same events, same order per vendor and topic
    # one vendor, one partition number, on both topics (co-partitioning by key)
    assert all(len(p) == 1 for p in partitions.values())


def test_simulate_command_prints_its_summary(kafka_bootstrap: str, topics: Topics) -> None:
    prefix = topics.prefix
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "VENDORPULSE_TOPIC_PREFIX": prefix}
    proc = subprocess.run(
        [sys.executable, "-m", "infra", "simulate", "--count", "500", "--rate", "0", "--seed", "11"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "total" in proc.stdout
    assert "500" in proc.stdout
    records = asyncio.run(consume_all(kafka_bootstrap, [topics.orders, topics.inventory], 500))
    assert len(records) == 500
