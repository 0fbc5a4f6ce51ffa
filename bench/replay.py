"""Replay benchmark: events/s of replay from Kafka (one and several processes) and from exported Avro
files, of export and of import, and where a replay's time goes.

    python -m bench.replay [--events 200000] [--vendors 20] [--repeats 5] [--jobs 2]

Runs against KAFKA_BOOTSTRAP_SERVERS, or a private local broker it starts on port 47092 and stops.
Prints a table and writes bench/results/replay.json. The machine may be shared with other work: each
rate is the median of --repeats runs (min and max kept), and is also given per CPU-second used by the
replay's own processes (user + system), which other load disturbs much less than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from infra.simulate import SimConfig, produce
from processors.archive import ArchiveProblems, read_archive, run_export, run_import, run_replay_files
from processors.core.apply import apply
from processors.core.state import State, new_state
from processors.progress import silent
from processors.replay import (
    ReplayStates,
    ReplaySummary,
    consumer_for,
    plan,
    quiet_gc,
    read,
    run_replay,
)
from processors.topics_admin import ensure_topics
from schemas.codec import FastavroCodec
from schemas.events import EVENT_TYPES, Event
from schemas.settings import KafkaSettings
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DAY = 86_400_000
PORT = 47092


def cpu_now() -> float:
    """CPU seconds of this process and of its finished children (replay jobs)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(runs: int, events: int, once: Callable[[], Any]) -> dict[str, Any]:
    """Median, min and max of events/s over wall time (whole command), and the median per CPU-second."""
    wall, cpu, results = [], [], []
    for _ in range(runs):
        c0, t0 = cpu_now(), time.perf_counter()
        results.append(once())
        wall.append(events / (time.perf_counter() - t0))
        cpu.append(events / (cpu_now() - c0))
    # a replay's own rate: reading, decoding and folding, without connecting, planning and output
    own = [r.events_per_s for r in results if isinstance(r, ReplaySummary)]
    return {
        "fold_events_per_s": statistics.median(own) if own else None,
        "events": events,
        "events_per_s": statistics.median(wall),
        "min": min(wall),
        "max": max(wall),
        "events_per_cpu_s": statistics.median(cpu),
        "runs": [round(w) for w in wall],
        "last": results[-1],
    }


async def fill(bootstrap: str, topics: Topics, n: int, vendors: int) -> None:
    await ensure_topics(bootstrap, topics, 6)
    start = int(time.time() * 1000) - 60 * DAY
    config = SimConfig(vendors, 200, 5000, seed=11, start_ms=start, step_ms=60 * DAY // n)
    await produce(bootstrap, topics.orders, topics.inventory, config, rate=0, count=n)


def breakdown(settings: KafkaSettings, topics: Topics, archive: Path, runs: int) -> dict[str, float]:
    """µs per event (median CPU time) of each stage of a replay, measured apart."""
    codec = FastavroCodec()
    fetched: list[tuple[bool, Any]] = []

    async def fetch_only() -> None:
        fetched.clear()
        consumer = consumer_for(settings.bootstrap)
        await consumer.start()
        try:
            spans = await plan(consumer, settings.bootstrap, [topics.orders, topics.inventory], None, None)
            with silent("replay", None) as m:
                async for topic, records in read(consumer, spans, m):
                    fetched.append((topic == topics.orders, records))
        finally:
            await consumer.stop()

    def timed(work: Callable[[], Any], collect: bool = False) -> float:
        spent = []
        for _ in range(runs):
            gc.collect()
            c0 = time.process_time()
            if collect:
                work()
            else:
                with quiet_gc():  # as replay runs its fold
                    work()
            spent.append(time.process_time() - c0)
        return statistics.median(spent)

    fetch = timed(lambda: asyncio.run(fetch_only()))
    values = [r.value for _, records in fetched for r in records]
    n = len(values)
    decode = timed(lambda: [codec.decode(v, validate=False) for v in values])
    avro = timed(lambda: [codec.read(v) for v in values])  # Avro body + checks, no event object
    read_out = [codec.read(v) for v in values]
    types = {version.name: EVENT_TYPES[version.name] for version, _ in read_out}
    build = timed(lambda: [types[version.name].from_record(record) for version, record in read_out])
    events: list[Event] = [codec.decode(v, validate=False) for v in values]

    def fold_only() -> None:
        states: dict[str, State] = {}
        for e in events:
            state = states.get(e.vendor_id)
            if state is None:
                state = states[e.vendor_id] = new_state(e.vendor_id)
            apply(state, e)

    fold = timed(fold_only)

    def feed_all() -> None:
        states = ReplayStates(codec)
        for on_orders, records in fetched:
            states.take(on_orders, records)

    whole = timed(feed_all)
    whole_gc = timed(feed_all, collect=True)
    files = timed(lambda: sum(1 for _ in read_archive([archive], ArchiveProblems(), codec)))
    return {
        "events": n,
        "fetch_us": fetch / n * 1e6,
        "decode_us": decode / n * 1e6,
        "decode_avro_us": avro / n * 1e6,
        "decode_event_objects_us": build / n * 1e6,
        "apply_us": fold / n * 1e6,
        "decode_and_fold_us": whole / n * 1e6,
        "decode_and_fold_gc_on_us": whole_gc / n * 1e6,
        "archive_read_us": files / n * 1e6,
    }


def run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vp-bench-replay-"))
    topics = Topics.for_prefix(f"r{uuid.uuid4().hex[:8]}-")
    asyncio.run(fill(bootstrap, topics, args.events, args.vendors))
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=topics.prefix)
    n = args.events
    as_of = int(time.time() * 1000)
    out: dict[str, Any] = {}
    out["kafka_1"] = measure(args.repeats, n, lambda: run_replay(settings, as_of_ms=as_of))
    if args.jobs > 1:
        out[f"kafka_{args.jobs}"] = measure(
            args.repeats, n, lambda: run_replay(settings, as_of_ms=as_of, jobs=args.jobs)
        )
    archive = work / "archive"
    out["export"] = measure(
        max(1, args.repeats // 2),
        n,
        lambda: run_export(settings, out_dir=archive, overwrite=True),
    )
    out["files"] = measure(args.repeats, n, lambda: run_replay_files(settings, [archive], as_of_ms=as_of))
    copies: list[Topics] = []

    def import_once() -> Any:
        copies.append(Topics.for_prefix(f"i{uuid.uuid4().hex[:8]}-"))
        asyncio.run(ensure_topics(bootstrap, copies[-1], 6))
        return run_import(
            KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=copies[-1].prefix), [archive]
        )

    out["import"] = measure(max(1, args.repeats // 2), n, import_once)
    imported = run_replay(
        KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=copies[-1].prefix), as_of_ms=as_of
    )
    reference = out["kafka_1"]["last"].snapshots
    out["agree"] = all(
        r.snapshots == reference
        for r in (imported, out["files"]["last"], *[out[k]["last"] for k in out if k.startswith("kafka_")])
    )
    out["breakdown"] = breakdown(settings, topics, archive, max(3, args.repeats // 2))
    out["archive_bytes"] = sum(p.stat().st_size for p in archive.glob("*.avro"))
    for key in list(out):
        if isinstance(out[key], dict):
            out[key].pop("last", None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--vendors", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="processes for the parallel replay (1: skip it)")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 110))  # the tables stay readable in a log
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    load_before = os.getloadavg()
    cluster = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        from infra.kafka import LocalKafka

        cluster = LocalKafka(1, PORT, Path(tempfile.mkdtemp(prefix="vp-bench-kafka-")))
        bootstrap = cluster.start()
    try:
        result = run(args, bootstrap)
    finally:
        if cluster:
            cluster.stop(timeout=5)
    load = {"before": load_before, "after": os.getloadavg()}
    table = Table(
        title=f"vendorpulse replay benchmark ({machine}; load {load_before[0]:.1f} -> {load['after'][0]:.1f})"
    )
    table.add_column(f"{args.events:,} events, {args.vendors} vendors")
    table.add_column("events/s, median", justify="right")
    table.add_column("min - max", justify="right")
    table.add_column("per CPU-second", justify="right")
    table.add_column("fold only", justify="right")
    labels = {
        "kafka_1": "replay from Kafka, 1 process",
        f"kafka_{args.jobs}": f"replay from Kafka, {args.jobs} processes",
        "files": "replay from Avro files",
        "export": "export Kafka -> Avro files",
        "import": "import Avro files -> Kafka",
    }
    for key, label in labels.items():
        if key in result:
            r = result[key]
            table.add_row(
                label,
                f"{r['events_per_s']:,.0f}",
                f"{r['min']:,.0f} - {r['max']:,.0f}",
                f"{r['events_per_cpu_s']:,.0f}",
                "" if r["fold_events_per_s"] is None else f"{r['fold_events_per_s']:,.0f}",
            )
    console.print(table)
    b = result["breakdown"]
    parts = Table(title="where one replay process's time goes (CPU µs per event, each stage measured apart)")
    parts.add_column("stage")
    parts.add_column("µs/event", justify="right")
    for label, key in (
        ("fetch from Kafka (aiokafka, records)", "fetch_us"),
        ("decode (codec.decode)", "decode_us"),
        ("  of which Avro body and its checks (codec.read)", "decode_avro_us"),
        ("  of which event objects (from_record)", "decode_event_objects_us"),
        ("fold (metrics.apply)", "apply_us"),
        ("decode + acceptance + fold (ReplayStates.feed)", "decode_and_fold_us"),
        ("  the same with the cyclic GC on", "decode_and_fold_gc_on_us"),
        ("read Avro archive into events", "archive_read_us"),
    ):
        parts.add_row(label, f"{b[key]:.1f}")
    console.print(parts)
    console.print(f"all replays agree (Kafka, jobs, files, imported copy): {result['agree']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "replay",
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "load_average": load,
        "args": vars(args),
        **result,
    }
    (RESULTS / "replay.json").write_text(json.dumps(doc, indent=2, default=str))
    console.print(f"wrote {RESULTS / 'replay.json'}")


if __name__ == "__main__":
    main()
