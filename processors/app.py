"""The Faust worker: one agent over `orders` and `inventory` (co-partitioned by vendor), one
changelog-backed table holding each vendor's fold state, a timer that emits snapshots.

Effectively once, without Kafka transactions (docs/EFFECTIVELY_ONCE.md):
- the agent reads with manual acks and acknowledges a batch's events only after the table writes
  that contain them were delivered; only those acks reach the consumer (Faust's stream also acks
  the events it drops during a rebalance or a shutdown), so a committed offset never passes input
  that is not stored;
- each batch's table writes also carry, per input partition, the offset up to which input is stored
  (the partition's watermark); once the table is recovered after a rebalance, the worker commits
  the watermarks before Faust seeks to the committed offsets, so reading resumes exactly where the
  stored state ends;
- every stored vendor state carries the input offsets it contains, and input at or below them is
  skipped, so what Kafka delivers again after a crash or a rebalance is not counted twice;
- the worker does not trust the position Faust and aiokafka give it: it holds every record against
  the next offset it must fold for that input partition, and seeks back when one was passed over
  (`processors.positions`);
- nothing is read from or written to the table once the worker is stopping (Faust closes the table
  before it stops the agent).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import logging
import os
import shutil
import signal
import sys
import time
import weakref
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import faust
from faust.streams import _current_event
from faust.transport.consumer import Consumer
from faust.types import TP, EventT

from infra.logs import limit_repeated_logs
from infra.topics import Topics, broker_count, ensure_topics, partition_for
from processors.changelog import (
    VendorLog,
    decode_watermark,
    encode_watermark,
    is_chunk_key,
    is_vendor_key,
    restore,
    split_key,
    watermark_key,
)
from processors.consumer import DirectDrainConsumer, use_direct_drain
from processors.fold import Folder, Record
from processors.positions import InputPositions, Verdict
from processors.settings import WorkerSettings
from schemas.codec import FastavroCodec

if TYPE_CHECKING:
    from schemas.confluent import SchemaResolver

log = logging.getLogger("vendorpulse.worker")
STALL_CHECK_S = 1.0
STALL_AFTER_S = 3.0
"""An input partition with records to fold that delivered none for this long is resumed and sought."""
RECOVERY_CHECK_S = 5.0
RECOVERY_STALL_S = 45.0
"""A rebalance whose table recovery has not moved for this long restarts the worker (watch_recovery)."""
MIB = 1024 * 1024
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 * MIB,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 * MIB,
    "block_cache_compressed_size": 4 * MIB,
}
"""Per table partition (one RocksDB each). Faust's defaults are 3 x 64 MiB of write buffers and a 2 GiB
block cache *per partition*: the worker's resident memory grew with every write until the buffers
filled (the soak's straight line), and could reach gigabytes. The table is read only when a vendor is
loaded (after a rebalance or a restart), so a small cache costs little."""


def create_app(settings: WorkerSettings, replicas: int = 1, partitions: int | None = None) -> faust.App:
    """The worker app; `partitions` is the input topics' partition count (default: the setting)."""
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
    if settings.direct_drain:
        use_direct_drain(app)
    source = app.topic(topics.orders, topics.inventory, key_type=bytes, value_type=bytes)
    table = app.Table(
        "vendor-state", partitions=partitions, key_type=bytes, value_type=bytes, options=ROCKSDB_OPTIONS
    )
    codec = FastavroCodec()
    resolver = schema_resolver(settings, codec)  # None without VENDORPULSE_SCHEMA_REGISTRY_URL
    index: dict[str, tuple[int, list[bytes]]] | None = None

    def vendor_index() -> dict[str, tuple[int, list[bytes]]]:
        """vendor -> (partition, table keys), from one scan of the table after a rebalance."""
        nonlocal index
        if index is None:
            index = {}
            for key in table:
                if not is_vendor_key(key):
                    continue
                vendor_id, _ = split_key(key)
                entry = index.get(vendor_id)
                if entry is None:
                    entry = index[vendor_id] = (partition_for(vendor_id.encode(), partitions), [])
                entry[1].append(key)
        return index

    def read(key: bytes) -> bytes | None:
        """A table value, wherever it is: with an event in context, Faust's RocksDB store looks only in
        that event's partition, which need not be the key's."""
        token = _current_event.set(None)
        try:
            value: bytes | None = table.data.get(key)
            return value
        finally:
            _current_event.reset(token)

    def load(vendor_id: str, partition: int) -> VendorLog:
        keys = vendor_index().get(vendor_id, (partition, []))[1]
        checkpoint = None
        tails: list[bytes] = []
        tail_keys: list[bytes] = []
        chunks: dict[bytes, bytes] = {}
        for key in keys:
            value = read(key)
            if value is None:
                continue
            if is_chunk_key(key):
                chunks[key] = value
            elif split_key(key)[1] is None:
                checkpoint = value
            else:
                tails.append(value)
                tail_keys.append(key)
        state = restore(vendor_id, checkpoint, tails, codec, chunks)
        return VendorLog(
            state, partition, checkpoint_bytes=len(checkpoint or b"") + sum(map(len, chunks.values())),
            tail_bytes=sum(map(len, tails)), tail_keys=tail_keys, chunk_keys=list(chunks),
        )  # fmt: skip

    folder = Folder(
        codec,
        orders_topic=topics.orders,
        inventory_topic=topics.inventory,
        metrics_topic=topics.metrics,
        activity_topic=topics.activity,
        dlq_topics={topics.orders: topics.orders_dlq, topics.inventory: topics.inventory_dlq},
        load=load,
        period_days=settings.period_days,
        snapshot_interval_ms=settings.snapshot_interval_ms,
    )
    app.folder = folder  # type: ignore[attr-defined]  # for tests and the benchmark's profile

    async def send(records: list[Record]) -> list[Awaitable[Any]]:
        """Hand records to the producer; the returned futures complete when Kafka has them."""
        return [
            await app.producer.send(r.topic, r.key, r.value, r.partition, None, list(r.headers) or None)
            for r in records
        ]

    # From a revocation until the table is recovered, batches are neither stored nor acked. Not
    # `app.rebalancing`: Faust clears it only after it resumed the flow, so events read in between
    # would be dropped after the seek that could have read them again.
    paused = False
    revocations = 0
    reemit = False  # set when a rebalance completes: see emit_snapshots
    # Faust acks, by itself, every event its stream drops while the flow is stopped (a rebalance,
    # a shutdown) or whose generation is stale: those acks would let the group's offset pass input
    # that was never stored. Only the acks of stored events reach the consumer.
    stored: set[int] = set()  # id() of the messages being acked after their batch was stored
    positions: InputPositions[TP] = InputPositions()
    delivered_at: dict[TP, float] = {}  # when each input partition last delivered a record to the agent
    resumed_at = time.monotonic()  # when the last rebalance completed
    tracing = bool(os.environ.get("VENDORPULSE_TRACE_INPUT"))  # log every batch's offsets (diagnosis)

    def install_ack_filter() -> None:
        consumer = app.consumer
        if getattr(consumer, "_vendorpulse_acks", False):
            return
        ack = consumer.ack

        def stored_only(message: Any) -> bool:
            return id(message) in stored and ack(message)

        consumer.ack = stored_only  # type: ignore[method-assign]  # Faust has no hook for this
        consumer._vendorpulse_acks = True  # type: ignore[attr-defined]

    @app.agent(source)
    async def fold(stream: Any) -> None:  # a faust Stream; its type lacks noack_take()
        # Batches of up to flush_max_events, or whatever arrived within flush_interval_ms. Order per
        # batch: fold; outputs delivered; table written and its changelog delivered; then acked.
        # So a crash never leaves a stored state whose outputs are missing, and a committed offset is
        # never ahead of the changelog.
        nonlocal resumed_at
        interval = settings.flush_interval_ms / 1000
        async for batch in stream.noack_take(settings.flush_max_events, within=interval):
            if tracing:
                trace(batch)
            # Confluent-framed input: new schema ids resolved first; through a registry outage this
            # waits (and says so), and no partition counts as stalled meanwhile (watch_input).
            if resolver is not None and await resolver.prepare([e.message.value for e in batch]):
                resumed_at = time.monotonic()
            if paused or app.should_stop:
                continue  # read during a rebalance: not acked, so read again once it completes
            generation, epoch = app.consumer_generation_id, revocations
            now = time.monotonic()
            records: list[Record] = []
            taken: list[EventT[Any]] = []  # acked once stored: folded, or contained in stored state
            last_of: dict[int, EventT[Any]] = {}  # partition -> its last folded event
            seeks: dict[TP, int] = {}
            for event in batch:
                message = event.message
                if message.generation_id != generation:
                    continue  # stale: read again after the rebalance's seek
                delivered_at[message.tp] = now
                verdict = positions.check(message.tp, message.offset, now)
                if verdict is Verdict.SEEK:
                    seeks[message.tp] = positions.expected[message.tp]
                    continue
                if verdict is Verdict.DROP:
                    continue
                taken.append(event)
                if verdict is Verdict.OLD:
                    continue
                if verdict is Verdict.ACCEPT:
                    log.warning(
                        "no record of %s below offset %s: the gap was read again and is real",
                        message.tp, message.offset,
                    )  # fmt: skip
                records += folder.handle(
                    message.topic, message.partition, message.offset, message.key, message.value
                )
                last_of[message.partition] = event
            if seeks and still_current(generation, epoch):
                await seek_back(seeks)
            if records:
                await asyncio.gather(*await send(records))
            if not still_current(generation, epoch):
                # A rebalance began (or the worker is stopping): the partitions' next owner restores
                # from the changelog, and a write now could land after that restore. Not stored, not
                # acked: read again after the rebalance, so the in-memory states that folded them are
                # dropped too (the revocation may have dropped them before this batch loaded them again).
                drop_memory(set(last_of))
                continue
            await asyncio.gather(*await store(last_of))
            if not still_current(generation, epoch):
                drop_memory(set(last_of))  # stored, but not acked: read again, skipped
                continue  # the writes are out; acks now could be stale
            stored.update(id(e.message) for e in taken)
            try:
                for event in taken:
                    await stream.ack(event)
            finally:
                stored.clear()

    def still_current(generation: int, epoch: int) -> bool:
        """No rebalance began and the worker is not stopping since the batch started."""
        return not (
            paused or app.should_stop or revocations != epoch or app.consumer_generation_id != generation
        )

    async def seek_back(seeks: dict[TP, int]) -> None:
        """Read again from where the stored state ends: records between there and what arrived were
        dropped before they reached the agent (see processors/positions.py)."""
        for tp, offset in seeks.items():
            log.warning("input %s:%s skipped records from offset %s: reading again from there",
                        tp.topic, tp.partition, offset)  # fmt: skip
            consumer = app.consumer
            if isinstance(consumer, DirectDrainConsumer):
                consumer.request_seek(tp, offset)  # made between two fetches: no race (consumer.py)
                continue
            try:
                await consumer.seek(tp, offset)
            except Exception:  # a rebalance took the partition meanwhile: its next owner rewinds
                log.warning("could not seek %s back to %s", tp, offset, exc_info=True)

    async def store(last_of: dict[int, EventT[Any]]) -> list[Awaitable[Any]]:
        """Write each partition's changed vendors and its watermark to the local store, then send the
        changelog records; the returned futures complete when Kafka has them.

        The local writes happen in one step, with no await between the last check that the worker is
        not stopping and them (Faust closes the table before it stops the agent). The changelog records
        go straight to the producer: Faust's own changelog path goes through a buffer whose flush gives
        up after 100 ms, so neither a commit nor a rebalance could rely on it. They reach the producer's
        accumulator at once (its send only waits when the accumulator is full), so a rebalance's flush
        delivers them before the next owner restores.
        """
        written: list[tuple[int, list[tuple[bytes, bytes | None]]]] = []
        for partition, last in last_of.items():
            writes = [
                *folder.flush(partition),
                (watermark_key(partition), encode_watermark(mark_of(partition))),
            ]
            token = _current_event.set(weakref.ref(last))  # Faust's store writes to the event's partition
            try:
                for key, value in writes:
                    if value is None:
                        table.data.pop(key, None)
                    else:
                        table.data[key] = value
            finally:
                _current_event.reset(token)
            written.append((partition, writes))
        return [
            await app.producer.send(changelog_topic, key, value, partition, None, None)
            for partition, writes in written
            for key, value in writes
        ]

    def mark_of(partition: int) -> dict[str, int]:
        """The partition's watermark after this batch: per input topic, the next offset to fold. Both
        topics are named as soon as the partition stores anything, so a rebalance always commits an
        offset for them (a partition with none would start wherever the consumer happens to be).

        The positions start at the stored watermark after each rebalance and only grow, so the table is
        read only for a topic they do not know (a partition the last rebalance did not name)."""
        mark: dict[str, int] = {}
        for topic in (topics.orders, topics.inventory):
            expected = positions.expected.get(TP(topic, partition))
            if expected is not None:
                mark[topic] = expected
        if len(mark) < 2:
            for topic, stored in watermark(partition).items():
                mark[topic] = max(stored, mark.get(topic, 0))
        return mark

    def trace(batch: list[EventT[Any]]) -> None:
        ranges: dict[tuple[str, int], list[int]] = {}
        for e in batch:
            ranges.setdefault((e.message.topic, e.message.partition), []).append(e.message.offset)
        log.warning(
            "batch: generation %s (now %s), paused %s, offsets %s", {e.message.generation_id for e in batch},
            app.consumer_generation_id, paused, {k: (v[0], v[-1], len(v)) for k, v in ranges.items()},
        )  # fmt: skip

    changelog_topic = table.changelog_topic.get_topic_name()

    def watermark(partition: int) -> dict[str, int]:
        return decode_watermark(read(watermark_key(partition)))

    async def rewind_to_watermarks() -> None:
        """Commit each assigned input partition's stored watermark as the group's offset.

        Runs once the table is recovered, just before Faust seeks the input to the committed
        offsets, so that seek starts exactly where the stored state ends, whatever was committed
        before (docs/EFFECTIVELY_ONCE.md). With no watermark (nothing stored for the partition yet)
        the partition starts at its beginning; input read twice is skipped per vendor. Kafka
        refuses the commit of a member that left, so a leaving worker cannot undo this one. Faust's
        seek is not relied on (aiokafka does not seek to a committed 0): the same targets reset the
        positions every record is held against, which seek back when the input starts elsewhere.
        """
        consumer = cast(Consumer, app.consumer)
        inputs = [tp for tp in consumer.assignment() if tp.topic in (topics.orders, topics.inventory)]
        marks = {tp: watermark(tp.partition).get(tp.topic) for tp in inputs}
        unmarked = [tp for tp, mark in marks.items() if mark is None]
        earliest = dict(await consumer.earliest_offsets(*unmarked)) if unmarked else {}
        targets = {tp: mark if mark is not None else earliest[tp] for tp, mark in marks.items()}
        positions.reset(targets)
        if targets:
            log.debug("input starts at the stored watermarks: %s", sorted(targets.items()))
            # Faust has no public call to commit given offsets; this is the one its own commit uses.
            await consumer._commit(targets)

    @app.task
    async def quiet_client_floods() -> None:
        """Faust has set up logging by now: repeated Kafka client errors once per 10 s (infra/logs.py)."""
        limit_repeated_logs()

    def dump_tasks() -> None:
        for task in asyncio.all_tasks():
            frames = task.get_stack(limit=12)
            where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
            log.warning("task %s: %s", task.get_name(), where or "(no frames)")

    @app.task
    async def dump_tasks_on_sigusr1() -> None:
        """`kill -USR1 <worker pid>` logs the stack of every asyncio task: what a stalled worker waits on."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)

    recovery_offsets: dict[TP, int] | None = None  # the recovery's offsets when last seen to move
    recovery_moved_at = 0.0

    @app.timer(RECOVERY_CHECK_S)
    async def watch_recovery() -> None:
        """Restart the worker when Faust's table recovery makes no progress.

        Twice (once in session 2, once in a fresh-clone CI run of session 3) a survivor's recovery
        stopped for good: "No event received for active tp ... since recovery start", changelog records
        buffered and never applied (like faust-streaming/faust#74). Nothing in the process resumes it;
        a new one does. After `RECOVERY_STALL_S` with the rebalance unfinished and the recovery's
        offsets unchanged, the worker logs every task's stack and replaces itself with a fresh
        process (same pid, same arguments). That is a crash as far as state goes: the new process
        discards the local store and restores from the changelog, as after a SIGKILL.
        """
        nonlocal recovery_offsets, recovery_moved_at
        now = time.monotonic()
        offsets = dict(cast(Any, app.tables).recovery.active_offsets) if paused else None
        if offsets is None or offsets != recovery_offsets or app.should_stop:
            recovery_offsets, recovery_moved_at = offsets, now
            return
        if now - recovery_moved_at < RECOVERY_STALL_S:
            return
        log.error(
            "table recovery made no progress for %.0f s (offsets %s): restarting the worker",
            now - recovery_moved_at, offsets,
        )  # fmt: skip
        dump_tasks()
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *command_line()])

    @app.timer(STALL_CHECK_S)
    async def watch_input() -> None:
        """Un-stick an input partition that has records to fold but delivers none.

        After a recovery interrupted by a second rebalance, Faust was seen to leave assigned input
        partitions without a single record reaching the agent while their records waited in Kafka
        (the survivor of a two-worker run never folded three of its six partitions). A partition
        with records beyond the next offset to fold that has delivered nothing for `STALL_AFTER_S`
        is resumed and sought to that offset; what it then delivers is checked as any other input.
        """
        if paused or app.should_stop or not positions.expected or (resolver and resolver.waiting):
            return
        consumer = cast(Consumer, app.consumer)
        assigned = consumer.assignment()
        tps = [tp for tp in positions.expected if tp in assigned]
        if not tps:
            return
        ends = await consumer.highwaters(*tps)
        now = time.monotonic()
        for tp in tps:
            expected, end = positions.expected[tp], ends.get(tp)
            if end is None or end <= expected or paused:
                continue
            quiet = now - max(delivered_at.get(tp, 0.0), resumed_at)
            if quiet < STALL_AFTER_S:
                continue
            log.warning(
                "input %s:%s has records %s..%s to fold but delivered none for %.0f s: resuming it "
                "and seeking it there (Faust: paused %s, active %s, buffered %s, read offset %s, "
                "flow %s)", tp.topic, tp.partition, expected, end - 1, quiet,
                tp in consumer._paused_partitions, tp in consumer._get_active_partitions(),
                tp in consumer._buffered_partitions, consumer._read_offset.get(tp),
                app.flow_control.is_active(),
            )  # fmt: skip
            delivered_at[tp] = now  # another period before the next attempt
            consumer.resume_partitions([tp])
            await seek_back({tp: expected})

    @app.timer(max(settings.snapshot_interval_ms, 10) / 1000)
    async def emit_snapshots() -> None:
        nonlocal reemit
        if app.should_stop:
            return  # the table may be closed already
        if reemit and not paused:
            # After a rebalance, every vendor of the assigned partitions once: the previous owner
            # (or this worker, before the revocation dropped it) may have stored a state it never
            # emitted, and no input of that vendor may come again to load it (what it stored is
            # committed). Loading a vendor marks its snapshot due.
            reemit = False
            for vendor_id, partition in every_vendor():
                folder.vendor(vendor_id, partition)
        now_ms = int(time.time() * 1000)
        records = folder.roll(now_ms, every_vendor) + folder.due_snapshots(now_ms)
        if records:
            await send(records)

    def every_vendor() -> list[tuple[str, int]]:
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == topics.orders}
        found = {v: p for v, (p, _) in vendor_index().items()}
        found.update({v: log.partition for v, log in folder.vendors.items()})
        return [(v, p) for v, p in found.items() if p in assigned]

    def drop_memory(partitions: set[int] | None = None) -> None:
        """Forget in-memory vendor states (of `partitions`, or all) and the table index: the next
        event of a forgotten vendor loads it from the table, through an index scanned afresh (the
        cached one does not know the tail keys written since it was built)."""
        nonlocal index
        folder.forget(partitions)
        index = None

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types async receivers too narrowly
    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal paused, revocations
        install_ack_filter()
        paused = True
        revocations += 1
        # The next owner (maybe us again) starts from the table and the committed offsets; what was
        # not stored is read again, so in-memory progress is dropped.
        drop_memory()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # as above
    async def on_recovered(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Sent once the table is recovered, before the input is sought and resumed. A batch that
        # ran during the rebalance may have loaded vendors (and scanned the index) from a table that
        # was not recovered yet: drop all that again.
        nonlocal paused, reemit, resumed_at
        install_ack_filter()
        drop_memory()
        await rewind_to_watermarks()
        resumed_at = time.monotonic()
        paused = False
        reemit = True
        # Long-lived objects that a full collection only rescans (a third of replay's time,
        # measured): freeze what exists and make young collections rarer; the few cycles made per
        # batch are still collected.
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)

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
    from infra.kafka import default_state_dir

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
    app = create_app(settings, replicas, partitions)
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
