"""A naive reference of contract §4: rescans the whole event list for every snapshot.

Written from the contract text alone, as plainly as possible, without importing processors.*: the fold
in processors/metrics.py is checked against it on random logs. Calendar arithmetic goes through
`datetime`, rounding through `fractions.Fraction`, so neither shares code or tricks with the core.

Readings of the contract it shares with the core (documented in processors/metrics.py):
checks in the order vendor, validate(), too late, event_id seen, currency, order_id placed; rejected and
too-late events leave no trace (their event_id is not "seen") but move the clock; an ignored second
placement's event_id is seen; cancellations dated after T do not count at T; a cancellation belongs to
the placement it meets, or waits for the next one (§4.1); currency is the log's (first accepted order),
version counts applied events.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from schemas.events import Event, InventoryAdjusted, OrderCancelled, OrderPlaced, ProductUpserted

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_datetime(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def to_ms(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


DAY_MS = 86_400_000


@dataclass(frozen=True)
class Read:
    """One record as the reference reads it: its event, timestamp and topic, the horizon when it was
    read, and what became of it."""

    event: Event
    ts: int
    topic: str
    horizon: float
    verdict: str  # accepted, second (an ignored second placement), duplicate, refused, too late


def read_log(events: list[Event], vendor_id: str, stamps: list[int] | None, lateness_days: int) -> list[Read]:
    """Every record with its verdict, by contract §4 and §4.1, looking back over the whole list each time."""
    read: list[Read] = []
    for i, e in enumerate(events):
        ts = stamps[i] if stamps is not None else -1
        topic = "orders" if isinstance(e, OrderPlaced | OrderCancelled) else "inventory"
        stamped = [r.ts for r in read if r.topic == topic and r.ts >= 0] + ([ts] if ts >= 0 else [])
        h = max(stamped) - lateness_days * DAY_MS if stamped else -math.inf
        counted = [r for r in read if r.verdict in ("accepted", "second")]  # "seen"
        placements = [r.event for r in read if r.verdict == "accepted" and isinstance(r.event, OrderPlaced)]
        if e.vendor_id != vendor_id or e.validate() is not None:
            verdict = "refused"
        elif e.occurred_at < h:
            verdict = "too late"
        elif any(r.event.event_id == e.event_id and r.event.occurred_at >= h for r in counted):
            verdict = "duplicate"
        elif isinstance(e, OrderPlaced):
            currency = placements[0].currency if placements else None
            if currency is not None and e.currency != currency:
                verdict = "refused"
            elif any(p.order_id == e.order_id and p.occurred_at >= h for p in placements):
                verdict = "second"
            else:
                verdict = "accepted"
        else:
            verdict = "accepted"
        read.append(Read(e, ts, topic, h, verdict))
    return read


def cancel_times(read: list[Read]) -> dict[int, list[int]]:
    """Index of each accepted placement in `read` -> occurred_at of the cancellations that apply to it.

    A cancellation meets the order id's placement read before it if that placement is at or after the
    horizon taken when the cancellation is read; otherwise it waits, and applies to the next accepted
    placement of the id if it is itself at or after the horizon taken when that placement is read."""
    applied: dict[int, list[int]] = defaultdict(list)
    for j, r in enumerate(read):
        c = r.event
        if r.verdict != "accepted" or not isinstance(c, OrderCancelled):
            continue
        before = [
            i for i in range(j)
            if read[i].verdict == "accepted" and isinstance(read[i].event, OrderPlaced)
            and read[i].event.order_id == c.order_id and read[i].event.occurred_at >= r.horizon
        ]  # fmt: skip
        if before:
            applied[before[-1]].append(c.occurred_at)
            continue
        after = [
            i for i in range(j + 1, len(read))
            if read[i].verdict == "accepted" and isinstance(read[i].event, OrderPlaced)
            and read[i].event.order_id == c.order_id
        ]  # fmt: skip
        if after and c.occurred_at >= read[after[0]].horizon:
            applied[after[0]].append(c.occurred_at)
    return applied


def accepted_events(
    events: list[Event], vendor_id: str, stamps: list[int] | None = None, lateness_days: int = 400
) -> tuple[list[Event], str | None]:
    """The events that count (in log order) and the vendor's currency. T plays no part here."""
    read = read_log(events, vendor_id, stamps, lateness_days)
    accepted = [r.event for r in read if r.verdict == "accepted"]
    currency = next((e.currency for e in accepted if isinstance(e, OrderPlaced)), None)
    return accepted, currency


def percentage(part: int, whole: int) -> float:
    """part / whole * 100, rounded to 1 decimal half away from zero."""
    tenths = Fraction(part * 1000, whole)
    rounded = math.floor(abs(tenths) + Fraction(1, 2))
    return float(Fraction(rounded if tenths >= 0 else -rounded, 10))


def compare(current: int, previous: int) -> dict[str, Any]:
    if current > previous:
        trend = "up"
    elif current < previous:
        trend = "down"
    else:
        trend = "flat"
    return {
        "current": current,
        "previous": previous,
        "trend": trend,
        "percentage": None if previous == 0 else percentage(current - previous, previous),
    }


def reference_snapshot(
    events: list[Event], vendor_id: str, as_of: int, period_days: int = 30,
    stamps: list[int] | None = None, lateness_days: int = 400,
) -> dict[str, Any]:  # fmt: skip
    """The snapshot as of `as_of`; `stamps` are the records' Kafka timestamps (None: none has one)."""
    read = read_log(events, vendor_id, stamps, lateness_days)
    accepted = [r.event for r in read if r.verdict == "accepted"]
    currency = next((e.currency for e in accepted if isinstance(e, OrderPlaced)), None)
    counted = [e for e in accepted if e.occurred_at <= as_of]
    cancels = cancel_times(read)

    as_of_dt = to_datetime(as_of)
    midnight = dt.datetime(as_of_dt.year, as_of_dt.month, as_of_dt.day, tzinfo=dt.UTC)
    current_start = to_ms(midnight - dt.timedelta(days=period_days - 1))
    previous_start = to_ms(midnight - dt.timedelta(days=2 * period_days - 1))

    placements = [e for e in counted if isinstance(e, OrderPlaced)]
    orders = [
        r.event
        for i, r in enumerate(read)
        if r.verdict == "accepted" and isinstance(r.event, OrderPlaced) and r.event.occurred_at <= as_of
        and not any(c <= as_of for c in cancels.get(i, ()))
    ]  # fmt: skip
    current = [o for o in orders if current_start <= o.occurred_at <= as_of]
    previous = [o for o in orders if previous_start <= o.occurred_at < current_start]

    first_order: dict[str, int] = {}
    for o in placements:
        first_order[o.customer_id] = min(o.occurred_at, first_order.get(o.customer_id, o.occurred_at))
    customers = {o.customer_id for o in current}
    new = {c for c in customers if first_order[c] >= current_start}

    catalog: dict[str, ProductUpserted] = {}
    stock: dict[str, int] = defaultdict(int)
    for e in counted:
        if isinstance(e, ProductUpserted):
            catalog[e.product_id] = e
        elif isinstance(e, InventoryAdjusted):
            stock[e.product_id] += e.delta
    active = [p for p in catalog.values() if p.active]

    product_revenue: dict[str, int] = defaultdict(int)
    product_units: dict[str, int] = defaultdict(int)
    category_revenue: dict[str, int] = defaultdict(int)
    category_orders: dict[str, set[int]] = defaultdict(set)  # orders by position: an id may be placed again
    for n, o in enumerate(current):
        for item in o.items:
            product_revenue[item.product_id] += item.quantity * item.unit_price
            product_units[item.product_id] += item.quantity
            category_revenue[item.category] += item.quantity * item.unit_price
            category_orders[item.category].add(n)
    sold = [p for p in product_units if product_units[p] >= 1]
    sold.sort(key=lambda p: (-product_revenue[p], -product_units[p], p))
    all_item_revenue = sum(category_revenue.values())
    categories = sorted(
        (c for c in category_revenue if category_revenue[c] > 0), key=lambda c: (-category_revenue[c], c)
    )

    months: list[str] = []
    year, month = as_of_dt.year, as_of_dt.month
    for _ in range(12):
        months.insert(0, f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    by_month: dict[str, list[int]] = {m: [0, 0] for m in months}
    for o in orders:
        label = to_datetime(o.occurred_at).strftime("%Y-%m")
        if label in by_month:
            by_month[label][0] += o.total
            by_month[label][1] += 1

    return {
        "vendorId": vendor_id,
        "asOf": as_of_dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{as_of_dt.microsecond // 1000:03d}Z",
        "periodDays": period_days,
        "currency": currency,
        "version": len(accepted),
        "metrics": {
            "revenue": compare(sum(o.total for o in current), sum(o.total for o in previous)),
            "orders": compare(len(current), len(previous)),
            "products": {
                "total": len(catalog),
                "active": len(active),
                "lowStock": sum(1 for p in active if 0 < stock[p.product_id] <= p.low_stock_threshold),
                "outOfStock": sum(1 for p in active if stock[p.product_id] <= 0),
            },
            "customers": {"total": len(customers), "new": len(new), "returning": len(customers) - len(new)},
        },
        "topProducts": [
            {
                "productId": p,
                "name": catalog[p].name if p in catalog else None,
                "revenue": product_revenue[p],
                "units": product_units[p],
            }
            for p in sold[:5]
        ],
        "salesByCategory": [
            {
                "category": c,
                "revenue": category_revenue[c],
                "orders": len(category_orders[c]),
                "percentage": percentage(category_revenue[c], all_item_revenue),
            }
            for c in categories
        ],
        "monthlyTrends": [{"month": m, "revenue": r, "orders": n} for m, (r, n) in by_month.items()],
    }
