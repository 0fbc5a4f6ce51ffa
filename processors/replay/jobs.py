"""A replay in several processes: whole partition numbers (a vendor lives in one partition number of
both topics) split over spawned processes, their parts merged."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from queue import Empty
from typing import Any

from processors.core.state import DEFAULT_LATENESS_DAYS
from processors.exceptions import ReplayError
from processors.intake import InputCounts
from processors.progress import Meter
from processors.replay.log_range import Span, replay_spans
from processors.replay.states import MAX_SAMPLES, Refused, ReplayStates, quiet_gc
from schemas.codec import FastavroCodec


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


class _QueueMeter:
    """A job's progress, sent to the parent process."""

    def __init__(self, queue: Any, index: int) -> None:
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
        states = ReplayStates(FastavroCodec(), vendors, lateness_days, as_of_ms)
        with quiet_gc():
            meter = _QueueMeter(queue, index)
            asyncio.run(replay_spans(bootstrap, spans, orders_topic, states, meter, registry_url))
        part = Part(
            states.snapshots(as_of_ms, period_days), set(states.states), states.counts, states.samples
        )
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
