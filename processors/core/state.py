"""Per-vendor state of the metrics fold: its layout, the primitives that keep it consistent, its encoding.

One `State` per vendor. `processors.core.apply` folds events into it in log order and
`processors.core.snapshot` reads it for an as-of instant T (contract §4). Times are epoch
milliseconds (UTC); a *day* is `ms // DAY_MS` (days since 1970-01-01 UTC); a *month* is
`year * 12 + month - 1`; money is int minor units.

The state is in two parts, so that memory does not grow with the history (contract §4.1):

- **the live part** (this module, in the heap): what a snapshot reads. Per day, the sums of the orders
  placed that day and not cancelled (`days`: revenue, orders, per product, per category, per customer);
  per month its revenue and orders; the catalog and stock; the clocks; and the `timeline` of events dated
  after `floor`. Its size follows the windows, the months and the catalog, not the number of events.
- **the history** (`processors.core.history.History`): what must be remembered per event to apply the rules
  that look back (duplicate ids, second placements, cancellations, first orders). The worker keeps it in
  its RocksDB table and forgets what falls behind the horizon; replay and tests keep it in dicts.

Snapshots as of T. The buckets hold every applied event, including events dated after T; the snapshot
undoes those from the `timeline`, which holds the events dated after `floor`. The caller promises never
to ask for a T below `floor`: the worker sets it to now before each batch (its snapshots are
as of now, the wall clock or stream time, and now only grows), so the timeline holds only events dated in the future; replay sets it to
its as-of instant; tests leave it at `NO_FLOOR` and may ask any T. `prune(before)` drops the day buckets,
months and catalog versions no snapshot as of `before` or later reads (the worker prunes at each UTC
midnight), and remembers how far back it dropped them (`kept_from_day`, `kept_from_month`): an order
dated before those counts in no bucket, before and after a prune alike. The days of the previous window
(before `full_from_day`) keep only their revenue and order count, which is all a snapshot reads of them:
T only grows, so they never come back into a current window.

The timeline's entries: `(occurred_at, kind, key, delta, order)`: a placement (kind 0, key = order id,
`order` the placed `Order`), a cancellation that made an order's cancel time earlier (kind 1, `order` the
cancelled `Order`), a product event (kind 2, key = product id, delta = stock change, `order` None). An
order in the timeline is held there, and `pinned` keeps by id the latest placement the timeline holds:
a cancellation that meets that placement (the same occurred_at) changes the very object the timeline
holds, so a snapshot needs no history lookup.

Source of truth (encoded by `dumps`): `vendor_id`; `version` (+1 per applied event); `currency` (of the
first accepted OrderPlaced); `offsets` ("topic:partition" -> last applied offset: the caller's, carried so
a restored state knows what input it contains); `clocks` ([orders, inventory]: the greatest record
timestamp read per topic, contract §4.1); `floor`; `kept_from_day`/`kept_from_month`/`full_from_day`;
`days`; `months`;
`products` (product_id -> Product: `stock`, the sum of every delta, and `versions`, the catalog values
(occurred_at, name, category, active, threshold) that can still be "the last ProductUpserted in log order
with occurred_at <= T" for some T >= floor; a version followed in the log by one dated at or before it can
never win, so it is dropped, and so is one followed by a version dated at or before `floor` (at once,
not only at the next prune): the list rises in log order and in occurred_at, and the version at T is a
bisect); `timeline`.

Derived (rebuilt by `loads`): `product_counts` ([total, active, lowStock, outOfStock] with every product
event applied); `windows` (period_days -> Window: the sums of `days` over a current window and how many of
its customers are new, memoised so a snapshot does not re-add P days of dicts; a new day slides it);
`pinned`; `names` and `lines` (the state's one copy of each repeated string and order line: the decoder
gives every event its own copies, and buckets, catalog and timeline hold the shared ones).

Encoding: `processors.core.state_codec`.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from operator import itemgetter

from processors.core.calendar import DAY_MS, month_of_day
from processors.core.history import History, Line, MemoryHistory, Order

NO_FLOOR = -(1 << 62)
"""`floor` of a state whose snapshots may be asked for any T (keeps every timeline entry)."""
DEFAULT_LATENESS_DAYS = 400
PLACED, CANCELLED, PRODUCT = 0, 1, 2
"""Timeline entry kinds."""
ORDERS, INVENTORY = 0, 1
"""Indexes of `State.clocks`: one clock per input topic (contract §4.1)."""

Version = tuple[int, str, str, bool, int]
"""A catalog version: (occurred_at, name, category, active, low_stock_threshold)."""
Entry = tuple[int, int, str, int, Order | None]
"""A timeline entry: (occurred_at, kind, key, delta, order)."""
occurred = itemgetter(0)
category_of = itemgetter(1)


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
    history: History = field(default_factory=MemoryHistory)
    lateness_ms: int = DEFAULT_LATENESS_DAYS * DAY_MS
    """L of contract §4.1, in ms; a setting, not stored."""
    version: int = 0
    currency: str | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    clocks: list[int | None] = field(default_factory=lambda: [None, None])
    floor: int = NO_FLOOR
    kept_from_day: int = NO_FLOOR
    kept_from_month: int = NO_FLOOR
    full_from_day: int = NO_FLOOR
    products: dict[str, Product] = field(default_factory=dict)
    timeline: dict[int, list[Entry]] = field(default_factory=dict)
    timeline_days: list[int] = field(default_factory=list)
    days: dict[int, DayBucket] = field(default_factory=dict)
    months: dict[int, list[int]] = field(default_factory=dict)
    product_counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    windows: dict[int, Window] = field(default_factory=dict)
    pinned: dict[str, Order] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    lines: dict[Line, Line] = field(default_factory=dict)


def new_state(
    vendor_id: str, history: History | None = None, lateness_days: int = DEFAULT_LATENESS_DAYS
) -> State:
    """An empty state for one vendor (its history in memory unless one is given)."""
    return State(vendor_id, history if history is not None else MemoryHistory(), lateness_days * DAY_MS)


def horizon(state: State, clock: int) -> int:
    """H of contract §4.1 for an event read on the topic whose clock index is `clock`."""
    c = state.clocks[clock]
    return NO_FLOOR if c is None else c - state.lateness_ms


def tick(state: State, clock: int, ts: int) -> None:
    """A record of that topic that decoded to an event was read, stamped `ts` (< 0: no timestamp)."""
    if ts >= 0:
        c = state.clocks[clock]
        if c is None or ts > c:
            state.clocks[clock] = ts


# --- primitives keeping the live part in step ---------------------------------------------------------


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


def repeated_categories(items: tuple[Line, ...]) -> tuple[str, ...]:
    """`Order.repeated` of these lines."""
    if len(items) < 2:
        return ()
    if len(items) == 2:
        return (items[1][1],) if items[0][1] == items[1][1] else ()
    if len(set(map(category_of, items))) == len(items):
        return ()
    repeated = list(map(category_of, items))
    for category in dict.fromkeys(repeated):
        repeated.remove(category)
    return tuple(repeated)


def make_order(
    state: State, occurred_at: int, customer_id: str, total: int, items: tuple[Line, ...],
    cancelled_at: int | None = None,
) -> Order:  # fmt: skip
    """An order with the state's copy of its customer id; `items` are already the state's (`share_line`)."""
    customer_id = state.names.setdefault(customer_id, customer_id)
    return Order(occurred_at, customer_id, total, items, cancelled_at, repeated_categories(items))


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
    """Rebuild `names` and `lines` from what the live part holds, forgetting what only dropped detail used."""
    lines = {
        line: line
        for entries in state.timeline.values()
        for entry in entries
        if entry[4] is not None
        for line in entry[4].items
    }
    names: dict[str, str] = {}
    for bucket in state.days.values():
        for table in (bucket.products, bucket.categories, bucket.customers):
            for key in table:
                names.setdefault(key, key)
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

    Days and months before what prune kept count nothing: no snapshot the state serves reads them.
    """
    day = order.occurred_at // DAY_MS
    month = month_of_day(day)
    if month >= state.kept_from_month:
        m = state.months.get(month)
        if m is None:
            state.months[month] = [sign * order.total, sign]
        else:
            m[0] += sign * order.total
            m[1] += sign
            if not m[1]:
                del state.months[month]
    if day < state.kept_from_day:
        return
    bucket = state.days.get(day)
    if bucket is None:
        bucket = state.days[day] = DayBucket()
    if day < state.full_from_day:  # in the previous window only: its totals are all a snapshot reads
        bucket.revenue += sign * order.total
        bucket.orders += sign
        if not bucket.orders:
            del state.days[day]
        return
    fold = _add_order if sign > 0 else _remove_order  # fold_order without its call: the hot path
    fold(bucket, order)
    if not bucket.orders:
        del state.days[day]
    for window in state.windows.values():
        if window.first_day <= day <= window.last_day:
            moved = fold(window.sums, order)
            if moved:
                first = state.history.first_order(order.customer_id)
                if first is not None and first >= window.first_day * DAY_MS:
                    window.new_customers += moved


def set_first_order(state: State, customer_id: str, occurred_at: int) -> None:
    """Record an accepted placement's time as its customer's first order if it is the earliest."""
    history = state.history
    old = history.first_order(customer_id)
    if old is not None and old <= occurred_at:
        return
    history.set_first_order(customer_id, occurred_at)
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


def index_event(
    state: State, occurred_at: int, kind: int, key: str, delta: int, order: Order | None = None
) -> None:
    """Add a timeline entry if it is dated after the floor, keeping each day's list sorted by occurred_at."""
    if occurred_at <= state.floor:
        return
    day = occurred_at // DAY_MS
    entry = (occurred_at, kind, key, delta, order)
    entries = state.timeline.get(day)
    if entries is None:
        state.timeline[day] = [entry]
        insort(state.timeline_days, day)
    elif entries[-1][0] <= occurred_at:
        entries.append(entry)
    else:
        insort(entries, entry, key=occurred)
    if order is not None:
        pin(state, key, order)


def pin(state: State, order_id: str, order: Order) -> None:
    """Keep `order` as the timeline's object for the id's visible placement (the latest placed)."""
    held = state.pinned.get(order_id)
    if held is None or held.occurred_at <= order.occurred_at:
        state.pinned[order_id] = order
