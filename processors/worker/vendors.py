"""The worker's vendors in memory and its per-record logic, free of Faust so it can be tested and reused.

`VendorStates.handle` takes one consumed record (topic, partition, offset, key, value, timestamp) and
returns the records to produce: DLQ copies of bad input, `new_order` notifications, stock alerts. It keeps
each vendor's state in memory (`VendorLog`), skips input at or below the vendor's applied offset for that
source partition (Kafka delivers it again after a crash; the state already has it), and tracks what is
unflushed. `flush(partition)` gives the table writes that persist a partition's changed vendors, and
`due_snapshots(now)` the coalesced `vendor-metrics` records. What counts is `processors.intake`'s.

The clock (`VENDORPULSE_CLOCK`). Snapshots are as of "now", the daily prune runs when now enters a new
UTC day, and the floor (no later snapshot asks for an instant before it) is now when a batch begins.
With `wall`, now is the machine's clock. With `stream`, now is *stream time*: from the Kafka record
timestamps the worker has read, the least over its lagging input partitions of the greatest read from
each (`processors.worker.alignment`: the greatest read when none lags, as live), raised to the floor of
every vendor state it loads (what a previous owner folded); it never goes back, across restarts and
rebalances too (`read_up_to`); a record without a timestamp leaves it as it is, and until one with a
timestamp is read nothing is emitted. The throttle of snapshots per vendor (`snapshot_interval_ms`) stays on the machine's clock.
A snapshot is never as of an instant before its state's floor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

import orjson

from processors.core.apply import Status, apply, observe, stock_level
from processors.core.calendar import DAY_MS
from processors.core.prune import prune
from processors.core.snapshot import snapshot
from processors.core.state import NO_FLOOR
from processors.intake import BAD_KEY, PRODUCT_EVENTS, InputCounts, Refusal, read_event, rejection, vendor_of
from processors.outputs import Record, dlq_record, order_notice, stock_alert
from processors.worker.stored_history import HistoryMemory
from processors.worker.vendor_log import VendorLog
from schemas.codec import Codec
from schemas.events import OrderPlaced


class Consumed(Protocol):
    """What the worker reads of an input record (aiokafka's `ConsumerRecord` has it)."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


class InputRecord(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


class VendorStates:
    def __init__(
        self,
        codec: Codec,
        *,
        orders_topic: str,
        inventory_topic: str,
        metrics_topic: str,
        activity_topic: str,
        dlq_topics: dict[str, str],
        load: Callable[[str, int], VendorLog],
        period_days: int = 30,
        snapshot_interval_ms: int = 50,
        memory: HistoryMemory | None = None,
        snapshot_budget_ms: float = 5.0,
        clock: str = "wall",
    ):
        self.codec = codec
        self.orders_topic = orders_topic
        self.inventory_topic = inventory_topic
        self.metrics_topic = metrics_topic
        self.activity_topic = activity_topic
        self.dlq_topics = dlq_topics
        self.load = load
        self.period_days = period_days
        self.snapshot_interval_ms = snapshot_interval_ms
        self.memory = memory if memory is not None else HistoryMemory()
        """The history the heap holds across vendors; `load` must give its vendors the same object."""
        self.vendors: dict[str, VendorLog] = {}
        self.dirty_by_partition: dict[int, set[str]] = {}
        self.snapshot_due: dict[str, None] = {}
        """Vendors changed since their last snapshot, the longest waiting first (an ordered set)."""
        self.snapshot_budget_s = snapshot_budget_ms / 1000
        self.live_budget_s = snapshot_interval_ms / 2000
        """Snapshot building per call while no backlog is read: half the interval between calls."""
        self.snapshot_cost_s = 50e-6
        """The recent mean time to build one snapshot (its JSON included)."""
        self.snapshots_deferred = 0
        self.last_emit: dict[str, int] = {}
        self.counts = InputCounts()
        self.stock_alerts = 0
        """alerts written (processors.outputs.stock_alert)"""
        self.early_checkpoints = 0
        """vendors checkpointed early because the history in the heap passed its limit"""
        self.current_day: int | None = None
        self._vendor_keys: dict[bytes, str] = {}
        """Record keys already read as vendor ids (a few hundred distinct keys carry all the input)."""
        self.flushed: set[str] = set()
        """The vendors the last `flush` wrote."""
        self.floor = NO_FLOOR
        """No snapshot asks for an instant before this (now when the batch began)."""
        if clock not in ("wall", "stream"):
            raise ValueError(f"clock must be wall or stream, got {clock!r}")
        self.stream_clock = clock == "stream"
        self.stream_ms: int | None = None
        """Stream time (with the stream clock), never going back; None until there is one."""

    # -- state -------------------------------------------------------------------------------------
    def vendor(self, vendor_id: str, partition: int) -> VendorLog:
        log = self.vendors.get(vendor_id)
        if log is None:
            log = self.vendors[vendor_id] = self.load(vendor_id, partition)
            if self.stream_clock:  # what a previous owner folded: stream time does not go back before it
                self.read_up_to(log.state.floor)
            # The previous owner may have stored this state and died before it emitted the snapshot:
            # emit the restored state once (the worker loads every vendor of its partitions after a
            # rebalance for this, as no input of the vendor may come again).
            self.snapshot_due[vendor_id] = None
        return log

    def forget(self, partitions: set[int] | None = None) -> None:
        """Drop in-memory vendors (of `partitions`, or all): after a rebalance the table is the truth."""
        for vendor_id in [
            v for v, log in self.vendors.items() if partitions is None or log.partition in partitions
        ]:
            self.vendors.pop(vendor_id).history.discard()
            self.snapshot_due.pop(vendor_id, None)
        for p in list(self.dirty_by_partition):
            if partitions is None or p in partitions:
                del self.dirty_by_partition[p]

    # -- the clock ---------------------------------------------------------------------------------
    def read_up_to(self, ts: int) -> None:
        """Stream time is at least `ts` (the input read, or a loaded state's floor); it never goes back."""
        if ts >= 0 and (self.stream_ms is None or ts > self.stream_ms):
            self.stream_ms = ts

    def now(self, wall_ms: int) -> int | None:
        """The instant snapshots are as of: the wall clock, or stream time (None: no timestamp read yet)."""
        return self.stream_ms if self.stream_clock else wall_ms

    def begin_batch(self, wall_ms: int) -> None:
        """A batch begins: every snapshot from now on is as of a later instant (the floor)."""
        now = self.now(wall_ms)
        if now is not None and now > self.floor:
            self.floor = now

    # -- input -------------------------------------------------------------------------------------
    def handle(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, ts: int = -1
    ) -> list[Record]:
        """Fold one input record (`ts` its Kafka timestamp in ms, < 0 for none); the records to produce."""
        return self.handle_run(topic, partition, [InputRecord(offset, key, value, ts)])

    def handle_run(self, topic: str, partition: int, records: Iterable[Consumed]) -> list[Record]:
        """Fold records of one input partition, in offset order; the records to produce. The loop reads
        what every record shares (the source, the partition's dirty set) once."""
        counts = self.counts
        dirty = self.dirty_by_partition.get(partition)
        if dirty is None:
            dirty = self.dirty_by_partition[partition] = set()
        source = f"{topic}:{partition}"
        on_orders = topic == self.orders_topic
        keys = self._vendor_keys
        floor = self.floor
        out: list[Record] = []
        for r in records:
            counts.records += 1
            key = r.key
            vendor_id = keys.get(key) if key is not None else None
            if vendor_id is None:
                vendor_id = vendor_of(key)
                if vendor_id is None:
                    out.append(self._dead(topic, partition, r.offset, key, r.value, BAD_KEY))
                    continue
                if len(keys) < 100_000:
                    keys[key] = vendor_id  # type: ignore[index]  # not None: vendor_of took it
            log = self.vendors.get(vendor_id) or self.vendor(vendor_id, partition)
            state = log.state
            if state.floor < floor:
                if state.floor // DAY_MS == floor // DAY_MS:
                    state.floor = floor
                else:  # a vendor first seen today (or loaded before the first batch): keep what today reads
                    prune(state, floor, self.period_days)
            offset = r.offset
            offsets = state.offsets
            if offset <= offsets.get(source, -1):
                counts.redelivered += 1
                continue
            offsets[source] = offset
            log.offsets_dirty = True
            dirty.add(vendor_id)
            out += self._fold(log, topic, partition, offset, key, r.value, r.timestamp, on_orders)
        return out

    def _fold(
        self, log: VendorLog, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        ts: int, on_orders: bool,
    ) -> list[Record]:  # fmt: skip
        state = log.state
        event = read_event(self.codec, value, on_orders)
        if isinstance(event, Refusal):
            if event.code == "wrong_topic":
                observe(state, on_orders, ts)  # it decoded to an event: its topic's clock moves
            return [self._dead(topic, partition, offset, key, value, event)]
        assert value is not None  # read_event refuses a record without one
        before = stock_level(state, event.product_id) if isinstance(event, PRODUCT_EVENTS) else None
        outcome = apply(state, event, ts)
        if outcome.status is Status.APPLIED:
            self.counts.applied += 1
            log.applied(self.codec.stored_form(value, event), event)  # restorable without a registry
            self.snapshot_due[state.vendor_id] = None
            if isinstance(event, OrderPlaced):
                notice = orjson.dumps(order_notice(event, state.version))
                return [Record(self.activity_topic, event.vendor_id.encode(), notice)]
            if (
                isinstance(event, PRODUCT_EVENTS)
                and before is not None
                and (alert := stock_alert(state, event, before)) is not None
            ):
                self.stock_alerts += 1
                return [Record(self.activity_topic, event.vendor_id.encode(), orjson.dumps(alert))]
            return []
        if outcome.status is Status.DUPLICATE:
            self.counts.duplicates += 1
            if outcome.changed:  # a second placement: its event_id is seen
                log.applied(self.codec.stored_form(value, event), event)
            return []
        return [self._dead(topic, partition, offset, key, value, rejection(outcome))]

    def _dead(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        why: Refusal,
    ) -> Record:  # fmt: skip
        self.counts.refused[why.code] += 1
        return dlq_record(
            self.dlq_topics[topic], key, value, why.code, why.error, why.message, topic, partition, offset
        )

    # -- output ------------------------------------------------------------------------------------
    def flush(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        """Table writes that persist every changed vendor of `partition` (checkpoint or tail)."""
        writes: list[tuple[bytes, bytes | None]] = []
        self.flushed = self.dirty_by_partition.pop(partition, set())
        if self.memory.pending > self.memory.pending_limit:
            self.flushed |= self._checkpoint_largest(partition)
        for vendor_id in self.flushed:
            log = self.vendors.get(vendor_id)
            if log is not None:
                writes += log.flush(force_checkpoint=log.force_checkpoint)
                log.force_checkpoint = False
        return writes

    def _checkpoint_largest(self, partition: int) -> set[str]:
        """The history in the heap passed its limit: checkpoint the vendors of `partition` that hold the
        most of it, down to half the limit (the others' partitions do the same when they flush)."""
        logs = sorted(
            (log for log in self.vendors.values() if log.partition == partition),
            key=lambda log: -len(log.history.pending),
        )
        chosen = set()
        excess = self.memory.pending - self.memory.pending_limit // 2
        for log in logs:
            if excess <= 0 or not log.history.pending:
                break
            excess -= len(log.history.pending)
            log.force_checkpoint = True
            chosen.add(log.state.vendor_id)
        self.early_checkpoints += len(chosen)
        return chosen

    def due_snapshots(self, now_ms: int, as_of_ms: int | None = None, backlog: bool = True) -> list[Record]:
        """`vendor-metrics` records as of `as_of_ms` (default `now_ms`, the wall clock) for changed
        vendors, at most one per vendor per interval of `now_ms`, and at most as many as the budget's
        work builds. While the worker reads a `backlog` the budget is `snapshot_budget_ms`: snapshots
        would take the time folding needs, and a vendor's next events are already waiting. Live, it is
        half the snapshot interval: rationed to the backlog's budget, a worker with many vendors
        changing (500 vendors at 2 events/s each) built fewer snapshots than they needed and its
        dashboards fell seconds behind while its CPU idled. The vendors left over (the most recently
        changed) stay due and come first at the next call, so a vendor's snapshot is late by a few
        intervals at most, never lost."""
        out: list[Record] = []
        budget_s = self.snapshot_budget_s if backlog else max(self.snapshot_budget_s, self.live_budget_s)
        budget = max(1, int(budget_s / self.snapshot_cost_s))
        started = time.perf_counter()
        for vendor_id in list(self.snapshot_due):
            if now_ms - self.last_emit.get(vendor_id, -(1 << 62)) < self.snapshot_interval_ms:
                continue
            if len(out) >= budget:
                self.snapshots_deferred += 1
                continue
            log = self.vendors.get(vendor_id)
            del self.snapshot_due[vendor_id]
            if log is None:
                continue
            self.last_emit[vendor_id] = now_ms
            out.append(self.snapshot_record(log, now_ms if as_of_ms is None else as_of_ms))
        if out:
            cost = (time.perf_counter() - started) / len(out)
            self.snapshot_cost_s = 0.8 * self.snapshot_cost_s + 0.2 * cost
        return out

    def snapshot_record(self, log: VendorLog, now_ms: int) -> Record:
        """The vendor's snapshot as of `now_ms`, or as of its floor if that is later (a state loaded from
        a previous owner whose clock was ahead): exact either way."""
        body = snapshot(log.state, max(now_ms, log.state.floor), self.period_days)
        return Record(self.metrics_topic, log.state.vendor_id.encode(), orjson.dumps(body))

    def roll(
        self, now_ms: int, every_vendor: Callable[[], list[tuple[str, int]]], wall_ms: int | None = None
    ) -> list[Record]:
        """At a new UTC day of `now_ms`: prune detail no live snapshot needs and re-emit every vendor as
        of now (`wall_ms`, default `now_ms`: the wall clock, for the snapshot throttle).

        Nothing is written for it: a restore from the unpruned checkpoint gives the same snapshots (the
        days it keeps on top are read by none), and the vendor's next checkpoint stores the pruned state."""
        day = now_ms // DAY_MS
        if self.current_day is None:
            self.current_day = day
            return []
        if day == self.current_day:
            return []
        self.current_day = day
        out = []
        for vendor_id, partition in every_vendor():
            log = self.vendor(vendor_id, partition)
            prune(log.state, now_ms, self.period_days)
            self.last_emit[vendor_id] = now_ms if wall_ms is None else wall_ms
            out.append(self.snapshot_record(log, now_ms))
        return out
