"""The table's local RocksDB partitions brought up to date from the changelog in bulk, before Faust starts.

A Faust workaround, like `faust_patches.py`. Faust's recovery moves every changelog record through its
conductor, a channel and an `Event`, one asyncio hand-off each: tens of µs per record, minutes for a
changelog of a few million history keys (`bench/history.py`). The table's history keys (ids, orders and
their tombstones, `table_layout.py`) make millions of records normal, and a worker that crashed restores
its whole table (`faust_app.run_worker` discards a store that did not stop cleanly).

So before the Faust app starts, `bring_up_to_date` reads each changelog partition with a plain aiokafka
consumer, from the local store's persisted offset (Faust's own `offset_key`) to the end the topic had
when it started, writes the records in RocksDB write batches (a tombstone as a delete), and sets the
persisted offset to the last record it wrote. Faust's recovery then reads only what was written after.
These are the same writes and the same offset key Faust's `Store.apply_changelog_batch` makes, in the
same order, so deleting this module (and its call) brings back Faust's recovery and changes nothing else.

Every partition of the changelog is brought up to date, also those another worker of the group will own:
a partition this worker is not assigned stays on disk like a standby replica, and makes a later
rebalance that moves it here faster.

Like Faust's recovery, a read from the start of the topic relies on the changelog's tombstones staying
`delete.retention.ms` (1 day) after a cleaning: a restore slower than that could miss one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

BATCH_RECORDS = 20_000
"""Records per RocksDB write batch (and per persisted-offset update)."""
FETCH_BYTES = 16 * 1024 * 1024


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
    from faust.stores.rocksdb import RocksDBOptions

    started = time.monotonic()
    report = RestoreReport()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=FETCH_BYTES,
        max_partition_fetch_bytes=FETCH_BYTES,
        isolation_level="read_uncommitted",
    )
    await consumer.start()
    try:
        if changelog_topic not in await consumer.topics():  # every topic's name: creates none
            return report  # a new table: nothing stored yet
        tps = [TopicPartition(changelog_topic, p) for p in await _partitions(bootstrap, changelog_topic)]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        tables_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  (runs alone, before the app)
        rocksdb_options = RocksDBOptions(**options)
        for tp in tps:
            end = ends[tp]
            db = rocksdb_options.open(partition_path(tables_dir, table, tp.partition))
            try:
                count = await _apply(consumer, tp, end, db)
            finally:
                db.close()
            report.records += count
            report.partitions += count > 0
    finally:
        await consumer.stop()
    report.seconds = time.monotonic() - started
    return report


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described if d["topic"] == topic for p in d["partitions"])


async def _apply(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int, db: Any) -> int:
    """The records of `tp` from the store's persisted offset + 1 up to `end` (exclusive) into `db`."""
    import rocksdict
    from faust.stores.rocksdb import Store

    persisted = db.get(Store.offset_key)
    start = int(persisted) + 1 if persisted is not None else 0
    if start >= end:
        return 0
    consumer.seek(tp, start)
    applied = 0
    last = start - 1
    while last < end - 1:
        fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=BATCH_RECORDS)
        records = fetched.get(tp, [])
        if not records:
            if await consumer.position(tp) >= end:  # the rest were transaction markers or compacted
                break
            continue
        batch = rocksdict.WriteBatch(raw_mode=True)
        for record in records:
            if record.offset >= end:
                last = end - 1  # written after this worker started: Faust's recovery reads it
                break
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
            last = max(last, record.offset)
            applied += 1
        batch.put(Store.offset_key, str(last).encode())
        db.write(batch)
    return applied
