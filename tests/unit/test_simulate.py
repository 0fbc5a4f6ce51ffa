"""The event generator: deterministic, valid, and shaped like the marketplace it stands for."""

from __future__ import annotations

from collections import Counter
from itertools import islice

from infra.simulate import EventGenerator, SimConfig
from schemas.events import InventoryAdjusted, OrderCancelled, OrderPlaced, ProductUpserted


def make_events(n: int = 5000, **overrides: object) -> list[tuple[str, object]]:
    config = SimConfig(**{"start_ms": 1_700_000_000_000, **overrides})  # type: ignore[arg-type]
    return list(islice(EventGenerator(config), n))


def test_same_seed_same_events_other_seed_other_events() -> None:
    assert make_events(2000) == make_events(2000)
    assert make_events(2000) != make_events(2000, seed=8)


def test_every_event_is_valid_and_on_its_topic() -> None:
    for kind, event in make_events():
        assert event.validate() is None  # type: ignore[attr-defined]
        expected = "orders" if isinstance(event, OrderPlaced | OrderCancelled) else "inventory"
        assert kind == expected


def test_traffic_has_catalog_orders_cancellations_and_repeat_buyers() -> None:
    events = [e for _, e in make_events(20000, vendors=3, products=20)]
    kinds = Counter(type(e) for e in events)
    orders = [e for e in events if isinstance(e, OrderPlaced)]
    placed = {o.order_id for o in orders}
    cancels = [e for e in events if isinstance(e, OrderCancelled)]
    assert kinds[ProductUpserted] >= 3 * 20
    assert kinds[InventoryAdjusted] >= 3 * 20
    assert 0.02 < len(cancels) / len(orders) < 0.05
    assert all(c.order_id in placed for c in cancels)
    per_customer = Counter((o.vendor_id, o.customer_id) for o in orders)
    assert sum(1 for n in per_customer.values() if n > 1) > len(per_customer) * 0.2
    assert {o.vendor_id: o.currency for o in orders} == {
        "vendor-001": "EUR",
        "vendor-002": "USD",
        "vendor-003": "GBP",
    }
    assert all(o.total == sum(i.quantity * i.unit_price for i in o.items) for o in orders)


def test_start_ms_steps_time_and_ids_are_unique() -> None:
    events = [e for _, e in make_events(3000, step_ms=10)]
    times = [e.occurred_at for e in events]  # type: ignore[attr-defined]
    assert times == sorted(times)
    assert times[0] == 1_700_000_000_000
    assert times[1] - times[0] == 10
    assert len({e.event_id for e in events}) == len(events)  # type: ignore[attr-defined]
