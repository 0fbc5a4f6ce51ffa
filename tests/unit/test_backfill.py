"""The aging backfill: history in occurred_at order over the asked range, each record's Kafka timestamp
just after its event's occurred_at, then the live traffic of the same simulated marketplace."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from itertools import islice

import pytest

from infra.backfill import DAY_MS, AgingGenerator, Backfill
from infra.simulate import SimConfig
from schemas.events import Event, OrderCancelled, OrderPlaced

END = 1_790_000_000_000
LIVE_CLOCK = END + 5_000


def history(
    n: int = 10_000, days: float = 120, extra: int = 0, **config: object
) -> list[tuple[str, Event, int | None]]:
    settings = {"vendors": 4, "products": 10, "customers": 200, "seed": 5, **config}
    generator = AgingGenerator(SimConfig(**settings), Backfill(days, n, END), clock=lambda: LIVE_CLOCK)  # type: ignore[arg-type]
    return list(islice(generator.records(), n + extra))


def test_history_spans_the_range_in_occurred_at_order_with_timestamps_just_after() -> None:
    records = history()
    times = [e.occurred_at for _, e, _ in records]
    stamps = [ts for _, _, ts in records]
    assert times == sorted(times)
    assert END - 120 * DAY_MS <= times[0] < END - 120 * DAY_MS + DAY_MS
    assert END - DAY_MS < times[-1] <= END
    assert all(ts is not None for ts in stamps)
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    lags = [ts - t for ts, t in zip(stamps, times, strict=True)]  # type: ignore[operator]
    assert min(lags) >= 5
    assert max(lags) <= 1000


def test_history_is_the_same_for_a_seed_and_other_for_another() -> None:
    assert history(3000) == history(3000)
    other = history(3000, seed=6)
    assert [e.event_id for _, e, _ in other] != [e.event_id for _, e, _ in history(3000)]


def test_traffic_grows_over_the_range() -> None:
    times = [e.occurred_at for _, e, _ in history(20_000)]
    span = 120 * DAY_MS
    first = sum(1 for t in times if t < END - span + span // 10)
    last = sum(1 for t in times if t >= END - span // 10)
    assert 1.6 < last / first < 2.4  # growth 2: the last day has about twice the first day's events


def test_the_catalog_opens_the_history_and_every_month_has_orders() -> None:
    """Even when the catalog is a fifth of a short history, it takes the first moments, not months."""
    records = history(800, days=395, vendors=2, products=40)
    catalog = [e for _, e, _ in records[:160]]
    assert catalog[-1].occurred_at - catalog[0].occurred_at < 1000
    months = Counter(
        datetime.fromtimestamp(e.occurred_at / 1000, UTC).strftime("%Y-%m")
        for _, e, _ in records
        if isinstance(e, OrderPlaced)
    )
    assert len(months) == 14  # 395 days before 2026-09-21: from 2025-08-22
    assert min(n for month, n in months.items() if month not in ("2025-08", "2026-09")) >= 20


def test_cancellations_come_shortly_after_their_orders() -> None:
    events = [e for _, e, _ in history(15_000)]
    placed = {e.order_id: e.occurred_at for e in events if isinstance(e, OrderPlaced)}
    cancels = [e for e in events if isinstance(e, OrderCancelled)]
    assert 0.02 < len(cancels) / len(placed) < 0.05
    delays = sorted(c.occurred_at - placed[c.order_id] for c in cancels)
    assert delays[0] >= 0
    assert delays[len(delays) // 2] < DAY_MS // 4  # within hours, not the days 50 orders back would be


def test_resent_events_repeat_an_event_with_a_later_timestamp() -> None:
    records = history(10_000, resend_rate=0.02)
    seen: dict[str, Event] = {}
    resent = 0
    previous_ts = 0
    for _, event, ts in records:
        assert ts is not None
        assert ts >= previous_ts
        previous_ts = ts
        if event.event_id in seen:
            resent += 1
            assert seen[event.event_id] == event  # the same event, sent again
            assert ts >= event.occurred_at
        else:
            seen[event.event_id] = event
            assert 5 <= ts - event.occurred_at <= 1000
    assert 0.01 < resent / len(records) < 0.03


def test_after_the_history_the_live_traffic_follows_with_the_producers_timestamp() -> None:
    records = history(5000, extra=500)
    live = records[5000:]
    assert all(ts is None for _, _, ts in live)
    assert all(e.occurred_at == LIVE_CLOCK for _, e, _ in live)
    # the same marketplace goes on: no event id or order id of the history comes again
    ids = Counter(e.event_id for _, e, _ in records)
    assert max(ids.values()) == 1
    orders = Counter(e.order_id for _, e, _ in records if isinstance(e, OrderPlaced))
    assert max(orders.values()) == 1


def test_whale_takes_its_share_of_the_history() -> None:
    events = [e for _, e, _ in history(20_000, vendors=20, products=5, whale_share=0.2)]
    traffic = events[20 * 5 * 2 :]  # after the catalog
    share = sum(1 for e in traffic if e.vendor_id == "vendor-001") / len(traffic)
    assert 0.18 < share < 0.22


def test_every_event_is_valid() -> None:
    assert all(e.validate() is None for _, e, _ in history(5000, resend_rate=0.01))


def test_history_leaves_the_times_to_the_backfill() -> None:
    with pytest.raises(ValueError, match="start_ms"):
        AgingGenerator(SimConfig(start_ms=END), Backfill(10, 10, END))
    with pytest.raises(ValueError, match="days > 0"):
        Backfill(0, 10, END)
