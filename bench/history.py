"""History benchmark: what the worker keeps, in memory and on disk, as months of traffic go by.

    python -m bench.history [--events 2000000] [--vendors 200] [--lateness-days 20]
                            [--whale-events 1000000] [--clock stream] [--broker-compaction-defaults]

A private Kafka broker (infra.kafka.LocalKafka on free ports) gets a log of `--events` events over
6 L days of event time (L = `--lateness-days`), `--vendors` vendors, vendor-001 a whale with a fifth
of the traffic, 1 % re-sends, ~3 % cancellations, catalog and stock changes; every record's Kafka
timestamp is just after its occurred_at (infra.backfill), so the log ages as a live one would. The log
is produced first; then `python -m infra worker` (as the product runs it, VENDORPULSE_LATENESS_DAYS=L,
VENDORPULSE_CLOCK=`--clock`) folds it, and each time its committed input offsets pass a quarter of the log the bench samples:
- the worker's memory: VmRSS and VmHWM from /proc/<pid>/status;
- bytes on disk (allocated blocks) of its store (VENDORPULSE_DATA_DIR) and of its changelog topic (the
  broker's partition folders of that topic);
- CPU per event folded in that quarter: utime + stime from /proc/<pid>/stat over the events committed.

Then the worker stops, 1,000 new events are produced, and a worker on a fresh, empty data dir (same
group and changelog) is timed until its committed offsets cover them (restore + fold), and until
vendor-metrics has a snapshot of every vendor those events touch. Last, a log of `--whale-events`
into a single vendor, by quarter as above.

The clock. With `--clock stream` (the default) the worker's "now" (snapshots, the daily prune, the floor) is
stream time, the greatest record timestamp it has read: it folds the log as a worker live for those
months would have, with a current window that slides and a prune at every UTC day of event time. With
`--clock wall` its now is the machine's: every snapshot is as of the end of the log, so the current
window's detail fills only in the last quarter and the prune never runs within the bench's minutes.

Kafka's cleaner compacts only closed segments, and the broker's defaults (64 MiB segments, cleanable
at 50 % dirty, tombstones kept 24 h) would show no compaction within a benchmark's minutes. Unless
`--broker-compaction-defaults` is given, the bench sets, on the changelog topic only and says so:
segment.bytes 1 MiB, segment.ms 60 s, min.cleanable.dirty.ratio 0.1, delete.retention.ms 60 s.

Prints tables with the issue's targets as pass/fail columns; writes bench/results/history.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from bench import machine
from bench.history_breakdown import FAMILIES, HISTORY_FAMILIES, breakdown
from bench.processor import start_worker
from bench.worker_watch import Broker, Sample, disk_mb, end_offsets, latest_versions, memory_mb
from infra.backfill import AgingGenerator, Backfill
from infra.kafka import LocalKafka, free_base_port
from infra.simulate import BatchSender, SimConfig
from processors.topics_admin import ensure_topics
from processors.worker import storage_stats
from processors.worker.counters import Counters
from schemas.codec import FastavroCodec
from schemas.events import Event
from schemas.topics import Topics, partition_for

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MIB = 1024 * 1024
CHANGELOG_SETTINGS = {
    "segment.bytes": str(MIB),
    "segment.ms": "60000",
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": "60000",
}
SHOWN_CONFIGS = (
    "cleanup.policy", "segment.bytes", "segment.ms", "min.cleanable.dirty.ratio",
    "delete.retention.ms", "min.compaction.lag.ms", "retention.ms",
)  # fmt: skip
SOURCES = {1: "topic", 4: "broker file", 5: "Kafka default"}
console = Console(width=max(120, Console().width))
Records = Iterator[tuple[str, Event, int | None]]


@dataclass
class Run:
    name: str
    events: int
    days: float
    produce_s: float = 0.0
    changelog: str = ""
    changelog_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    restore: dict[str, float] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    """"fold" / "restore" -> the worker's self-healing counters then (`processors.worker.counters`)"""
    breakdowns: dict[int, dict[str, Any]] = field(default_factory=dict)
    """quarter -> the store and changelog by key family (`history_breakdown`), and the worker's
    `storage.json` (RocksDB's and the heap's own figures) at the end of that quarter"""


async def produce(bootstrap: str, topics: Topics, records: Records, n: int, what: str) -> float:
    """Send the next `n` records (history with their own timestamps, live ones stamped now)."""
    codec = FastavroCodec()
    topic_of = {"orders": topics.orders, "inventory": topics.inventory}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
        max_batch_size=512 * 1024, request_timeout_ms=120_000,
    )  # fmt: skip
    await producer.start()
    started = time.monotonic()
    try:
        sender = BatchSender(producer, partition_for)
        for i in range(1, n + 1):
            kind, event, ts = next(records)
            await sender.add(topic_of[kind], event.vendor_id.encode(), codec.encode(event), ts)
            if n >= 100_000 and i % (n // 10) == 0:
                console.print(
                    f"  {what}: produced {i:,} of {n:,} ({i / (time.monotonic() - started):,.0f}/s)"
                )
        await sender.flush()
    finally:
        await producer.stop()
    return time.monotonic() - started


# -- one log, folded by one worker -----------------------------------------------------------------
async def fold(
    run: Run, bootstrap: str, prefix: str, kafka_data: Path, data: Path, env: dict[str, str],
    compaction: bool, steps: int = 20,
) -> None:  # fmt: skip
    """Start a worker on the produced log; sample every 1/steps of it (the quarters among them)."""
    topics = Topics.for_prefix(prefix)
    inputs = {topics.orders, topics.inventory}
    ends = await end_offsets(bootstrap, sorted(inputs))
    total = sum(ends.values())
    proc = start_worker(bootstrap, prefix, data, run.name, None, env)
    store = data / run.name
    started = time.monotonic()
    try:
        async with Broker(bootstrap, prefix) as broker:
            run.changelog = await broker.changelog()
            before = await broker.configs(run.changelog)
            if compaction:
                await broker.set_configs(run.changelog, CHANGELOG_SETTINGS)
            after = await broker.configs(run.changelog)
            run.changelog_configs = {
                "before": {
                    k: f"{before[k][0]} ({SOURCES.get(before[k][1], before[k][1])})" for k in SHOWN_CONFIGS
                },
                "after": {
                    k: f"{after[k][0]} ({SOURCES.get(after[k][1], after[k][1])})" for k in SHOWN_CONFIGS
                },
            }
            partitions = [kafka_data / f"{run.changelog}-{p}" for p in range(6)]
            step, done, last_progress, stalled_at = 1, 0, started, 0
            looks: dict[int, asyncio.Task[dict[str, Any]]] = {}
            while step <= steps:
                if proc.poll() is not None:
                    raise RuntimeError(f"the worker exited with {proc.returncode}; see {data / run.name}.log")
                done = sum(min(o, ends[tp]) for tp, o in (await broker.committed(inputs)).items())
                now = time.monotonic()
                if done > stalled_at:
                    stalled_at, last_progress = done, now
                elif now - last_progress > 300:
                    raise RuntimeError(f"no input committed for 300 s at {done:,} of {total:,}")
                while step <= steps and done >= total * step / steps:
                    sample = Sample.take(step / steps, now - started, done, proc.pid, store, partitions)
                    run.samples.append(sample)
                    if step * 4 % steps == 0:
                        quarter = step * 4 // steps
                        run.breakdowns[quarter] = {"storage": storage_stats.read(store)}
                        looks[quarter] = asyncio.create_task(
                            asyncio.to_thread(breakdown, bootstrap, run.changelog, len(partitions), store)
                        )
                        console.print(
                            f"  {run.name}: {sample.fraction:.0%} folded after {sample.wall_s:.0f}s"
                        )
                    step += 1
                await asyncio.sleep(0.5)
            for quarter, look in looks.items():
                found = await look
                run.breakdowns[quarter] |= {what: asdict(f) for what, f in found.items()}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        run.counters["fold"] = Counters.in_dir(store).as_dict()


async def restore(
    run: Run, bootstrap: str, prefix: str, records: Records, data: Path, env: dict[str, str], n: int = 1000
) -> None:
    """Produce `n` new events, then time a worker on an empty data dir until it has folded them."""
    topics = Topics.for_prefix(prefix)
    inputs = {topics.orders, topics.inventory}
    new: list[tuple[str, Event, int | None]] = []

    def tee() -> Records:
        for record in records:
            new.append(record)
            yield record

    await produce(bootstrap, topics, tee(), n, "new events")
    ends = await end_offsets(bootstrap, sorted(inputs))
    metrics_from = await end_offsets(bootstrap, [topics.metrics])
    waiting = await latest_versions(bootstrap, metrics_from, {e.vendor_id for _, e, _ in new})
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    consumer.assign(list(metrics_from))
    for tp, offset in metrics_from.items():
        consumer.seek(tp, offset)
    name = f"{run.name}-fresh"
    started = time.monotonic()
    proc = start_worker(bootstrap, prefix, data, name, None, env)
    result: dict[str, float] = {"vendors_touched": len(waiting)}
    try:
        async with Broker(bootstrap, prefix) as broker:
            while "snapshots_s" not in result or "committed_s" not in result:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the fresh worker exited with {proc.returncode}; see {data / name}.log"
                    )
                if time.monotonic() - started > 900:
                    raise RuntimeError(f"the fresh worker did not fold the new events in 900 s: {result}")
                batch = await consumer.getmany(timeout_ms=200)
                for r in (r for rs in batch.values() for r in rs if r.key and r.value):
                    vendor = r.key.decode()
                    if vendor in waiting and orjson.loads(r.value)["version"] > waiting[vendor]:
                        del waiting[vendor]  # a snapshot that contains its new events
                if "snapshots_s" not in result and not waiting:
                    result["snapshots_s"] = time.monotonic() - started
                committed = await broker.committed(inputs)
                if "committed_s" not in result and all(committed.get(tp, 0) >= o for tp, o in ends.items()):
                    result["committed_s"] = time.monotonic() - started
                    rss, hwm = memory_mb(proc.pid)
                    result |= {
                        "rss_mb": rss,
                        "hwm_mb": hwm,
                        "store_mb": disk_mb([data / name]),
                        "load_1m": os.getloadavg()[0],
                    }
    finally:
        await consumer.stop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        run.counters["restore"] = Counters.in_dir(data / name).as_dict()
    run.restore = result | {"events": n}


async def run_log(
    name: str, config: SimConfig, events: int, days: float, args: argparse.Namespace, bootstrap: str,
    kafka_data: Path, data: Path,
) -> Run:  # fmt: skip
    prefix = f"h{name}{uuid.uuid4().hex[:6]}-"
    topics = Topics.for_prefix(prefix)
    await ensure_topics(bootstrap, topics, 6)
    run = Run(name, events, days)
    backfill = Backfill(days, events, int(time.time() * 1000), growth=1.0)  # steady traffic
    records = AgingGenerator(config, backfill).records()
    console.print(
        f"[bold]{name}[/]: {events:,} events over {days:g} days of event time, topic prefix {prefix}"
    )
    run.produce_s = await produce(bootstrap, topics, records, events, name)
    env = {"VENDORPULSE_LATENESS_DAYS": str(args.lateness_days), "VENDORPULSE_CLOCK": args.clock}
    await fold(run, bootstrap, prefix, kafka_data, data, env, not args.broker_compaction_defaults)
    if name == "log":
        await restore(run, bootstrap, prefix, records, data, env)
    return run


def quarters(run: Run) -> list[tuple[int, Sample, float | None]]:
    """(quarter, its last sample, CPU µs per event folded in it; None when the offsets committed
    jumped past the quarter's start and end at once: it was folded between two of the bench's looks)."""
    steps = len(run.samples)
    out: list[tuple[int, Sample, float | None]] = []
    previous: Sample | None = None
    for i, sample in enumerate(run.samples):
        if (i + 1) * 4 % steps == 0:
            cpu, done = (previous.cpu_s, previous.committed) if previous else (0.0, 0)
            folded = sample.committed - done
            separate = previous is None or sample.wall_s > previous.wall_s
            out.append(
                (
                    (i + 1) * 4 // steps,
                    sample,
                    (sample.cpu_s - cpu) / folded * 1e6 if folded and separate else None,
                )
            )
            previous = sample
    return out


def settled_quarters(run: Run, lateness_days: int, period_days: int) -> tuple[int, int]:
    """(the first quarter ending at or after L days of event time, the first ending at or after
    max(L, 2 P) days). The history (ids, orders, waiting cancellations) is bounded by the horizon, L
    days; the live part (day buckets) by the windows, the current and previous periods: 2 P days. Before
    those, each grows because the log is younger than what it keeps, not because it keeps too much."""

    def first(days: float) -> int:
        return next((q for q in (1, 2, 3, 4) if q * run.days / 4 >= days), 4)

    return first(lateness_days), first(max(lateness_days, 2 * period_days))


def targets(run: Run, lateness_days: int, period_days: int = 30) -> list[tuple[str, str, str, bool]]:
    q = {n: (s, cpu) for n, s, cpu in quarters(run)}
    (s2, cpu2), (s4, cpu4) = q[2], q[4]
    history_from, all_from = settled_quarters(run, lateness_days, period_days)
    sf = q[all_from][0]
    rows: list[tuple[str, str, str, bool]]
    if len({s.wall_s for s, _ in q.values()}) < 4 or cpu2 is None or cpu4 is None:
        why = "n/a: quarters folded between two looks of the bench (0.5 s); give more --events"
        rows = [("RSS, CPU and disk by quarter", "the issue's", why, False)]
    else:
        days = f"{all_from * run.days / 4:.0f} days"
        rows = [
            ("RSS growth, end of Q2 to the end", "< 10 %", f"{(s4.rss_mb / s2.rss_mb - 1) * 100:+.1f} %",
             s4.rss_mb < s2.rss_mb * 1.10),
            ("CPU per event, Q4 / Q2", "<= 1.2x", f"{cpu4 / cpu2:.2f}x", cpu4 <= cpu2 * 1.2),
            (f"store on disk, end of Q{all_from} ({days} >= max(L, 2P)) to the end", "stops growing (< 10 %)",
             f"{(s4.store_mb / max(sf.store_mb, 1e-9) - 1) * 100:+.1f} %", s4.store_mb < sf.store_mb * 1.10),
            (f"changelog on disk, end of Q{all_from} ({days}) to the end", "stops growing (< 10 %)",
             f"{(s4.changelog_mb / max(sf.changelog_mb, 1e-9) - 1) * 100:+.1f} %",
             s4.changelog_mb < sf.changelog_mb * 1.10),
        ]  # fmt: skip
    rows += family_targets(run, history_from, all_from)
    counted = run.counters.get("fold", {})
    if counted:
        fired = counted.get("input_resumes", 0) + counted.get("recovery_restarts", 0)
        rows.append(
            ("self-healing while folding (input resumes, recovery restarts)", "none", str(fired), not fired)
        )
    if "committed_s" in run.restore:
        restored = run.restore["committed_s"]
        rows.append(
            ("fresh-disk restore + fold 1,000 new events", "< 60 s", f"{restored:.1f} s", restored < 60)
        )
    return rows


def family_mb(run: Run, quarter: int, what: str, families: tuple[str, ...]) -> float | None:
    """Key + value MB of `families` in the store or changelog (`what`) at the end of `quarter`."""
    found = run.breakdowns.get(quarter, {}).get(what)
    if not found or (found["error"] and not any(c[0] for c in found["counts"].values())):
        return None
    return float(sum(found["counts"][f][1] for f in families)) / MIB


def family_targets(run: Run, history_from: int, all_from: int) -> list[tuple[str, str, str, bool]]:
    """The disk targets by key family, in live key + value bytes: the history proper (what the horizon
    bounds) from the first quarter past L days, everything but customers' first orders (kept for ever,
    contract §4.1: they grow with customers, not events) from the first past max(L, 2 P); in the store
    and in the changelog once compacted (the latest live record of each key)."""
    rows: list[tuple[str, str, str, bool]] = []
    not_customers = tuple(f for f in FAMILIES if f != "customers' first orders")
    for what, shown in (("store", "store"), ("compacted", "changelog compacted")):
        for label, families, since in (
            ("history (ids, orders, waiting, expiry index)", HISTORY_FAMILIES, history_from),
            ("all but customers' first orders", not_customers, all_from),
        ):
            first, last = family_mb(run, since, what, families), family_mb(run, 4, what, families)
            if first is None or last is None or first <= 0:
                continue
            rows.append(
                (f"{shown}, {label}, key+value bytes, end of Q{since} to the end", "stops growing (< 10 %)",
                 f"{first:.1f} -> {last:.1f} MB, {(last / first - 1) * 100:+.1f} %", last < first * 1.10)
            )  # fmt: skip
    return rows


def print_breakdown(run: Run) -> None:
    """The store and changelog by key family per quarter, then RocksDB's and the heap's own figures."""
    if not run.breakdowns:
        return
    quarters_seen = sorted(run.breakdowns)
    table = Table(
        title=f"{run.name}: store (live keys), changelog (records held) and changelog once compacted "
        "(latest live record per key), by key family"
    )
    table.add_column("family")
    for q in quarters_seen:
        table.add_column(f"Q{q} store keys / MB", justify="right")
        table.add_column(f"Q{q} changelog recs / MB (tombstones)", justify="right")
        table.add_column(f"Q{q} compacted keys / MB", justify="right")
    for name in FAMILIES:
        cells = []
        for q in quarters_seen:
            for what in ("store", "changelog", "compacted"):
                found = run.breakdowns[q].get(what)
                if not found:
                    cells.append("—")
                    continue
                n, b, t = found["counts"][name]
                cells.append(f"{n:,} / {b / MIB:.1f}" + (f" ({t:,})" if what == "changelog" else ""))
        if any(c not in ("—", "0 / 0.0", "0 / 0.0 (0)") for c in cells):
            table.add_row(name, *cells)
    console.print(table)
    for q in quarters_seen:
        for what in ("store", "changelog", "compacted"):
            found = run.breakdowns[q].get(what)
            if found and found["error"]:
                console.print(f"  Q{q} {what} scan: {found['error']}")
    rocks = Table(title=f"{run.name}: RocksDB's and the heap's own figures (storage.json), MB")
    columns = ("quarter", "live data", "SST files", "SST entries", "SST deletions", "L0 files",
               "memtables", "block cache", "table readers", "RSS", "RocksDB memory", "rest of RSS",
               "malloc in use", "Python blocks", "history cache", "history pending", "live parts")  # fmt: skip
    for column in columns:
        rocks.add_column(column, justify="right")
    samples = {n: s for n, s, _ in quarters(run)}
    for q in quarters_seen:
        figures = run.breakdowns[q].get("storage")
        if not figures:
            continue
        r, heap = figures["rocksdb"], figures["heap"]
        rss = samples[q].rss_mb if q in samples else 0.0
        memory = (r["memtables"] + r["block_cache"] + r["table_readers"]) / MIB
        malloc = heap.get("malloc_in_use")
        rocks.add_row(
            f"Q{q}", f"{r['live_data'] / MIB:.1f}", f"{r['sst_files'] / MIB:.1f}", f"{r['sst_entries']:,}",
            f"{r['sst_deletions']:,}", f"{r['l0_files']}", f"{r['memtables'] / MIB:.1f}",
            f"{r['block_cache'] / MIB:.1f}", f"{r['table_readers'] / MIB:.1f}", f"{rss:.0f}", f"{memory:.0f}",
            f"{rss - memory:.0f}", "—" if malloc is None else f"{malloc / MIB:.0f}",
            f"{heap['python_blocks']:,}", f"{heap['history_cache']:,}", f"{heap['history_pending']:,}",
            f"{heap['live_bytes'] / MIB:.1f}",
        )  # fmt: skip
    console.print(rocks)


def print_run(run: Run, lateness_days: int) -> None:
    table = Table(title=f"{run.name}: {run.events:,} events over {run.days:g} days, by quarter of the log")
    for column in ("quarter", "folded", "≈ event days", "wall s", "RSS MB", "HWM MB", "store MB",
                   "changelog MB", "CPU µs/event", "load 1m"):  # fmt: skip
        table.add_column(column, justify="right")
    for n, s, cpu in quarters(run):
        table.add_row(
            f"Q{n}", f"{s.committed:,}", f"{s.fraction * run.days:.0f}", f"{s.wall_s:.0f}", f"{s.rss_mb:.0f}",
            f"{s.hwm_mb:.0f}", f"{s.store_mb:.1f}", f"{s.changelog_mb:.1f}", "—" if cpu is None else f"{cpu:.0f}", f"{s.load_1m:.1f}",
        )  # fmt: skip
    console.print(table)
    print_breakdown(run)
    if run.restore:
        r = run.restore
        console.print(
            f"fresh disk: committed past {r['events']:,.0f} new events after {r['committed_s']:.1f} s "
            f"(RSS {r['rss_mb']:.0f} MB, peak {r.get('hwm_mb', 0):.0f} MB, store {r['store_mb']:.1f} MB); a snapshot with them for all "
            f"{r['vendors_touched']:.0f} vendors they touch on vendor-metrics after {r['snapshots_s']:.1f} s "
            f"(load {r['load_1m']:.1f})"
        )
    for when, counted in run.counters.items():
        console.print(
            f"self-healing counters after the {when}: " + ", ".join(f"{k} {v}" for k, v in counted.items())
        )
    check = Table(title=f"{run.name}: the issue's targets")
    for column in ("measure", "target", "measured", "pass"):
        check.add_column(column)
    for measure, target, measured, ok in targets(run, lateness_days):
        check.add_row(measure, target, measured, "[green]pass[/]" if ok else "[red]FAIL[/]")
    console.print(check)


def print_configs(run: Run, compaction: bool) -> None:
    table = Table(title=f"changelog topic {run.changelog}")
    for column in ("config", "as the worker created it", "during the bench"):
        table.add_column(column)
    for key in SHOWN_CONFIGS:
        table.add_row(key, run.changelog_configs["before"][key], run.changelog_configs["after"][key])
    console.print(table)
    if compaction:
        console.print(
            "the bench SET these on the changelog topic so that compaction shows within minutes: "
            + ", ".join(f"{k}={v}" for k, v in CHANGELOG_SETTINGS.items())
        )


def write_results(about: dict[str, Any], args: argparse.Namespace, runs: list[Run]) -> None:
    out = {
        "machine": machine(about["load_average_at_start"]),
        "args": vars(args),
        "changelog_settings_set": {} if args.broker_compaction_defaults else CHANGELOG_SETTINGS,
        "runs": [
            asdict(run)
            | {
                "quarters": [
                    {"quarter": n, "cpu_us_per_event": cpu, **asdict(s)} for n, s, cpu in quarters(run)
                ],
                "targets": [
                    dict(zip(("measure", "target", "measured", "pass"), t, strict=True))
                    for t in targets(run, args.lateness_days)
                ],
            }
            for run in runs
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "history.json").write_text(json.dumps(out, indent=2))
    console.print(f"wrote {RESULTS / 'history.json'}; load average now {os.getloadavg()[0]:.2f}")


async def main_async(
    args: argparse.Namespace, about: dict[str, Any], bootstrap: str, kafka_data: Path, data: Path
) -> None:
    lateness = args.lateness_days
    days = 6 * lateness
    marketplace = SimConfig(
        vendors=args.vendors, products=50, customers=5000, seed=12, whale_share=0.2, resend_rate=0.01
    )
    runs = [await run_log("log", marketplace, args.events, days, args, bootstrap, kafka_data, data)]
    print_configs(runs[0], not args.broker_compaction_defaults)
    print_run(runs[0], args.lateness_days)  # now: the whale run takes a while longer
    write_results(about, args, runs)
    if args.whale_events:
        one = SimConfig(vendors=1, products=200, customers=50_000, seed=13, resend_rate=0.01)
        runs.append(await run_log("whale", one, args.whale_events, days, args, bootstrap, kafka_data, data))
        print_run(runs[1], args.lateness_days)
        write_results(about, args, runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2_000_000, help="events in the marketplace log")
    parser.add_argument("--vendors", type=int, default=200)
    parser.add_argument("--lateness-days", type=int, default=20, help="L: the log spans 6 L days")
    parser.add_argument(
        "--whale-events", type=int, default=1_000_000, help="events of the one-vendor log (0: none)"
    )
    parser.add_argument(
        "--clock", choices=("stream", "wall"), default="stream",
        help="the worker's VENDORPULSE_CLOCK: stream (months of live running) or wall",
    )  # fmt: skip
    parser.add_argument(
        "--broker-compaction-defaults", action="store_true",
        help="leave the changelog topic's configs as the worker created them",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the broker's and workers' folders")
    args = parser.parse_args()
    about = machine([round(x, 2) for x in os.getloadavg()])
    state = Path(tempfile.mkdtemp(prefix="vp-bench-history-"))
    (state / "workers").mkdir()
    # below the ephemeral port range (32768+), where a client's socket may hold a port the check saw free
    kafka = LocalKafka(1, free_base_port(26092, nodes=1), state / "broker")
    try:
        bootstrap = kafka.start()
        console.print(f"private broker {bootstrap}, state in {state}")
        asyncio.run(main_async(args, about, bootstrap, kafka.nodes[0].home / "data", state / "workers"))
    finally:
        kafka.stop(timeout=10)
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
