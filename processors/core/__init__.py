"""The pure core: the event-sourcing fold of contract §4 and §4.1, with no Kafka, Faust or web import.

`apply(state, event, ts)` folds one event into its vendor's state; `snapshot(state, as_of_ms)` reads the
contract §5 JSON from it; `prune(state, before_ms)` drops what no later snapshot reads. The worker, replay
and the tests all call these, so live and replayed numbers cannot disagree.
"""

from processors.core.apply import (
    DUPLICATE_EVENT,
    DUPLICATE_ORDER,
    Outcome,
    Status,
    StockLevel,
    apply,
    clock_of,
    observe,
    stock_level,
)
from processors.core.calendar import DAY_MS, iso_millis
from processors.core.history import History, MemoryHistory, Order, OrderEntry
from processors.core.prune import prune
from processors.core.snapshot import snapshot
from processors.core.state import DEFAULT_LATENESS_DAYS, NO_FLOOR, State, new_state
from processors.core.state_codec import dumps, loads

__all__ = [
    "DAY_MS",
    "DEFAULT_LATENESS_DAYS",
    "DUPLICATE_EVENT",
    "DUPLICATE_ORDER",
    "NO_FLOOR",
    "History",
    "MemoryHistory",
    "Order",
    "OrderEntry",
    "Outcome",
    "State",
    "Status",
    "StockLevel",
    "apply",
    "clock_of",
    "dumps",
    "iso_millis",
    "loads",
    "new_state",
    "observe",
    "prune",
    "snapshot",
    "stock_level",
]
