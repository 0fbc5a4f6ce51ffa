"""The event-sourcing fold of contract §4: `apply(state, event, ts)` folds one event into its vendor's state.

`apply` changes the `State` in place (no copy: it is the hot path) and says what it did, so the caller
can send refused events to the DLQ. Its cost is O(items of the event) plus a few `History` lookups, not
O(history). `ts` is the input record's Kafka timestamp: it moves the vendor's clock on the event's topic,
and so the lateness horizon (§4.1). Snapshots: `processors.core.snapshot`; the layout of the state:
`processors.core.state`.

Readings of the contract where its text leaves a choice (the naive reference in tests/unit follows them):
- Order of checks: a vendor_id other than the state's -> rejected; `validate()` reason -> rejected;
  occurred_at before the horizon -> too late; event_id seen -> duplicate; OrderPlaced in a currency
  other than the vendor's -> rejected; OrderPlaced with an order_id already placed -> duplicate (ignored,
  the first stands). The record's timestamp moves the clock before any check (§4.1: "whatever becomes of
  the event"), and the horizon is taken with it.
- Rejected and too-late events "count nowhere": their event_id is not marked seen (a corrected re-send is
  accepted), they set no currency and no first-order date. An ignored second placement of an order_id was
  a valid event, so its event_id is seen, but it counts nowhere else: not in a customer's first order date
  either ("any of their OrderPlaced" = the accepted placements, cancelled ones included). An event ignored
  as a duplicate marks nothing.
- "Only events with occurred_at <= T count for anything" applies to cancellations too: an order
  cancelled at a time after T still counts in a snapshot as of T. With several cancellations of one
  order the earliest counts; a cancellation of an order never placed waits and applies when it comes.
- Which order a cancellation cancels, with the horizon (§4.1): a cancellation *meets* the order id's
  placement read before it if that placement is at or after the horizon (H taken when the cancellation is
  read), and applies to it; otherwise it *waits*. A waiting cancellation applies to the next accepted
  placement of the id read while it is itself at or after the horizon (H taken when that placement is
  read), and to no later one: a cancellation belongs to one order.
- `currency` is the vendor's currency as the log defines it (its first accepted OrderPlaced, whatever T),
  like validity; null while the vendor has no accepted order.
- `version` is the number of applied events (duplicates and refused events change nothing).
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from dataclasses import dataclass

from processors.core.calendar import DAY_MS, iso_millis
from processors.core.history import OrderEntry
from processors.core.state import (
    CANCELLED,
    INVENTORY,
    ORDERS,
    PLACED,
    PRODUCT,
    Product,
    State,
    add_order,
    count_product,
    horizon,
    index_event,
    make_order,
    occurred,
    set_first_order,
    share_line,
    tick,
)
from processors.exceptions import UnsupportedEventError
from schemas.events import Event, InventoryAdjusted, OrderCancelled, OrderPlaced, ProductUpserted


class Status(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    TOO_LATE = "too_late"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `apply` did with an event; `reason` says why for duplicates and refusals (DLQ header)."""

    status: Status
    reason: str | None = None

    @property
    def changed(self) -> bool:
        """Whether the state changed: applied events, and second placements (their event_id is seen)."""
        return self.status is Status.APPLIED or self is DUPLICATE_ORDER


APPLIED = Outcome(Status.APPLIED)
DUPLICATE_EVENT = Outcome(Status.DUPLICATE, "event_id already seen")
DUPLICATE_ORDER = Outcome(Status.DUPLICATE, "order_id already placed; the first placement stands")


def rejected(reason: str) -> Outcome:
    return Outcome(Status.REJECTED, reason)


def clock_of(event: Event) -> int:
    """The clock an event's topic keeps: `orders` for order events, `inventory` for catalog and stock."""
    return ORDERS if isinstance(event, OrderPlaced | OrderCancelled) else INVENTORY


def observe(state: State, on_orders_topic: bool, ts: int) -> None:
    """A record that decoded to an event but is refused before `apply` (it is on the wrong topic) still
    moves its topic's clock (contract §4.1)."""
    tick(state, ORDERS if on_orders_topic else INVENTORY, ts)


def apply(state: State, event: Event, ts: int = -1) -> Outcome:
    """Fold one event (the next in log order; `ts` its record's timestamp, < 0 for none) into its
    vendor's state, in place."""
    clock = ORDERS if isinstance(event, OrderPlaced | OrderCancelled) else INVENTORY
    tick(state, clock, ts)
    if event.vendor_id != state.vendor_id:
        return rejected(
            f"vendor_id {event.vendor_id!r} is not this state's vendor {state.vendor_id!r}; "
            "is the message keyed by its vendor_id?"
        )
    reason = event.validate()
    if reason is not None:
        return rejected(reason)
    h = horizon(state, clock)
    if event.occurred_at < h:
        return too_late(state, event, ts, h)
    seen = state.history.seen(event.event_id)
    if seen is not None and seen >= h:
        return DUPLICATE_EVENT
    if isinstance(event, OrderPlaced):
        return _place(state, event, h)
    if isinstance(event, OrderCancelled):
        return _cancel(state, event, h)
    if isinstance(event, ProductUpserted):
        return _upsert(state, event)
    if isinstance(event, InventoryAdjusted):
        return _adjust(state, event)
    raise UnsupportedEventError(f"apply() takes a schemas.events record, got {type(event).__name__}")


def too_late(state: State, event: Event, ts: int, h: int) -> Outcome:
    days = state.lateness_ms // DAY_MS
    stamp = f"{iso_millis(ts)} ({ts})" if ts >= 0 else "none (-1)"
    return Outcome(
        Status.TOO_LATE,
        f"too late: occurred_at {iso_millis(event.occurred_at)} ({event.occurred_at}) is before the "
        f"horizon H = {iso_millis(h)} ({h}), the vendor's clock on this topic minus {days} days "
        f"(VENDORPULSE_LATENESS_DAYS); record ts {stamp}",
    )


def _place(state: State, event: OrderPlaced, h: int) -> Outcome:
    currency = state.currency
    if currency is not None and event.currency != currency:
        return rejected(
            f"currency {event.currency} is not the vendor's currency {currency} (that of its first order)"
        )
    history = state.history
    history.mark_seen(event.event_id, event.occurred_at)
    order_id = event.order_id
    entry = history.order(order_id)
    if entry is not None and entry.placed is not None and entry.placed.occurred_at >= h:
        return DUPLICATE_ORDER
    if currency is None:
        state.currency = event.currency
    at = event.occurred_at
    lines = state.lines
    items = []
    for item in event.items:  # the state's copy of each line (see processors.core.state)
        line = (item.product_id, item.category, item.quantity, item.unit_price)
        items.append(lines.get(line) or share_line(state, line))
    cancelled_at = None
    if entry is not None and entry.waiting:
        cancelled_at = next((w for w in entry.waiting if w >= h), None)  # ascending: the earliest
    order = make_order(state, at, event.customer_id, event.total, tuple(items), cancelled_at)
    history.put_order(order_id, OrderEntry(order))
    set_first_order(state, order.customer_id, at)
    if cancelled_at is None:
        add_order(state, order, 1)
    index_event(state, at, PLACED, order_id, 0, order)  # when dated after the floor
    if cancelled_at is not None:  # a waiting cancellation dated after the floor: T before it still counts
        index_event(state, cancelled_at, CANCELLED, order_id, 0, order)
    state.version += 1
    return APPLIED


def _cancel(state: State, event: OrderCancelled, h: int) -> Outcome:
    history = state.history
    history.mark_seen(event.event_id, event.occurred_at)
    state.version += 1
    order_id = event.order_id
    at = event.occurred_at
    entry = history.order(order_id)
    placed = entry.placed if entry is not None else None
    if placed is None or placed.occurred_at < h:  # no visible placement: it waits
        waiting = (w for w in entry.waiting if w >= h) if entry is not None else ()
        history.put_order(order_id, OrderEntry(placed, tuple(sorted([*waiting, at]))))
        return APPLIED
    assert entry is not None
    before = placed.cancelled_at
    if before is not None and before <= at:
        return APPLIED  # an earlier cancellation already counts
    placed.cancelled_at = at
    history.put_order(order_id, entry)
    pinned = state.pinned.get(order_id)
    if pinned is not None and pinned.occurred_at == placed.occurred_at:
        pinned.cancelled_at = at  # the timeline's copy (the same object when the history is in memory)
        placed = pinned
    if before is None:
        add_order(state, placed, -1)
    index_event(state, at, CANCELLED, order_id, 0, placed)
    return APPLIED


@dataclass(slots=True)
class StockLevel:
    """A product's stock state as contract §6 defines it for alerts: "out" (active, stock <= 0), "low"
    (active, 0 < stock <= threshold) or "ok" (any other case: inactive, never upserted, or enough
    stock), from every accepted event so far in log order, whatever its occurred_at. A value (not
    frozen only because the worker builds two for every catalog and stock event; see `schemas.events`)."""

    state: str
    stock: int
    threshold: int | None
    name: str | None


def stock_level(state: State, product_id: str) -> StockLevel:
    product = state.products.get(product_id)
    if product is None:
        return StockLevel("ok", 0, None, None)
    latest = product.versions[-1] if product.versions else None
    stock = product.stock
    if latest is None:
        return StockLevel("ok", stock, None, None)
    _, name, _, active, threshold = latest
    level = "ok"
    if active and stock <= 0:
        level = "out"
    elif active and stock <= threshold:
        level = "low"
    return StockLevel(level, stock, threshold, name)


def _product(state: State, product_id: str) -> Product:
    product = state.products.get(product_id)
    if product is None:
        product = state.products[product_id] = Product()
    return product


def _upsert(state: State, event: ProductUpserted) -> Outcome:
    state.history.mark_seen(event.event_id, event.occurred_at)
    names = state.names  # the state's copies of the strings it keeps (processors.core.state)
    product_id = names.setdefault(event.product_id, event.product_id)
    product = _product(state, product_id)
    versions = product.versions
    count_product(state, versions[-1] if versions else None, product.stock, -1)
    at = event.occurred_at
    while versions and versions[-1][0] >= at:
        versions.pop()  # dated at or after this newer version: can never be the one in force
    name = names.setdefault(event.name, event.name)
    category = names.setdefault(event.category, event.category)
    versions.append((at, name, category, event.active, event.low_stock_threshold))
    if len(versions) > 1 and versions[1][0] <= state.floor:
        # Versions superseded at or before the floor can be in force at no T >= floor: drop them now
        # rather than at the next prune (a busy catalog would otherwise grow all day).
        del versions[: bisect_right(versions, state.floor, key=occurred) - 1]
    count_product(state, versions[-1], product.stock, 1)
    index_event(state, at, PRODUCT, product_id, 0)
    state.version += 1
    return APPLIED


def _adjust(state: State, event: InventoryAdjusted) -> Outcome:
    state.history.mark_seen(event.event_id, event.occurred_at)
    product_id = state.names.setdefault(event.product_id, event.product_id)  # the state's copy
    product = _product(state, product_id)
    latest = product.versions[-1] if product.versions else None
    count_product(state, latest, product.stock, -1)
    product.stock += event.delta
    count_product(state, latest, product.stock, 1)
    index_event(state, event.occurred_at, PRODUCT, product_id, event.delta)
    state.version += 1
    return APPLIED
