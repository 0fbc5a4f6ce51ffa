"""Worked examples of contract §4/§5: every expected number is computed by hand in the comments."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from processors.core.apply import DUPLICATE_EVENT, DUPLICATE_ORDER, Status, apply
from processors.core.prune import prune
from processors.core.snapshot import snapshot, version_at
from processors.core.state import PLACED, PRODUCT, State, new_state
from processors.core.state_codec import dumps, loads
from processors.exceptions import PeriodError, ProcessorError, StateFormatError, UnsupportedEventError
from schemas.codec import FastavroCodec
from schemas.events import Event, InventoryAdjusted, OrderCancelled, OrderItem, OrderPlaced, ProductUpserted

_ids = itertools.count()


def ms(text: str) -> int:
    """Epoch ms of a UTC time written like 2024-03-10T00:00:00.000."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


def placed(
    at: str,
    order_id: str,
    total: int = 100,
    customer: str = "c1",
    items: tuple[tuple[str, str, int, int], ...] = (("p1", "toys", 1, 100),),
    currency: str = "USD",
    vendor: str = "v1",
    event_id: str | None = None,
) -> OrderPlaced:
    return OrderPlaced(
        event_id or f"e{next(_ids)}",
        ms(at),
        vendor,
        order_id,
        customer,
        currency,
        total,
        tuple(OrderItem(*i) for i in items),
    )


def cancelled(at: str, order_id: str, event_id: str | None = None) -> OrderCancelled:
    return OrderCancelled(event_id or f"e{next(_ids)}", ms(at), "v1", order_id)


def upserted(
    at: str, product_id: str, name: str = "Anvil", active: bool = True, threshold: int = 10
) -> ProductUpserted:
    return ProductUpserted(f"e{next(_ids)}", ms(at), "v1", product_id, name, "tools", active, threshold)


def adjusted(at: str, product_id: str, delta: int) -> InventoryAdjusted:
    return InventoryAdjusted(f"e{next(_ids)}", ms(at), "v1", product_id, delta)


def make_state(*events: Event) -> State:
    """A state for vendor v1 with the events folded in, each of which must be applied."""
    state = new_state("v1")
    for e in events:
        outcome = apply(state, e)
        assert outcome.status is Status.APPLIED, (e, outcome)
    return state


@dataclass(frozen=True)
class Stray:
    """Looks like an event to the checks that come before the type dispatch."""

    event_id: str = "x"
    vendor_id: str = "v1"
    occurred_at: int = 0

    def validate(self) -> None:
        return None


@pytest.fixture
def state() -> State:
    return make_state()


def test_a_vendor_without_events_gets_a_zero_filled_snapshot(state: State) -> None:
    flat = {"current": 0, "previous": 0, "trend": "flat", "percentage": None}
    months = ["2023-04", "2023-05", "2023-06", "2023-07", "2023-08", "2023-09", "2023-10", "2023-11"]
    months += ["2023-12", "2024-01", "2024-02", "2024-03"]
    assert snapshot(state, ms("2024-03-15T10:20:30.456")) == {
        "vendorId": "v1",
        "asOf": "2024-03-15T10:20:30.456Z",
        "periodDays": 30,
        "currency": None,
        "version": 0,
        "metrics": {
            "revenue": flat,
            "orders": flat,
            "products": {"total": 0, "active": 0, "lowStock": 0, "outOfStock": 0},
            "customers": {"total": 0, "new": 0, "returning": 0},
        },
        "topProducts": [],
        "salesByCategory": [],
        "monthlyTrends": [{"month": m, "revenue": 0, "orders": 0} for m in months],
    }


def test_windows_are_whole_utc_days_up_to_the_as_of_millisecond() -> None:
    state = make_state(
        placed("2024-03-04T00:00:00.000", "a", 100),  # first ms of the current window (P=7, T=03-10 00:00)
        placed("2024-03-03T23:59:59.999", "b", 10),  # last ms of the previous window
        placed("2024-02-26T00:00:00.000", "c", 1),  # first ms of the previous window (2024 is a leap year)
        placed("2024-02-25T23:59:59.999", "d", 1000),  # in no window
        placed("2024-03-10T00:00:00.000", "e", 5),  # exactly T
        placed("2024-03-10T00:00:00.001", "f", 7),  # after T: nowhere yet
    )
    snap = snapshot(state, ms("2024-03-10T00:00:00.000"), period_days=7)
    # revenue 100 + 5 against 10 + 1: (105 - 11) / 11 * 100 = 854.54... -> 854.5
    assert snap["metrics"]["revenue"] == {"current": 105, "previous": 11, "trend": "up", "percentage": 854.5}
    assert snap["metrics"]["orders"] == {"current": 2, "previous": 2, "trend": "flat", "percentage": 0.0}
    assert snap["monthlyTrends"][-2:] == [
        {"month": "2024-02", "revenue": 1001, "orders": 2},
        {"month": "2024-03", "revenue": 115, "orders": 3},
    ]

    one_ms_later = snapshot(state, ms("2024-03-10T00:00:00.001"), period_days=7)
    assert one_ms_later["metrics"]["revenue"]["current"] == 112
    assert one_ms_later["monthlyTrends"][-1] == {"month": "2024-03", "revenue": 122, "orders": 4}

    # One ms earlier both windows move back a day: current 03-03..03-09 holds a and b (110), previous
    # 02-25..03-02 holds c and d (1001): (110 - 1001) / 1001 * 100 = -89.01... -> -89.0.
    day_before = snapshot(state, ms("2024-03-09T23:59:59.999"), period_days=7)
    assert day_before["metrics"]["revenue"] == {
        "current": 110,
        "previous": 1001,
        "trend": "down",
        "percentage": -89.0,
    }


@pytest.mark.parametrize(
    ("previous", "current", "trend", "percentage"),
    [
        (8, 9, "up", 12.5),  # 1/8 = 12.5 %
        (400, 409, "up", 2.3),  # 2.25 % -> 2.3 (float round(2.25, 1) gives 2.2)
        (400, 391, "down", -2.3),  # -2.25 % -> -2.3, away from zero
        (16, 17, "up", 6.3),  # 6.25 % -> 6.3
        (3, 4, "up", 33.3),  # 33.33 %
        (3, 5, "up", 66.7),  # 66.67 %
        (10, 0, "down", -100.0),
        (7, 7, "flat", 0.0),
        (0, 5, "up", None),  # no previous revenue: no percentage
        (0, 0, "flat", None),
    ],
)
def test_revenue_percentage_rounds_half_away_from_zero(
    previous: int, current: int, trend: str, percentage: float | None
) -> None:
    events = []
    if previous:
        events.append(placed("2024-03-09T08:00:00.000", "yesterday", previous))
    if current:
        events.append(placed("2024-03-10T08:00:00.000", "today", current))
    snap = snapshot(make_state(*events), ms("2024-03-10T12:00:00.000"), period_days=1)
    assert snap["metrics"]["revenue"] == {
        "current": current,
        "previous": previous,
        "trend": trend,
        "percentage": percentage,
    }


def test_sales_by_category_uses_each_lines_own_category() -> None:
    state = make_state(
        upserted("2024-03-01T00:00:00.000", "p1", "Robot"),  # catalog category "tools" plays no part
        placed("2024-03-10T01:00:00.000", "A", 6, items=(("p9", "books", 1, 1), ("p1", "toys", 1, 5))),
        placed("2024-03-10T02:00:00.000", "B", 0, items=(("p2", "books", 2, 0), ("p3", "games", 1, 0))),
        placed("2024-03-10T03:00:00.000", "C", 10, items=(("p1", "toys", 2, 4), ("p4", "toys", 1, 2))),
        placed("2024-03-10T04:00:00.000", "D", 150, items=(("p5", "books", 1, 100), ("p6", "books", 1, 50))),
        cancelled("2024-03-10T05:00:00.000", "D"),  # D (two books lines, one order) is taken out again
    )
    # toys 5 + 8 + 2 = 15, books 1 + 0 = 1, games 0 -> not listed; of 16: toys 93.75 % -> 93.8,
    # books 6.25 % -> 6.3. books has 2 orders, A and B (B's line earns nothing but is a line).
    assert snapshot(state, ms("2024-03-10T12:00:00.000"))["salesByCategory"] == [
        {"category": "toys", "revenue": 15, "orders": 2, "percentage": 93.8},
        {"category": "books", "revenue": 1, "orders": 2, "percentage": 6.3},
    ]


def test_sales_by_category_ties_go_by_category_name() -> None:
    state = make_state(
        placed("2024-03-10T01:00:00.000", "A", 16, items=(("p1", "zines", 1, 8), ("p2", "art", 2, 4))),
    )
    assert snapshot(state, ms("2024-03-10T12:00:00.000"))["salesByCategory"] == [
        {"category": "art", "revenue": 8, "orders": 1, "percentage": 50.0},
        {"category": "zines", "revenue": 8, "orders": 1, "percentage": 50.0},
    ]


def test_top_products_break_revenue_ties_by_units_then_id() -> None:
    state = make_state(
        upserted("2024-03-01T00:00:00.000", "pA", "Anvil"),
        upserted("2024-03-01T00:00:00.000", "pC", "Crate"),
        upserted("2024-03-11T00:00:00.000", "pC", "Crate XL"),  # renamed after T: not yet
        placed(
            "2024-03-10T01:00:00.000",
            "o1",
            200,
            items=(("pA", "t", 2, 50), ("pB", "t", 4, 25), ("pG", "t", 3, 0)),
        ),
        placed("2024-03-10T02:00:00.000", "o2", 150, items=(("pC", "t", 4, 25), ("pD", "t", 5, 10))),
        placed("2024-03-10T03:00:00.000", "o3", 70, items=(("pE", "t", 1, 50), ("pF", "t", 1, 20))),
    )
    # revenue 100: pB and pC have 4 units (id order), pA 2; revenue 50: pD 5 units, pE 1; pF (20) and
    # pG (0) are below the top 5.
    assert snapshot(state, ms("2024-03-10T12:00:00.000"))["topProducts"] == [
        {"productId": "pB", "name": None, "revenue": 100, "units": 4},
        {"productId": "pC", "name": "Crate", "revenue": 100, "units": 4},
        {"productId": "pA", "name": "Anvil", "revenue": 100, "units": 2},
        {"productId": "pD", "name": None, "revenue": 50, "units": 5},
        {"productId": "pE", "name": None, "revenue": 50, "units": 1},
    ]


def test_a_product_sold_for_nothing_is_still_a_top_product() -> None:
    state = make_state(placed("2024-03-10T01:00:00.000", "o1", 0, items=(("free", "t", 3, 0),)))
    assert snapshot(state, ms("2024-03-10T12:00:00.000"))["topProducts"] == [
        {"productId": "free", "name": None, "revenue": 0, "units": 3}
    ]


def test_cancellations_in_either_order_and_new_versus_returning_customers() -> None:
    # T = 03-31 12:00, P = 30: current window 03-02..03-31, previous 02-01..03-01.
    state = make_state(
        cancelled("2024-02-15T09:00:00.000", "o1"),  # comes before its order
        placed("2024-02-15T08:00:00.000", "o1", 500, customer="c1"),
        placed("2024-03-10T00:00:00.000", "o2", 10, customer="c1"),  # c1's first order was o1: returning
        placed("2024-03-05T00:00:00.000", "o3", 600, customer="c2"),
        cancelled("2024-03-06T00:00:00.000", "o3"),  # comes after its order
        placed("2024-03-20T00:00:00.000", "o4", 20, customer="c2"),  # first order o3 is in the window: new
        placed("2024-03-02T00:00:00.000", "o5", 30, customer="c3"),  # first ms of the window: new
        placed("2024-03-01T23:59:59.999", "o6", 50, customer="c4"),  # previous window
        placed("2024-03-25T00:00:00.000", "o7", 40, customer="c4"),  # returning
        placed("2024-03-26T00:00:00.000", "o8", 700, customer="c5"),
        cancelled("2024-03-27T00:00:00.000", "o8"),  # c5 has no order left: not a customer
        cancelled("2024-03-27T00:00:00.000", "o99"),  # unknown order: kept in case it comes, no effect
    )
    metrics = snapshot(state, ms("2024-03-31T12:00:00.000"))["metrics"]
    assert metrics["revenue"] == {"current": 100, "previous": 50, "trend": "up", "percentage": 100.0}
    assert metrics["orders"] == {"current": 4, "previous": 1, "trend": "up", "percentage": 300.0}
    assert metrics["customers"] == {"total": 4, "new": 2, "returning": 2}


def test_a_cancellation_dated_after_the_as_of_instant_does_not_count_yet() -> None:
    state = make_state(
        placed("2024-03-10T10:00:00.000", "o1", 100),
        cancelled("2024-03-10T14:00:00.000", "o1"),
        cancelled("2024-03-10T12:00:00.000", "o1"),  # later in the log, earlier in time: it counts from 12:00
    )

    def revenue(at: str) -> Any:
        return snapshot(state, ms(at))["metrics"]["revenue"]["current"]

    assert revenue("2024-03-10T09:59:59.999") == 0
    assert revenue("2024-03-10T10:00:00.000") == 100
    assert revenue("2024-03-10T11:59:59.999") == 100
    assert revenue("2024-03-10T12:00:00.000") == 0
    assert revenue("2024-03-10T14:00:00.000") == 0


def test_currency_is_the_first_valid_orders_and_others_are_rejected(state: State) -> None:
    bad_code = apply(state, placed("2024-03-10T01:00:00.000", "o1", currency="usd"))
    assert bad_code.status is Status.REJECTED
    assert bad_code.reason == "currency must be an ISO 4217 code (three capital letters), got 'usd'"
    assert apply(state, placed("2024-03-10T02:00:00.000", "o2", 100, currency="EUR")).status is Status.APPLIED

    other = apply(state, placed("2024-03-10T03:00:00.000", "o3", 5, currency="USD", event_id="x"))
    assert other.status is Status.REJECTED
    assert other.reason == "currency USD is not the vendor's currency EUR (that of its first order)"
    # A rejected event counts nowhere, not even as a seen event_id: a corrected re-send is applied.
    assert apply(state, placed("2024-03-10T03:00:00.000", "o3", 5, currency="EUR", event_id="x")).status is (
        Status.APPLIED
    )
    snap = snapshot(state, ms("2024-03-10T12:00:00.000"))
    assert snap["currency"] == "EUR"
    assert snap["metrics"]["revenue"]["current"] == 105
    assert snap["version"] == 2


def test_duplicates_are_ignored_and_do_not_move_the_version(state: State) -> None:
    first = placed("2024-03-10T01:00:00.000", "o1", 100, event_id="e-1")
    assert apply(state, first).status is Status.APPLIED
    assert apply(state, first) == DUPLICATE_EVENT
    assert apply(state, placed("2024-03-10T02:00:00.000", "o1", 999, event_id="e-2")) == DUPLICATE_ORDER
    # The ignored placement's event_id was seen: an event re-using it is a duplicate too.
    assert apply(state, cancelled("2024-03-10T03:00:00.000", "o1", event_id="e-2")) == DUPLICATE_EVENT
    wrong_vendor = apply(state, placed("2024-03-10T02:00:00.000", "o2", vendor="v2"))
    assert wrong_vendor.status is Status.REJECTED
    assert wrong_vendor.reason is not None
    assert "'v2'" in wrong_vendor.reason
    snap = snapshot(state, ms("2024-03-10T12:00:00.000"))
    assert snap["metrics"]["revenue"]["current"] == 100
    assert snap["version"] == 1


def test_ignored_and_rejected_placements_do_not_set_the_first_order_date() -> None:
    # o1 is placed 03-05 (in the window, P=7 from 03-04). A second placement of o1 dated 02-01 is ignored
    # and an order in another currency dated 02-02 is rejected: neither counts, so c1's first order stays
    # 03-05 and c1 is new.
    state = make_state(placed("2024-03-05T00:00:00.000", "o1", customer="c1"))
    assert apply(state, placed("2024-02-01T00:00:00.000", "o1", customer="c1")) == DUPLICATE_ORDER
    other_currency = placed("2024-02-02T00:00:00.000", "o2", customer="c1", currency="EUR")
    assert apply(state, other_currency).status is Status.REJECTED
    metrics = snapshot(state, ms("2024-03-10T12:00:00.000"), period_days=7)["metrics"]
    assert metrics["customers"] == {"total": 1, "new": 1, "returning": 0}


def test_products_follow_the_log_and_ignore_what_is_dated_after_the_as_of_instant() -> None:
    state = make_state(
        adjusted("2024-03-01T00:00:00.000", "p1", 3),  # before the first upsert: counts
        upserted("2024-03-02T00:00:00.000", "p1", threshold=5),  # stock 3 <= 5: low
        upserted("2024-03-02T00:00:00.000", "p2", threshold=2),
        adjusted("2024-03-02T00:00:00.000", "p2", 2),  # stock 2 == threshold: low
        upserted("2024-03-02T00:00:00.000", "p3", threshold=0),  # stock 0: out, not low
        upserted("2024-03-02T00:00:00.000", "p4"),
        adjusted("2024-03-03T00:00:00.000", "p4", 5),
        adjusted("2024-03-04T00:00:00.000", "p4", -7),  # stock -2: out
        upserted("2024-03-02T00:00:00.000", "p5", active=False),  # exists, inactive: neither low nor out
        adjusted("2024-03-02T00:00:00.000", "p6", 4),  # never upserted: does not exist
        upserted("2024-03-11T00:00:00.000", "p7"),  # dated after T: does not exist yet
        upserted("2024-03-01T00:00:00.000", "p8", threshold=10),
        adjusted("2024-03-01T00:00:00.000", "p8", 50),
        upserted("2024-03-05T00:00:00.000", "p8", active=False),
        upserted("2024-03-11T00:00:00.000", "p8", threshold=10),  # dated after T
        upserted("2024-03-03T00:00:00.000", "p8", threshold=100),  # last in the log dated <= T: low (50)
        upserted("2024-03-01T00:00:00.000", "p9"),
        adjusted("2024-03-11T00:00:00.000", "p9", 20),  # dated after T: stock 0 at T, out
    )
    # exist: p1 p2 p3 p4 p5 p8 p9; active: all but p5; low: p1 p2 p8; out: p3 p4 p9
    assert snapshot(state, ms("2024-03-10T12:00:00.000"))["metrics"]["products"] == {
        "total": 7,
        "active": 6,
        "lowStock": 3,
        "outOfStock": 3,
    }
    # On 03-12 p7 exists (stock 0: out), p9 has 20 in stock (not low), p8 still follows its last upsert.
    assert snapshot(state, ms("2024-03-12T00:00:00.000"))["metrics"]["products"] == {
        "total": 8,
        "active": 7,
        "lowStock": 3,
        "outOfStock": 3,
    }


def test_monthly_trends_are_twelve_months_ending_with_the_as_of_month() -> None:
    state = make_state(
        placed("2023-03-31T23:59:59.999", "o1", 1000),  # the month before the first one shown
        placed("2023-04-01T00:00:00.000", "o2", 1),
        placed("2024-01-31T23:59:59.999", "o3", 5),
        placed("2024-02-10T00:00:00.000", "o4", 50),
        cancelled("2024-02-11T00:00:00.000", "o4"),
        placed("2024-03-15T00:00:00.000", "o5", 7),  # exactly T
        placed("2024-03-15T00:00:00.001", "o6", 100),  # after T
        placed("2024-03-20T00:00:00.000", "o7", 1000),  # after T, same month
    )
    trends = snapshot(state, ms("2024-03-15T00:00:00.000"))["monthlyTrends"]
    assert [m["month"] for m in trends] == [
        "2023-04",
        "2023-05",
        "2023-06",
        "2023-07",
        "2023-08",
        "2023-09",
        "2023-10",
        "2023-11",
        "2023-12",
        "2024-01",
        "2024-02",
        "2024-03",
    ]
    assert [(m["revenue"], m["orders"]) for m in trends] == [(1, 1), *[(0, 0)] * 8, (5, 1), (0, 0), (7, 1)]


def test_snapshots_between_events_stay_right_as_events_keep_coming() -> None:
    # The live worker snapshots after every event; the window sums it leaves must follow later events.
    events: list[Event] = [
        placed("2024-03-01T10:00:00.000", "o1", 10, customer="c1"),
        placed("2024-03-10T10:00:00.000", "o2", 20, customer="c2"),
        placed("2024-02-01T10:00:00.000", "o3", 40, customer="c2"),  # c2's first order moves back: returning
        cancelled("2024-03-01T11:00:00.000", "o1"),
        placed("2024-03-11T00:00:00.000", "o4", 80, customer="c3"),  # tomorrow
    ]
    live = new_state("v1")
    for e in events:
        apply(live, e)
        snapshot(live, ms("2024-03-10T12:00:00.000"), period_days=7)
        snapshot(live, ms("2024-03-10T12:00:00.000"), period_days=30)
    for day in ("2024-03-10T12:00:00.000", "2024-03-11T12:00:00.000", "2024-03-12T12:00:00.000"):
        for period in (7, 30):
            assert snapshot(live, ms(day), period) == snapshot(make_state(*events), ms(day), period)
    metrics = snapshot(live, ms("2024-03-11T12:00:00.000"))["metrics"]
    assert metrics["customers"] == {"total": 2, "new": 1, "returning": 1}
    assert metrics["revenue"]["current"] == 100


def test_prune_keeps_what_later_snapshots_need() -> None:
    events: list[Event] = [
        placed(f"2023-{m:02d}-15T12:00:00.000", f"o{m}", m, customer=f"c{m % 3}") for m in range(1, 13)
    ]
    events += [
        placed(f"2024-03-{d:02d}T12:00:00.000", f"p{d}", 100 + d, customer=f"c{d % 5}") for d in range(1, 20)
    ]
    events += [
        upserted("2024-03-01T00:00:00.000", "p1", "Old"),
        upserted("2024-03-05T00:00:00.000", "p1", "New"),
    ]
    full = make_state(*events)
    pruned = make_state(*events)
    before = ms("2024-03-10T00:00:00.000")
    prune(pruned, before)  # keeps 12 months back from 2024-03 (from 2023-04 on), days from 2024-01-11
    assert min(pruned.months) == 2023 * 12 + 3  # 2023-04
    assert min(pruned.days) == ms("2024-03-01T00:00:00.000") // 86_400_000  # the first order kept
    assert (pruned.kept_from_day, pruned.floor) == (ms("2024-01-11T00:00:00.000") // 86_400_000, before)
    assert len(dumps(pruned)) < len(dumps(full))
    for at in (before, before + 1, ms("2024-03-19T23:00:00.000"), ms("2024-05-01T00:00:00.000")):
        for period in (1, 7, 30):
            assert snapshot(pruned, at, period) == snapshot(full, at, period)
    assert pruned.products["p1"].versions == [(ms("2024-03-05T00:00:00.000"), "New", "tools", True, 10)]
    assert snapshot(pruned, before)["topProducts"][0]["name"] == "New"  # every order sold product p1
    # The history is not pruned: the dedupe rules still hold, and an order can still be cancelled.
    assert apply(pruned, placed("2024-03-19T13:00:00.000", "o3", 5)) == DUPLICATE_ORDER
    assert apply(pruned, events[0]) == DUPLICATE_EVENT
    late_cancel = cancelled("2024-03-19T14:00:00.000", "o5")
    apply(pruned, late_cancel)
    apply(full, late_cancel)
    trends = snapshot(pruned, ms("2024-03-20T00:00:00.000"))["monthlyTrends"]
    assert trends[1] == {"month": "2023-05", "revenue": 0, "orders": 0}
    assert trends == snapshot(full, ms("2024-03-20T00:00:00.000"))["monthlyTrends"]


def test_repeated_strings_and_order_lines_are_held_once() -> None:
    """Each decoded event brings its own copies of its strings; a state keeps one of each (memory)."""
    codec = FastavroCodec()
    events = [
        placed("2024-03-10T01:00:00.000", "o1", 250, "c1", (("p1", "toys", 2, 50), ("p2", "toys", 1, 150))),
        placed("2024-03-10T02:00:00.000", "o2", 100, "c1", (("p1", "toys", 2, 50),)),
        upserted("2024-03-10T03:00:00.000", "p1", "Kite"),
        adjusted("2024-03-10T04:00:00.000", "p1", 5),
    ]
    state = make_state(*[codec.decode(codec.encode(e)) for e in events])
    for s in (state, loads(dumps(state))):
        o1, o2 = (entry[4] for entry in s.timeline[19792] if entry[1] == PLACED)
        assert o1 is not None
        assert o2 is not None
        assert o1.items[0] is o2.items[0]  # the same product, quantity and price: one tuple
        assert o1.items[1][1] is o1.items[0][1]  # "toys"
        assert o1.customer_id is o2.customer_id is next(iter(s.days[19792].customers))
        (product_id,) = [k for k in s.products if k == "p1"]
        assert o1.items[0][0] is product_id
        assert all(entry[2] is product_id for entry in s.timeline[19792] if entry[1] == PRODUCT)


def test_prune_forgets_the_lines_and_names_only_dropped_orders_used() -> None:
    state = make_state(
        placed("2024-01-02T10:00:00.000", "o1", 7, "c1", (("p9", "rare", 1, 7),)),
        placed("2024-03-09T10:00:00.000", "o2", 100, "c2", (("p1", "toys", 1, 100),)),
    )
    prune(state, ms("2024-03-10T00:00:00.000"))  # o1's day dropped (only its month total stays)
    assert state.lines == {}  # no order is dated after the floor
    assert set(state.names) == {"c2", "p1", "toys"}  # o2's day bucket holds these


def test_stored_state_round_trips_deterministically() -> None:
    events: list[Event] = [
        placed("2024-03-10T01:00:00.000", "o1", 100, items=(("p1", "toys", 2, 50),)),
        cancelled("2024-03-10T02:00:00.000", "o2"),
        upserted("2024-03-10T03:00:00.000", "p1", "Kite"),
        adjusted("2024-03-10T04:00:00.000", "p1", 3),
    ]
    state = make_state(*events)
    state.offsets["orders:2"] = 41
    data = dumps(state)
    restored = loads(data, state.history)  # the history is stored apart (processors.core.history)
    assert dumps(restored) == data
    assert restored.offsets == {"orders:2": 41}
    assert snapshot(restored, ms("2024-03-10T12:00:00.000")) == snapshot(state, ms("2024-03-10T12:00:00.000"))
    twin = make_state(*events)
    twin.offsets["orders:2"] = 41
    assert dumps(twin) == data
    assert b" " not in data
    assert orjson.loads(data)["format"] == 2


PINNED = (
    b'{"clocks":[1685577606000,1685577609000],"currency":"USD","days":[[19792,250,1,{"p1":[100,2],'
    b'"p2":[100,1],"p3":[50,1]},{"books":[100,1],"toys":[150,1]},{"c1":1}]],"floor":1710028800000,'
    b'"format":2,"keptFrom":[19733,24279,19763],"months":[[24288,9,1],[24290,250,1]],"offsets":{"orders:0":9},'
    b'"products":{"p1":[-3,[[1709283600000,"Kite","toys",true,10],[1710043200000,"Red kite","toys",false,'
    b'5]]],"p4":[12,[]]},"timeline":[[19792,[[1710032400000,0,"o1",0,["o1",1710032400000,"c1",250,[["p1",'
    b'"toys",2,50],["p2","books",1,100],["p3","toys",1,50]],null]],[1710036000000,0,"o2",0,["o2",'
    b'1710036000000,"c2",50,[["p1","toys",1,50]],1710039600000]],[1710039600000,1,"o2",0,["o2",'
    b'1710036000000,"c2",50,[["p1","toys",1,50]],1710039600000]],[1710041400000,2,"p4",12,null],'
    b'[1710043200000,2,"p1",0,null],[1710046800000,2,"p1",-3,null]]]],"vendorId":"v1","version":10}'
)
"""A checkpoint as format 2 writes it. Stored checkpoints are read back by later versions of the code, so
a change to the in-memory layout must leave these bytes as they are (or bump FORMAT)."""


def test_stored_state_bytes_do_not_change() -> None:
    state = new_state("v1")
    stamps = iter(range(1_685_577_600_000, 1_685_577_600_000 + 10_000, 1000))  # from 2023-06-01
    for e in (
        placed("2023-01-05T10:00:00.000", "old", 7, items=(("p1", "toys", 1, 7),), event_id="e01"),
        placed("2024-01-05T10:00:00.000", "thin", 9, "c2", (("p2", "books", 3, 3),), event_id="e02"),
        ProductUpserted("e03", ms("2024-03-01T09:00:00.000"), "v1", "p1", "Kite", "toys", True, 10),
        placed(
            "2024-03-10T01:00:00.000",
            "o1",
            250,
            items=(("p1", "toys", 2, 50), ("p2", "books", 1, 100), ("p3", "toys", 1, 50)),
            event_id="e04",
        ),
        placed("2024-03-10T02:00:00.000", "o2", 50, "c2", (("p1", "toys", 1, 50),), event_id="e05"),
        cancelled("2024-03-10T03:00:00.000", "o2", event_id="e06"),
        cancelled("2024-03-09T23:00:00.000", "o9", event_id="e07"),  # before its order: kept
        ProductUpserted("e08", ms("2024-03-10T04:00:00.000"), "v1", "p1", "Red kite", "toys", False, 5),
        InventoryAdjusted("e09", ms("2024-03-10T05:00:00.000"), "v1", "p1", -3),
        InventoryAdjusted("e10", ms("2024-03-10T03:30:00.000"), "v1", "p4", 12, "opening"),
    ):
        assert apply(state, e, next(stamps)).status is Status.APPLIED
    state.offsets["orders:0"] = 9
    prune(state, ms("2024-03-10T00:00:00.000"))  # "old" and "thin" only in their months
    assert dumps(state) == PINNED
    assert dumps(loads(PINNED, state.history)) == PINNED


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not a vendorpulse state"),
        (b'{"format": 1}', "has format 1, this code reads 2"),
        (b'{"format": 2, "vendorId": "v1"}', "malformed"),
    ],
)
def test_loads_refuses_what_is_not_a_stored_state(data: bytes, message: str) -> None:
    with pytest.raises(StateFormatError, match=message):
        loads(data)


def test_periods_under_one_day_and_non_events_are_refused(state: State) -> None:
    with pytest.raises(PeriodError, match="period_days must be >= 1"):
        snapshot(state, 0, period_days=0)
    with pytest.raises(UnsupportedEventError, match="got Stray"):
        apply(state, Stray())  # type: ignore[arg-type]
    assert issubclass(StateFormatError, ProcessorError)


def test_a_catalog_version_superseded_before_the_floor_is_dropped_at_once_and_the_one_in_force_kept() -> None:
    floor = ms("2024-03-10T12:00:00.000")
    state = new_state("v1")
    state.floor = floor
    for at, name in (("2024-03-01T00:00:00.000", "Old"), ("2024-03-05T00:00:00.000", "Older name")):
        apply(state, upserted(at, "p1", name), 0)
    # the second is in force at the floor and after, the first never again (no T >= floor reads it)
    assert [v[1] for v in state.products["p1"].versions] == ["Older name"]
    apply(state, upserted("2024-03-11T00:00:00.000", "p1", "Future name"), 0)  # dated after the floor: kept
    apply(state, upserted("2024-03-09T00:00:00.000", "p1", "Before the floor"), 0)  # drops the future one
    assert [v[1] for v in state.products["p1"].versions] == ["Before the floor"]
    apply(state, upserted("2024-03-12T00:00:00.000", "p1", "Later"), 0)
    assert [v[1] for v in state.products["p1"].versions] == ["Before the floor", "Later"]
    # what a snapshot as of T >= floor reads: the last version dated at or before T
    in_force = {t: version_at(state.products["p1"].versions, ms(t)) for t in (
        "2024-03-10T12:00:00.000", "2024-03-11T23:59:59.999", "2024-03-12T00:00:00.000")}  # fmt: skip
    assert [v[1] if v else None for v in in_force.values()] == [
        "Before the floor",
        "Before the floor",
        "Later",
    ]
