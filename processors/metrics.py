"""The event-sourcing fold of contract §4: `apply(state, event, ts)`, `snapshot(state, as_of_ms)`, `prune`.

`apply` folds one event into its vendor's `State` in place (no copy: the fold is the hot path) and says
what it did, so the caller can send refused events to the DLQ. Its cost is O(items of the event) plus a
few `History` lookups, not O(history). `snapshot` builds the contract §5 JSON for an as-of instant; it
reads ~2P day totals, 12 month totals and a cached window sum (memoised in the state, see
`processors.state`), plus the events dated after T, which it undoes. `ts` is the input record's Kafka
timestamp: it moves the vendor's clock on the event's topic, and so the lateness horizon (§4.1).

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
import heapq
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from processors.exceptions import PeriodError, UnsupportedEventError
from processors.history import OrderEntry
from processors.state import (
    CANCELLED,
    DAY_MS,
    INVENTORY,
    ORDERS,
    PLACED,
    PRODUCT,
    DayBucket,
    Entry,
    Product,
    State,
    Version,
    Window,
    add_order,
    civil,
    classify,
    count_product,
    fold_bucket,
    fold_order,
    horizon,
    index_event,
    make_order,
    month_of_day,
    occurred,
    pin,
    reshare,
    set_first_order,
    share_line,
    tick,
)
from schemas.events import Event, InventoryAdjusted, OrderCancelled, OrderPlaced, ProductUpserted

TOP_PRODUCTS = 5
TREND_MONTHS = 12
MAX_WINDOWS = 4
"""Window sums kept per state (one per period_days asked for; the live worker uses one)."""


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
    for item in event.items:  # the state's copy of each line (see processors.state)
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
    if at > state.floor:
        index_event(state, at, PLACED, order_id, 0, order)
        if cancelled_at is not None:
            index_event(state, cancelled_at, CANCELLED, order_id, 0, order)
    else:
        state.pinned.pop(order_id, None)  # an earlier placement of the id is no longer the visible one
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


@dataclass(frozen=True, slots=True)
class StockLevel:
    """A product's stock state as contract §6 defines it for alerts: "out" (active, stock <= 0), "low"
    (active, 0 < stock <= threshold) or "ok" (any other case: inactive, never upserted, or enough
    stock), from every accepted event so far in log order, whatever its occurred_at."""

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
    names = state.names  # the state's copies of the strings it keeps (processors.state)
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


# --- snapshot -----------------------------------------------------------------------------------------


def snapshot(state: State, as_of_ms: int, period_days: int = 30) -> dict[str, Any]:
    """The contract §5 snapshot of the vendor as of `as_of_ms` (epoch ms, UTC) over `period_days` days.

    Pure as far as the caller can tell; it memoises the current window's sums in `state.windows`.
    """
    if period_days < 1:
        raise PeriodError(f"period_days must be >= 1 (VENDORPULSE_PERIOD_DAYS), got {period_days}")
    t = as_of_ms
    last = t // DAY_MS
    first = last - period_days + 1
    prev_first = first - period_days
    month = month_of_day(last)
    first_month = month - TREND_MONTHS + 1
    prev = [0, 0]
    for day in range(prev_first, first):
        bucket = state.days.get(day)
        if bucket is not None:
            prev[0] += bucket.revenue
            prev[1] += bucket.orders
    trend = [list(state.months.get(m, (0, 0))) for m in range(first_month, month + 1)]
    window = _window(state, period_days, last)

    gone, back, late_stock = _after(state, t, period_days, prev, trend)
    sums = window.sums
    current = [sums.revenue + back.revenue - gone.revenue, sums.orders + back.orders - gone.orders]
    customers, new = len(sums.customers), window.new_customers
    window_start = first * DAY_MS
    for customer in back.customers.keys() | gone.customers.keys():
        before = sums.customers.get(customer, 0)
        after = before + back.customers.get(customer, 0) - gone.customers.get(customer, 0)
        change = (after > 0) - (before > 0)
        customers += change
        if change and _at_or_after(state.history.first_order(customer), window_start):
            new += change
    products = _merged(sums.products, back.products, gone.products)
    categories = _merged(sums.categories, back.categories, gone.categories)
    return {
        "vendorId": state.vendor_id,
        "asOf": iso_millis(t),
        "periodDays": period_days,
        "currency": state.currency,
        "version": state.version,
        "metrics": {
            "revenue": _compare(current[0], prev[0]),
            "orders": _compare(current[1], prev[1]),
            "products": _product_counts(state, t, late_stock),
            "customers": {"total": customers, "new": new, "returning": customers - new},
        },
        "topProducts": _top_products(state, products, t),
        "salesByCategory": _sales_by_category(categories),
        "monthlyTrends": [
            {"month": _month_label(first_month + i), "revenue": r, "orders": n}
            for i, (r, n) in enumerate(trend)
        ],
    }


def _after(
    state: State, t: int, period_days: int, prev: list[int], trend: list[list[int]]
) -> tuple[DayBucket, DayBucket, dict[str, int]]:
    """Undo what the buckets hold but T must not see, from the timeline entries dated after T.

    Returns the orders to take out of the current window (placed after T on T's day), the orders to put
    back into it (cancelled after T) and each product's stock change after T; fixes `prev` and `trend`
    in place.
    """
    gone, back, stock = DayBucket(), DayBucket(), dict[str, int]()
    last = t // DAY_MS
    days = state.timeline_days
    start = bisect_left(days, last)
    if start == len(days):
        return gone, back, stock
    first = last - period_days + 1
    prev_first = first - period_days
    first_month = month_of_day(last) - TREND_MONTHS + 1
    restored: set[int] = set()  # id() of orders put back
    for day in days[start:]:
        entries: list[Entry] = state.timeline[day]
        if day == last:
            entries = entries[bisect_right(entries, t, key=occurred) :]
        in_trend = month_of_day(day) - first_month == TREND_MONTHS - 1
        for _, kind, key, delta, order in entries:
            if kind == PRODUCT:
                stock[key] = stock.get(key, 0) + delta
                continue
            assert order is not None
            if kind == PLACED:  # in the buckets unless cancelled
                if order.cancelled_at is not None:
                    continue
                if day == last:
                    fold_order(gone, order, 1)
                if in_trend:
                    trend[-1][0] -= order.total
                    trend[-1][1] -= 1
            elif id(order) not in restored:  # CANCELLED after T: the order still counts at T
                cancelled_at = order.cancelled_at
                if order.occurred_at > t or cancelled_at is None or cancelled_at <= t:
                    continue
                restored.add(id(order))
                placed_day = order.occurred_at // DAY_MS
                if placed_day >= first:
                    fold_order(back, order, 1)
                elif placed_day >= prev_first:
                    prev[0] += order.total
                    prev[1] += 1
                m = month_of_day(placed_day) - first_month
                if m >= 0:
                    trend[m][0] += order.total
                    trend[m][1] += 1
    return gone, back, stock


def _window(state: State, period_days: int, last: int) -> Window:
    """The sums of the day buckets first..last (memoised per period; a new day slides it)."""
    first = last - period_days + 1
    window = state.windows.get(period_days)
    if window is not None and window.last_day == last:
        return window
    if window is not None and window.last_day < last < window.last_day + period_days:
        for day in range(window.first_day, first):
            if (bucket := state.days.get(day)) is not None:
                fold_bucket(window.sums, bucket, -1)
        days = range(window.last_day + 1, last + 1)
        window.first_day, window.last_day = first, last
    else:
        window = Window(first, last, DayBucket())
        days = range(first, last + 1)
        if period_days not in state.windows and len(state.windows) >= MAX_WINDOWS:
            del state.windows[next(iter(state.windows))]
        state.windows[period_days] = window
    for day in days:
        if (bucket := state.days.get(day)) is not None:
            fold_bucket(window.sums, bucket, 1)
    start = first * DAY_MS
    first_order = state.history.first_order
    window.new_customers = sum(_at_or_after(first_order(c), start) for c in window.sums.customers)
    return window


def _at_or_after(first: int | None, start: int) -> bool:
    return first is not None and first >= start


def _merged(
    base: dict[str, list[int]], back: dict[str, list[int]], gone: dict[str, list[int]]
) -> dict[str, list[int]]:
    """base + back - gone, by key, for [amount, count] entries; entries whose count is 0 dropped."""
    if not back and not gone:
        return base
    merged = dict(base)
    for key in back.keys() | gone.keys():
        a, b = merged.get(key, (0, 0))
        if (plus := back.get(key)) is not None:
            a, b = a + plus[0], b + plus[1]
        if (minus := gone.get(key)) is not None:
            a, b = a - minus[0], b - minus[1]
        if b:
            merged[key] = [a, b]
        else:
            merged.pop(key, None)
    return merged


def version_at(versions: list[Version], t: int) -> Version | None:
    """The catalog version in force at t: the last in log order among those dated <= t."""
    if versions and versions[-1][0] <= t:
        return versions[-1]
    i = bisect_right(versions, t, key=occurred)
    return versions[i - 1] if i else None


def _product_counts(state: State, t: int, late_stock: dict[str, int]) -> dict[str, int]:
    counts = list(state.product_counts)
    for product_id, moved in late_stock.items():
        product = state.products[product_id]
        now = classify(product.versions[-1] if product.versions else None, product.stock)
        then = classify(version_at(product.versions, t), product.stock - moved)
        for i in range(4):
            counts[i] += then[i] - now[i]
    return {"total": counts[0], "active": counts[1], "lowStock": counts[2], "outOfStock": counts[3]}


def _rank(item: tuple[str, list[int]]) -> tuple[int, int, str]:
    return -item[1][0], -item[1][1], item[0]


def _top_products(state: State, products: dict[str, list[int]], t: int) -> list[dict[str, Any]]:
    if len(products) > TOP_PRODUCTS:
        cut = heapq.nlargest(TOP_PRODUCTS, [v[0] for v in products.values()])[-1]
        items = [item for item in products.items() if item[1][0] >= cut]
    else:
        items = list(products.items())
    items.sort(key=_rank)
    rows = []
    for product_id, (revenue, units) in items[:TOP_PRODUCTS]:
        product = state.products.get(product_id)
        version = version_at(product.versions, t) if product is not None else None
        name = version[1] if version is not None else None
        rows.append({"productId": product_id, "name": name, "revenue": revenue, "units": units})
    return rows


def _sales_by_category(categories: dict[str, list[int]]) -> list[dict[str, Any]]:
    total = sum(revenue for revenue, _ in categories.values())
    rows = sorted(
        (-revenue, category, orders) for category, (revenue, orders) in categories.items() if revenue > 0
    )
    return [
        {"category": category, "revenue": -r, "orders": orders, "percentage": tenths(-r * 100, total)}
        for r, category, orders in rows
    ]


def _compare(current: int, previous: int) -> dict[str, Any]:
    return {
        "current": current,
        "previous": previous,
        "trend": "up" if current > previous else "down" if current < previous else "flat",
        "percentage": tenths((current - previous) * 100, previous) if previous else None,
    }


def tenths(numerator: int, denominator: int) -> float:
    """numerator / denominator rounded to 1 decimal, half away from zero, in exact integer arithmetic."""
    q, r = divmod(abs(numerator) * 10, denominator)
    if 2 * r >= denominator:
        q += 1
    return (q if numerator >= 0 else -q) / 10


def iso_millis(t: int) -> str:
    """ISO-8601 UTC with milliseconds and Z, e.g. 2024-03-01T00:00:00.000Z."""
    day, ms = divmod(t, DAY_MS)
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{_date(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"


@lru_cache(maxsize=1024)
def _date(day: int) -> str:
    year, month, dom = civil(day)
    return f"{year:04d}-{month:02d}-{dom:02d}"


def _month_label(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


# --- pruning ------------------------------------------------------------------------------------------


def prune(state: State, before_ms: int, period_days: int = 30) -> None:
    """Drop what no snapshot with as_of >= before_ms and a period <= period_days can read, and raise the
    floor to before_ms: day buckets before the earliest window, months before the earliest trend, catalog
    versions superseded before it, timeline entries dated at or before it.

    The history is untouched (what it forgets is the horizon's business, contract §4.1). Snapshots as of
    earlier instants, or over longer periods, are no longer exact afterwards.
    """
    if period_days < 1:
        raise PeriodError(f"period_days must be >= 1, got {period_days}")
    day = before_ms // DAY_MS
    first_day = day - 2 * period_days + 1  # the earliest day in a window of a snapshot as of >= before
    first_month = min(month_of_day(day) - TREND_MONTHS + 1, month_of_day(first_day))  # in its trends
    state.floor = max(state.floor, before_ms)
    state.kept_from_day = max(state.kept_from_day, first_day)
    state.kept_from_month = max(state.kept_from_month, first_month)
    for d in [d for d in state.days if d < state.kept_from_day]:
        del state.days[d]
    for m in [m for m in state.months if m < state.kept_from_month]:
        del state.months[m]
    kept = []
    floor = state.floor
    for d in state.timeline_days:
        if d > floor // DAY_MS:
            kept.append(d)
            continue
        entries = [e for e in state.timeline.pop(d) if e[0] > floor]
        if entries:
            state.timeline[d] = entries
            kept.append(d)
    state.timeline_days = kept
    state.pinned = {}
    for d in kept:
        for _, _, key, _, order in state.timeline[d]:
            if order is not None:
                pin(state, key, order)
    for product in state.products.values():
        i = bisect_right(product.versions, floor, key=occurred)
        if i > 1:
            del product.versions[: i - 1]
    state.windows.clear()
    reshare(state)
