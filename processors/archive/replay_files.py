"""`run_replay_files`: `vendorpulse replay --files`, the replay fold over archive files instead of Kafka."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from pathlib import Path

from processors.archive.read import ArchiveProblems, archive_files, in_log_order, read_archive
from processors.progress import Progress, silent
from processors.replay import (
    ReplayStates,
    ReplaySummary,
    check_publish_topic,
    deliver,
    quiet_gc,
)
from schemas.codec import FastavroCodec
from schemas.events import (
    Event,
)
from schemas.settings import KafkaSettings


def run_replay_files(
    settings: KafkaSettings,
    paths: Sequence[str | Path],
    vendors: Collection[str] | None = None,
    as_of_ms: int | None = None,
    out_path: str | Path | None = None,
    publish_topic: str | None = None,
    progress: Progress = silent,
) -> ReplaySummary:
    """`run_replay` over exported files instead of Kafka: the same fold, the same summary.

    The snapshots equal a Kafka replay of the exported range (export keeps only what the worker
    would fold, with its timestamps and log order). `as_of_ms` defaults to now.
    """
    started = time.monotonic()
    if as_of_ms is None:
        as_of_ms = int(time.time() * 1000)
    if publish_topic is not None:
        check_publish_topic(settings, publish_topic)
    files = archive_files(paths)
    states = ReplayStates(FastavroCodec(), vendors, settings.lateness_days, as_of_ms)
    problems = ArchiveProblems()
    began = time.monotonic()
    with progress("replay", None) as m, quiet_gc():
        batch: list[tuple[Event, int]] = []
        for archived in in_log_order(read_archive(files, problems, states.codec)):
            batch.append((archived.event, archived.ts))
            if len(batch) == 5000:
                states.take_events(batch)
                m.advance(len(batch), len(batch))
                batch = []
        states.take_events(batch)
        m.advance(len(batch), len(batch))
    fold_seconds = time.monotonic() - began
    for code, n in problems.skipped.items():
        states.counts.refused[code] += n
    warnings = [f"unusable archive content: {s}" for s in problems.samples]
    if problems.incomplete:
        warnings.append(
            f"{', '.join(problems.incomplete)} were exported from --from on, not from the beginning of "
            "the log: snapshots may differ from the live pipeline's"
        )
    summary = ReplaySummary(
        source="files " + ",".join(str(f) for f in files),
        as_of_ms=as_of_ms,
        period_days=settings.period_days,
        counts=states.counts,
        samples=states.samples,
        snapshots=states.snapshots(as_of_ms, settings.period_days),
        fold_seconds=fold_seconds,
        seconds=0.0,
        complete=not problems.incomplete,
        warnings=warnings,
    )
    deliver(summary, settings, out_path, publish_topic)
    summary.seconds = time.monotonic() - started
    return summary
