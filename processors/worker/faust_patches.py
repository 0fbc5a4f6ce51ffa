"""Where the worker reaches into Faust's and aiokafka's internals, and why: delete a part when the
library gives what it works around. Re-check each after upgrading faust-streaming (0.15) or aiokafka (0.14).

1. `InputConsumer._drain_messages` (a copy of Faust's `Consumer._drain_messages`, changed where marked).
   Faust hands every fetched record to the streams one at a time: a `ConsumerMessage`, an async
   generator step, the conductor's callback, a stream queue, an `Event`, `take()`, `ack()`; and each
   hand-off goes through mode's `wait_first` (four new tasks a record). That is most of what a record
   costs the worker. Records of the input topics are instead handed in bulk, as aiokafka fetched them
   (one list of `ConsumerRecord`s per partition and fetch), to the worker's batch loop (`sink`); the
   records of every other topic (the table's changelog, while recovering) take Faust's own path.
   Re-check: does Faust's `Consumer` offer a batch callback? Then use it.
2. `InputConsumer.request_seek`: Faust's `Consumer.seek` sets the partition's read offset while the
   drain loop may be half-way through records fetched before it; the loop then sets the read offset
   past them again. A requested seek is made by the loop itself, between two fetches, and records of
   that partition fetched before it are dropped (the seek reads them again).
3. `commit`: Faust has no public call to commit given offsets; `Consumer._commit` is the one its own
   commit uses. The worker commits its stored watermarks with it.
4. `TableStore`: Faust's RocksDB store looks a key up in the partition of the event in context (or in
   every partition) and writes through `_set`, one key at a time, with no event in context refused.
   The worker reads and writes each partition's database directly (`_db_for_partition`), with a
   RocksDB write batch; with the memory store, the one dict (`data`, `_key_partition`).
5. `ProducerBatches`: aiokafka's `send()` costs a coroutine, a future and a partitioner call per record.
   The worker builds one batch per topic partition (`create_batch`, `send_batch`) and computes the
   partition with the producer's own partitioner (`_partition`, `_metadata`), so keys land where
   `send()` would have put them. Faust's producer keeps the aiokafka producer in `_producer`.
6. `TableOptions`: Faust's `RocksDBOptions` gives each table partition's database its own block cache
   and memtables, and passes no other RocksDB option through rocksdict. With six partitions, resident
   memory then grows until six caches and six sets of memtables are full, more the more partitions
   a worker holds. `TableOptions` builds the same options with one block cache and one write buffer
   manager for all the worker's databases (so RocksDB's memory is bounded per worker, not per
   partition), compacts after 2 flushed files instead of 4 (each partition's flushed files wait
   uncompacted, holding overwritten checkpoints and deleted history, until the trigger: with six
   partitions that was most of the store's disk), and marks SST files dense in deletions for
   compaction (the horizon deletes a whole day of history keys at a time). `use_table_options` puts it in the store's place
   (`Store.rocksdb_options`). Re-check: does `RocksDBOptions` take a shared cache, a write buffer
   manager or extra rocksdict options?
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from faust.stores.rocksdb import RocksDBOptions
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP, AppT
from mode import Service

from processors.exceptions import TransportError

log = logging.getLogger("vendorpulse.worker")
Sink = Callable[[int, TP, list[Any]], Awaitable[None]]
"""Receives (generation, partition, fetched records) for the input topics."""


class InputConsumer(Consumer):
    input_topics: frozenset[str] = frozenset()
    sink: Sink | None = None
    _pending_seeks: dict[TP, int] | None = None

    def request_seek(self, tp: TP, offset: int) -> None:
        """Read `tp` again from `offset`, from the next fetch on."""
        if self._pending_seeks is None:
            self._pending_seeks = {}
        self._pending_seeks[tp] = offset

    async def _seek_requested(self) -> None:
        seeks, self._pending_seeks = self._pending_seeks or {}, None
        assigned = self.assignment()
        for tp, offset in seeks.items():
            if tp not in assigned:
                continue  # moved away meanwhile: its next owner starts from the stored watermark
            await self._seek(tp, offset)
            self._read_offset[tp] = offset

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover  (the worker runs it)
        callback = self.callback
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set
        to_message = self._to_message
        inputs = self.input_topics
        sink = self.sink
        assert sink is not None, "InputConsumer.sink is set before the app starts"
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if self._pending_seeks:
                    await self._seek_requested()
                set_flag(CONSUMER_FETCHING)
                # Changed: the fetched map itself, not Faust's record-by-record getmany().
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records is None or self.should_stop:
                    unset_flag(CONSUMER_FETCHING)
                    continue
                if not self.flow_active:
                    try:  # as Faust's getmany: seek back to the committed offsets
                        await self.perform_seek()
                    except Exception as exc:
                        log.warning("exception performing seek when flow not active %s", exc)
                    unset_flag(CONSUMER_FETCHING)
                    continue
                generation = self.app.consumer_generation_id
                for tp, fetched in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    if not fetched or (self._pending_seeks and tp in self._pending_seeks):
                        continue  # fetched before a requested seek, which reads it again
                    if tp.topic in inputs:  # changed: the whole list to the worker's batch loop
                        if not suspended():
                            await sink(generation, tp, fetched)
                        set_read_offset(tp, fetched[-1].offset)
                        continue
                    for record in fetched:  # Faust's own path for the other topics
                        message = to_message(tp, record)
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if not suspended():  # no wait_first (module docstring)
                                await callback(message)
                            set_read_offset(tp, offset)
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


def use_input_consumer(app: AppT, input_topics: Sequence[str], sink: Sink) -> None:
    """Make `app` create an `InputConsumer` handing `input_topics` to `sink`; call before anything
    touches `app.consumer`."""
    transport = app.transport
    if not isinstance(transport, AIOKafkaTransport):
        raise TransportError(f"the worker needs Faust's aiokafka transport, not {type(transport).__name__}")

    class AppInputConsumer(InputConsumer):
        pass

    AppInputConsumer.input_topics = frozenset(input_topics)
    AppInputConsumer.sink = staticmethod(sink)
    transport.Consumer = AppInputConsumer  # type: ignore[misc]  # Faust reads the class from here


async def commit(consumer: Any, offsets: Mapping[TP, int]) -> bool:
    """Commit these offsets as the group's (Faust's own commit path); False when Kafka refused."""
    committed: bool = await consumer._commit(dict(offsets))
    return committed


async def earliest_offsets(consumer: Any, tps: Sequence[TP]) -> dict[TP, int]:
    return dict(await consumer.earliest_offsets(*tps)) if tps else {}


class TableStore:
    """Direct reads and batched writes of one Faust table's partitions (module docstring, 4)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def getter(self, partition: int) -> Callable[[bytes], bytes | None]:
        store: Any = self.table.data
        if hasattr(store, "_db_for_partition"):  # RocksDB: one database per partition
            get: Callable[[bytes], bytes | None] = store._db_for_partition(partition).get
            return get
        return cast(Callable[[bytes], bytes | None], store.data.get)  # the memory store: one dict

    def databases(self) -> dict[int, Any]:
        """The RocksDB databases open now, by partition (none with the memory store)."""
        store: Any = self.table.data
        return dict(getattr(store, "_dbs", {}))

    def write(self, partition: int, writes: Sequence[tuple[bytes, bytes | None]]) -> None:
        store: Any = self.table.data
        if hasattr(store, "_db_for_partition"):
            import rocksdict  # the rocksdb extra: only where the store is RocksDB

            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in writes:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            store._db_for_partition(partition).write(batch)
            return
        for key, value in writes:
            if value is None:
                store.data.pop(key, None)
            else:
                store.data[key] = value
            store._key_partition[key] = partition


PARTITION_CACHE = 100_000


class ProducerBatches:
    """One aiokafka batch per topic partition (module docstring, 5)."""

    def __init__(self, app: AppT) -> None:
        self.app = app
        self.partitions: dict[tuple[str, bytes], int] = {}
        """(topic, key) -> partition as the producer's partitioner chose it (murmur2 in Python, ~3 % of
        the worker's time when computed per record), until the producer's metadata is refreshed."""
        self.metadata_at = -1

    @property
    def producer(self) -> AIOKafkaProducer:
        producer: AIOKafkaProducer = cast(Any, self.app.producer)._producer
        return producer

    async def partition(self, topic: str, key: bytes | None) -> int:
        producer = self.producer
        if producer.client.cluster.partitions_for_topic(topic) is None:
            # Not only the first time: a metadata refresh can come back without the topic for a while
            # (its partitioner then failed on None). aiokafka's own `send` waits here on every record.
            await producer.client._wait_on_metadata(topic)
        if key is None:
            return cast(int, producer._partition(topic, None, key, None, key, None))
        refreshed = producer.client.cluster._last_successful_refresh_ms
        if refreshed != self.metadata_at or len(self.partitions) > PARTITION_CACHE:
            self.partitions.clear()  # a partition count may have changed
            self.metadata_at = refreshed
        partition = self.partitions.get((topic, key))
        if partition is None:
            partition = self.partitions[(topic, key)] = producer._partition(topic, None, key, None, key, None)
        return partition

    async def send(
        self,
        records: Sequence[tuple[str, int | None, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]],
    ) -> list[asyncio.Future[Any]]:
        """(topic, partition or None for by key, key, value, headers) in order; a future per batch sent,
        done when Kafka has it. Records of one topic partition keep their order."""
        producer = self.producer
        batches: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[Any]] = []
        if producer.client.cluster._last_successful_refresh_ms != self.metadata_at:
            self.partitions.clear()  # a partition count may have changed (`partition` says the same)
        cached = self.partitions
        for topic, partition, key, value, headers in records:
            if partition is None:
                # The cache inline: a coroutine per record cost more than the lookup.
                partition = cached.get((topic, key)) if key is not None else None
                if partition is None:
                    partition = await self.partition(topic, key)
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))  # full
                batch = batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
                    raise TransportError(
                        f"a record of {len(value or b'')} bytes exceeds the producer's batch size"
                    )
        for (topic, partition), batch in batches.items():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures


class TableOptions(RocksDBOptions):
    """Faust's RocksDB options with the worker-wide cache and write buffers (module docstring, 6).

    Options beyond Faust's: `shared_block_cache_size` and `shared_write_buffer_size` (bytes, for all the
    process's databases together), `level0_compaction_trigger` (flushed files that start a compaction),
    `deletion_window` and `deletions_per_window` (an SST file with that many deletes among that many
    consecutive entries is compacted), `memtable_bloom_ratio` (a bloom filter of whole keys in each
    memtable, of that fraction of the write buffer's size)."""

    def as_options(self) -> Any:
        import rocksdict

        options = super().as_options()
        extra = self.extra_options
        if "shared_block_cache_size" not in extra:
            return options
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(_shared_cache(int(extra["shared_block_cache_size"])))
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(_shared_write_buffers(int(extra["shared_write_buffer_size"])))
        options.set_level_zero_file_num_compaction_trigger(int(extra["level0_compaction_trigger"]))
        options.add_compact_on_deletion_collector_factory(
            int(extra["deletion_window"]), int(extra["deletions_per_window"]), 0.5
        )
        if extra.get("memtable_bloom_ratio"):
            options.set_memtable_prefix_bloom_ratio(float(extra["memtable_bloom_ratio"]))
            options.set_memtable_whole_key_filtering(True)  # a filter of whole keys: no prefix extractor
        return options


_SHARED: dict[tuple[str, int], Any] = {}


def _shared_cache(size: int) -> Any:
    import rocksdict

    cache = _SHARED.get(("cache", size))
    if cache is None:
        cache = _SHARED[("cache", size)] = rocksdict.Cache(size)
    return cache


def _shared_write_buffers(size: int) -> Any:
    import rocksdict

    manager = _SHARED.get(("write buffers", size))
    if manager is None:
        manager = _SHARED[("write buffers", size)] = rocksdict.WriteBufferManager(size, False)
    return manager


def use_table_options(table: Any, options: Mapping[str, Any]) -> None:
    """Open the table's RocksDB partitions with `TableOptions` (module docstring, 6); nothing for the
    memory store."""
    store: Any = table.data
    if hasattr(store, "rocksdb_options"):
        store.rocksdb_options = TableOptions(**options, use_rocksdict=True)
