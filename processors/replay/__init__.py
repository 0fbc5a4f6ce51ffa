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

from processors.replay.command import run_replay
from processors.replay.log_range import Span, check_range, consumer_for, partition_counts, plan, read
from processors.replay.output import ReplaySummary, check_publish_topic, deliver, publish, write_jsonl
from processors.replay.states import MAX_SAMPLES, InputRecord, Refused, ReplayStates, quiet_gc

__all__ = [
    "MAX_SAMPLES",
    "InputRecord",
    "Refused",
    "ReplayStates",
    "ReplaySummary",
    "Span",
    "check_publish_topic",
    "check_range",
    "consumer_for",
    "deliver",
    "partition_counts",
    "plan",
    "publish",
    "quiet_gc",
    "read",
    "run_replay",
    "write_jsonl",
]
