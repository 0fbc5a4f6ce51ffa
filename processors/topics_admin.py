"""Creating the contract's topics (idempotent) and reading the cluster's size.

`vendorpulse worker` creates any missing topic at start (contract §2), as do `topics` and `import`.
Replication follows the cluster: 1 on a single broker, 3 with `min.insync.replicas=2` on three or more;
`vendor-metrics` is compacted (the latest snapshot per vendor).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from processors.exceptions import TopicLayoutError
from schemas.topics import Topics


async def ensure_topics(bootstrap: str, topics: Topics, partitions: int = 6) -> dict[str, int]:
    """Create the missing topics, leave existing ones alone; return every topic's partition count.

    Raises TopicLayoutError when `orders` and `inventory` exist with different partition counts,
    since the per-vendor fold then no longer sees both streams of a vendor in one task.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        replicas = min(3, brokers)
        base = {"min.insync.replicas": "2" if replicas >= 3 else "1"}
        configs = {name: dict(base) for name in topics.all()}
        configs[topics.metrics] |= {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, partitions, replicas, topic_configs=configs[name])
            for name in topics.all()
            if name not in existing
        ]
        if new:
            # another process may create them between our list and create: fine
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        counts = await _partition_counts(admin, topics.all())
    finally:
        await admin.close()
    if counts.get(topics.orders) != counts.get(topics.inventory):
        raise TopicLayoutError(
            f"{topics.orders} has {counts.get(topics.orders)} partitions but {topics.inventory} has "
            f"{counts.get(topics.inventory)}; they must be co-partitioned. Recreate one of them with the "
            "other's partition count."
        )
    return counts


async def _partition_counts(
    admin: AIOKafkaAdminClient, names: list[str], within: float = 15.0
) -> dict[str, int]:
    """Partition counts once every topic's metadata is complete (it lags a fresh create briefly)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        described = await admin.describe_topics(names)
        counts = {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
        led = all(p["leader"] >= 0 for d in described for p in d["partitions"])
        if (len(counts) == len(names) and all(counts.values()) and led) or loop.time() > deadline:
            return counts
        await asyncio.sleep(0.1)


async def broker_count(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        brokers: list[object] = (await admin.describe_cluster())["brokers"]
        return len(brokers)
    finally:
        await admin.close()


async def record_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    """Records each topic holds now (end minus beginning offsets, summed over its partitions)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    counts = dict.fromkeys(names, 0)
    if not tps:
        return counts
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=15000)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    for tp in tps:
        counts[tp.topic] += ends[tp] - starts[tp]
    return counts


async def retention_ms(bootstrap: str, names: list[str]) -> dict[str, int]:
    """Each topic's `retention.ms` (-1: records are kept whatever their timestamp)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, n, {"retention.ms": None}) for n in names]
        out = {}
        for response in await admin.describe_configs(resources):
            for _, _, _, name, entries in response.resources:
                for entry in entries:
                    if entry[0] == "retention.ms":
                        out[name] = int(entry[1])
        return out
    finally:
        await admin.close()
