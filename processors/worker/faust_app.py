"""The worker's Faust app: the wiring of the parts, and `run_worker`.

Faust runs the consumer group (its assignor keeps a vendor's `orders` and `inventory` partitions and
its table partition on one worker), the table (RocksDB, restored from its changelog on a rebalance or
after a crash) and the timers. The input takes the batch loop's path (`batch.py`); the agent over the
input topics only declares them to Faust, and never receives a record (`faust_patches.py`, 1). Before
the app starts, `run_worker` brings the table's local partitions up to date from the changelog in bulk
(`bulk_restore.py`), so Faust's own record-by-record recovery reads only what was written after.
"""

from __future__ import annotations

import asyncio
import cProfile
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import faust

from processors.outputs import Record
from processors.topics_admin import broker_count, ensure_topics
from processors.worker import storage_stats
from processors.worker.batch import BatchLoop
from processors.worker.bulk_restore import RestoreReport, bring_up_to_date
from processors.worker.client_logs import limit_repeated_logs
from processors.worker.counters import Counters
from processors.worker.diagnostics import dump_tasks, dump_tasks_on_sigusr1, trace_batches, tracing
from processors.worker.faust_patches import ProducerBatches, TableStore, use_input_consumer, use_table_options
from processors.worker.settings import WorkerSettings
from processors.worker.stored_history import HistoryMemory
from processors.worker.vendor_log import VendorLog, restore
from processors.worker.vendors import VendorStates
from processors.worker.watchdogs import RECOVERY_CHECK_S, STALL_CHECK_S, Watchdogs
from schemas.codec import FastavroCodec
from schemas.confluent import SchemaResolver
from schemas.topics import Topics

log = logging.getLogger("vendorpulse.worker")
TABLE = "vendor-state-v2"
"""The table (and its changelog topic's) name; the version is that of the table layout
(processors/worker/table_layout.py): a worker of a new layout starts a new table and folds the input again."""
MIB = 1024 * 1024
STORAGE_STATS_S = 5.0
"""How often the worker writes `storage.json` (`storage_stats.py`) into its data directory."""
HOUR_MS = 3_600_000
CHANGELOG_CONFIG = {
    "segment.bytes": 64 * MIB,
    "segment.ms": HOUR_MS,
    "min.cleanable.dirty.ratio": 0.25,
    "max.compaction.lag.ms": 6 * HOUR_MS,
}
"""The changelog topic's compaction (it is created with these; an existing topic keeps its own). Kafka
compacts only closed segments, and rolls one at 1 GiB or after 7 days by default: the history's deletes
(tombstones, processors/worker/table_layout.py) would free nothing for days at a modest rate. 64 MiB segments and a
lower dirty ratio let the cleaner keep the topic near its live bytes (L days of history, the live parts,
the tails); a segment rolls after an hour even when a quiet worker has not filled it, and a record is
cleanable at most 6 hours after it was written whatever the dirty ratio. Tombstones themselves stay `delete.retention.ms` (Kafka's default, 1 day) after a cleaning."""
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 * MIB,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 * MIB,
    "block_cache_compressed_size": 4 * MIB,
    "bloom_filter_size": 10,
    "shared_block_cache_size": 32 * MIB,
    "shared_write_buffer_size": 32 * MIB,
    "level0_compaction_trigger": 2,
    "deletion_window": 10_000,
    "deletions_per_window": 5_000,
    "memtable_bloom_ratio": 0.02,
}
"""Per table partition (one RocksDB each), and for all of them (`faust_patches.TableOptions`). Faust's
defaults are 3 x 64 MiB of write buffers and a 2 GiB block cache *per partition*: resident memory would
grow with every write until the buffers filled, and with per-partition limits it still grows until
every partition's cache and memtables are full. One 32 MiB block cache and 32 MiB of write buffers for
all of a worker's partitions bound RocksDB's memory per worker (`bench/history.py` filled 6 x 16 MiB of
caches only by its last quarter: RSS grew with the store). The history is read through the
worker's own cache (`HistoryMemory`), so a small block cache costs little.
Most history reads look for a key that is not there (a new event id, a new order id): 10 bloom filter
bits per key (Faust's default is 3) make such a miss cost one filter probe per file, not a block read,
and a bloom filter of whole keys in each memtable (2 % of its size: about 20 bits per history key)
spares the memtables' skip-list search for it."""


def create_app(
    settings: WorkerSettings, replicas: int = 1, partitions: int | None = None,
    restored: RestoreReport | None = None,
) -> faust.App:  # fmt: skip
    """The worker app; `partitions` is the input topics' partition count (default: the setting);
    `restored` what `run_worker`'s bulk restore did, logged once Faust has set up logging."""
    topics = Topics.for_prefix(settings.topic_prefix)
    partitions = partitions or settings.partitions
    app = faust.App(
        app_id(settings),
        broker=f"kafka://{settings.bootstrap}",
        store=settings.store_url,
        datadir=str(data_dir(settings)),
        autodiscover=False,
        web_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=replicas,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        table_standby_replicas=0,
        stream_wait_empty=False,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 4,
        processing_guarantee="at_least_once",
        producer_linger=0.005,  # batch the changelog, snapshot and activity records
        producer_max_batch_size=512 * 1024,
        key_serializer="raw",
        value_serializer="raw",  # keys and values are bytes we encode ourselves
    )
    source = app.topic(topics.orders, topics.inventory, key_type=bytes, value_type=bytes)
    table = app.Table(
        TABLE, partitions=partitions, key_type=bytes, value_type=bytes, options=ROCKSDB_OPTIONS,
        extra_topic_configs=CHANGELOG_CONFIG,
    )  # fmt: skip
    use_table_options(table, ROCKSDB_OPTIONS)
    store = TableStore(table)
    codec = FastavroCodec()
    resolver = schema_resolver(settings, codec)  # None without VENDORPULSE_SCHEMA_REGISTRY_URL
    memory = HistoryMemory(settings.history_cache, settings.history_pending)

    def load(vendor_id: str, partition: int) -> VendorLog:
        return restore(vendor_id, partition, store.getter(partition), codec, settings.lateness_days, memory)

    vendors = VendorStates(
        codec,
        orders_topic=topics.orders,
        inventory_topic=topics.inventory,
        metrics_topic=topics.metrics,
        activity_topic=topics.activity,
        dlq_topics={topics.orders: topics.orders_dlq, topics.inventory: topics.inventory_dlq},
        load=load,
        period_days=settings.period_days,
        snapshot_interval_ms=settings.snapshot_interval_ms,
        snapshot_budget_ms=settings.snapshot_budget_ms,
        memory=memory,
        clock=settings.clock,
    )
    counters = Counters.in_dir(data_dir(settings))
    stats_path = data_dir(settings) / storage_stats.FILE_NAME
    counters.save()  # at start too: an operator (or a test) finds the file in the data directory it used
    loop = BatchLoop(
        app, vendors, store, ProducerBatches(app), table.changelog_topic.get_topic_name(),
        (topics.orders, topics.inventory), settings.flush_max_events, settings.flush_interval_ms, counters,
        settings.store_interval_ms,
    )  # fmt: skip
    loop.resolver = resolver
    app.batch_loop = loop  # type: ignore[attr-defined]  # for tests and the benchmark's profile
    use_input_consumer(app, (topics.orders, topics.inventory), loop.input.offer)
    watchdogs = Watchdogs(app, loop, counters, command_line())
    watchdogs.dump_tasks = dump_tasks
    if tracing():
        trace_batches(loop)

    async def send(records: list[Record]) -> Any:
        return await loop.send(records)

    async def declare_input(stream: Any) -> None:
        """Declares the input topics to Faust (subscription, co-partitioned assignment); the records
        go to the batch loop instead (faust_patches.InputConsumer)."""
        async for _ in stream:  # pragma: no cover  (never delivered)
            pass

    async def run_batches() -> None:
        await loop.run()

    async def start_diagnostics() -> None:
        """Faust has set up logging by now: repeated Kafka client errors once per 10 s (`client_logs.py`),
        and `kill -USR1` dumps the tasks."""
        limit_repeated_logs()
        dump_tasks_on_sigusr1()
        if restored is not None and restored.records:
            log.info("table brought up to date from its changelog: %s", restored)

    async def write_storage_stats() -> None:
        """RocksDB's and the heap's figures into the data directory (`storage_stats.py`)."""
        heap = {
            "vendors": len(vendors.vendors),
            "live_bytes": sum(v.live_bytes for v in vendors.vendors.values()),
            "tail_bytes": sum(v.tail_bytes for v in vendors.vendors.values()),
            "history_cache": len(memory.cache),
            "history_pending": memory.pending,
            "early_checkpoints": vendors.early_checkpoints,
        }
        try:
            storage_stats.write(stats_path, storage_stats.snapshot(store.databases(), heap))
        except (
            Exception
        ) as exc:  # a partition closed by a rebalance, a full disk: figures, not a reason to stop
            log.debug("storage.json not written: %r", exc)

    async def emit_snapshots() -> None:
        await loop.emit_snapshots(send)

    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        loop.on_revoked()

    async def on_recovered(sender: Any, *args: Any, **kwargs: Any) -> None:
        await loop.on_recovered()

    # Faust's decorators are untyped: registered through `Any`, the functions keep their types.
    faust_app: Any = app
    faust_app.agent(source)(declare_input)
    faust_app.task(run_batches)
    faust_app.task(start_diagnostics)
    faust_app.timer(max(settings.snapshot_interval_ms, 10) / 1000)(emit_snapshots)
    faust_app.timer(STALL_CHECK_S)(watchdogs.watch_input)
    faust_app.timer(STORAGE_STATS_S)(write_storage_stats)
    faust_app.timer(RECOVERY_CHECK_S)(watchdogs.watch_recovery)
    faust_app.on_partitions_revoked.connect(on_revoked)
    faust_app.on_rebalance_complete.connect(on_recovered)
    return app


def schema_resolver(settings: WorkerSettings, codec: FastavroCodec) -> SchemaResolver | None:
    """With a schema registry configured, what resolves Confluent schema ids into `codec` (contract §3)."""
    if not settings.schema_registry_url:
        return None
    from schemas.confluent import SchemaResolver

    return SchemaResolver(codec, settings.schema_registry_url)


def command_line() -> list[str]:
    """This process's arguments to Python: `-m infra worker …` or the `vendorpulse` script's path."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None:
        return ["-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]]
    return sys.argv


def app_id(settings: WorkerSettings) -> str:
    return f"{settings.topic_prefix}{settings.app_id}"


def data_dir(settings: WorkerSettings) -> Path:
    from schemas.settings import default_state_dir

    return settings.data_dir or default_state_dir() / "worker" / app_id(settings)


def run_worker(settings: WorkerSettings, loglevel: str = "info") -> None:
    """Create the topics if missing, then run the worker until stopped (Ctrl-C or SIGTERM).

    A RocksDB table store is only trusted after a clean stop: after a crash it may hold writes whose
    changelog records never reached Kafka, so it is discarded and the table restored from the changelog.
    """
    topics = Topics.for_prefix(settings.topic_prefix)
    marker = data_dir(settings) / "clean-shutdown"
    tables = data_dir(settings) / "v1" / "tables"
    if settings.store_url.startswith("rocksdb") and tables.exists() and not marker.exists():
        log.warning("the last run did not stop cleanly: restoring the table from its changelog")
        shutil.rmtree(tables)
    marker.unlink(missing_ok=True)
    marker.parent.mkdir(parents=True, exist_ok=True)

    async def prepare() -> tuple[int, int]:
        counts = await ensure_topics(settings.bootstrap, topics, settings.partitions)
        return min(3, await broker_count(settings.bootstrap)), counts[topics.orders]

    replicas, partitions = asyncio.run(prepare())
    restored = None
    if settings.store_url.startswith("rocksdb"):
        changelog = f"{app_id(settings)}-{TABLE}-changelog"  # Faust's name for the table's changelog
        restored = asyncio.run(
            bring_up_to_date(settings.bootstrap, changelog, tables, TABLE, ROCKSDB_OPTIONS)
        )
    app = create_app(settings, replicas, partitions, restored)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # The start-up spinner sets the root logger to DEBUG so that it spins on every record: every
    # aiokafka debug() call then builds a LogRecord (about 30 µs an event). No spinner, no cost.
    worker.spinner = None
    profile = os.environ.get("VENDORPULSE_PROFILE")  # a path: write a cProfile of the run there
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler:
            profiler.enable()
        worker.execute_from_commandline()
    except SystemExit as exc:
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        if exc.code in (0, None):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        raise
