"""The fold's history (`processors.core.history.History`) kept in the worker's table, and what of it the
heap holds: the changes since each vendor's last checkpoint, and one read cache for all vendors.
The keys and values are `processors.worker.table_layout`'s."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from processors.core.calendar import DAY_MS
from processors.core.history import Order, OrderEntry
from processors.core.state import INVENTORY, NO_FLOOR, ORDERS, State, horizon
from processors.worker.table_layout import (
    CUSTOMERS,
    EXPIRY,
    IDS,
    ORDER_IDS,
    Get,
    Write,
    decode_index,
    decode_value,
    encode_index,
    encode_value,
)

DELETED: Any = object()


@dataclass
class HistoryMemory:
    """What the heap holds of the history, across the worker's vendors, and its bounds.

    `cache`: values read from the table, kept decoded (first orders of returning customers, orders a
    cancellation is about to meet), by table key, at most `cache_limit`, the oldest read first out.
    `pending`: history keys changed since their vendor's last checkpoint; past `pending_limit` the
    worker checkpoints the vendors that hold the most (`processors.worker.vendors.VendorStates.flush`)."""

    cache_limit: int = 20_000
    pending_limit: int = 400_000
    cache: OrderedDict[bytes, Any] = field(default_factory=OrderedDict)
    pending: int = 0


@dataclass
class StoredHistory:
    """`processors.core.history.History` over the worker's table: changes since the last checkpoint in the heap
    (`pending`, relative keys -> values), then a small cache of decoded table values, then the table."""

    prefix: bytes
    get: Get
    memory: HistoryMemory = field(default_factory=HistoryMemory)
    pending: dict[bytes, Any] = field(default_factory=dict)
    unfiled: set[bytes] = field(default_factory=set)
    """Keys of `pending` not yet in the expiry index (those a restore put back already are)."""
    raw: dict[bytes, bytes | None] = field(default_factory=dict)
    """Expiry index records a restore put back, to write again."""
    expiry: dict[bytes, dict[int, int]] = field(default_factory=lambda: {IDS: {}, ORDER_IDS: {}})
    reads: int = 0
    """Table reads (cache misses), for the benchmarks."""

    def _value(self, key: bytes) -> Any:
        value = self.pending.get(key)
        if value is not None:
            return None if value is DELETED else value
        full = self.prefix + key
        cache = self.memory.cache
        value = cache.get(full)
        if value is not None:
            return value
        self.reads += 1
        data = self.get(full)
        if data is None:
            return None
        value = decode_value(key, data)
        if len(cache) >= self.memory.cache_limit:
            cache.popitem(last=False)
        cache[full] = value
        return value

    def _set_pending(self, key: bytes, value: Any) -> None:
        if key not in self.pending:
            self.memory.pending += 1
        self.pending[key] = value

    def _put(self, key: bytes, value: Any) -> None:
        self._set_pending(key, value)
        self.unfiled.add(key)
        self.memory.cache.pop(self.prefix + key, None)

    def seen(self, event_id: str) -> int | None:
        # Not cached: an id is looked up once, when its event comes (a re-send is rare), and caching every
        # id would push out the first orders and orders the cache is for.
        key = IDS + event_id.encode()
        value = self.pending.get(key)
        if value is not None:
            return None if value is DELETED else int(value)
        self.reads += 1
        data = self.get(self.prefix + key)
        return None if data is None else int(decode_value(key, data))

    def mark_seen(self, event_id: str, occurred_at: int) -> None:
        key = IDS + event_id.encode()
        self._set_pending(key, occurred_at)
        self.unfiled.add(key)

    def order(self, order_id: str) -> OrderEntry | None:
        entry: OrderEntry | None = self._value(ORDER_IDS + order_id.encode())
        if entry is None:
            return None
        # A copy: the caller changes it and hands it back, and the cache must not see the change first.
        p = entry.placed
        placed = (
            None
            if p is None
            else Order(p.occurred_at, p.customer_id, p.total, p.items, p.cancelled_at, p.repeated)
        )
        return OrderEntry(placed, entry.waiting)

    def put_order(self, order_id: str, entry: OrderEntry) -> None:
        self._put(ORDER_IDS + order_id.encode(), entry)

    def first_order(self, customer_id: str) -> int | None:
        value: int | None = self._value(CUSTOMERS + customer_id.encode())
        return value

    def set_first_order(self, customer_id: str, occurred_at: int) -> None:
        self._put(CUSTOMERS + customer_id.encode(), occurred_at)

    # -- checkpoints ---------------------------------------------------------------------------------------

    def restore_writes(self, writes: Iterable[Write]) -> None:
        """Put back the history writes a checkpoint carries (they may not all have reached the table)."""
        for key, value in writes:
            if key[:1] == EXPIRY:
                self.raw[key] = value
            else:
                self._set_pending(key, DELETED if value is None else decode_value(key, value))

    def forget(self, state: State) -> None:
        """Delete the entries the horizon has passed, through the expiry index (see the module docstring)."""
        h_orders = horizon(state, ORDERS)
        h_ids = min(h_orders, horizon(state, INVENTORY))
        for kind, h in ((IDS, h_ids), (ORDER_IDS, h_orders)):
            if h == NO_FLOOR:
                continue
            days = self.expiry[kind]
            for day in sorted(d for d in days if (d + 1) * DAY_MS <= h):
                for n in range(days.pop(day)):
                    index = self.prefix + EXPIRY + kind + b"%08x%08x" % (day, n)
                    relative = index[len(self.prefix) :]
                    data = self.raw.pop(relative) if relative in self.raw else self.get(index)
                    self._set_pending(relative, DELETED)
                    self.unfiled.discard(relative)
                    for key in decode_index(data) if data else ():
                        k = kind + key
                        value = self._value(k)
                        if value is not None and _time_of(kind, value) < h:
                            self._set_pending(k, DELETED)
                            self.unfiled.discard(k)
                            self.memory.cache.pop(self.prefix + k, None)

    def discard(self) -> None:
        """Let go of what the heap holds for this vendor (it is dropped from memory)."""
        self.memory.pending -= len(self.pending)
        self.pending = {}

    def checkpoint_writes(self) -> list[Write]:
        """The history writes since the last checkpoint, with the expiry index records that file them; the
        heap's pending changes are cleared (the caller writes them to the table at once)."""
        filed: dict[tuple[bytes, int], list[bytes]] = {}
        for key in self.unfiled:
            kind = key[:1]
            if kind == CUSTOMERS:
                continue
            value = self.pending[key]
            if value is DELETED:
                continue
            filed.setdefault((kind, _time_of(kind, value) // DAY_MS), []).append(key[1:])
        writes: list[Write] = [
            (key, encode_value(key, None if value is DELETED else value))
            for key, value in self.pending.items()
        ]
        writes += self.raw.items()
        self.memory.pending -= len(self.pending)
        for (kind, day), keys in sorted(filed.items()):
            n = self.expiry[kind].get(day, 0)
            self.expiry[kind][day] = n + 1
            writes.append((EXPIRY + kind + b"%08x%08x" % (day, n), encode_index(sorted(keys))))
        self.pending, self.unfiled, self.raw = {}, set(), {}
        return writes


def _time_of(kind: bytes, value: Any) -> int:
    if kind == ORDER_IDS:
        expires: int = value.expires()
        return expires
    time: int = value
    return time
