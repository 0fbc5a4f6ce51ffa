"""Per-vendor state of the metrics fold: its layout, the primitives that keep it consistent, its encoding.

One `State` per vendor. `processors.metrics.apply` folds events into it in log order and
`processors.metrics.snapshot` reads it for any as-of instant T (contract §4). Times are epoch milliseconds
(UTC); a *day* is `ms // DAY_MS` (days since 1970-01-01 UTC); a *month* is `year * 12 + month - 1`;
money is int minor units.

Why the layout looks like this: the buckets hold every applied event, including events dated after
the T a snapshot asks for; the snapshot then undoes the few events dated after T, which it finds in
`timeline`. For a live snapshot (T = now) there are none, so it only reads ~2P day totals, 12 months
and one cached window sum, whatever the length of the history.

Source of truth (serialized):
- `vendor_id`; `version` (+1 per applied event); `currency` (of the first accepted OrderPlaced).
- `offsets`: "topic:partition" -> last applied offset. The caller maintains it; it is carried through
  the encoding so a restored state knows which input it already contains (effectively-once).
- `seen_events`: ids of every accepted event. The contract's dedupe rule has no time limit, so this
  grows with the history (one id per event) and prune keeps it.
- `orders`: order_id -> Order (occurred_at, customer, total, its lines): what a later
  cancellation takes out of the buckets, and what a snapshot as of an earlier T adds back or takes out.
  prune thins orders older than any window a later snapshot shows to their month total (no items) and
  drops those older than its monthlyTrends.
- `retired_orders`: ids of pruned orders, so that placing such an order_id again is still ignored.
- `cancelled`: order_id -> earliest occurred_at of its cancellations, also for orders not placed yet
  (a cancellation may come first). An order is in the buckets iff it is in `orders` and not here.
- `first_order`: customer_id -> earliest occurred_at of their accepted OrderPlaced, cancelled or not
  (new vs returning customers); never pruned.
- `products`: product_id -> Product. `stock` is the sum of every delta; `versions` are the catalog
  values (occurred_at, name, category, active, threshold) that can still be "the last ProductUpserted in
  log order with occurred_at <= T" for some T. A version followed in the log by one dated at or before it
  can never win, so it is dropped: the list rises in log order and in occurred_at, the version at T is a
  bisect, and for time-ordered input it only grows by one per upsert (prune shortens it).
- `timeline`: day -> [(occurred_at, kind, key, delta)] sorted by occurred_at: every placement (kind 0,
  key = order_id), every cancellation that made an order's cancel time earlier (kind 1), every product
  event (kind 2, key = product_id, delta = stock change). `timeline_days` is its sorted key list. A snapshot as of T reads
  only the entries dated after T; prune drops the others.

Derived (rebuilt by `loads` from the above and never stored, so stored state cannot disagree with itself):
- `days`: day -> DayBucket over orders in the buckets (thinned ones excepted): revenue, orders,
  products {id: [revenue, units]}, categories {category: [revenue, orders with a line in it]},
  customers {id: orders}. Entries whose count drops to 0 are deleted, so the dicts hold what is sold.
- `months`: month -> [revenue, orders] over the same orders, thinned ones included.
- `product_counts`: [total, active, lowStock, outOfStock] with every product event applied.
- `windows`: period_days -> Window: the DayBucket sum of `days` over first_day..last_day (a current
  window) and how many of its customers are new. Every bucket change updates it, so a snapshot does not
  re-add P days of per-product and per-customer dicts; a new day slides it. At most a few are kept.
- `names`, `lines`: the state's one copy of each repeated string and order line (below).

Sharing: the Avro decoder gives every event its own copies of its strings, and most of them repeat:
product ids, categories, customer ids, product names, and whole order lines (product_id, category,
quantity, unit_price: the same product bought in the same quantity at the same price). `names` maps each
such string to the copy the state keeps and `lines` each line to the state's tuple, so an order holds the
shared customer id and a tuple of shared lines (not the event's OrderItem objects), and the catalog,
timeline, first orders and buckets hold the same str objects. `apply` and `loads` go through the tables;
prune rebuilds them from what it leaves, so they never hold more than the rest of the state uses. Ids
unique to one event (event_id, order_id) are kept as decoded. Which copy is held changes no result.

Size: without prune, orders and timeline grow with the history. Pruned daily (as of the start of the
day, say), a state holds ~2P days of full orders, 12 months of thinned ones, the timeline of the days
since `before`, the catalog, the customers' first orders and every dedupe id. Per event folded, an
unpruned state holds ~470-530 bytes (CPython 3.11, the simulator's mix: three quarters orders of ~2.2
lines; `python -m bench.memory`): an order ~310 (its id, the Order, its tuple of shared lines, its total
and time), a dedupe id 85 plus its set slot (25-100, by where the set is in its growth), a timeline
entry ~85; catalog, customers and buckets a few bytes together. A checkpoint takes ~190 bytes per event.

Encoding (`dumps`/`loads`): orjson, no whitespace, sorted keys, sets as sorted lists, so equal states give
equal bytes::

    {"format": 1, "vendorId": str, "version": int, "currency": str|null, "offsets": {str: int},
     "seenEvents": [id], "retiredOrders": [id], "cancelled": {orderId: ms}, "firstOrder": {customerId: ms},
     "orders": {orderId: [ms, customerId, total, [[productId, category, quantity, unitPrice]]]},
     "products": {productId: [stock, [[ms, name, category, active, threshold]]]},
     "timeline": [[day, [[ms, kind, key, delta]]]]}
"""

from __future__ import annotations

import gc
from bisect import insort
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson

from processors.exceptions import StateFormatError

FORMAT = 1
DAY_MS = 86_400_000
PLACED, CANCELLED, PRODUCT = 0, 1, 2
"""Timeline entry kinds."""

Version = tuple[int, str, str, bool, int]
"""A catalog version: (occurred_at, name, category, active, low_stock_threshold)."""
Entry = tuple[int, int, str, int]
"""A timeline entry: (occurred_at, kind, key, delta)."""
Line = tuple[str, str, int, int]
"""An order line: (product_id, category, quantity, unit_price), as `dumps` writes it."""
occurred = itemgetter(0)
category_of = itemgetter(1)


def civil(day: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number (H. Hinnant's days-to-civil, proleptic Gregorian)."""
    z = day + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, doy - (153 * mp + 2) // 5 + 1


@lru_cache(maxsize=4096)
def month_of_day(day: int) -> int:
    year, month, _ = civil(day)
    return year * 12 + month - 1


def first_day_of_month(month: int) -> int:
    year, m = divmod(month, 12)
    year -= m < 2  # January and February count as months 11 and 12 of the previous March-based year
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (m - 2 if m >= 2 else m + 10) + 2) // 5
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


@dataclass(slots=True)
class Order:
    occurred_at: int
    customer_id: str
    total: int
    items: tuple[Line, ...]
    """Its lines, each the state's shared tuple; empty once prune has thinned it to its month total."""
    repeated: tuple[str, ...] = ()
    """A category once more for each further line of the order in it (usually none), so that
    fold_order can count the order once per category without grouping the lines on every fold."""


@dataclass(slots=True)
class DayBucket:
    revenue: int = 0
    orders: int = 0
    products: dict[str, list[int]] = field(default_factory=dict)
    categories: dict[str, list[int]] = field(default_factory=dict)
    customers: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Window:
    first_day: int
    last_day: int
    sums: DayBucket
    new_customers: int = 0
    """Customers in `sums` whose first order is at or after the start of first_day."""


@dataclass(slots=True)
class Product:
    stock: int = 0
    versions: list[Version] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class State:
    vendor_id: str
    version: int = 0
    currency: str | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    seen_events: set[str] = field(default_factory=set)
    orders: dict[str, Order] = field(default_factory=dict)
    retired_orders: set[str] = field(default_factory=set)
    cancelled: dict[str, int] = field(default_factory=dict)
    first_order: dict[str, int] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    timeline: dict[int, list[Entry]] = field(default_factory=dict)
    timeline_days: list[int] = field(default_factory=list)
    days: dict[int, DayBucket] = field(default_factory=dict)
    months: dict[int, list[int]] = field(default_factory=dict)
    product_counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    windows: dict[int, Window] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    lines: dict[Line, Line] = field(default_factory=dict)


def new_state(vendor_id: str) -> State:
    """An empty state for one vendor."""
    return State(vendor_id)


# --- primitives keeping the derived parts in step -----------------------------------------------------


def fold_order(bucket: DayBucket, order: Order, sign: int) -> int:
    """Add (sign=1) or remove (sign=-1) an order; return 1/-1 if its customer entered/left the bucket."""
    return _add_order(bucket, order) if sign > 0 else _remove_order(bucket, order)


def _remove_order(bucket: DayBucket, order: Order) -> int:
    bucket.revenue -= order.total
    bucket.orders -= 1
    products = bucket.products
    categories = bucket.categories
    for product_id, category, units, price in order.items:
        revenue = units * price
        p = products[product_id]
        p[0] -= revenue
        p[1] -= units
        if not p[1]:  # quantities are > 0, so only the order's last line of a product gets here
            del products[product_id]
        c = categories[category]
        c[0] -= revenue
        c[1] -= 1
    for category in order.repeated:
        categories[category][1] += 1
    for line in order.items:  # only now: a category's count passes 0 on the way when it repeats
        left = categories.get(line[1])
        if left is not None and not left[1]:
            del categories[line[1]]
    customers = bucket.customers
    customer = order.customer_id
    n = customers[customer] - 1
    if n:
        customers[customer] = n
        return 0
    del customers[customer]
    return -1


def _add_order(bucket: DayBucket, order: Order) -> int:
    bucket.revenue += order.total
    bucket.orders += 1
    products = bucket.products
    categories = bucket.categories
    for product_id, category, units, price in order.items:
        revenue = units * price
        p = products.get(product_id)
        if p is None:
            products[product_id] = [revenue, units]
        else:
            p[0] += revenue
            p[1] += units
        c = categories.get(category)
        if c is None:
            categories[category] = [revenue, 1]
        else:
            c[0] += revenue
            c[1] += 1
    for key in order.repeated:
        categories[key][1] -= 1
    customers = bucket.customers
    key = order.customer_id
    n = customers.get(key, 0) + 1
    customers[key] = n
    return 1 if n == 1 else 0


def make_order(
    state: State, occurred_at: int, customer_id: str, total: int, items: tuple[Line, ...]
) -> Order:
    """An order with the state's copy of its customer id; `items` are already the state's (`share_line`)."""
    customer_id = state.names.setdefault(customer_id, customer_id)
    if len(items) > 1 and len(set(map(category_of, items))) < len(items):
        repeated = list(map(category_of, items))
        for category in dict.fromkeys(repeated):
            repeated.remove(category)
        return Order(occurred_at, customer_id, total, items, tuple(repeated))
    return Order(occurred_at, customer_id, total, items)


def share_line(state: State, line: Line) -> Line:
    """The state's copy of an order line, with the state's copies of its product id and category."""
    shared = state.lines.get(line)
    if shared is None:
        names = state.names
        product_id, category, quantity, unit_price = line
        shared = (
            names.setdefault(product_id, product_id),
            names.setdefault(category, category),
            quantity,
            unit_price,
        )
        state.lines[shared] = shared
    return shared


def reshare(state: State) -> None:
    """Rebuild `names` and `lines` from what the state holds, forgetting what only dropped detail used."""
    lines = {line: line for order in state.orders.values() for line in order.items}
    names: dict[str, str] = {}
    for customer_id in state.first_order:
        names.setdefault(customer_id, customer_id)
    for product_id, product in state.products.items():
        names.setdefault(product_id, product_id)
        for version in product.versions:
            names.setdefault(version[1], version[1])
            names.setdefault(version[2], version[2])
    for product_id, category, _, _ in lines:
        names.setdefault(product_id, product_id)
        names.setdefault(category, category)
    state.names, state.lines = names, lines


def fold_bucket(dst: DayBucket, src: DayBucket, sign: int) -> None:
    """Add (or remove) every figure of `src` to `dst`."""
    dst.revenue += sign * src.revenue
    dst.orders += sign * src.orders
    for target, source in ((dst.products, src.products), (dst.categories, src.categories)):
        for key, (a, b) in source.items():
            t = target.get(key)
            if t is None:
                target[key] = [sign * a, sign * b]
            else:
                t[0] += sign * a
                t[1] += sign * b
                if not t[1]:
                    del target[key]
    customers = dst.customers
    for key, n in src.customers.items():
        m = customers.get(key, 0) + sign * n
        if m:
            customers[key] = m
        else:
            del customers[key]


def add_order(state: State, order: Order, sign: int) -> None:
    """Put an order into (sign=1) or take it out of (sign=-1) its day, its month and the windows.

    A thinned order (no items) only has its month: prune dropped its day with it.
    """
    day = order.occurred_at // DAY_MS
    month = month_of_day(day)
    m = state.months.get(month)
    if m is None:
        state.months[month] = [sign * order.total, sign]
    else:
        m[0] += sign * order.total
        m[1] += sign
        if not m[1]:
            del state.months[month]
    if not order.items:
        return
    bucket = state.days.get(day)
    if bucket is None:
        bucket = state.days[day] = DayBucket()
    fold = _add_order if sign > 0 else _remove_order  # fold_order without its call: the hot path
    fold(bucket, order)
    if not bucket.orders:
        del state.days[day]
    for window in state.windows.values():
        if window.first_day <= day <= window.last_day:
            moved = fold(window.sums, order)
            if moved and state.first_order[order.customer_id] >= window.first_day * DAY_MS:
                window.new_customers += moved


def set_first_order(state: State, customer_id: str, occurred_at: int) -> None:
    """Record an accepted placement's time as its customer's first order if it is the earliest."""
    old = state.first_order.get(customer_id)
    if old is not None and old <= occurred_at:
        return
    state.first_order[customer_id] = occurred_at
    for window in state.windows.values():
        if customer_id in window.sums.customers:
            start = window.first_day * DAY_MS
            window.new_customers += (occurred_at >= start) - (old is not None and old >= start)


def classify(version: Version | None, stock: int) -> tuple[int, int, int, int]:
    """A product's contribution to (total, active, lowStock, outOfStock)."""
    if version is None:
        return 0, 0, 0, 0
    if not version[3]:
        return 1, 0, 0, 0
    return 1, 1, int(0 < stock <= version[4]), int(stock <= 0)


def count_product(state: State, version: Version | None, stock: int, sign: int) -> None:
    if version is not None:
        counts = state.product_counts
        for i, n in enumerate(classify(version, stock)):
            counts[i] += sign * n


def index_event(state: State, occurred_at: int, kind: int, key: str, delta: int) -> None:
    """Add a timeline entry, keeping each day's list sorted by occurred_at (appends when in order)."""
    day = occurred_at // DAY_MS
    entries = state.timeline.get(day)
    if entries is None:
        state.timeline[day] = [(occurred_at, kind, key, delta)]
        insort(state.timeline_days, day)
    elif entries[-1][0] <= occurred_at:
        entries.append((occurred_at, kind, key, delta))
    else:
        insort(entries, (occurred_at, kind, key, delta), key=occurred)


# --- encoding -----------------------------------------------------------------------------------------


def dumps(state: State) -> bytes:
    """Compact, deterministic bytes of a state's source of truth (see the module docstring)."""
    doc = {
        "format": FORMAT,
        "vendorId": state.vendor_id,
        "version": state.version,
        "currency": state.currency,
        "offsets": state.offsets,
        "seenEvents": sorted(state.seen_events),
        "retiredOrders": sorted(state.retired_orders),
        "cancelled": state.cancelled,
        "firstOrder": state.first_order,
        "orders": {k: [o.occurred_at, o.customer_id, o.total, o.items] for k, o in state.orders.items()},
        "products": {k: [p.stock, p.versions] for k, p in state.products.items()},
        "timeline": [[day, state.timeline[day]] for day in state.timeline_days],
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes) -> State:
    """The state `dumps` wrote, with its derived parts rebuilt; StateFormatError if it is not one."""
    # Decoding allocates millions of containers and frees none: the cyclic GC would only rescan them.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _decode(data)
    finally:
        if collecting:
            gc.enable()


def _decode(data: bytes) -> State:
    try:
        doc = orjson.loads(data)
        fmt = doc["format"]
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise StateFormatError(f"stored vendor state is not a vendorpulse state: {exc}") from exc
    if fmt != FORMAT:
        raise StateFormatError(
            f"stored vendor state has format {fmt!r}, this code reads {FORMAT}; "
            "run the vendorpulse version that wrote it, or rebuild the state by replay"
        )
    try:
        return _build(doc)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise StateFormatError(f"stored vendor state is malformed ({exc!r}); rebuild it by replay") from exc


def _build(doc: dict[str, Any]) -> State:
    state = State(
        vendor_id=str(doc["vendorId"]),
        version=int(doc["version"]),
        currency=doc["currency"],
        offsets={str(k): int(v) for k, v in doc["offsets"].items()},
        seen_events=set(doc["seenEvents"]),
        retired_orders=set(doc["retiredOrders"]),
        cancelled={k: int(v) for k, v in doc["cancelled"].items()},
    )
    names = state.names
    state.first_order = {names.setdefault(k, k): int(v) for k, v in doc["firstOrder"].items()}
    for order_id, (at, customer, total, items) in doc["orders"].items():
        order = state.orders[order_id] = make_order(
            state, at, customer, total, tuple([share_line(state, tuple(line)) for line in items])
        )
        if order_id not in state.cancelled:
            add_order(state, order, 1)
    for product_id, (stock, versions) in doc["products"].items():
        product = state.products[names.setdefault(product_id, product_id)] = Product(
            stock,
            [
                (at, names.setdefault(name, name), names.setdefault(cat, cat), active, threshold)
                for at, name, cat, active, threshold in versions
            ],
        )
        count_product(state, product.versions[-1] if product.versions else None, stock, 1)
    keys = {k: k for k in state.orders} | names  # entries share these strings, as after apply
    for day, entries in doc["timeline"]:
        state.timeline[day] = [(at, kind, keys.get(key, key), delta) for at, kind, key, delta in entries]
        state.timeline_days.append(day)
    return state
