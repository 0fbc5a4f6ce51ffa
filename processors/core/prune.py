"""`prune(state, before_ms, period_days)`: drop what no later live snapshot reads, and raise the floor."""

from __future__ import annotations

from bisect import bisect_right

from processors.core.calendar import DAY_MS, month_of_day
from processors.core.snapshot import TREND_MONTHS
from processors.core.state import DayBucket, State, occurred, pin, reshare
from processors.exceptions import PeriodError


def prune(state: State, before_ms: int, period_days: int = 30) -> None:
    """Drop what no snapshot with as_of >= before_ms and a period <= period_days can read, and raise the
    floor to before_ms: day buckets before the earliest window (and all but the totals of the previous
    window's), months before the earliest trend, catalog versions superseded before it, timeline entries
    dated at or before it.

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
    state.full_from_day = max(state.full_from_day, day - period_days + 1)  # the current window's first
    for d in [d for d in state.days if d < state.kept_from_day]:
        del state.days[d]
    for d, bucket in state.days.items():
        if d < state.full_from_day and (bucket.products or bucket.customers):
            state.days[d] = DayBucket(bucket.revenue, bucket.orders)  # the previous window's: totals only
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
