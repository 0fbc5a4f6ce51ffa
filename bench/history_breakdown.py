"""What the worker's store and changelog hold, by key family (`processors.worker.table_layout`), for
`bench/history.py`: which part grows with events and which with customers.

- The store: each table partition's RocksDB opened read-only beside the running worker (a consistent
  view as of the open), every live key counted with its key and value bytes (uncompressed).
- The changelog topic: every record the broker still holds (what compaction left), counted with its
  bytes, tombstones apart; and what it holds once compaction has caught up (`compacted`: the latest
  record of each key, none for a key whose latest record is a tombstone). The difference is the log
  cleaner's backlog: the dirty tail it has not cleaned yet and the tombstones it keeps
  `delete.retention.ms` after a cleaning. That backlog follows the write rate and the cleaner's
  settings, not the history: a worker folding months in minutes writes tombstones thousands of times
  faster than a live one.
- RocksDB's and the heap's own figures: the `storage.json` the worker writes (`storage_stats.py`).

The history proper (ids, orders, waiting cancellations, the expiry index) is what the lateness horizon
bounds; customers' first orders are kept for ever (contract §4.1: they grow with customers); the
checkpoints and tails are each vendor's live part and its unflushed events (catalog included).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from processors.worker.table_layout import CHUNK, CUSTOMERS, EXPIRY, HISTORY, IDS, ORDER_IDS, SEP

FAMILIES = (
    "ids", "orders", "waiting cancellations", "expiry index", "customers' first orders", "checkpoints",
    "tails", "watermarks", "other",
)  # fmt: skip
HISTORY_FAMILIES = ("ids", "orders", "waiting cancellations", "expiry index")
"""What the horizon bounds: the history part of the store and changelog."""
ORDERS = "orders"
_KINDS = {IDS: "ids", ORDER_IDS: ORDERS, CUSTOMERS: "customers' first orders", EXPIRY: "expiry index"}
FAUST_OFFSET_KEY = b"__faust\x00offset__"


def family(key: bytes, value: bytes | None) -> str:
    """The key family of a table key; an order entry with no placement is a waiting cancellation."""
    if key.startswith(SEP):
        return "watermarks"
    if key == FAUST_OFFSET_KEY:
        return "other"
    cut = min((i for i in (key.find(SEP), key.find(CHUNK), key.find(HISTORY)) if i >= 0), default=-1)
    if cut < 0:
        return "checkpoints"
    mark = key[cut : cut + 1]
    if mark == CHUNK:
        return "checkpoints"
    if mark == SEP:
        return "tails"
    name = _KINDS.get(key[cut + 1 : cut + 2], "other")
    if name == ORDERS and value is not None and orjson.loads(value)[0] is None:
        return "waiting cancellations"
    return name


@dataclass
class Families:
    """Per family: [live keys or records, key + value bytes, tombstones]."""

    counts: dict[str, list[int]] = field(default_factory=lambda: {f: [0, 0, 0] for f in FAMILIES})
    seconds: float = 0.0
    error: str = ""

    def add(self, key: bytes, value: bytes | None) -> None:
        c = self.counts[family(key, value)]
        c[0] += 1
        c[1] += len(key) + (len(value) if value is not None else 0)
        c[2] += value is None

    def remove(self, key: bytes, value: bytes | None) -> None:
        c = self.counts[family(key, value)]
        c[0] -= 1
        c[1] -= len(key) + (len(value) if value is not None else 0)
        c[2] -= value is None

    def mb(self, families: tuple[str, ...] = FAMILIES) -> float:
        return sum(self.counts[f][1] for f in families) / 2**20


@dataclass
class Compacted:
    """What a compacted topic converges to as its records are read in order: the latest record of each
    key, and no key whose latest record is a tombstone."""

    families: Families = field(default_factory=Families)
    latest: dict[bytes, bytes] = field(default_factory=dict)

    def add(self, key: bytes, value: bytes | None) -> None:
        before = self.latest.pop(key, None)
        if before is not None:
            self.families.remove(key, before)
        if value is not None:
            self.latest[key] = value
            self.families.add(key, value)


def store_families(store: Path, tries: int = 3) -> Families:
    """Every live key of every table partition under `store` (a worker's data directory)."""
    import rocksdict

    started = time.monotonic()
    out = Families()
    for attempt in range(tries):
        out = Families()
        try:
            for path in sorted(store.glob("**/tables/*.db")):
                options = rocksdict.Options(raw_mode=True)
                options.set_max_open_files(-1)  # every SST file opened now: compactions may delete them
                db = rocksdict.Rdict(str(path), options=options, access_type=rocksdict.AccessType.read_only())
                try:
                    for key, value in db.items():
                        out.add(bytes(key), None if value is None else bytes(value))  # type: ignore[arg-type]
                finally:
                    db.close()
            break
        except Exception as exc:
            out.error = f"attempt {attempt + 1}: {exc}"
    out.seconds = time.monotonic() - started
    return out


async def changelog_families(bootstrap: str, topic: str, partitions: int) -> tuple[Families, Families]:
    """Every record the changelog topic holds now, from its start to its end offsets; and the latest
    live record of each key (what it holds once compacted)."""
    started = time.monotonic()
    out, compacted = Families(), Compacted()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        fetch_max_bytes=16 * 2**20, max_partition_fetch_bytes=16 * 2**20,
    )  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        consumer.assign(tps)
        todo = {tp for tp in tps if ends[tp] > starts[tp]}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=1000, max_records=50_000)
            for tp, records in fetched.items():
                for r in records:
                    if r.offset < ends[tp] and r.key is not None:
                        out.add(r.key, r.value)
                        compacted.add(r.key, r.value)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    out.seconds = compacted.families.seconds = time.monotonic() - started
    return out, compacted.families


def breakdown(bootstrap: str, topic: str, partitions: int, store: Path) -> dict[str, Any]:
    """Store and changelog by family now (run in a thread beside the bench's sampling loop)."""
    held, compacted = asyncio.run(changelog_families(bootstrap, topic, partitions))
    return {"store": store_families(store), "changelog": held, "compacted": compacted}
