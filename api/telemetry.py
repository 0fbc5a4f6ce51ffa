"""Prometheus figures of one API instance (its own registry, so two apps can share a process) and the
rolling send-latency percentiles the admin status reports.

Per-frame figures (frames sent and dropped by type, send latency) are plain integers updated on the hot
path and turned into Prometheus families only when scraped: prometheus-client's own Counter/Histogram
take a lock per update, which cost about a third of the per-frame Python work of the fan-out. Frames a
fan-out wrote at once are counted per fan-out (`sent_at_once`), with a send latency of zero.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from itertools import repeat

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WINDOW = 10_000  # latest send latencies kept for p50/p99


class SendFigures(Collector):
    """Frames sent and dropped per type and the send-latency histogram, exported at scrape time."""

    def __init__(self) -> None:
        self.by_type: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # last one: above the largest bound
        self.total_seconds = 0.0

    def observe(self, kind: str, seconds: float) -> None:
        self.by_type[kind] = self.by_type.get(kind, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total_seconds += seconds

    def observe_zero(self, kind: str, count: int) -> None:
        self.by_type[kind] = self.by_type.get(kind, 0) + count
        self.buckets[0] += count

    def collect(self) -> Iterator[Metric]:
        sent = CounterMetricFamily("vendorpulse_ws_messages_sent", "frames sent to clients", labels=["type"])
        for kind, count in sorted(self.by_type.items()):
            sent.add_metric([kind], count)
        yield sent
        dropped = CounterMetricFamily(
            "vendorpulse_ws_messages_dropped",
            "frames not sent: superseded snapshots, or events over a slow client's queue",
            labels=["type"],
        )
        for kind, count in sorted(self.dropped.items()):
            dropped.add_metric([kind], count)
        yield dropped
        cumulative, running = [], 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.buckets, strict=True):
            running += count
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "vendorpulse_ws_send_latency_seconds",
            "time from a frame being queued for a connection to its write",
            buckets=cumulative,
            sum_value=self.total_seconds,
        )


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.started = time.monotonic()
        reg = self.registry
        ProcessCollector(registry=reg)
        self.send_figures = SendFigures()
        reg.register(self.send_figures)
        self.connections = Gauge("vendorpulse_ws_connections", "open WebSocket connections", registry=reg)
        self.vendor_connections = Gauge(
            "vendorpulse_ws_vendor_connections",
            "open WebSocket connections per vendor",
            ["vendor_id"],
            registry=reg,
        )
        self.rtt = Histogram(
            "vendorpulse_ws_ping_rtt_seconds",
            "application ping round-trip time",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.closes = Counter(
            "vendorpulse_ws_closes", "connections closed by the server", ["code"], registry=reg
        )
        self.rejected = Counter(
            "vendorpulse_ws_inbound_errors", "client messages answered with error", ["code"], registry=reg
        )
        self.http_refused = Counter(
            "vendorpulse_http_refused",
            "connections closed before their request was complete (408 too slow, 431 head too large)",
            ["reason"],
            registry=reg,
        )
        self.lag = Gauge("vendorpulse_consumer_lag", "records not yet consumed", ["topic"], registry=reg)
        self.records = Counter("vendorpulse_consumer_records", "records consumed", ["topic"], registry=reg)
        self.bad_records = Counter(
            "vendorpulse_consumer_bad_records", "records skipped as unreadable", ["topic"], registry=reg
        )
        self.ready = Gauge(
            "vendorpulse_ready", "1 when Kafka is reachable and snapshots are rebuilt", registry=reg
        )
        self.uptime = Gauge("vendorpulse_uptime_seconds", "seconds since the app started", registry=reg)
        self.uptime.set_function(self.uptime_seconds)
        self._latencies: deque[float] = deque(maxlen=WINDOW)
        self.messages_sent = 0

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started

    def observe_send(self, kind: str, seconds: float) -> None:
        self.messages_sent += 1
        self.send_figures.observe(kind, seconds)
        self._latencies.append(seconds)

    def sent_at_once(self, kind: str, count: int) -> None:
        """`count` frames of `kind` written by one fan-out without waiting."""
        if count:
            self.messages_sent += count
            self.send_figures.observe_zero(kind, count)
            self._latencies.extend(repeat(0.0, min(count, WINDOW)))

    def dropped(self, kind: str) -> None:
        figures = self.send_figures.dropped
        figures[kind] = figures.get(kind, 0) + 1

    def latency_ms(self) -> dict[str, float | None]:
        """p50/p99 (ms) over the latest WINDOW sends."""
        if not self._latencies:
            return {"p50": None, "p99": None}
        ordered = sorted(self._latencies)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        return {"p50": pick(0.50), "p99": pick(0.99)}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
