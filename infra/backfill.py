"""A backfill that ages: months of simulated history whose records carry the Kafka timestamps a live
log would have given them, produced in minutes.

The worker's clock is the Kafka record timestamp (CONTRACT §4.1), not the wall clock: a vendor's
events that occurred months apart but were all produced a minute ago would look a minute apart to
it. `AgingGenerator` therefore stamps each history record with a timestamp just after its event's
occurred_at (`timestamp_ms`), so the log the worker reads is the one it would have read had the
simulator been running all along.

The history: `Backfill.events` events with occurred_at spread over the `days` before `end_ms`, in
occurred_at order: the catalog and opening stock first, a millisecond apart at the start, then the
traffic, growing linearly so that the last day has `growth` times the first day's events. Traffic
event i of n lies at the quantile (i + u)/n of that distribution, u uniform in [0, 1) from a seeded
stream of its own, so times strictly follow the event order and the same seed and end give the same
times. Its Kafka timestamp is occurred_at
plus a lag in [`min_lag_ms`, `max_lag_ms`], never less than the previous record's (a producer's
clock does not run backwards). A re-sent event keeps its occurred_at and gets the timestamp of
the moment it is sent again.

After the history, the generator goes on as `EventGenerator` does: the same vendors, catalog,
customers and order numbers, stamped with the wall clock, and `timestamp_ms` is None (the producer's
send time).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from infra.simulate import EventGenerator, SimConfig, _Vendor
from schemas.events import Event

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Backfill:
    days: float
    """event time the history spans, ending at end_ms"""
    events: int
    """events in the history (all vendors together)"""
    end_ms: int
    """occurred_at of the history's end (usually now)"""
    growth: float = 2.0
    """events on the last day / events on the first day"""
    min_lag_ms: int = 5
    max_lag_ms: int = 1000

    def __post_init__(self) -> None:
        if self.days <= 0 or self.events < 0 or self.growth <= 0:
            raise ValueError("a backfill needs days > 0, events >= 0 and growth > 0")
        if not 0 <= self.min_lag_ms <= self.max_lag_ms:
            raise ValueError("need 0 <= min_lag_ms <= max_lag_ms")

    @property
    def start_ms(self) -> int:
        return self.end_ms - int(self.days * DAY_MS)

    def quantile(self, q: float) -> float:
        """The fraction x of the span with a share q of the events before it (density 1 + g·x)."""
        g = self.growth - 1.0
        if abs(g) < 1e-9:
            return q
        return (math.sqrt(1.0 + 2.0 * g * q * (1.0 + g / 2.0)) - 1.0) / g


class AgingGenerator(EventGenerator):
    """`EventGenerator` with `backfill.events` events of history first, timestamped as they aged."""

    def __init__(self, config: SimConfig, backfill: Backfill, clock: Callable[[], int] | None = None):
        if config.start_ms is not None:
            raise ValueError("a backfill sets the events' times itself; leave start_ms unset")
        super().__init__(config, clock)
        self.backfill = backfill
        self._timing = random.Random(f"{config.seed}/backfill")  # times never shift the events
        self._times: dict[int, int] = {}
        self._ts: int | None = None
        self._last_ts = 0

    @property
    def in_history(self) -> bool:
        """Whether the next event generated is still history."""
        return self._seq < self.backfill.events

    @property
    def timestamp_ms(self) -> int | None:
        return self._ts

    def _time_of(self, index: int) -> int:
        """occurred_at of history event `index`, drawn once and in order."""
        t = self._times.get(index)
        if t is None:
            b = self.backfill
            catalog = len(self.vendors) * self.config.products * 2  # upsert and opening stock each
            u = self._timing.random()
            if index < catalog:
                t = b.start_ms + index
            else:
                q = (index - catalog + u) / max(1, b.events - catalog)
                t = b.start_ms + catalog + int(b.quantile(q) * (b.end_ms - b.start_ms - catalog))
            self._times = {index: t}  # only the current event's time is ever asked again
        return t

    def _now(self) -> int:
        if self._seq < self.backfill.events:
            return self._time_of(self._seq)
        return self._clock()

    def _stamp(self, kind: str, event: Event) -> tuple[str, Event]:
        index = self._seq
        if index < self.backfill.events:
            lag = self._timing.randint(self.backfill.min_lag_ms, self.backfill.max_lag_ms)
            self._last_ts = max(self._last_ts, self._time_of(index) + lag)
            self._ts = self._last_ts
        else:
            self._ts = None
        return super()._stamp(kind, event)

    def _cancel_target(self, vendor: _Vendor) -> str:
        """One of the vendor's five latest orders: with history's sparse traffic, the oldest of
        the last 50 could lie days back, and a cancellation comes shortly after its order."""
        recent = vendor.recent_orders
        index = len(recent) - 1 - self.rng.randrange(min(5, len(recent)))
        order_id = recent[index]
        del recent[index]
        return order_id
