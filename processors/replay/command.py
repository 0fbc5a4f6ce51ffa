"""`run_replay`: the `vendorpulse replay` command over Kafka (processors/replay/__init__.py says what
it reads and when it equals the live pipeline)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from processors.progress import Progress, silent
from processors.replay.jobs import Part, merge, run_jobs
from processors.replay.log_range import Span, check_range, consumer_for, plan, replay_spans
from processors.replay.output import ReplaySummary, check_publish_topic, deliver
from processors.replay.states import ReplayStates, quiet_gc
from schemas.codec import FastavroCodec
from schemas.settings import KafkaSettings
from schemas.topics import Topics


def run_replay(
    settings: KafkaSettings,
    from_ms: int | None = None,
    to_ms: int | None = None,
    vendors: Collection[str] | None = None,
    as_of_ms: int | None = None,
    out_path: str | Path | None = None,
    publish_topic: str | None = None,
    progress: Progress = silent,
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
    with progress("replay", sum(s.size for s in spans)) as m, quiet_gc():
        if jobs <= 1:
            states = ReplayStates(FastavroCodec(), wanted, settings.lateness_days, as_of_ms)
            asyncio.run(
                replay_spans(
                    settings.bootstrap, spans, topics.orders, states, m, settings.schema_registry_url
                )
            )
            parts = [
                Part(
                    states.snapshots(as_of_ms, settings.period_days),
                    set(states.states),
                    states.counts,
                    states.samples,
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
