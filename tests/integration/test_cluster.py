"""`vendorpulse kafka start --nodes 3`: a real three-broker KRaft cluster on loopback, and the topic
layout it gets (replication 3, min.insync.replicas 2), for the fault tests."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.kafka import LocalKafka, free_base_port
from processors.topics_admin import broker_count, ensure_topics
from schemas.topics import Topics
from tests.polling import eventually


def _layout(bootstrap: str, topics: Topics) -> tuple[int, set[int], str | None]:
    """Brokers, replica counts and min.insync.replicas of `orders`, once the broker asked knows the
    new topic: on a loaded machine its metadata can lag the create by a few seconds."""
    asyncio.run(ensure_topics(bootstrap, topics, partitions=3))
    layout: list[tuple[set[int], dict[str, str]]] = []

    def known() -> bool:
        layout.append(asyncio.run(_describe(bootstrap, topics.orders)))
        replicas, configs = layout[-1]
        return bool(replicas) and "min.insync.replicas" in configs

    eventually(known, f"replicas and configs of {topics.orders} in the metadata", within=30)
    replicas, configs = layout[-1]
    return asyncio.run(broker_count(bootstrap)), replicas, configs.get("min.insync.replicas")


async def _describe(bootstrap: str, topic: str) -> tuple[set[int], dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        replicas = {len(p["replicas"]) for p in described["partitions"]}
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return replicas, {entry[0]: entry[1] for entry in response.resources[0][4]}
    finally:
        await admin.close()


async def _acked_write(bootstrap: str, topic: str) -> int | None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        metadata = await asyncio.wait_for(producer.send_and_wait(topic, b"still here", key=b"v"), 60)
        return int(metadata.offset)
    finally:
        await producer.stop()


def test_three_node_cluster_replicates_topics_and_survives_a_node_loss() -> None:
    state = Path(tempfile.mkdtemp(prefix="vendorpulse-test-cluster-"))
    # Below Linux's ephemeral range (32768-60999), like the chaos clusters: at 35092 a node's port could
    # be held by another test's outbound connection, and the node never registered (a fresh-clone CI run).
    cluster = LocalKafka(nodes=3, base_port=free_base_port(25092), state_dir=state)
    try:
        bootstrap = cluster.start()
        assert bootstrap.count(",") == 2
        brokers, replicas, min_isr = _layout(bootstrap, Topics.for_prefix("c3-"))
        assert (brokers, replicas, min_isr) == (3, {3}, "2")
        assert cluster.kill_node(2)  # SIGKILL one broker: two in-sync replicas remain
        survivors = ",".join(f"localhost:{n.port}" for n in cluster.nodes if n.node_id != 2)
        assert asyncio.run(_acked_write(survivors, "c3-orders")) is not None
        cluster.start_node(2)
        cluster.wait_ready(60)
        node2 = f"localhost:{cluster.nodes[1].port}"
        assert asyncio.run(broker_count(node2)) == 3  # node 2 itself answers
        # Killed and started again at once: the dead node stays registered until its controller
        # session expires (9 s), so a count of registered brokers is reached before the new one listens.
        assert cluster.kill_node(2)
        cluster.start_node(2)
        cluster.wait_ready(60)
        assert asyncio.run(broker_count(node2)) == 3
    finally:
        cluster.stop(timeout=10)
        shutil.rmtree(state, ignore_errors=True)
