"""The table's local RocksDB partitions brought up to date from the changelog in bulk, before Faust starts.

A Faust workaround, like `faust_patches.py`. Faust's recovery moves every changelog record through its
conductor, a channel and an `Event`, one asyncio hand-off each: tens of µs per record, minutes for a
changelog of a few million history keys (`bench/history.py`). The table's history keys (ids, orders and
their tombstones, `table_layout.py`) make millions of records normal, and a worker that crashed restores
its whole table (`faust_app.run_worker` discards a store that did not stop cleanly).

So before the Faust app starts, `bring_up_to_date` reads every changelog partition at once with a
librdkafka consumer (confluent-kafka: it fetches and parses in C, a few hundred ns a record in Python,
where aiokafka's Python consumer spent tens of µs), from each local store's persisted offset (Faust's own
`offset_key`) to the end the partition had when it started, writes the records in RocksDB write batches
(a tombstone as a delete), each with the persisted offset of its last record. Faust's recovery then
reads only what was written after. These are the same writes and the same offset key Faust's
`Store.apply_changelog_batch` makes, in the same order per partition, so deleting this module (and its
call) brings back Faust's recovery and changes nothing else. The writes skip RocksDB's write-ahead log
and each database is flushed before it is closed: a crash part way leaves no clean-shutdown marker, and
`faust_app.run_worker` then discards the whole store, so nothing relies on a log of a restore.

Every partition of the changelog is brought up to date, also those another worker of the group will own:
a partition this worker is not assigned stays on disk like a standby replica, and makes a later
rebalance that moves it here faster.

Like Faust's recovery, a read from the start of the topic relies on the changelog's tombstones staying
`delete.retention.ms` (1 day) after a cleaning: a restore slower than that could miss one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from processors.exceptions import TransportError

BATCH_RECORDS = 20_000
"""Records per `consume` call; each partition's share of them is one RocksDB write batch."""
FETCH_BYTES = 32 * 1024 * 1024
CONSUMER_CONFIG = {
    "group.id": "vendorpulse-bulk-restore",  # librdkafka wants one; partitions are assigned, nothing commits
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": True,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_uncommitted",
    "fetch.max.bytes": FETCH_BYTES,
    "max.partition.fetch.bytes": FETCH_BYTES // 4,
    "receive.message.max.bytes": FETCH_BYTES + 1024 * 1024,
    "queued.max.messages.kbytes": 64 * 1024,  # prefetched per partition: bounds the restore's memory
}
TIMEOUT_S = 30.0
T = TypeVar("T")


@dataclass
class RestoreReport:
    records: int = 0
    partitions: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.records:,} changelog records into {self.partitions} table partitions "
            f"in {self.seconds:.1f} s ({rate:,.0f}/s)"
        )


def partition_path(tables_dir: Path, table: str, partition: int) -> Path:
    """Where Faust's RocksDB store keeps a table partition (`faust.stores.rocksdb.Store.partition_path`)."""
    return tables_dir / f"{table}-{partition}.db"


async def bring_up_to_date(
    bootstrap: str, changelog_topic: str, tables_dir: Path, table: str, options: Mapping[str, Any]
) -> RestoreReport:
    """Apply each changelog partition's records after the local store's persisted offset (module doc)."""
    return await asyncio.to_thread(_bring_up_to_date, bootstrap, changelog_topic, tables_dir, table, options)


def _bring_up_to_date(
    bootstrap: str, topic: str, tables_dir: Path, table: str, options: Mapping[str, Any]
) -> RestoreReport:
    from confluent_kafka import Consumer, TopicPartition
    from faust.stores.rocksdb import Store

    from processors.worker.faust_patches import TableOptions

    started = time.monotonic()
    report = RestoreReport()
    consumer = Consumer({"bootstrap.servers": bootstrap, **CONSUMER_CONFIG})
    dbs: dict[int, Any] = {}
    try:
        found = _retried(lambda: consumer.list_topics(topic, timeout=TIMEOUT_S)).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return report  # a new table: nothing stored yet
        tables_dir.mkdir(parents=True, exist_ok=True)
        rocksdb_options = TableOptions(**options, use_rocksdict=True)
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        for partition in sorted(found.partitions):
            tp = TopicPartition(topic, partition)
            _, end = _retried(lambda: consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S))  # noqa: B023
            db = dbs[partition] = rocksdb_options.open(partition_path(tables_dir, table, partition))
            persisted = db.get(Store.offset_key)
            start = int(persisted) + 1 if persisted is not None else 0
            if start < end:
                starts[partition], ends[partition] = start, end
        if starts:
            consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
            counts = _apply(consumer, ends, dbs, Store.offset_key)
            report.records = sum(counts.values())
            report.partitions = sum(1 for n in counts.values() if n)
    finally:
        for db in dbs.values():
            db.flush()
            db.close()
        consumer.close()
    report.seconds = time.monotonic() - started
    return report


def _retried(call: Callable[[], T], attempts: int = 3) -> T:
    """`call()`, again after a librdkafka error (a broker too busy to answer in time), up to `attempts`."""
    from confluent_kafka import KafkaException

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except KafkaException:
            if attempt == attempts:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _apply(consumer: Any, ends: dict[int, int], dbs: dict[int, Any], offset_key: bytes) -> dict[int, int]:
    """Every record of the assigned partitions below its end into its partition's database; the count
    applied per partition."""
    import rocksdict
    from confluent_kafka import KafkaError

    no_log = rocksdict.WriteOptions()
    no_log.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says a method
    counts = dict.fromkeys(ends, 0)
    open_ = set(ends)
    while open_:
        messages = consumer.consume(num_messages=BATCH_RECORDS, timeout=1.0)
        batches: dict[int, Any] = {}
        last: dict[int, int] = {}
        for message in messages:
            partition = message.partition()
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:  # at the end it had when it started, or past
                    open_.discard(partition)
                    continue
                raise TransportError(f"changelog restore: {error}")
            offset = message.offset()
            if partition not in open_ or offset >= ends[partition]:
                open_.discard(partition)  # written after this worker started: Faust's recovery reads it
                continue
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
            value = message.value()
            if value is None:
                batch.delete(message.key())
            else:
                batch.put(message.key(), value)
            last[partition] = offset
            if offset >= ends[partition] - 1:
                open_.discard(partition)
        for partition, batch in batches.items():
            batch.put(offset_key, str(last[partition]).encode())
            counts[partition] += len(batch) - 1
            dbs[partition].write(batch, no_log)
    return counts
