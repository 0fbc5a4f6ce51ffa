"""Replay: recompute vendor snapshots from the input topics (or exported files) for any as-of instant.

What is read. The log is each partition of `orders` and `inventory` in offset order (contract §4). A
replay reads, per partition, the offsets [start, stop):
- stop: the end offset captured when the replay starts, so it terminates on a live topic; with `to_ms`,
  the partition's first offset stamped after `to_ms` when that comes earlier ("the log as it stood at
  `to_ms`": a record produced later is not read, whatever its occurred_at).
- start: the partition's beginning by default; with `from_ms`, its first offset stamped at or after
  `from_ms` (Kafka's offsets-for-times).
Stamps are the Kafka record timestamps (when a record was produced), not occurred_at; `as_of_ms` is
the contract's T, compared with occurred_at, and defaults to `to_ms`, else the time the replay started.

Exactness. Dedupe, first-order dates, the catalog, stock and the vendor's currency depend on every
earlier event of the vendor, so only a replay that reads every partition from its beginning equals the
live pipeline (`ReplaySummary.complete`). With `from_ms` the fold knows nothing before it: the result is
the live pipeline's for a log that began at `from_ms` (re-sent events count again, customers look new,
stock starts at 0), which is what a "what if we had started here" backfill wants and nothing else.
A partition whose beginning is past offset 0 lost records to retention: the summary warns about it.

Acceptance. Records go through `processors.intake.vendor_of`, `read_event` and `processors.core.apply`, the
worker's own checks in the worker's order; what the worker dead-letters is counted here by the same
code (`refused`), with the first few located in `samples`. Records of vendors outside `vendors` are
skipped before decoding (vendors never affect each other's state). No consumer group is used: the
partitions are assigned and sought, nothing is committed, the worker's group never sees this consumer.

Cost. Every replayed vendor's state is held in memory, unpruned (a snapshot as of any T stays exact),
and folded with the cyclic GC off (`quiet_gc`). `jobs` > 1 splits whole partition numbers over
spawned processes (a vendor lives in one partition number of both topics). docs/REPLAY.md has the
numbers and what limits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import sys
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import OffsetOutOfRangeError, TopicAlreadyExistsError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from processors.core.apply import Status, apply, observe, stock_level
from processors.core.snapshot import snapshot
from processors.core.state import DEFAULT_LATENESS_DAYS, NO_FLOOR, State, new_state
from processors.exceptions import ReplayError
from processors.intake import BAD_KEY, PRODUCT_EVENTS, InputCounts, Refusal, read_event, rejection, vendor_of
from processors.outputs import stock_alert
from processors.schema_ids import with_schemas
from processors.topics_admin import broker_count
from schemas.codec import Codec, FastavroCodec
from schemas.events import Event
from schemas.settings import KafkaSettings
from schemas.topics import Topics

MAX_SAMPLES = 20
"""Refused records located in a summary (all are counted)."""
STALL_SECONDS = 60.0
"""A read that gets no record for this long while offsets remain fails instead of hanging."""


class InputRecord(Protocol):
    """What the fold needs of a consumed record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets [start, stop) of one partition to read; `first` is the partition's beginning."""

    topic: str
    partition: int
    start: int
    stop: int
    first: int

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)


@dataclass(frozen=True, slots=True)
class Refused:
    """A record the worker would dead-letter, and why."""

    topic: str
    partition: int
    offset: int
    code: str
    message: str


class ReplayStates:
    """Per-vendor states folded from input records with the live worker's acceptance rules; no I/O.

    `lateness_days` is the worker's L (contract §4.1), so the same records with the same timestamps
    give the same verdicts. `floor` is the earliest as-of instant the snapshots will be asked for: the
    states keep no timeline before it (processors.core.state)."""

    def __init__(
        self, codec: Codec, vendors: Collection[str] | None = None,
        lateness_days: int = DEFAULT_LATENESS_DAYS, floor: int = NO_FLOOR,
    ) -> None:  # fmt: skip
        self.codec = codec
        self.lateness_days = lateness_days
        self.floor = floor
        self.alerts: list[dict[str, Any]] | None = None
        """Set to a list to collect the `stock_alert`s the worker writes for these records, in order."""
        self.vendors = frozenset(vendors) if vendors is not None else None
        self.states: dict[str, State] = {}
        self.counts = InputCounts()
        self.samples: list[Refused] = []

    def take(self, on_orders_topic: bool, records: Sequence[InputRecord]) -> None:
        """Fold a partition's records (in offset order) from the `orders` topic or the `inventory` one."""
        codec, vendors, states, counts = self.codec, self.vendors, self.states, self.counts
        applied = duplicates = filtered = 0
        for record in records:
            vendor_id = vendor_of(record.key)
            if vendor_id is None:
                self._refuse(record, BAD_KEY)
                continue
            if vendors is not None and vendor_id not in vendors:
                filtered += 1
                continue
            state = states.get(vendor_id)
            if state is None:  # the worker keeps a state for every vendor key it met, as here
                state = states[vendor_id] = self._new(vendor_id)
            event = read_event(codec, record.value, on_orders_topic)
            if isinstance(event, Refusal):
                if event.code == "wrong_topic":
                    observe(state, on_orders_topic, record.timestamp)
                self._refuse(record, event)
                continue
            before = stock_level(state, event.product_id) if isinstance(event, PRODUCT_EVENTS) else None
            outcome = apply(state, event, record.timestamp)
            if (
                self.alerts is not None
                and before is not None
                and isinstance(event, PRODUCT_EVENTS)
                and outcome.status is Status.APPLIED
                and (alert := stock_alert(state, event, before)) is not None
            ):
                self.alerts.append(alert)
            if outcome.status is Status.APPLIED:
                applied += 1
            elif outcome.status is Status.DUPLICATE:
                duplicates += 1
            else:
                self._refuse(record, rejection(outcome))
        counts.records += len(records)
        counts.applied += applied
        counts.duplicates += duplicates
        counts.filtered += filtered

    def _new(self, vendor_id: str) -> State:
        state = new_state(vendor_id, lateness_days=self.lateness_days)
        state.floor = self.floor
        return state

    def take_events(self, events: Iterable[tuple[Event, int]]) -> None:
        """Fold archived events with their record timestamps (exported with their key checked, so each
        is its vendor's own)."""
        vendors, states, counts = self.vendors, self.states, self.counts
        for event, ts in events:
            counts.records += 1
            vendor_id = event.vendor_id
            if vendors is not None and vendor_id not in vendors:
                counts.filtered += 1
                continue
            state = states.get(vendor_id)
            if state is None:
                state = states[vendor_id] = self._new(vendor_id)
            outcome = apply(state, event, ts)
            if outcome.status is Status.APPLIED:
                counts.applied += 1
            elif outcome.status is Status.DUPLICATE:
                counts.duplicates += 1
            else:
                why = rejection(outcome)
                counts.refused[why.code] += 1
                if len(self.samples) < MAX_SAMPLES:
                    self.samples.append(Refused("", -1, -1, why.code, f"{event.event_id}: {why.message}"))

    def _refuse(self, record: InputRecord, why: Refusal) -> None:
        self.counts.refused[why.code] += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(Refused(record.topic, record.partition, record.offset, why.code, why.message))

    def snapshots(self, as_of_ms: int, period_days: int) -> list[dict[str, Any]]:
        """One snapshot per vendor with an applied event, and per vendor asked for (zero-filled if it
        had none), by vendor_id. A key that only ever carried refused records names no vendor."""
        names = {v for v, s in self.states.items() if s.version} | (self.vendors or set())
        return [snapshot(self.states.get(v) or self._new(v), as_of_ms, period_days) for v in sorted(names)]


@dataclass
class ReplaySummary:
    source: str
    as_of_ms: int
    period_days: int
    counts: InputCounts
    samples: list[Refused]
    snapshots: list[dict[str, Any]] = field(repr=False)
    fold_seconds: float
    """reading, decoding and folding (the rate's denominator)"""
    seconds: float
    """everything, snapshots and output included"""
    spans: list[Span] = field(default_factory=list, repr=False)
    complete: bool = True
    """every partition was read from its beginning: the fold saw the whole log"""
    warnings: list[str] = field(default_factory=list)
    out_path: str | None = None
    published: int = 0
    publish_topic: str | None = None

    @property
    def events_per_s(self) -> float:
        return self.counts.records / self.fold_seconds if self.fold_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the snapshots themselves."""
        out = asdict(self)
        out.pop("snapshots")
        out["vendors"] = len(self.snapshots)
        out["events_per_s"] = round(self.events_per_s, 1)
        out["counts"]["refused"] = dict(self.counts.refused)
        return out


# --- reading a bounded range of the log ----------------------------------------------------------------


def consumer_for(bootstrap: str) -> AIOKafkaConsumer:
    """A group-less consumer: partitions are assigned and sought, nothing is committed."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",  # a start offset deleted under us is an error, not a silent skip
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=64 << 20,
    )


async def partition_counts(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
    if missing := [t for t in topics if not counts.get(t)]:
        raise ReplayError(
            f"topic {', '.join(map(repr, missing))} does not exist on {bootstrap}; "
            "is VENDORPULSE_TOPIC_PREFIX (or KAFKA_BOOTSTRAP_SERVERS) right?"
        )
    return counts


def check_range(from_ms: int | None, to_ms: int | None) -> None:
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ReplayError(f"--from ({from_ms}) is after --to ({to_ms}); swap them")


async def plan(
    consumer: AIOKafkaConsumer,
    bootstrap: str,
    topics: Sequence[str],
    from_ms: int | None,
    to_ms: int | None,
) -> list[Span]:
    """Each partition's offsets to read for the range (see the module docstring)."""
    check_range(from_ms, to_ms)
    counts = await partition_counts(bootstrap, topics)
    tps = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
    first = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)  # captured once: later records are not this replay's
    start, stop = dict(first), dict(end)
    if from_ms is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, from_ms))
        start = {tp: end[tp] if o is None else max(o.offset, first[tp]) for tp, o in found.items()}
    if to_ms is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, to_ms + 1))
        stop = {tp: end[tp] if o is None else min(o.offset, end[tp]) for tp, o in found.items()}
    return [Span(tp.topic, tp.partition, start[tp], max(start[tp], stop[tp]), first[tp]) for tp in tps]


async def read(
    consumer: AIOKafkaConsumer, spans: Sequence[Span], meter: Meter | None = None
) -> AsyncIterator[tuple[str, list[Any]]]:
    """(topic, records) batches of every span, each partition in offset order, up to its stop offset."""
    todo = {TopicPartition(s.topic, s.partition): s for s in spans if s.size}
    if not todo:
        return
    consumer.assign(list(todo))
    position = {}
    for tp, planned in todo.items():
        consumer.seek(tp, planned.start)
        position[tp] = planned.start
    last_progress = time.monotonic()
    while todo:
        try:
            batch = await consumer.getmany(*todo, timeout_ms=500, max_records=20_000)
        except OffsetOutOfRangeError as exc:
            raise ReplayError(
                f"records of {exc} were deleted (retention) while being read; run the replay again"
            ) from exc
        records_read = 0
        for tp, records in batch.items():
            span = todo.get(tp)
            if span is None or not records:
                continue
            if records[-1].offset >= span.stop:  # a live topic: records after the end captured at start
                records = records[: bisect_left(records, span.stop, key=lambda r: r.offset)]
            if records:
                records_read += len(records)
                yield tp.topic, records
        moved = 0
        for tp in list(todo):
            now_at = min(await consumer.position(tp), todo[tp].stop)
            moved += now_at - position[tp]
            position[tp] = now_at
            if now_at >= todo[tp].stop:
                consumer.pause(tp)
                del todo[tp]
        if meter is not None:
            meter.advance(moved, records_read)
        if moved:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_SECONDS:
            left = {f"{tp.topic}[{tp.partition}]": s.stop - position[tp] for tp, s in todo.items()}
            raise ReplayError(f"no progress for {STALL_SECONDS:.0f}s with offsets left to read: {left}")


# --- progress ------------------------------------------------------------------------------------------


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.fields.get("records", 0) / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f} events/s", style="progress.data.speed")


class Meter:
    """A progress bar over offsets (or events) with events/s, on stderr; does nothing when disabled."""

    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress, self._task, self.records = progress, task, 0

    def advance(self, steps: int, records: int) -> None:
        self.records += records
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, records=self.records)


@contextmanager
def quiet_gc() -> Iterator[None]:
    """The cyclic GC off while folding. A fold allocates millions of long-lived containers (the states)
    and frees almost none, so each full collection only rescans them: a third of a replay's time with
    the GC on. The few cycles made meanwhile (per fetch) are collected once it is back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def meter(description: str, total: int | None, enabled: bool) -> Iterator[Meter]:
    if not enabled:
        yield Meter(None, None)
        return
    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), refresh_per_second=4) as progress:
        yield Meter(progress, progress.add_task(description, total=total, records=0))


# --- output --------------------------------------------------------------------------------------------


def write_jsonl(path: str | Path, snapshots: Iterable[dict[str, Any]]) -> None:
    """One snapshot per line; `-` is stdout. A file is written whole or not at all."""
    lines = b"".join(orjson.dumps(s) + b"\n" for s in snapshots)
    if str(path) == "-":
        sys.stdout.buffer.write(lines)
        sys.stdout.flush()
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(lines)
    tmp.replace(target)


def check_publish_topic(settings: KafkaSettings, topic: str) -> None:
    live = Topics.for_prefix(settings.topic_prefix)
    if topic in live.all():
        raise ReplayError(
            f"{topic!r} is a topic of the live pipeline; a replayed snapshot there would replace the "
            f"live one. Publish to a topic of its own, e.g. {live.metrics}.replay"
        )


async def publish(bootstrap: str, topic: str, snapshots: Sequence[dict[str, Any]], partitions: int) -> int:
    """Send the snapshots keyed by vendor_id, creating `topic` (compacted) if it is missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            replicas = min(3, await broker_count(bootstrap))
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile: fine
                await admin.create_topics(
                    [NewTopic(topic, partitions, replicas, topic_configs={"cleanup.policy": "compact"})]
                )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, orjson.dumps(s), key=str(s["vendorId"]).encode()) for s in snapshots
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return len(sent)


def deliver(
    summary: ReplaySummary, settings: KafkaSettings, out_path: str | Path | None, publish_topic: str | None
) -> None:
    """Write and/or publish the summary's snapshots (recorded in the summary)."""
    if out_path is not None:
        if str(out_path).endswith(".parquet"):
            from processors.parquet import write_snapshots

            write_snapshots(out_path, summary.snapshots)
        else:
            write_jsonl(out_path, summary.snapshots)
        summary.out_path = str(out_path)
    if publish_topic is not None:
        # as many partitions as the input has (or would have), so snapshots spread like the input
        partitions = max((s.partition + 1 for s in summary.spans), default=settings.partitions)
        summary.published = asyncio.run(
            publish(settings.bootstrap, publish_topic, summary.snapshots, partitions)
        )
        summary.publish_topic = publish_topic


# --- the command ----------------------------------------------------------------------------------------


def run_replay(
    settings: KafkaSettings,
    from_ms: int | None = None,
    to_ms: int | None = None,
    vendors: Collection[str] | None = None,
    as_of_ms: int | None = None,
    out_path: str | Path | None = None,
    publish_topic: str | None = None,
    progress: bool = True,
    jobs: int = 1,
) -> ReplaySummary:
    """Replay `orders` and `inventory` (of `settings.topic_prefix`) into one snapshot per vendor.

    `from_ms`/`to_ms` bound the records read by their Kafka timestamps, `as_of_ms` (default `to_ms`,
    else now) is the snapshots' T; see the module docstring for what a `from_ms` costs in exactness.
    The snapshots go to `out_path` (JSON Lines, `-` for stdout) and/or `publish_topic`, and are in the
    returned summary either way. `jobs` > 1 folds the partitions in that many processes (a vendor's
    records are in one partition of each topic, so each process holds whole vendors).
    """
    started = time.monotonic()
    check_range(from_ms, to_ms)  # before any connection: fail fast
    if as_of_ms is None:
        as_of_ms = to_ms if to_ms is not None else int(time.time() * 1000)
    if publish_topic is not None:
        check_publish_topic(settings, publish_topic)
    topics = Topics.for_prefix(settings.topic_prefix)
    wanted = frozenset(vendors) if vendors is not None else None
    spans = asyncio.run(_plan(settings.bootstrap, [topics.orders, topics.inventory], from_ms, to_ms))
    began = time.monotonic()
    with meter("replay", sum(s.size for s in spans), progress) as m, quiet_gc():
        if jobs <= 1:
            fold = ReplayStates(FastavroCodec(), wanted, settings.lateness_days, as_of_ms)
            asyncio.run(
                fold_spans(settings.bootstrap, spans, topics.orders, fold, m, settings.schema_registry_url)
            )
            parts = [
                Part(
                    fold.snapshots(as_of_ms, settings.period_days),
                    set(fold.states),
                    fold.counts,
                    fold.samples,
                )
            ]
        else:
            parts = run_jobs(
                settings.bootstrap, spans, topics.orders, wanted, as_of_ms, settings.period_days, jobs, m,
                settings.lateness_days, settings.schema_registry_url,
            )  # fmt: skip
    fold_seconds = time.monotonic() - began
    snapshots, counts, samples = merge(parts)
    warnings = []
    complete = all(s.start == s.first for s in spans)
    if not complete:
        warnings.append(
            "--from skipped the log before it: duplicates, first orders, stock and catalog only know "
            "the records read, so snapshots may differ from the live pipeline's"
        )
    if truncated := [f"{s.topic}[{s.partition}]" for s in spans if s.first > 0]:
        warnings.append(
            f"retention deleted the beginning of {', '.join(truncated)}: the live state may know "
            "older events than any replay can"
        )
    summary = ReplaySummary(
        source=f"kafka {settings.bootstrap} {topics.orders},{topics.inventory}",
        as_of_ms=as_of_ms,
        period_days=settings.period_days,
        counts=counts,
        samples=samples,
        snapshots=snapshots,
        fold_seconds=fold_seconds,
        seconds=0.0,
        spans=spans,
        complete=complete,
        warnings=warnings,
    )
    deliver(summary, settings, out_path, publish_topic)
    summary.seconds = time.monotonic() - started
    return summary


async def _plan(bootstrap: str, topics: Sequence[str], from_ms: int | None, to_ms: int | None) -> list[Span]:
    consumer = consumer_for(bootstrap)
    await consumer.start()
    try:
        return await plan(consumer, bootstrap, topics, from_ms, to_ms)
    finally:
        await consumer.stop()


async def fold_spans(
    bootstrap: str, spans: Sequence[Span], orders_topic: str, fold: ReplayStates, m: Meter,
    registry_url: str | None = None,
) -> None:  # fmt: skip
    consumer = consumer_for(bootstrap)
    await consumer.start()
    try:
        async for topic, records in with_schemas(read(consumer, spans, m), fold.codec, registry_url):
            fold.take(topic == orders_topic, records)
    finally:
        await consumer.stop()


# --- several processes -----------------------------------------------------------------------------------


@dataclass
class Part:
    """What one process folded: snapshots (requested vendors zero-filled), every vendor key it met."""

    snapshots: list[dict[str, Any]]
    met: set[str]
    counts: InputCounts
    samples: list[Refused]


def merge(parts: Sequence[Part]) -> tuple[list[dict[str, Any]], InputCounts, list[Refused]]:
    """One snapshot per vendor across parts; a vendor met by two parts is not co-partitioned: refused."""
    owner: dict[str, int] = {}
    for i, part in enumerate(parts):
        for vendor in part.met:
            if owner.setdefault(vendor, i) != i:
                raise ReplayError(
                    f"vendor {vendor!r} has records in partitions folded by different jobs: orders and "
                    "inventory are not partitioned alike by vendor here; replay with one job"
                )
    snapshots: dict[str, dict[str, Any]] = {}
    counts = InputCounts()
    samples: list[Refused] = []
    for part in parts:
        for snap in part.snapshots:
            if snap["version"] or snap["vendorId"] not in snapshots:  # zero-filled in the other parts
                snapshots[snap["vendorId"]] = snap
        counts.add(part.counts)
        samples += part.samples[: MAX_SAMPLES - len(samples)]
    return [snapshots[v] for v in sorted(snapshots)], counts, samples


def split(spans: Sequence[Span], jobs: int) -> list[list[Span]]:
    """Partition numbers (with both topics' spans) to jobs, biggest first to the least loaded."""
    by_partition: dict[int, list[Span]] = {}
    for span in spans:
        by_partition.setdefault(span.partition, []).append(span)
    groups: list[list[Span]] = [[] for _ in range(jobs)]
    load = [0] * jobs
    for group in sorted(by_partition.values(), key=lambda g: -sum(s.size for s in g)):
        i = load.index(min(load))
        groups[i] += group
        load[i] += sum(s.size for s in group)
    return [g for g in groups if any(s.size for s in g)]


class _QueueMeter(Meter):
    def __init__(self, queue: Any, index: int) -> None:
        super().__init__(None, None)
        self._queue, self._index = queue, index

    def advance(self, steps: int, records: int) -> None:
        self._queue.put(("progress", self._index, (steps, records)))


def _job(
    bootstrap: str, spans: list[Span], orders_topic: str, vendors: frozenset[str] | None,
    as_of_ms: int, period_days: int, lateness_days: int, queue: Any, index: int,
    registry_url: str | None = None,
) -> None:  # fmt: skip
    """A job process: fold its spans, send back its part (or why it failed)."""
    try:
        fold = ReplayStates(FastavroCodec(), vendors, lateness_days, as_of_ms)
        with quiet_gc():
            meter = _QueueMeter(queue, index)
            asyncio.run(fold_spans(bootstrap, spans, orders_topic, fold, meter, registry_url))
        part = Part(fold.snapshots(as_of_ms, period_days), set(fold.states), fold.counts, fold.samples)
        queue.put(("done", index, part))
    except BaseException as exc:  # reported to the parent, which raises
        queue.put(("error", index, f"{type(exc).__name__}: {exc}"))


def run_jobs(
    bootstrap: str, spans: Sequence[Span], orders_topic: str, vendors: frozenset[str] | None,
    as_of_ms: int, period_days: int, jobs: int, m: Meter, lateness_days: int = DEFAULT_LATENESS_DAYS,
    registry_url: str | None = None,
) -> list[Part]:  # fmt: skip
    """Fold `spans` in up to `jobs` fresh (spawned) processes; their progress goes to `m`."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
    queue = context.Queue()
    groups = split(spans, jobs)
    procs = [
        context.Process(
            target=_job,
            args=(
                bootstrap,
                g,
                orders_topic,
                vendors,
                as_of_ms,
                period_days,
                lateness_days,
                queue,
                i,
                registry_url,
            ),
            daemon=True,
        )
        for i, g in enumerate(groups)
    ]
    for proc in procs:
        proc.start()
    parts: dict[int, Part] = {}
    try:
        while len(parts) < len(procs):
            try:
                kind, index, payload = queue.get(timeout=1.0)
            except Empty:
                if dead := [i for i, p in enumerate(procs) if i not in parts and not p.is_alive()]:
                    raise ReplayError(
                        f"replay job {dead[0]} exited with code {procs[dead[0]].exitcode}"
                    ) from None
                continue
            if kind == "progress":
                m.advance(*payload)
            elif kind == "done":
                parts[index] = payload
            else:
                raise ReplayError(f"replay job {index} failed: {payload}")
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    return [parts[i] for i in sorted(parts)]
