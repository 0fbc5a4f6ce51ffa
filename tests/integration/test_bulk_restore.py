"""The worker's bulk restore of its table from the changelog (processors/worker/bulk_restore.py) against
a real broker: the local RocksDB partitions end as the changelog's last value per key (tombstones delete),
with Faust's persisted offset at the last record, and a second run reads only what came after."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.stores.rocksdb import RocksDBOptions, Store

from processors.worker.bulk_restore import bring_up_to_date, partition_path
from processors.worker.faust_app import ROCKSDB_OPTIONS

TABLE = "vendor-state-test"


async def create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def stored(tables: Path, partition: int) -> tuple[dict[bytes, bytes], int | None]:
    """The partition's keys and values, and Faust's persisted offset."""
    db = RocksDBOptions(**ROCKSDB_OPTIONS).open(partition_path(tables, TABLE, partition))
    try:
        items = {bytes(k): bytes(v) for k, v in db.items() if bytes(k) != Store.offset_key}
        offset = db.get(Store.offset_key)
        return items, None if offset is None else int(offset)
    finally:
        db.close()


def test_the_table_ends_as_the_changelog_says_and_a_second_run_reads_only_what_is_new(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"bulk-{uuid.uuid4().hex[:8]}-changelog"
    asyncio.run(create(kafka_bootstrap, topic, 2))
    first = [(0, f"k{i % 50}".encode(), f"v{i}".encode()) for i in range(300)]  # each key written 6 times
    first += [(0, b"k7", None), (0, b"k8", None), (1, b"other", b"x")]
    asyncio.run(produce(kafka_bootstrap, topic, first))

    report = asyncio.run(bring_up_to_date(kafka_bootstrap, topic, tmp_path, TABLE, ROCKSDB_OPTIONS))
    assert (report.records, report.partitions) == (303, 2)
    items, offset = stored(tmp_path, 0)
    expected = {f"k{i}".encode(): f"v{250 + i}".encode() for i in range(50) if i not in (7, 8)}
    assert items == expected
    assert offset == 301  # offsets 0..301 on partition 0
    assert stored(tmp_path, 1) == ({b"other": b"x"}, 0)

    asyncio.run(produce(kafka_bootstrap, topic, [(0, b"k7", b"back"), (0, b"k9", None)]))
    again = asyncio.run(bring_up_to_date(kafka_bootstrap, topic, tmp_path, TABLE, ROCKSDB_OPTIONS))
    assert (again.records, again.partitions) == (2, 1)
    items, offset = stored(tmp_path, 0)
    expected[b"k7"] = b"back"
    del expected[b"k9"]
    assert (items, offset) == (expected, 303)
    nothing = asyncio.run(bring_up_to_date(kafka_bootstrap, topic, tmp_path, TABLE, ROCKSDB_OPTIONS))
    assert nothing.records == 0


def test_a_table_without_a_changelog_restores_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    report = asyncio.run(
        bring_up_to_date(kafka_bootstrap, f"none-{uuid.uuid4().hex[:8]}", tmp_path, TABLE, ROCKSDB_OPTIONS)
    )
    assert report.records == 0
    assert not list(tmp_path.iterdir())
