"""Soak: the whole pipeline at a moderate load with many WebSocket clients, sampled as it runs.

Every `interval` seconds it writes one CSV row: resident memory and open file descriptors of the worker
and the API, the worker's consumer lag (end offsets of `orders` + `inventory` minus its committed
offsets), and the p99 delivery latency of `new_order` notifications (client receive time minus the
order's `occurredAt`, which the simulator stamps with the wall clock; `nan` when none arrived). The
PNG draws the four series so a person sees at a glance whether anything grows without bound;
`memory slope` is the least-squares slope of RSS over the second half of the run (the first half
includes warm-up).

    python -m infra.harness.soak --duration 1800 --clients 300 --out test-artifacts/soak   # the long one
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson

from infra.harness.chaos import WS_PATH, Child, worker_and_api
from infra.ports import wait_http_ready
from infra.simulate import SimConfig, produce
from processors.topics_admin import ensure_topics
from schemas.topics import Topics

COLUMNS = [
    "t", "worker_rss_mb", "api_rss_mb", "worker_fds", "api_fds", "lag", "latency_p99_ms", "deliveries",
    "clients_connected",
]  # fmt: skip


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over ts, per hour."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    return 0.0 if var == 0 else sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var * 3600


@dataclass
class SoakResult:
    rows: list[dict[str, float]]
    csv_path: Path
    png_path: Path
    events: int
    deliveries: int
    disconnects: int
    worker_starts: int
    api_starts: int
    latencies: list[float] = field(repr=False, default_factory=list)

    def column(self, name: str) -> list[float]:
        return [r[name] for r in self.rows]

    def memory_slope(self, process: str) -> float:
        """MB per hour over the second half of the run."""
        half = self.rows[len(self.rows) // 2 :]
        return slope_per_hour([r["t"] for r in half], [r[f"{process}_rss_mb"] for r in half])

    def latency_p99_ms(self) -> float | None:
        return p99(self.latencies)

    def summary(self) -> str:
        lat = self.latency_p99_ms()
        return (
            f"events={self.events} deliveries={self.deliveries} samples={len(self.rows)} "
            f"worker_rss_slope={self.memory_slope('worker'):+.1f}MB/h api_rss_slope={self.memory_slope('api'):+.1f}MB/h "
            f"max_lag={max(self.column('lag'), default=0):.0f} "
            f"latency_p99={'n/a' if lat is None else f'{lat:.0f}ms'} disconnects={self.disconnects} "
            f"csv={self.csv_path} png={self.png_path}"
        )


@dataclass
class _Clients:
    latencies: list[float] = field(default_factory=list)
    """(ms) since the last sample"""
    all_latencies: list[float] = field(default_factory=list)
    deliveries: int = 0
    connected: int = 0
    disconnects: int = 0


async def _client(url: str, seen: _Clients, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    while not stop.is_set():
        try:
            async with connect(url, open_timeout=20, max_size=None) as ws:
                seen.connected += 1
                try:
                    while not stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 1.0)
                        except TimeoutError:
                            continue
                        message = orjson.loads(raw)
                        if message["type"] == "new_order":
                            occurred = datetime.fromisoformat(
                                message["data"]["occurredAt"].replace("Z", "+00:00")
                            )
                            latency = (time.time() - occurred.timestamp()) * 1000
                            seen.latencies.append(latency)
                            seen.all_latencies.append(latency)
                            seen.deliveries += 1
                        elif message["type"] == "ping":
                            pong = {
                                "type": "pong",
                                "data": message["data"],
                                "timestamp": message["timestamp"],
                            }
                            await ws.send(orjson.dumps(pong).decode())
                finally:
                    seen.connected -= 1
        except (ConnectionClosed, OSError, TimeoutError):
            if not stop.is_set():
                seen.disconnects += 1
                await asyncio.sleep(1)


async def _lag(bootstrap: str, group: str, topics: Topics) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p)
            for t in (topics.orders, topics.inventory)
            for p in (consumer.partitions_for_topic(t) or await _partitions(consumer, t))
        ]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(
            max(0, ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0))
            for tp in partitions
        )
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(consumer: object, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # type: ignore[attr-defined]
    return consumer.partitions_for_topic(topic) or set()  # type: ignore[attr-defined]


async def _soak(
    bootstrap: str, prefix: str, worker: Child, api: Child, port: int, *, duration: float, clients: int,
    rate: float, interval: float, out: Path,
) -> SoakResult:  # fmt: skip
    from api.auth import make_token
    from api.settings import api_settings

    topics = Topics.for_prefix(prefix)
    config = SimConfig(vendors=10, products=20, customers=200, seed=23)
    vendors = [f"vendor-{i:03d}" for i in range(1, config.vendors + 1)]
    settings = api_settings(env="dev", bootstrap_servers=bootstrap)
    seen = _Clients()
    stop = asyncio.Event()
    tasks = []
    for i in range(clients):
        vendor = vendors[i % len(vendors)]
        token = make_token(vendor, settings=settings, subject=f"soak-{i}", ttl=int(duration) + 3600)
        url = f"ws://127.0.0.1:{port}{WS_PATH}?token={token}&vendor_id={vendor}"
        tasks.append(asyncio.create_task(_client(url, seen, stop)))
        if i % 20 == 19:
            await asyncio.sleep(0.2)  # not a thundering herd of handshakes
    started = time.monotonic()
    sim = asyncio.create_task(
        produce(bootstrap, topics.orders, topics.inventory, config, rate=rate, duration=duration)
    )
    rows: list[dict[str, float]] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        while not sim.done():
            await asyncio.wait([sim], timeout=interval)
            assert worker.proc is not None
            assert api.proc is not None
            if not (worker.alive() and api.alive()):
                raise RuntimeError(f"a process died:\n{worker.tail()}\n{api.tail()}")
            try:
                lag = float(
                    await asyncio.wait_for(_lag(bootstrap, f"{prefix}vendorpulse-worker", topics), 10)
                )
            except Exception:  # a sample is worth more than its absence; lag -1 says it failed
                lag = -1.0
            latest, seen.latencies = seen.latencies, []
            row = {
                "t": round(time.monotonic() - started, 1),
                "worker_rss_mb": round(rss_mb(worker.proc.pid), 1),
                "api_rss_mb": round(rss_mb(api.proc.pid), 1),
                "worker_fds": open_fds(worker.proc.pid),
                "api_fds": open_fds(api.proc.pid),
                "lag": lag,
                "latency_p99_ms": round(p99(latest) or float("nan"), 1),  # nan: nothing delivered
                "deliveries": seen.deliveries,
                "clients_connected": seen.connected,
            }
            rows.append(row)
            writer.writerow(row)
            f.flush()
    summary = sim.result()
    stop.set()
    await asyncio.gather(*tasks)
    png_path = out.with_suffix(".png")
    draw(rows, png_path)
    return SoakResult(
        rows, csv_path, png_path, summary.total, seen.deliveries, seen.disconnects, worker.starts,
        api.starts, seen.all_latencies,
    )  # fmt: skip


def draw(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] / 60 for r in rows]
    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    panels = [
        ("resident memory (MB)", ["worker_rss_mb", "api_rss_mb"]),
        ("open file descriptors", ["worker_fds", "api_fds"]),
        ("consumer lag (records)", ["lag"]),
        ("new_order delivery p99 (ms)", ["latency_p99_ms"]),
    ]
    for ax, (title, names) in zip(axes, panels, strict=True):
        for name in names:
            ax.plot(t, [r[name] for r in rows], label=name)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def soak(
    bootstrap: str, prefix: str, out: Path, *, duration: float = 60, clients: int = 20, rate: float = 50,
    interval: float = 5,
) -> SoakResult:  # fmt: skip
    """Run the soak against `bootstrap` with topics under `prefix`; write `out`.csv and `out`.png."""
    state = Path(tempfile.mkdtemp(prefix="vendorpulse-soak-"))
    try:
        asyncio.run(ensure_topics(bootstrap, Topics.for_prefix(prefix), partitions=6))
        with worker_and_api(bootstrap, prefix, state) as (worker, api, port, _):
            wait_http_ready(port, detail=api.tail)
            return asyncio.run(
                _soak(
                    bootstrap, prefix, worker, api, port, duration=duration, clients=clients, rate=rate,
                    interval=interval, out=out,
                )
            )  # fmt: skip
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.harness.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800, help="seconds (default 1800)")
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100, help="events per second")
    parser.add_argument("--interval", type=float, default=5, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=Path("test-artifacts/soak"), help="CSV/PNG path stem")
    args = parser.parse_args()
    prefix = f"soak{int(time.time())}-"
    # SIGTERM (kill, a CI timeout) unwinds like Ctrl-C, so the worker, the API and Kafka are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def run(bootstrap: str) -> None:
        result = soak(
            bootstrap, prefix, args.out, duration=args.duration, clients=args.clients, rate=args.rate,
            interval=args.interval,
        )  # fmt: skip
        print(result.summary())

    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        run(bootstrap)
        return
    from infra.kafka import LocalKafka, free_base_port

    state = Path(tempfile.mkdtemp(prefix="vendorpulse-soak-kafka-"))
    cluster = LocalKafka(nodes=1, base_port=free_base_port(28092, nodes=1), state_dir=state)
    try:
        run(cluster.start())
    finally:
        cluster.stop(timeout=10)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
