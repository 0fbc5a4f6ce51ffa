"""The worker's batch protocol: how input becomes stored state, effectively once (docs/EFFECTIVELY_ONCE.md).

The consumer hands fetched input records in bulk to the `InputBuffer` (`faust_patches.InputConsumer`);
the `BatchLoop` takes what has arrived (up to `flush_max_events`, after at most `flush_interval_ms`) and,
per batch, in this order:

1. **check** each record against the next offset it must fold for its partition (`InputPositions`):
   below it, already stored, skipped; above it, a gap: seek back and read again;
2. **fold** the rest with the pure core, through `VendorStates.handle` (DLQ records and `new_order`
   notifications out);
3. **send** those outputs and wait until Kafka has them;
4. **store**, at most every `store_interval_ms`, every changed vendor of the partitions folded into
   since the last store and each partition's watermark (the next input offset to fold) in the local
   table, in one write per partition, then send the same writes to the changelog and wait until Kafka
   has them (what was folded but not yet stored is read again after a crash, and skipped or folded
   again; its outputs may repeat, which is allowed: they are at least once);
5. **commit** the watermarks as the group's offsets (at most once a second: the table is the truth, the
   group's offsets serve lag monitoring and a quick start).

So a crash never leaves a stored state whose outputs are missing, nor a stored watermark ahead of the
state it describes. If a rebalance begins (or the worker stops) at any point, the batch is abandoned:
not stored, or stored but not committed, and its vendors dropped from memory; the partitions' next
owner restores from the changelog and reads on from the stored watermark (`on_recovered`).

Rebalances: from the revocation until the table is recovered (`paused`), batches are dropped (read
again afterwards). Once recovered, every assigned input partition's stored watermark is committed as
the group's offset before Faust seeks there, and the positions are reset to it, so reading resumes
exactly where the stored state ends. Nothing is read from or written to the table once the worker is
stopping (Faust closes the table before it stops the tasks).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faust.types import TP, AppT

from processors.outputs import Record
from processors.worker.alignment import Alignment
from processors.worker.counters import Counters
from processors.worker.faust_patches import (
    InputConsumer,
    ProducerBatches,
    TableStore,
    commit,
    earliest_offsets,
)
from processors.worker.positions import InputPositions, Verdict
from processors.worker.table_layout import (
    decode_directory,
    decode_watermark,
    directory_key,
    encode_directory,
    encode_watermark,
    watermark_key,
)
from processors.worker.vendors import VendorStates
from schemas.confluent import SchemaResolver

log = logging.getLogger("vendorpulse.worker")
COMMIT_EVERY_S = 1.0
BACKLOG_WINDOW_S = 1.0
"""The worker reads a backlog while a batch in this window took `flush_max_events` records."""


@dataclass(slots=True)
class Chunk:
    """Records of one input partition, as one fetch returned them (aiokafka `ConsumerRecord`s)."""

    generation: int
    tp: TP
    records: list[Any]


class InputBuffer:
    """Fetched input waiting for the batch loop, at most `limit` records (the fetch loop waits)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: deque[Chunk] = deque()
        self.size = 0
        self.ready = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    async def offer(self, generation: int, tp: TP, records: list[Any]) -> None:
        while self.size >= self.limit:
            self.room.clear()
            await self.room.wait()
        self.chunks.append(Chunk(generation, tp, records))
        self.size += len(records)
        self.ready.set()

    async def take(self, max_records: int, within: float, idle: float | None = None) -> list[Chunk]:
        """What has arrived, once `max_records` have or `within` seconds after the first did; nothing
        if nothing arrives for `idle` seconds (None: wait for input however long)."""
        if idle is None:
            await self.ready.wait()
        else:
            try:
                await asyncio.wait_for(self.ready.wait(), idle)
            except TimeoutError:
                return []
        if self.size < max_records:
            deadline = time.monotonic() + within
            while self.size < max_records and (left := deadline - time.monotonic()) > 0:
                self.ready.clear()
                try:
                    await asyncio.wait_for(self.ready.wait(), left)
                except TimeoutError:
                    break
        taken: list[Chunk] = []
        count = 0
        while self.chunks and count < max_records:
            chunk = self.chunks.popleft()
            taken.append(chunk)
            count += len(chunk.records)
        self.size -= count
        if not self.chunks:
            self.ready.clear()
        self.room.set()
        return taken


class BatchLoop:
    def __init__(
        self, app: AppT, states: VendorStates, table: TableStore, batches: ProducerBatches, changelog_topic: str,
        input_topics: tuple[str, str], flush_max_events: int, flush_interval_ms: int, counters: Counters,
        store_interval_ms: int = 0,
    ) -> None:  # fmt: skip
        self.app = app
        self.states = states
        self.table = table
        self.batches = batches
        self.changelog_topic = changelog_topic
        self.counters = counters
        self.input_topics = input_topics
        self.max_events = flush_max_events
        self.interval = flush_interval_ms / 1000
        self.input = InputBuffer(max(4 * flush_max_events, 10_000))
        self.positions: InputPositions[TP] = InputPositions()
        self.paused = False
        """From a revocation until the table is recovered: batches are dropped (read again after)."""
        self.revocations = 0
        self.reemit = False
        """Set when a rebalance completes: every vendor of the assigned partitions is emitted once."""
        self.resumed_at = time.monotonic()
        self.delivered_at: dict[TP, float] = {}
        self.any_delivered_at = 0.0
        """When the last batch with any record was processed (the input watchdog's measure of a busy loop)."""
        """When each input partition last delivered a record (the input watchdog reads it)."""
        self.directories: dict[int, set[str]] = {}
        """Partition -> the vendors stored in it (read once per rebalance)."""
        self.stored: dict[TP, int] = {}
        """Watermarks stored since the last commit."""
        self.committed_at = 0.0
        self.full_batch_at = -BACKLOG_WINDOW_S
        """When a batch last took `max_events` records (more were waiting: a backlog)."""
        self.store_interval = store_interval_ms / 1000
        self.stored_at = 0.0
        self.unstored: set[int] = set()
        """Partitions folded into since the last store: the next store writes them all."""
        self.unstored_tps: set[TP] = set()
        self.on_batch: Callable[[list[Chunk]], None] | None = None
        """Diagnostics: sees every batch taken (VENDORPULSE_TRACE_INPUT)."""
        self.resolver: SchemaResolver | None = None
        """With a schema registry: resolves the batch's new Confluent schema ids before it is decoded."""
        self.alignment: Alignment[TP] = Alignment()
        """With the stream clock: stream time over the input partitions, and which are paused ahead of it."""

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        while not self.app.should_stop:
            # Input folded but not stored or committed yet is, once due, even if no more input comes:
            # the end of a log, or a quiet spell, must not leave it uncommitted.
            idle = None if self.paused else self.idle_wait(time.monotonic())  # paused: nothing may store
            chunks = await self.input.take(self.max_events, self.interval, idle)
            if sum(len(c.records) for c in chunks) >= self.max_events:
                self.full_batch_at = time.monotonic()  # reading a backlog: snapshots are rationed
            if self.on_batch is not None:
                self.on_batch(chunks)
            # Confluent-framed input: new schema ids resolved first. Through a registry outage this waits
            # (and says so); no partition counts as stalled meanwhile (watchdogs.watch_input).
            resolver = self.resolver
            if resolver is not None and await resolver.prepare([r.value for c in chunks for r in c.records]):
                self.resumed_at = time.monotonic()
            if self.paused or self.app.should_stop:
                continue  # read during a rebalance: read again once it completes
            await self.process(chunks)

    async def process(self, chunks: list[Chunk]) -> None:
        app, states, positions = self.app, self.states, self.positions
        generation, epoch = app.consumer_generation_id, self.revocations
        now = time.monotonic()
        states.begin_batch(int(time.time() * 1000))  # every snapshot from now on is as of a later instant
        stream_clock = states.stream_clock
        outputs: list[Record] = []
        partitions: set[int] = set()
        seen: set[TP] = set()
        seeks: dict[TP, int] = {}
        handle, handle_run = states.handle, states.handle_run
        for chunk in chunks:
            if chunk.generation != generation:
                continue  # stale: read again after the rebalance's seek
            tp, records = chunk.tp, chunk.records
            self.delivered_at[tp] = now
            self.any_delivered_at = now
            seen.add(tp)
            topic, partition = tp.topic, tp.partition
            if stream_clock:
                self.alignment.read(tp, max(r.timestamp for r in records))
            if positions.run(tp, records[0].offset, records[-1].offset, len(records)):
                outputs += handle_run(topic, partition, records)  # the common case: the offsets expected next
                partitions.add(partition)
                continue
            for r in records:
                verdict = positions.check(tp, r.offset, now)
                if verdict is Verdict.SEEK:
                    seeks[tp] = positions.expected[tp]
                    continue
                if verdict is Verdict.DROP or verdict is Verdict.OLD:
                    continue
                if verdict is Verdict.ACCEPT:
                    log.warning(
                        "no record of %s below offset %s: the gap was read again and is real", tp, r.offset
                    )
                outputs += handle(topic, partition, r.offset, r.key, r.value, r.timestamp)
                partitions.add(partition)
        if stream_clock and self.still_current(generation, epoch):
            self.align()
        if seeks and self.still_current(generation, epoch):
            await self.seek_back(seeks)
        if outputs:
            await asyncio.gather(*await self.send(outputs))
        self.unstored.update(partitions)
        self.unstored_tps.update(seen)
        if not self.still_current(generation, epoch):
            # A rebalance began (or the worker is stopping): the partitions' next owner restores from
            # the changelog, and a write now could land after that restore. Not stored: read again
            # after the rebalance, so the in-memory states that folded them are dropped too.
            self.drop_memory(self.unstored)
            return
        if not self.unstored or now - self.stored_at < self.store_interval:
            await self.commit_due(now)  # what earlier batches stored
            return  # folded and announced; stored with a later batch (read again after a crash)
        stored_partitions, self.unstored = self.unstored, set()
        stored_tps, self.unstored_tps = self.unstored_tps, set()
        self.stored_at = now
        await asyncio.gather(*await self.store(stored_partitions))
        if not self.still_current(generation, epoch):
            self.drop_memory(stored_partitions)  # stored, but the positions may be stale: read again, skipped
            return
        for tp in stored_tps:
            expected = positions.expected.get(tp)
            if expected is not None:
                self.stored[tp] = expected
        await self.commit_due(now)

    def align(self) -> None:
        """Stream time from what the input partitions have read (`processors.worker.alignment`), and
        the partitions read too far past it paused until it catches up."""
        lagging = self.lagging
        time_ms = self.alignment.time(lagging)
        if time_ms is not None:
            self.states.read_up_to(time_ms)
        before = self.alignment.paused
        pause, resume = self.alignment.plan(self.states.stream_ms, lagging)
        consumer = self.app.consumer
        if pause:  # Faust's sets hold its own TP (the fetched records' partitions are aiokafka's)
            consumer.pause_partitions({TP(tp.topic, tp.partition) for tp in pause})
            if pause - before:
                self.counters.bump("alignment_pauses", len(pause - before))
        if resume:
            consumer.resume_partitions({TP(tp.topic, tp.partition) for tp in resume})

    def lagging(self, tp: TP) -> bool:
        """Records remain to fold in `tp`: its next offset to fold is below its high watermark (as of
        the consumer's last fetch; unknown: not lagging)."""
        expected = self.positions.expected.get(tp)
        if expected is None:
            return False
        try:
            highwater = self.app.consumer.highwater(tp)
        except (AssertionError, KeyError, AttributeError):  # not assigned (any more), no fetch yet
            return False
        return highwater is not None and expected < highwater

    async def commit_due(self, now: float) -> None:
        """Commit the stored watermarks, at most once every `COMMIT_EVERY_S`."""
        if self.stored and now - self.committed_at >= COMMIT_EVERY_S:
            self.committed_at = now
            stored, self.stored = self.stored, {}
            await commit(self.app.consumer, stored)

    def idle_wait(self, now: float) -> float | None:
        """How long the loop may wait for input before a store or a commit falls due (None: no limit)."""
        waits = []
        if self.unstored:
            waits.append(self.stored_at + self.store_interval - now)
        if self.stored:
            waits.append(self.committed_at + COMMIT_EVERY_S - now)
        return max(0.0, min(waits)) if waits else None

    def still_current(self, generation: int, epoch: int) -> bool:
        """No rebalance began and the worker is not stopping since the batch started."""
        return not (
            self.paused
            or self.app.should_stop
            or self.revocations != epoch
            or self.app.consumer_generation_id != generation
        )

    async def seek_back(self, seeks: dict[TP, int]) -> None:
        """Read again from where the stored state ends: records between there and what arrived were
        dropped before they reached the worker (processors/positions.py)."""
        consumer = self.app.consumer
        assert isinstance(consumer, InputConsumer)
        for tp, offset in seeks.items():
            log.warning(
                "input %s:%s skipped records from offset %s: reading again from there",
                tp.topic,
                tp.partition,
                offset,
            )
            consumer.request_seek(tp, offset)  # made between two fetches: no race (faust_patches.py)
            self.counters.bump("gap_seeks")

    async def send(self, records: list[Record]) -> list[asyncio.Future[Any]]:
        """Hand records to the producer; the returned futures complete when Kafka has them."""
        return await self.batches.send([(r.topic, r.partition, r.key, r.value, r.headers) for r in records])

    async def store(self, partitions: set[int]) -> list[asyncio.Future[Any]]:
        """Write each partition's changed vendors, its vendor directory when it grew, and its watermark
        to the local table, then send the same writes to the changelog; the returned futures complete
        when Kafka has them.

        The local writes happen with no await between the last check that the worker is not stopping
        and them (Faust closes the table before it stops the tasks). The changelog records go straight to
        the producer: Faust's own changelog path goes through a buffer whose flush gives up after 100 ms,
        so neither a commit nor a rebalance could rely on it; the producer's accumulator has them at
        once, so a rebalance's flush delivers them before the next owner restores.
        """
        states = self.states
        records: list[tuple[str, int | None, bytes | None, bytes | None, tuple[()]]] = []
        for partition in partitions:
            writes = states.flush(partition)
            stored = self.directory(partition)
            if not stored.issuperset(states.flushed):
                stored.update(states.flushed)
                writes.append((directory_key(partition), encode_directory(stored)))
            writes.append((watermark_key(partition), encode_watermark(self.mark_of(partition))))
            self.table.write(partition, writes)
            records += [(self.changelog_topic, partition, key, value, ()) for key, value in writes]
        return await self.batches.send(records)

    def mark_of(self, partition: int) -> dict[str, int]:
        """The partition's watermark after this batch: per input topic, the next offset to fold. Both
        topics are named as soon as the partition stores anything, so a rebalance always commits an
        offset for them (a partition with none would start wherever the consumer happens to be).

        The positions start at the stored watermark after each rebalance and only grow, so the table is
        read only for a topic they do not know (a partition the last rebalance did not name)."""
        mark: dict[str, int] = {}
        for topic in self.input_topics:
            expected = self.positions.expected.get(TP(topic, partition))
            if expected is not None:
                mark[topic] = expected
        if len(mark) < 2:
            for topic, stored in self.watermark(partition).items():
                mark[topic] = max(stored, mark.get(topic, 0))
        return mark

    def watermark(self, partition: int) -> dict[str, int]:
        return decode_watermark(self.table.getter(partition)(watermark_key(partition)))

    def directory(self, partition: int) -> set[str]:
        vendors = self.directories.get(partition)
        if vendors is None:
            vendors = self.directories[partition] = decode_directory(
                self.table.getter(partition)(directory_key(partition))
            )
        return vendors

    def every_vendor(self) -> list[tuple[str, int]]:
        """(vendor, partition) of every vendor stored in or folded into the assigned partitions."""
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.input_topics[0]}
        found = {v: p for p in assigned for v in self.directory(p)}
        found.update({v: log.partition for v, log in self.states.vendors.items()})
        return [(v, p) for v, p in found.items() if p in assigned]

    def drop_memory(self, partitions: set[int] | None = None) -> None:
        """Forget in-memory vendor states (of `partitions`, or all) and the vendor directories: the next
        event of a forgotten vendor loads it from the table, which after a rebalance is the truth."""
        self.states.forget(partitions)
        for partition in list(self.directories):
            if partitions is None or partition in partitions:
                del self.directories[partition]

    # -- rebalances --------------------------------------------------------------------------------

    def on_revoked(self) -> None:
        """The next owner (maybe this worker again) starts from the table and the stored watermarks;
        what was not stored is read again, so in-memory progress is dropped."""
        self.paused = True
        self.revocations += 1
        self.alignment.forget()  # Faust pauses and resumes the partitions through the rebalance
        self.stored.clear()
        self.unstored.clear()
        self.unstored_tps.clear()
        self.drop_memory()

    async def on_recovered(self) -> None:
        """The table is recovered; Faust seeks the input to the committed offsets next. A batch that ran
        during the rebalance may have loaded vendors from a table not yet recovered: drop all that."""
        self.drop_memory()
        await self.rewind_to_watermarks()
        self.resumed_at = time.monotonic()
        self.paused = False
        self.reemit = True
        # Long-lived objects that a full collection only rescans: freeze what exists and make young
        # collections rarer; the few cycles made per batch are still collected.
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)

    async def rewind_to_watermarks(self) -> None:
        """Commit each assigned input partition's stored watermark as the group's offset.

        Runs once the table is recovered, just before Faust seeks the input to the committed offsets,
        so that seek starts exactly where the stored state ends, whatever was committed before. With no
        watermark (nothing stored for the partition yet) the partition starts at its beginning; input
        read twice is skipped per vendor. Kafka refuses the commit of a member that left, so a leaving
        worker cannot undo this one. Faust's seek is not relied on (aiokafka does not seek to a committed
        0): the same targets reset the positions every record is held against, which seek back when the
        input starts elsewhere.
        """
        consumer = self.app.consumer
        inputs = [tp for tp in consumer.assignment() if tp.topic in self.input_topics]
        marks = {tp: self.watermark(tp.partition).get(tp.topic) for tp in inputs}
        earliest = await earliest_offsets(consumer, [tp for tp, mark in marks.items() if mark is None])
        targets = {tp: mark if mark is not None else earliest[tp] for tp, mark in marks.items()}
        self.positions.reset(targets)
        if targets:
            log.debug("input starts at the stored watermarks: %s", sorted(targets.items()))
            await commit(consumer, targets)

    async def emit_snapshots(self, send: Callable[[list[Record]], Awaitable[Any]]) -> None:
        """The coalesced `vendor-metrics` records due now; after a rebalance, every vendor once."""
        if self.app.should_stop:
            return  # the table may be closed already
        states = self.states
        if self.reemit and not self.paused:
            # The previous owner (or this worker, before the revocation dropped it) may have stored a
            # state it never emitted, and no input of that vendor may come again to load it.
            self.reemit = False
            for vendor_id, partition in self.every_vendor():
                states.vendor(vendor_id, partition)
        wall_ms = int(time.time() * 1000)
        now_ms = states.now(wall_ms)  # the wall clock, or stream time (VENDORPULSE_CLOCK)
        if now_ms is None:
            return  # stream time: no record with a timestamp read yet (what is due stays due)
        backlog = time.monotonic() - self.full_batch_at < BACKLOG_WINDOW_S
        rolled = states.roll(now_ms, self.every_vendor, wall_ms)
        records = rolled + states.due_snapshots(wall_ms, now_ms, backlog)
        if records:
            await send(records)
