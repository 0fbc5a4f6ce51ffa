"""Stream time over input partitions that progress unevenly, and pausing those too far ahead of it."""

from __future__ import annotations

from processors.worker.alignment import Alignment

HOUR = 3_600_000


def test_stream_time_is_the_least_read_over_lagging_partitions_or_the_greatest_when_none_lags() -> None:
    a: Alignment[str] = Alignment(ahead_ms=HOUR)
    assert a.time(lambda p: True) is None  # nothing read
    a.read("orders-0", 100 * HOUR)
    a.read("inventory-0", 900 * HOUR)  # sparse: read far ahead
    a.read("orders-0", -1)  # no timestamp: nothing changes
    a.read("orders-0", 90 * HOUR)  # out of order: the greatest read stays
    assert a.time(lambda p: True) == 100 * HOUR
    assert a.time(lambda p: p != "orders-0") == 900 * HOUR  # orders-0 caught up: no longer holds it back
    assert a.time(lambda p: False) == 900 * HOUR  # live: every partition caught up


def test_partitions_read_too_far_ahead_are_paused_until_stream_time_comes_near() -> None:
    a: Alignment[str] = Alignment(ahead_ms=HOUR)
    a.read("slow", 10 * HOUR)
    a.read("near", 10 * HOUR + HOUR)  # exactly ahead_ms ahead: not paused
    a.read("far", 30 * HOUR)
    a.read("done", 50 * HOUR)  # far ahead but caught up: never paused
    lagging = {"slow", "near", "far"}.__contains__
    assert a.plan(a.time(lagging), lagging) == ({"far"}, set())
    assert a.plan(a.time(lagging), lagging) == ({"far"}, set())  # asked again (a recovery resumes all)
    a.read("slow", 29 * HOUR)
    a.read("near", 29 * HOUR)
    assert a.plan(a.time(lagging), lagging) == (set(), {"far"})  # within ahead_ms of stream time again
    assert a.plan(None, lagging) == (set(), set())


def test_forgetting_partitions_after_a_rebalance_releases_them() -> None:
    a: Alignment[str] = Alignment(ahead_ms=HOUR)
    a.read("slow", 0)
    a.read("far", 10 * HOUR)
    a.plan(a.time(lambda p: True), lambda p: True)
    assert a.forget(lambda p: p == "far") == {"far"}
    assert a.read_ms == {"slow": 0}
    assert a.paused == set()
