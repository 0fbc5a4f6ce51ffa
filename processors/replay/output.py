"""Where a replay's snapshots go: JSON Lines (or Parquet, processors/archive/parquet.py), a topic, and
the summary."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from processors.exceptions import ReplayError
from processors.intake import InputCounts
from processors.replay.log_range import Span
from processors.replay.states import Refused
from processors.topics_admin import broker_count
from schemas.settings import KafkaSettings
from schemas.topics import Topics


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
            from processors.archive.parquet import write_snapshots

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
