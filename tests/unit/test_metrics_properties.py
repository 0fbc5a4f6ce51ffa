"""Random logs folded by the core must give exactly the naive reference's snapshots (contract §4).

The logs are small on purpose (a handful of order ids, customers, products, categories, currencies and
event ids) so that the awkward cases keep happening: re-sent and colliding event ids, re-placed order ids,
cancellations before and after their orders and of unknown orders, events dated after the as-of instant,
timestamps on the last and first millisecond of UTC days, invalid events, other vendors' events.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.core.apply import DUPLICATE_ORDER, Outcome, Status, apply
from processors.core.calendar import DAY_MS
from processors.core.prune import prune
from processors.core.snapshot import snapshot
from processors.core.state import State, new_state
from processors.core.state_codec import dumps, loads
from schemas.events import Event, InventoryAdjusted, OrderCancelled, OrderItem, OrderPlaced, ProductUpserted
from tests.unit.reference import Read, read_log, reference_snapshot

settings.register_profile(
    "metrics-properties", deadline=None, max_examples=250, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = settings.get_profile("metrics-properties")

VENDOR = "v1"
BASE = 19_783 * DAY_MS  # 2024-03-01T00:00:00Z: windows and months straddle a (leap) February
PERIODS = (1, 7, 30)


@st.composite
def weighted(draw: st.DrawFn, *pairs: tuple[int, st.SearchStrategy[Any]]) -> Any:
    """A value of one of the strategies, picked with the given weights (st.one_of merges equal branches
    and picks evenly)."""
    return draw(draw(st.sampled_from([s for n, s in pairs for _ in range(n)])))


def mostly(valid: st.SearchStrategy[Any], invalid: Any) -> st.SearchStrategy[Any]:
    """Values of `valid`, and now and then (1 in 25) `invalid`."""
    return weighted((24, valid), (1, st.just(invalid)))


HOUR_MS = DAY_MS // 24
in_day = weighted(  # a coarse grid, so that events share timestamps and as-of instants hit them exactly
    (3, st.sampled_from([0, 1, 6 * HOUR_MS, 12 * HOUR_MS, DAY_MS - 2, DAY_MS - 1])),
    (1, st.integers(0, DAY_MS - 1)),
)
day = weighted(
    (6, st.integers(-3, 1)),  # around T's day
    (3, st.sampled_from([-6, -7, -8, -13, -14, -29, -30, -31, -59, -60, -61])),  # window edges, P = 1, 7, 30
    (3, st.integers(-70, 3)),
    (1, st.integers(-400, -300)),  # a year back: the edge of monthlyTrends
)
when = st.builds(lambda d, ms: BASE + d * DAY_MS + ms, day, in_day)

vendor = st.sampled_from([VENDOR] * 24 + ["v2"])
order_ids = [f"o{i}" for i in range(8)]
customer = mostly(st.sampled_from(["c0", "c1", "c2", "c3", "c4"]), "")
product_id = st.sampled_from(["p0", "p1", "p2", "p3", "p4", "p5", "p6"])
category = st.sampled_from(["books", "games", "toys"])
currency = st.sampled_from(["USD"] * 20 + ["EUR", "EUR", "usd"])
money = weighted((1, st.sampled_from([0, 1, 3, 8, 16, 40, 391, 400, 409])), (1, st.integers(0, 500)))

item = st.builds(
    OrderItem,
    product_id,
    category,
    mostly(st.integers(1, 4), 0),
    st.sampled_from([0, 1, 2, 5, 8, 15, 25, 125]),
)
placed = st.builds(
    OrderPlaced,
    st.just(""),
    when,
    vendor,
    st.sampled_from(order_ids),
    customer,
    currency,
    mostly(money, -1),
    mostly(st.lists(item, min_size=1, max_size=3).map(tuple), ()),
)
cancelled = st.builds(OrderCancelled, st.just(""), when, vendor, st.sampled_from([*order_ids, "o-unknown"]))
upserted = st.builds(
    ProductUpserted,
    st.just(""),
    when,
    vendor,
    product_id,
    st.sampled_from(["Anvil", "Rope", ""]),
    category,
    st.booleans(),
    mostly(st.sampled_from([0, 1, 2, 3, 10]), -1),
)
stocked = st.sampled_from(["p0", "p0", "p1", "p1", "p2", "p5"])  # a few products get most stock changes
adjusted = st.builds(InventoryAdjusted, st.just(""), when, vendor, stocked, st.integers(-4, 6))
event = weighted((6, placed), (2, cancelled), (1, upserted), (2, adjusted))


@st.composite
def logs(draw: st.DrawFn) -> list[Event]:
    """Events with ids: mostly fresh, sometimes reused (collisions) or blank; then some exact re-sends."""
    events: list[Event] = []
    for i, e in enumerate(draw(st.lists(event, min_size=1, max_size=50))):
        choice = draw(st.sampled_from(["fresh"] * 20 + ["taken", "taken", "blank"]))
        if choice == "blank":
            event_id = ""  # invalid
        elif choice == "taken":
            event_id = f"e{draw(st.integers(0, max(i - 1, 0)))}"  # another event's id
        else:
            event_id = f"e{i}"
        events.append(replace(e, event_id=event_id))
    # Cancellations of placed orders, mostly after the placement (earlier inserts may shift it past).
    placed_ids = [(i, e.order_id) for i, e in enumerate(events) if isinstance(e, OrderPlaced)]
    for n in range(draw(st.integers(0, 3)) if placed_ids else 0):
        i, order_id = draw(st.sampled_from(placed_ids))
        cancel = OrderCancelled(f"c{n}", draw(when), VENDOR, order_id)
        events.insert(draw(st.integers(i + 1, len(events))), cancel)
    for _ in range(draw(st.integers(0, 6))):  # re-sent as they are
        again = events[draw(st.integers(0, len(events) - 1))]
        events.insert(draw(st.integers(0, len(events))), again)
    return events


def as_of(events: list[Event]) -> st.SearchStrategy[int]:
    times = sorted({e.occurred_at for e in events})
    exact = st.tuples(st.sampled_from(times), st.sampled_from([-1, 0, 1])).map(sum)
    near = st.builds(lambda d, ms: BASE + d * DAY_MS + ms, st.integers(-2, 1), in_day)
    return weighted((2, near), (2, exact), (1, when))


def probes(events: list[Event]) -> st.SearchStrategy[list[tuple[int, int]]]:
    """(as_of, period_days) pairs to snapshot."""
    return st.lists(st.tuples(as_of(events), st.sampled_from(PERIODS)), min_size=1, max_size=4)


def fold(events: list[Event], state: State | None = None, stamps: list[int] | None = None) -> State:
    state = state if state is not None else new_state(VENDOR)
    for i, e in enumerate(events):
        apply(state, e, stamps[i] if stamps is not None else -1)
    return state


def restored(state: State) -> State:
    """The state as a restart gives it back: the live part from its bytes, the history as stored."""
    return loads(dumps(state), copy.deepcopy(state.history), state.lateness_ms // DAY_MS)


def assert_consistent(state: State) -> None:
    """What the fold keeps up to date by hand equals what loads rebuilds."""
    rebuilt = restored(state)
    assert dumps(rebuilt) == dumps(state)
    assert rebuilt.product_counts == state.product_counts
    assert rebuilt.pinned.keys() == state.pinned.keys()


@PROFILE
@given(st.data())
def test_fold_matches_reference(data: st.DataObject) -> None:
    events = data.draw(logs())
    asked = data.draw(probes(events))
    # Snapshots part-way, like the live worker's, leave window sums in the state that later events must
    # keep right; the same probes are asked again at later checkpoints and at the end.
    checkpoints = set(data.draw(st.lists(st.integers(1, len(events)), max_size=4)))
    state = new_state(VENDOR)
    for n, e in enumerate(events, 1):
        apply(state, e)
        if n in checkpoints:
            for t, p in asked:
                assert snapshot(state, t, p) == reference_snapshot(events[:n], VENDOR, t, p)
    for t, p in asked + data.draw(probes(events)):
        assert snapshot(state, t, p) == reference_snapshot(events, VENDOR, t, p)


@PROFILE
@given(st.data())
def test_stored_state_round_trips(data: st.DataObject) -> None:
    events = data.draw(logs())
    split = data.draw(st.integers(0, len(events)))
    state = fold(events[:split])
    state.offsets = {"orders:3": split, "inventory:3": 7}
    for t, p in data.draw(probes(events)):
        snapshot(state, t, p)  # leaves window sums, which are not stored
    again = restored(state)
    assert dumps(again) == dumps(state)
    assert again.offsets == {"orders:3": split, "inventory:3": 7}
    fold(events[split:], state)
    fold(events[split:], again)
    assert dumps(again) == dumps(state)
    assert_consistent(state)
    for t, p in data.draw(probes(events)):
        assert snapshot(again, t, p) == snapshot(state, t, p) == reference_snapshot(events, VENDOR, t, p)


@PROFILE
@given(st.data())
def test_prune_keeps_snapshots_as_of_before_and_later(data: st.DataObject) -> None:
    events = data.draw(logs())
    split = data.draw(st.integers(0, len(events)))
    # prune's edges: an event on the first day a window still shows (2P - 1 days back), or in the first
    # month monthlyTrends still shows
    day_edge = st.sampled_from(events).map(lambda e: (e.occurred_at // DAY_MS + 59) * DAY_MS)
    month_edge = st.sampled_from(events).map(lambda e: (e.occurred_at // DAY_MS + 335) * DAY_MS)
    edges = st.tuples(weighted((1, day_edge), (1, month_edge)), in_day).map(sum)
    before = data.draw(weighted((2, as_of(events)), (1, edges)))
    unpruned = fold(events)
    state = fold(events[:split])
    prune(state, before, period_days=30)
    if data.draw(st.booleans()):
        state = restored(state)
    fold(events[split:], state)  # events keep coming after a prune, dated before it or not
    assert_consistent(state)
    later = weighted((1, st.just(0)), (2, st.integers(0, 2 * DAY_MS)), (1, st.integers(0, 90 * DAY_MS)))
    for _ in range(4):
        t, p = before + data.draw(later), data.draw(st.sampled_from(PERIODS))
        expected = reference_snapshot(events, VENDOR, t, p)
        assert snapshot(state, t, p) == expected
        assert snapshot(unpruned, t, p) == expected


# --- the lateness horizon (contract §4.1) -------------------------------------------------------------

LATENESS = st.sampled_from([1, 2, 5, 30, 400])
VERDICTS = {
    "applied": "accepted",
    "too_late": "too late",
    "rejected": "refused",
}


def stamps_for(events: list[Event]) -> st.SearchStrategy[list[int]]:
    """Record timestamps: mostly just after occurred_at (a live producer), some hours or days later (a
    lagging one), some anywhere (out of order), some missing (-1)."""
    one = [
        weighted(
            (6, st.integers(0, 6 * HOUR_MS).map(lambda d, at=e.occurred_at: at + d)),
            (2, st.integers(0, 40).map(lambda n, at=e.occurred_at: at + n * DAY_MS)),
            (1, when),
            (1, st.just(-1)),
        )
        for e in events
    ]
    return st.tuples(*one).map(list)


@st.composite
def aging_logs(draw: st.DrawFn) -> list[Event]:
    """A log in roughly occurred_at order over ~70 days, with order ids and event ids reused across it,
    so that what an earlier event left lies behind the horizon when the later one is read."""
    events = draw(logs())
    events.sort(key=lambda e: e.occurred_at + draw(st.sampled_from([0, 0, 0, DAY_MS, -DAY_MS])))
    return events


def horizon_cases(read: list[Read]) -> set[str]:
    """Labels of the §4.1 cases a log exercises (hypothesis statistics: pytest --hypothesis-show-statistics)."""
    cases = set()
    for j, r in enumerate(read):
        e = r.event
        if r.verdict == "too late":
            cases.add("too late")
        if r.ts < 0:
            cases.add("record without a timestamp")
        earlier = [x for x in read[:j] if x.verdict in ("accepted", "second")]
        if r.verdict == "accepted" and any(x.event.event_id == e.event_id for x in earlier):
            cases.add("event id new again after the horizon")
        if r.verdict == "accepted" and isinstance(e, OrderPlaced):
            before = [x.event for x in earlier if isinstance(x.event, OrderPlaced)]
            if any(p.order_id == e.order_id for p in before):
                cases.add("order id placed again after the horizon")
            waiting = [
                x.event for x in read[:j] if x.verdict == "accepted" and isinstance(x.event, OrderCancelled)
                and x.event.order_id == e.order_id
            ]  # fmt: skip
            if any(c.occurred_at < r.horizon for c in waiting):
                cases.add("a cancellation of the id lies behind the horizon at a placement")
    return cases


def verdict(outcome: Outcome) -> str:
    if outcome == DUPLICATE_ORDER:
        return "second"
    if outcome.status is Status.DUPLICATE:
        return "duplicate"
    return VERDICTS[outcome.status.value]


@PROFILE
@given(st.data())
def test_horizon_fold_matches_reference(data: st.DataObject) -> None:
    events = data.draw(weighted((1, logs()), (1, aging_logs())))
    stamps = data.draw(stamps_for(events))
    lateness = data.draw(LATENESS)
    asked = data.draw(probes(events))
    read = read_log(events, VENDOR, stamps, lateness)
    expected = [r.verdict for r in read]
    for case in horizon_cases(read):
        hypothesis.event(case)
    state = new_state(VENDOR, lateness_days=lateness)
    got = [verdict(apply(state, e, ts)) for e, ts in zip(events, stamps, strict=True)]
    assert got == expected
    assert_consistent(state)
    for t, p in asked:
        assert snapshot(state, t, p) == reference_snapshot(events, VENDOR, t, p, stamps, lateness)


@PROFILE
@given(st.data())
def test_horizon_with_a_floor_restarts_and_prunes(data: st.DataObject) -> None:
    """As the worker runs it: a floor that rises as the log is read, restarts from the stored bytes, a
    prune part way; snapshots as of the last floor or later are the reference's."""
    events = data.draw(aging_logs())
    stamps = data.draw(stamps_for(events))
    lateness = data.draw(LATENESS)
    floors = sorted(data.draw(st.lists(when, min_size=1, max_size=3)))
    cuts = sorted(
        data.draw(st.lists(st.integers(0, len(events)), min_size=len(floors), max_size=len(floors)))
    )
    state = new_state(VENDOR, lateness_days=lateness)
    done = 0
    for cut, floor in zip(cuts, floors, strict=True):
        fold(events[done:cut], state, stamps[done:cut])
        done = cut
        if data.draw(st.booleans()):
            prune(state, floor, period_days=30)
        else:
            state.floor = max(state.floor, floor)
        if data.draw(st.booleans()):
            state = restored(state)
    fold(events[done:], state, stamps[done:])
    assert_consistent(state)
    later = weighted((1, st.just(0)), (2, st.integers(0, 2 * DAY_MS)), (1, st.integers(0, 90 * DAY_MS)))
    for _ in range(3):
        t, p = state.floor + data.draw(later), data.draw(st.sampled_from(PERIODS))
        assert snapshot(state, t, p) == reference_snapshot(events, VENDOR, t, p, stamps, lateness)
