"""bench/latency.py's matching: an event's latency at a client is the arrival of the first frame of its
vendor whose version reaches the event's, minus the event's produce time."""

from __future__ import annotations

import pytest

from bench.latency import latencies, percentile


def test_coalesced_events_share_the_frame_that_reaches_them() -> None:
    events = [(10.0, "a", 1), (10.1, "a", 2), (10.2, "a", 3), (10.3, "a", 4)]
    client = [(9.0, 0), (10.25, 3), (10.5, 4)]  # analytics_update at 0, then two coalesced updates
    out, missing = latencies(events, {"a": [client]})
    assert out == pytest.approx([0.25, 0.15, 0.05, 0.2])
    assert missing == 0


def test_every_client_of_the_vendor_counts_and_other_vendors_do_not() -> None:
    events = [(1.0, "a", 1), (1.0, "b", 1)]
    frames = {"a": [[(1.1, 1)], [(1.4, 1)]], "b": [[(2.0, 1)]], "c": [[(1.0, 9)]]}
    out, missing = latencies(events, frames)
    assert sorted(out) == pytest.approx([0.1, 0.4, 1.0])
    assert missing == 0


def test_a_repeated_lower_version_does_not_answer_a_later_event() -> None:
    # A periodic analytics_update may repeat the last version; only a frame at or above counts.
    events = [(1.0, "a", 2), (1.0, "a", 3)]
    client = [(1.2, 2), (1.3, 2), (1.9, 3)]
    out, missing = latencies(events, {"a": [client]})
    assert out == pytest.approx([0.2, 0.9])
    assert missing == 0


def test_a_version_never_seen_is_counted_missing() -> None:
    out, missing = latencies([(1.0, "a", 5), (1.0, "a", 6)], {"a": [[(1.5, 5)], []]})
    assert out == pytest.approx([0.5])
    assert missing == 3


def test_percentile_in_ms() -> None:
    ordered = [i / 1000 for i in range(1, 101)]
    assert percentile(ordered, 0.5) == 51.0
    assert percentile(ordered, 0.99) == 100.0
    assert percentile(ordered, 1.0) == 100.0
    assert percentile([], 0.5) != percentile([], 0.5)  # nan
