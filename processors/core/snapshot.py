"""The snapshot of contract §5 as of an instant T: `snapshot(state, as_of_ms, period_days)`.

It reads ~2P day totals, 12 month totals and a cached window sum (memoised in the state, see
`processors.core.state`), plus the events dated after T, which it undoes from the timeline. Pure as far
as the caller can tell; it memoises the current window's sums in `state.windows`.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from typing import Any

from processors.core.calendar import DAY_MS, iso_millis, month_label, month_of_day
from processors.core.state import (
    PLACED,
    PRODUCT,
    DayBucket,
    Entry,
    State,
    Version,
    Window,
    classify,
    fold_bucket,
    fold_order,
    occurred,
)
from processors.exceptions import PeriodError

TOP_PRODUCTS = 5
TREND_MONTHS = 12
MAX_WINDOWS = 4
"""Window sums kept per state (one per period_days asked for; the live worker uses one)."""


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
            {"month": month_label(first_month + i), "revenue": r, "orders": n}
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
