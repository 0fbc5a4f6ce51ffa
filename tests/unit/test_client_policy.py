"""The client's policies without a server: backoff, outbound queue, latency window, pacing, URLs."""

from __future__ import annotations

import base64
import random
import time

import orjson
import pytest

from api.client import VendorPulseClient, _ws_url
from api.client_policy import Backoff, LatencyWindow, OutboundQueue, Pacer, token_expiry
from api.client_state import Received, not_after


def test_backoff_ceilings_double_from_one_second_to_thirty() -> None:
    backoff = Backoff()
    assert [backoff.ceiling(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.ceiling(1000) == 30  # no overflow on a long outage


def test_full_jitter_spreads_waits_over_the_whole_window() -> None:
    backoff, rng = Backoff(), random.Random(3)
    waits = [backoff.delay(4, rng) for _ in range(2000)]
    assert all(0 <= w <= 8 for w in waits)
    assert min(waits) < 0.1
    assert max(waits) > 7.9
    assert 3.6 < sum(waits) / len(waits) < 4.4  # uniform on [0, 8]: mean 4


def test_outbound_queue_keeps_the_newest_in_order_and_counts_drops() -> None:
    queue = OutboundQueue(limit=3)
    for n in range(5):
        queue.put({"n": n})
    assert [m["n"] for m in queue.items] == [2, 3, 4]
    assert queue.dropped == 2
    assert queue.pop() == {"n": 2}
    assert len(queue) == 2


def test_latency_is_the_average_of_the_last_hundred_round_trips() -> None:
    window = LatencyWindow()
    assert window.average is None
    for rtt in [1000.0] * 50 + [10.0] * 100:
        window.add(rtt)
    assert len(window.samples) == 100
    assert window.average == 10.0
    assert window.last == 10.0


def test_pacer_stays_under_the_servers_inbound_limit() -> None:
    pacer = Pacer(rate=8, burst=16)
    sent, started = 0, time.monotonic()
    while time.monotonic() - started < 0.5:
        if pacer.wait_time() == 0:
            sent += 1
    assert 16 <= sent <= 16 + 8 * 0.5 + 1  # the burst, then 8 per second


def test_token_expiry_reads_exp_without_verifying() -> None:
    payload = base64.urlsafe_b64encode(orjson.dumps({"exp": 1_900_000_000})).rstrip(b"=").decode()
    assert token_expiry(f"x.{payload}.sig") == 1_900_000_000
    assert token_expiry("not-a-jwt") is None


def test_urls_and_cursor_order() -> None:
    assert _ws_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/api/v1/analytics/ws/vendor/analytics"
    assert _ws_url("https://pulse.example/") == "wss://pulse.example/api/v1/analytics/ws/vendor/analytics"
    assert _ws_url("ws://h:1/custom/path") == "ws://h:1/custom/path"
    with pytest.raises(ValueError, match="http"):
        _ws_url("ftp://h")
    assert not_after("3:10", "3:10")
    assert not_after("3:9", "3:10")
    assert not not_after("3:11", "3:10")
    assert not not_after("2:1", "3:10")  # another partition: not comparable, never a repeat


def test_client_health_before_connecting() -> None:
    client = VendorPulseClient("http://127.0.0.1:1", "v1", "t")
    client.send("refresh")
    assert client.connection_health() == {
        "isHealthy": False,
        "latency": None,
        "reconnectAttempts": 0,
        "queuedMessages": 1,
        "connectionState": "connecting",
        "uptime": 0.0,
    }
    with pytest.raises(ValueError, match="at least 1"):
        VendorPulseClient("http://h", "v", "t", max_attempts=0)


def test_received_state_drops_repeats_and_keeps_the_newest_snapshot() -> None:
    state = Received()
    assert state.accept("connection_status", {"status": "connected", "cursor": "2:9"})
    assert state.cursor == "2:9"  # live delivery starts after it: the first acknowledgement
    assert not state.accept("new_order", {"cursor": "2:9", "eventId": "e0"})  # at the cursor: a repeat
    assert state.accept("new_order", {"cursor": "2:10", "eventId": "e1"})
    assert not state.accept("new_order", {"cursor": "2:11", "eventId": "e1"})  # worker re-sent e1
    assert state.cursor == "2:10"
    assert state.duplicates_dropped == 2
    assert state.accept("connection_status", {"status": "resumed", "cursor": "2:40", "complete": False})
    assert state.cursor == "2:40"
    assert state.resume_gaps == 1
    state.accept("metrics_update", {"version": 5})
    state.accept("metrics_update", {"version": 4})  # older: kept out
    assert state.snapshot == {"version": 5}
    state.accept("analytics_update", {"version": 3})  # the state on (re)connect is taken as it is
    assert state.snapshot == {"version": 3}
