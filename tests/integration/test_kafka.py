"""The local broker and the contract's topics, against the session's real Kafka."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from processors.exceptions import TopicLayoutError
from processors.topics_admin import ensure_topics
from schemas.topics import Topics
from tests.conftest import make_topics


async def _describe(bootstrap: str, names: list[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for resource in response.resources:
                configs[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
        return counts, configs
    finally:
        await admin.close()


def test_topics_have_the_contract_layout(kafka_bootstrap: str, topics: Topics) -> None:
    counts, configs = asyncio.run(_describe(kafka_bootstrap, topics.all()))
    assert counts == dict.fromkeys(topics.all(), 6)
    assert configs[topics.metrics]["cleanup.policy"] == "compact"
    assert configs[topics.orders]["cleanup.policy"] == "delete"


def test_ensure_topics_is_idempotent_and_keeps_existing(kafka_bootstrap: str) -> None:
    names = make_topics()

    async def scenario() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:  # a user made `vendor-activity` by hand with 2 partitions: it must be left alone
            await admin.create_topics([NewTopic(names.activity, 2, 1)])
        finally:
            await admin.close()
        await ensure_topics(kafka_bootstrap, names, partitions=3)
        return await ensure_topics(kafka_bootstrap, names, partitions=3)

    counts = asyncio.run(scenario())
    assert counts[names.activity] == 2
    assert counts[names.orders] == counts[names.inventory] == 3


def test_orders_and_inventory_must_be_co_partitioned(kafka_bootstrap: str) -> None:
    names = make_topics()

    async def scenario() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(names.inventory, 4, 1)])
        finally:
            await admin.close()
        await ensure_topics(kafka_bootstrap, names, partitions=6)

    with pytest.raises(TopicLayoutError, match="co-partitioned"):
        asyncio.run(scenario())


def test_broker_round_trips_records_in_key_order(kafka_bootstrap: str, topics: Topics) -> None:
    async def scenario() -> list[tuple[bytes, bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for i in range(20):
                await producer.send(topics.orders, value=b"%d" % i, key=b"vendor-%d" % (i % 3))
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topics.orders, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            while len(got) < 20:
                batch = await consumer.getmany(timeout_ms=5000)
                assert batch, "no records within 5 s"
                got += [(r.key, r.value) for records in batch.values() for r in records]
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(scenario())
    for vendor in (b"vendor-0", b"vendor-1", b"vendor-2"):
        values = [int(v) for k, v in got if k == vendor]
        assert values == sorted(values)
        assert len(values) == len([i for i in range(20) if b"vendor-%d" % (i % 3) == vendor])
