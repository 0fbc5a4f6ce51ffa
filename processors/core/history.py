"""What the fold remembers per event, behind one interface: event ids, orders, customers' first orders.

Contract §4.1 lets a processor forget an event once it lies behind the lateness horizon, so what must
be remembered per event is bounded in time (`L` days of it), not in count. The heap cannot hold even
that at a marketplace's volume (a year of event ids), so the fold (`processors.core.apply`) reaches
it only through `History`:

- `seen(event_id)`: the occurred_at of the event that marked the id seen (the greatest one: an id seen
  again after the horizon passed it is marked anew), or None;
- `order(order_id)`: the `OrderEntry` of the order id: its visible placement and waiting cancellations;
- `first_order(customer_id)`: the earliest occurred_at of the customer's accepted placements (never
  forgotten: it grows with customers, not with events).

`MemoryHistory` keeps all of it in dicts, forgetting nothing: replay and the tests use it (whether an
entry is visible is decided by comparing its time with the horizon, never by whether it was deleted, so
keeping more changes no result). The worker keeps it in its changelog-backed RocksDB table
(`processors.worker.stored_history.StoredHistory`), where what falls behind the horizon is deleted.

An entry obtained from `order()` is the caller's to change, and is handed back with `put_order`; a store
may return a fresh copy each time, so a change without `put_order` is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

Line = tuple[str, str, int, int]
"""An order line: (product_id, category, quantity, unit_price)."""


@dataclass(slots=True)
class Order:
    """An accepted placement: what a later cancellation takes out of the figures."""

    occurred_at: int
    customer_id: str
    total: int
    items: tuple[Line, ...]
    cancelled_at: int | None = None
    """The earliest occurred_at of the cancellations that apply to it (contract §4.1), or None."""
    repeated: tuple[str, ...] = ()
    """A category once more for each further line of the order in it (usually none), so that the
    bucket fold can count the order once per category without grouping its lines each time."""


@dataclass(slots=True)
class OrderEntry:
    """What the fold knows of one order id."""

    placed: Order | None = None
    """The last accepted placement of the id (visible while its occurred_at is at or after the horizon)."""
    waiting: tuple[int, ...] = ()
    """occurred_at of cancellations that met no visible placement, ascending: they apply to the next
    placement of the id read while they are at or after the horizon."""

    def expires(self) -> int:
        """The greatest time in the entry: once the horizon passes it, nothing can see the entry."""
        latest = max(self.waiting, default=-(1 << 62))
        return max(latest, self.placed.occurred_at) if self.placed is not None else latest


class History(Protocol):
    def seen(self, event_id: str) -> int | None: ...
    def mark_seen(self, event_id: str, occurred_at: int) -> None: ...
    def order(self, order_id: str) -> OrderEntry | None: ...
    def put_order(self, order_id: str, entry: OrderEntry) -> None: ...
    def first_order(self, customer_id: str) -> int | None: ...
    def set_first_order(self, customer_id: str, occurred_at: int) -> None: ...


@dataclass(slots=True)
class MemoryHistory:
    """Everything in dicts, nothing forgotten (replay, tests, benchmarks of the pure core)."""

    ids: dict[str, int] = field(default_factory=dict)
    orders: dict[str, OrderEntry] = field(default_factory=dict)
    customers: dict[str, int] = field(default_factory=dict)

    def seen(self, event_id: str) -> int | None:
        return self.ids.get(event_id)

    def mark_seen(self, event_id: str, occurred_at: int) -> None:
        self.ids[event_id] = occurred_at

    def order(self, order_id: str) -> OrderEntry | None:
        return self.orders.get(order_id)

    def put_order(self, order_id: str, entry: OrderEntry) -> None:
        self.orders[order_id] = entry

    def first_order(self, customer_id: str) -> int | None:
        return self.customers.get(customer_id)

    def set_first_order(self, customer_id: str, occurred_at: int) -> None:
        self.customers[customer_id] = occurred_at
