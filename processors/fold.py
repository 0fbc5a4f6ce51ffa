"""The worker's per-message logic, free of Faust so it can be tested and reused (replay, benchmarks).

`Folder.handle` takes one consumed record (topic, partition, offset, key, value) and returns the records
to produce: DLQ copies of bad input, `new_order` notifications. It keeps each vendor's state in memory
(`VendorLog`), skips input at or below the vendor's applied offset for that source partition (Kafka
delivers it again after a crash; the state already has it), and tracks what is unflushed.
`Folder.flush(partition)` gives the table writes that persist a partition's changed vendors, and
`Folder.due_snapshots(now)` the coalesced `vendor-metrics` records.

Which input counts is decided by `vendor_of`, `read_event` and `apply` (a `rejection` when it refuses),
in that order; replay (`processors.replay`) and export (`processors.archive`) take their input through
the same three, so they cannot disagree with the worker on what counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from processors.changelog import HistoryMemory, VendorLog
from processors.core.apply import Outcome, Status, StockLevel, apply, observe, stock_level
from processors.core.calendar import DAY_MS, iso_millis
from processors.core.prune import prune
from processors.core.snapshot import snapshot
from processors.core.state import NO_FLOOR, State
from schemas.codec import Codec
from schemas.events import ORDER_EVENTS, Event, InventoryAdjusted, OrderPlaced, ProductUpserted
from schemas.exceptions import CodecError

_CONTROL = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Record:
    """A record to produce. `partition` None means: by key."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an input record is not folded: the DLQ headers' code, error class and message."""

    code: str
    error: str
    message: str


BAD_KEY = Refusal(
    "bad_key", "KeyError", "the message key must be the vendor_id in UTF-8, without control characters"
)
NO_VALUE = Refusal("no_value", "ValueError", "the message has no value")


def vendor_of(key: bytes | None) -> str | None:
    """The vendor a record is keyed by; None when the key cannot be a vendor_id (`BAD_KEY`)."""
    if not key:
        return None
    try:
        vendor_id = key.decode()
    except UnicodeDecodeError:
        return None
    # The table's keys put control characters after the vendor id (processors.changelog).
    if vendor_id.isprintable() or not _CONTROL.search(vendor_id):  # isprintable: the fast common case
        return vendor_id
    return None


def read_event(codec: Codec, value: bytes | None, on_orders_topic: bool) -> Event | Refusal:
    """The record's event (not validated: `apply` rejects invalid ones), or why it is refused."""
    if value is None:
        return NO_VALUE
    try:
        event = codec.decode(value, validate=False)
    except CodecError as exc:
        return Refusal(exc.code, type(exc).__name__, str(exc))
    if on_orders_topic != isinstance(event, ORDER_EVENTS):
        expected = "orders" if isinstance(event, ORDER_EVENTS) else "inventory"
        return Refusal("wrong_topic", "WrongTopic", f"{type(event).__name__} belongs on the {expected} topic")
    return event


PRODUCT_EVENTS = (ProductUpserted, InventoryAdjusted)


def stock_alert(
    state: State, event: ProductUpserted | InventoryAdjusted, before: StockLevel
) -> dict[str, Any] | None:
    """The `stock_alert` body (contract §6; the API adds its `cursor`) when an accepted catalog or stock
    event changed its product's stock state from `before`; None when it did not. It depends on the
    vendor's inventory events alone, so a replay, which interleaves the two topics otherwise, gives the
    same alerts."""
    after = stock_level(state, event.product_id)
    if after.state == before.state:
        return None
    return {
        "type": "stock_alert",
        "vendorId": event.vendor_id,
        "productId": event.product_id,
        "name": after.name,
        "stock": after.stock,
        "threshold": after.threshold,
        "state": after.state,
        "previous": before.state,
        "eventId": event.event_id,
        "occurredAt": iso_millis(event.occurred_at),
    }


def rejection(outcome: Outcome) -> Refusal:
    """The refusal of an event `apply` refused: schema-valid, but breaking a rule of contract §4, or
    dated before the lateness horizon (§4.1)."""
    if outcome.status is Status.TOO_LATE:
        return Refusal("too_late", "TooLate", outcome.reason or "")
    return Refusal("invalid_event", "InvalidEvent", outcome.reason or "")


@dataclass
class FoldStats:
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    stock_alerts: int = 0
    budget_checkpoints: int = 0
    """vendors checkpointed early because the history in the heap passed its limit"""


def dlq_record(
    dlq_topic: str, key: bytes | None, value: bytes | None, code: str, error: str, message: str,
    topic: str, partition: int, offset: int,
) -> Record:  # fmt: skip
    """The original key and bytes, unchanged, with headers that say why and where from (contract §2)."""
    headers = (
        ("vp.error.code", code.encode()),
        ("vp.error.class", error.encode()),
        ("vp.error.message", message.encode()[:4096]),
        ("vp.source.topic", topic.encode()),
        ("vp.source.partition", str(partition).encode()),
        ("vp.source.offset", str(offset).encode()),
    )
    return Record(dlq_topic, key, value, headers)


class Folder:
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
        self.snapshot_due: set[str] = set()
        self.last_emit: dict[str, int] = {}
        self.stats = FoldStats()
        self.current_day: int | None = None
        self.flushed: set[str] = set()
        """The vendors the last `flush` wrote."""
        self.floor = NO_FLOOR
        """No snapshot asks for an instant before this (the wall clock when the batch began)."""

    # -- state -------------------------------------------------------------------------------------
    def vendor(self, vendor_id: str, partition: int) -> VendorLog:
        log = self.vendors.get(vendor_id)
        if log is None:
            log = self.vendors[vendor_id] = self.load(vendor_id, partition)
            # The previous owner may have stored this state and died before it emitted the snapshot:
            # emit the restored state once (the worker loads every vendor of its partitions after a
            # rebalance for this, as no input of the vendor may come again).
            self.snapshot_due.add(vendor_id)
        return log

    def forget(self, partitions: set[int] | None = None) -> None:
        """Drop in-memory vendors (of `partitions`, or all): after a rebalance the table is the truth."""
        for vendor_id in [
            v for v, log in self.vendors.items() if partitions is None or log.partition in partitions
        ]:
            self.vendors.pop(vendor_id).history.discard()
            self.snapshot_due.discard(vendor_id)
        for p in list(self.dirty_by_partition):
            if partitions is None or p in partitions:
                del self.dirty_by_partition[p]

    # -- input -------------------------------------------------------------------------------------
    def handle(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, ts: int = -1
    ) -> list[Record]:
        """Fold one input record (`ts` its Kafka timestamp in ms, < 0 for none); the records to produce."""
        self.stats.consumed += 1
        vendor_id = vendor_of(key)
        if vendor_id is None:
            return [self._dead(topic, partition, offset, key, value, BAD_KEY)]
        log = self.vendor(vendor_id, partition)
        state = log.state
        if state.floor < self.floor:
            state.floor = self.floor
        source = f"{topic}:{partition}"
        if offset <= state.offsets.get(source, -1):
            self.stats.redelivered += 1
            return []
        state.offsets[source] = offset
        log.offsets_dirty = True
        self.dirty_by_partition.setdefault(partition, set()).add(vendor_id)
        on_orders = topic == self.orders_topic
        event = read_event(self.codec, value, on_orders)
        if isinstance(event, Refusal):
            if event.code == "wrong_topic":
                observe(state, on_orders, ts)  # it decoded to an event: its topic's clock moves
            return [self._dead(topic, partition, offset, key, value, event)]
        assert value is not None  # read_event refuses a record without one
        before = stock_level(state, event.product_id) if isinstance(event, PRODUCT_EVENTS) else None
        outcome = apply(state, event, ts)
        if outcome.status is Status.APPLIED:
            self.stats.applied += 1
            log.applied(self.codec.stored_form(value, event), event)  # restorable without a registry
            self.snapshot_due.add(vendor_id)
            if isinstance(event, OrderPlaced):
                return [self._activity(event, state.version)]
            if (
                isinstance(event, PRODUCT_EVENTS)
                and before is not None
                and (alert := stock_alert(state, event, before)) is not None
            ):
                self.stats.stock_alerts += 1
                return [Record(self.activity_topic, event.vendor_id.encode(), orjson.dumps(alert))]
            return []
        if outcome.status is Status.DUPLICATE:
            self.stats.duplicates += 1
            if outcome.changed:  # a second placement: its event_id is seen
                log.applied(self.codec.stored_form(value, event), event)
            return []
        return [self._dead(topic, partition, offset, key, value, rejection(outcome))]

    def _dead(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        why: Refusal,
    ) -> Record:  # fmt: skip
        self.stats.dead_lettered += 1
        self.stats.by_reason[why.code] = self.stats.by_reason.get(why.code, 0) + 1
        return dlq_record(
            self.dlq_topics[topic], key, value, why.code, why.error, why.message, topic, partition, offset
        )

    def _activity(self, event: Event, version: int) -> Record:
        assert isinstance(event, OrderPlaced)
        body = {
            "vendorId": event.vendor_id,
            "eventId": event.event_id,
            "orderId": event.order_id,
            "customerId": event.customer_id,
            "currency": event.currency,
            "total": event.total,
            "items": sum(i.quantity for i in event.items),
            "occurredAt": iso_millis(event.occurred_at),
            "version": version,
        }
        return Record(self.activity_topic, event.vendor_id.encode(), orjson.dumps(body))

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
        self.stats.budget_checkpoints += len(chosen)
        return chosen

    def due_snapshots(self, now_ms: int) -> list[Record]:
        """`vendor-metrics` records for changed vendors, at most one per vendor per interval."""
        out = []
        for vendor_id in list(self.snapshot_due):
            if now_ms - self.last_emit.get(vendor_id, -(1 << 62)) < self.snapshot_interval_ms:
                continue
            log = self.vendors.get(vendor_id)
            self.snapshot_due.discard(vendor_id)
            if log is None:
                continue
            self.last_emit[vendor_id] = now_ms
            out.append(self.snapshot_record(log, now_ms))
        return out

    def snapshot_record(self, log: VendorLog, now_ms: int) -> Record:
        body = snapshot(log.state, now_ms, self.period_days)
        return Record(self.metrics_topic, log.state.vendor_id.encode(), orjson.dumps(body))

    def roll(self, now_ms: int, every_vendor: Callable[[], list[tuple[str, int]]]) -> list[Record]:
        """At a new UTC day: prune detail no live snapshot needs and re-emit every vendor as of now.

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
            self.last_emit[vendor_id] = now_ms
            out.append(self.snapshot_record(log, now_ms))
        return out
