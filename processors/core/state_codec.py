"""How a vendor's live part is stored: `dumps` and `loads` (the layout is `processors.core.state`'s).

Encoding (`dumps`/`loads`): orjson, sorted keys, no whitespace, so equal states give equal bytes::

    {"format": 2, "vendorId": str, "version": int, "currency": str|null, "offsets": {str: int},
     "clocks": [int|null, int|null], "floor": int, "keptFrom": [day, month, day],
     "days": [[day, revenue, orders, {productId: [revenue, units]}, {category: [revenue, orders]},
               {customerId: orders}]],
     "months": [[month, revenue, orders]],
     "products": {productId: [stock, [[ms, name, category, active, threshold]]]},
     "timeline": [[day, [[ms, kind, key, delta, order|null]]]]}

with an order as `[orderId, occurred_at, customerId, total, [[productId, category, quantity, unitPrice]],
cancelled_at|null]`.
"""

from __future__ import annotations

import gc
from typing import Any

import orjson

from processors.core.history import History, MemoryHistory, Order
from processors.core.state import (
    DEFAULT_LATENESS_DAYS,
    DayBucket,
    Entry,
    Product,
    State,
    count_product,
    make_order,
    new_state,
    pin,
    share_line,
)
from processors.exceptions import StateFormatError

FORMAT = 2


def _order_doc(order_id: str, order: Order) -> list[Any]:
    return [order_id, order.occurred_at, order.customer_id, order.total, order.items, order.cancelled_at]


def dumps(state: State) -> bytes:
    """Compact, deterministic bytes of the live part (see the module docstring); not the history."""
    doc = {
        "format": FORMAT,
        "vendorId": state.vendor_id,
        "version": state.version,
        "currency": state.currency,
        "offsets": state.offsets,
        "clocks": state.clocks,
        "floor": state.floor,
        "keptFrom": [state.kept_from_day, state.kept_from_month, state.full_from_day],
        "days": [
            [d, b.revenue, b.orders, b.products, b.categories, b.customers]
            for d, b in sorted(state.days.items())
        ],
        "months": [[m, r, n] for m, (r, n) in sorted(state.months.items())],
        "products": {k: [p.stock, p.versions] for k, p in state.products.items()},
        "timeline": [
            [
                day,
                [
                    [at, kind, key, delta, None if order is None else _order_doc(key, order)]
                    for at, kind, key, delta, order in state.timeline[day]
                ],
            ]
            for day in state.timeline_days
        ],
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes, history: History | None = None, lateness_days: int = DEFAULT_LATENESS_DAYS) -> State:
    """The state `dumps` wrote (its history given, or empty in memory); StateFormatError if it is not one."""
    # Decoding allocates many containers and frees none: the cyclic GC would only rescan them.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _decode(data, history if history is not None else MemoryHistory(), lateness_days)
    finally:
        if collecting:
            gc.enable()


def _decode(data: bytes, history: History, lateness_days: int) -> State:
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
        return _build(doc, history, lateness_days)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise StateFormatError(f"stored vendor state is malformed ({exc!r}); rebuild it by replay") from exc


def _build(doc: dict[str, Any], history: History, lateness_days: int) -> State:
    state = new_state(str(doc["vendorId"]), history, lateness_days)
    state.version = int(doc["version"])
    state.currency = doc["currency"]
    state.offsets = {str(k): int(v) for k, v in doc["offsets"].items()}
    state.clocks = [None if c is None else int(c) for c in doc["clocks"]]
    state.floor = int(doc["floor"])
    state.kept_from_day, state.kept_from_month, state.full_from_day = (int(x) for x in doc["keptFrom"])
    names = state.names
    for day, revenue, orders, products, categories, customers in doc["days"]:
        state.days[day] = DayBucket(
            revenue,
            orders,
            {names.setdefault(k, k): v for k, v in products.items()},
            {names.setdefault(k, k): v for k, v in categories.items()},
            {names.setdefault(k, k): v for k, v in customers.items()},
        )
    state.months = {m: [r, n] for m, r, n in doc["months"]}
    for product_id, (stock, versions) in doc["products"].items():
        product = state.products[names.setdefault(product_id, product_id)] = Product(
            stock,
            [
                (at, names.setdefault(name, name), names.setdefault(cat, cat), active, threshold)
                for at, name, cat, active, threshold in versions
            ],
        )
        count_product(state, product.versions[-1] if product.versions else None, stock, 1)
    orders_by_time: dict[tuple[str, int], Order] = {}  # one object per order, however many entries
    for day, entries in doc["timeline"]:
        kept: list[Entry] = []
        for at, kind, key, delta, order_doc in entries:
            order = None
            if order_doc is not None:
                order_id, placed_at, customer, total, items, cancelled_at = order_doc
                order = orders_by_time.get((order_id, placed_at))
                if order is None:
                    lines = tuple([share_line(state, tuple(line)) for line in items])
                    order = orders_by_time[(order_id, placed_at)] = make_order(
                        state, placed_at, customer, total, lines, cancelled_at
                    )
                key = order_id
                pin(state, key, order)
            else:
                key = names.setdefault(key, key)
            kept.append((at, kind, key, delta, order))
        state.timeline[day] = kept
        state.timeline_days.append(day)
    return state
