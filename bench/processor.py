"""Processor benchmark: the pure core's events/s, the worker's end-to-end events/s with one and two
worker processes, produce->snapshot latency at a steady load, and where the worker's time goes.

    python -m bench.processor [--events 60000] [--repeats 3] [--rate 1000] [--latency-seconds 20]

The one- and two-worker runs are interleaved, `--repeats` times each; the table gives medians.

Runs against KAFKA_BOOTSTRAP_SERVERS, or a private local broker it starts on port 48092 and stops.
Prints a table and writes bench/results/processor.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from itertools import islice
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from bench import machine
from infra.simulate import EventGenerator, SimConfig
from processors.core.apply import Status, apply
from processors.core.snapshot import snapshot
from processors.core.state import State, new_state
from processors.topics_admin import ensure_topics
from schemas.codec import FastavroCodec
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DAY = 86_400_000


def sim(n: int, vendors: int = 20, seed: int = 3) -> list[tuple[str, object]]:
    start = int(time.time() * 1000) - 20 * DAY
    config = SimConfig(
        vendors=vendors, products=200, customers=5000, seed=seed, start_ms=start, step_ms=20 * DAY // n
    )
    return list(islice(EventGenerator(config), n))


def bench_core(n: int) -> dict[str, float]:
    events = [e for _, e in sim(n)]
    runs = []
    for _ in range(5):
        states: dict[str, State] = {}
        started = time.perf_counter()
        for e in events:
            state = states.get(e.vendor_id)  # type: ignore[attr-defined]
            if state is None:
                state = states[e.vendor_id] = new_state(e.vendor_id)  # type: ignore[attr-defined]
            assert apply(state, e).status is Status.APPLIED  # type: ignore[arg-type]
        runs.append(n / (time.perf_counter() - started))
    now = int(time.time() * 1000)
    state = next(iter(states.values()))
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        snapshot(state, now, 30)
        timings.append((time.perf_counter() - started) * 1e6)
    codec = FastavroCodec()
    encoded = [codec.encode(e) for e in events[:20000]]  # type: ignore[arg-type]
    started = time.perf_counter()
    for m in encoded:
        codec.decode(m)
    decode_rate = len(encoded) / (time.perf_counter() - started)
    return {
        "core_events_per_s": statistics.median(runs),
        "snapshot_us": statistics.median(timings),
        "decode_per_s": decode_rate,
    }


async def produce(
    bootstrap: str, topics: Topics, events: list[tuple[str, object]], rate: float = 0
) -> list[float]:
    """Send events (rate 0: as fast as possible); returns each event's send time (time.time())."""
    codec = FastavroCodec()
    topic = {"orders": topics.orders, "inventory": topics.inventory}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    sent = []
    try:
        started = time.monotonic()
        for i, (kind, e) in enumerate(events):
            if rate and i % 20 == 0:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            sent.append(time.time())
            await producer.send(topic[kind], codec.encode(e), key=e.vendor_id.encode())  # type: ignore[attr-defined, arg-type]
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def watch_versions(
    bootstrap: str, topic: str, target: dict[str, int], within: float, arrivals: list[tuple[float, str, int]]
) -> float:
    """Read snapshots until every vendor reaches its target version; returns when that happened."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    latest: dict[str, int] = {}
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for r in records:
                    version = orjson.loads(r.value)["version"]
                    vendor = r.key.decode()
                    arrivals.append((now, vendor, version))
                    latest[vendor] = max(version, latest.get(vendor, 0))
            if all(latest.get(v, 0) >= t for v, t in target.items()):
                return now
    finally:
        await consumer.stop()
    raise TimeoutError(f"snapshots did not catch up within {within}s: {latest} vs {target}")


def start_worker(
    bootstrap: str, prefix: str, data: Path, name: str, profile: Path | None = None,
    extra_env: dict[str, str] | None = None, tree: Path | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """`vendorpulse worker` of this checkout, or of the checkout at `tree` (its .venv)."""
    env = {
        **os.environ,
        **(extra_env or {}),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VENDORPULSE_TOPIC_PREFIX": prefix,
        "VENDORPULSE_DATA_DIR": str(data / name),
    }
    if profile:
        env["VENDORPULSE_PROFILE"] = str(profile)
    log = (data / f"{name}.log").open("wb")
    command = [str(tree / ".venv" / "bin" / "vendorpulse")] if tree else [sys.executable, "-m", "infra"]
    return subprocess.Popen(
        [*command, "worker", "--loglevel", "warning"],
        cwd=tree or ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU the processes have used so far (less noisy than wall time on a shared box)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def expected_versions(events: list[tuple[str, object]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, e in events:
        counts[e.vendor_id] = counts.get(e.vendor_id, 0) + 1  # type: ignore[attr-defined]
    return counts


async def end_to_end(
    bootstrap: str, events: list[tuple[str, object]], workers: int, data: Path, profile: Path | None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, float]:  # fmt: skip
    """Events are in Kafka before the workers start; time from start to the last snapshot."""
    topics = Topics.for_prefix(f"b{uuid.uuid4().hex[:8]}-")
    await ensure_topics(bootstrap, topics, 6)
    warm = events[:1]
    procs = [
        start_worker(
            bootstrap,
            topics.prefix,
            data,
            f"w{uuid.uuid4().hex[:6]}",
            profile if i == 0 else None,
            extra_env,
        )
        for i in range(workers)
    ]
    try:
        # Wait until the workers process a first event, so start-up and group joining are not timed.
        await produce(bootstrap, topics, warm)
        await watch_versions(bootstrap, topics.metrics, expected_versions(warm), 120, [])
        await asyncio.sleep(3 if workers > 1 else 0)  # let a second worker's rebalance settle
        await produce(bootstrap, topics, events[1:])
        started = time.time()
        cpu_before = cpu_seconds([p.pid for p in procs])
        # The timer starts when all events are in Kafka: this is the workers' own rate.
        done = await watch_versions(bootstrap, topics.metrics, expected_versions(events), 180, [])
        cpu = cpu_seconds([p.pid for p in procs]) - cpu_before
        n = len(events) - 1
        return {
            "events": n,
            "seconds": done - started,
            "events_per_s": n / (done - started),
            "cpu_us_per_event": cpu / n * 1e6,
        }
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)


async def latency(
    bootstrap: str, events: list[tuple[str, object]], rate: float, data: Path
) -> dict[str, float]:
    topics = Topics.for_prefix(f"l{uuid.uuid4().hex[:8]}-")
    await ensure_topics(bootstrap, topics, 6)
    proc = start_worker(bootstrap, topics.prefix, data, "lat")
    arrivals: list[tuple[float, str, int]] = []
    try:
        await produce(bootstrap, topics, events[:1])
        await watch_versions(bootstrap, topics.metrics, expected_versions(events[:1]), 120, [])
        body = events[1:]
        watcher = asyncio.create_task(
            watch_versions(bootstrap, topics.metrics, expected_versions(events), 600, arrivals)
        )
        sent = await produce(bootstrap, topics, body, rate)
        await watcher
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    # event i of vendor v is visible once a snapshot of v with version >= its version arrived
    seen: dict[str, list[tuple[int, float]]] = {}
    for at, vendor, version in arrivals:
        seen.setdefault(vendor, []).append((version, at))
    versions: dict[str, int] = {events[0][1].vendor_id: 1}  # type: ignore[attr-defined]
    delays = []
    for (_, e), t_sent in zip(body, sent, strict=True):
        v = versions[e.vendor_id] = versions.get(e.vendor_id, 0) + 1  # type: ignore[attr-defined]
        first = min(at for version, at in seen[e.vendor_id] if version >= v)  # type: ignore[attr-defined]
        delays.append((first - t_sent) * 1000)
    delays.sort()
    return {
        "rate": rate,
        "events": len(body),
        "p50_ms": delays[len(delays) // 2],
        "p99_ms": delays[int(len(delays) * 0.99)],
        "max_ms": delays[-1],
    }


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def top_functions(profile: Path, n: int = 12) -> list[tuple[str, float, float]]:
    stats = pstats.Stats(str(profile))
    rows = []
    for (file, line, name), (_, _, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((f"{Path(file).name}:{line} {name}", tottime, cumtime))
    rows.sort(key=lambda r: r[1], reverse=True)
    return rows[:n]


async def main_async(args: argparse.Namespace, bootstrap: str) -> dict[str, object]:
    data = Path(tempfile.mkdtemp(prefix="vp-bench-"))
    events = sim(args.events, vendors=args.vendors)
    profile = data / "worker.prof"
    runs: dict[str, list[dict[str, float]]] = {"one_worker": [], "two_workers": []}
    for _ in range(args.repeats):
        runs["one_worker"].append(await end_to_end(bootstrap, events, 1, data, None))
        runs["two_workers"].append(await end_to_end(bootstrap, events, 2, data, None))
    medians = {name: median_run(r) for name, r in runs.items()}
    # A separate, smaller run under cProfile (which slows the worker several times) for the profile.
    await end_to_end(bootstrap, events[: len(events) // 3], 1, data, profile)
    lat = await latency(
        bootstrap, sim(int(args.rate * args.latency_seconds), vendors=args.vendors, seed=4), args.rate, data
    )
    return {
        **medians,
        "runs": runs,
        "latency": lat,
        "profile": top_functions(profile) if profile.exists() else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each worker setup (medians)")
    parser.add_argument("--vendors", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()
    console = Console()
    about = machine([round(x, 2) for x in os.getloadavg()])
    where = f"{platform.machine()}, {about['cpu_count']} CPUs, Python {about['python']}, {platform.node()}"
    core = bench_core(100_000)
    cluster = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        from infra.kafka import LocalKafka

        cluster = LocalKafka(1, 48092, Path(tempfile.mkdtemp(prefix="vp-bench-kafka-")))
        bootstrap = cluster.start()
    try:
        result = asyncio.run(main_async(args, bootstrap))
    finally:
        if cluster:
            cluster.stop(timeout=5)
    table = Table(title=f"vendorpulse processor benchmark ({where})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("pure core apply, events/s (median of 5)", f"{core['core_events_per_s']:,.0f}")
    table.add_row("snapshot as of now, µs (median)", f"{core['snapshot_us']:,.0f}")
    table.add_row("Avro decode (fastavro codec), events/s", f"{core['decode_per_s']:,.0f}")
    for label, key in (
        ("1 worker", "one_worker"),
        ("2 workers", "two_workers"),
    ):
        r = result[key]
        table.add_row(f"{label}: {r['events']:,} events end to end, events/s", f"{r['events_per_s']:,.0f}")  # type: ignore[index]
        table.add_row(f"{label}: worker CPU per event, µs", f"{r['cpu_us_per_event']:,.0f}")  # type: ignore[index]
    lat = result["latency"]
    table.add_row(
        f"produce->snapshot at {lat['rate']:,.0f} events/s, p50 / p99 / max ms",  # type: ignore[index]
        f"{lat['p50_ms']:.0f} / {lat['p99_ms']:.0f} / {lat['max_ms']:.0f}",  # type: ignore[index]
    )
    console.print(table)
    if result["profile"]:
        prof = Table(title="where a worker's time goes (separate run under cProfile, top by own time)")
        prof.add_column("function")
        prof.add_column("own s", justify="right")
        prof.add_column("cumulative s", justify="right")
        for name, own, cum in result["profile"]:  # type: ignore[attr-defined]
            prof.add_row(name, f"{own:.2f}", f"{cum:.2f}")
        console.print(prof)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "machine": {**machine(about["load_average_at_start"]), "summary": where},
        "core": core,
        **result,
        "args": vars(args),
    }
    (RESULTS / "processor.json").write_text(json.dumps(out, indent=2, default=str))
    console.print(f"wrote {RESULTS / 'processor.json'}")


if __name__ == "__main__":
    main()
