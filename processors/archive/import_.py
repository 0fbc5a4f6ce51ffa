"""`run_import`: the `vendorpulse import` command, archive files back to the input topics, each record
with its Kafka timestamp, in its topic's log order."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from processors.archive.read import ArchiveProblems, archive_files, in_log_order, read_archive
from processors.progress import Progress, silent
from processors.topics_admin import ensure_topics
from schemas.codec import FastavroCodec
from schemas.events import (
    ORDER_EVENTS,
)
from schemas.exceptions import CodecError
from schemas.settings import KafkaSettings
from schemas.topics import Topics


@dataclass
class ImportSummary:
    files: list[str]
    sent: dict[str, int]
    """per topic"""
    skipped: Counter[str]
    samples: list[str]
    seconds: float

    @property
    def records(self) -> int:
        return sum(self.sent.values())

    @property
    def events_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = dict(self.skipped)
        out["records"] = self.records
        out["events_per_s"] = round(self.events_per_s, 1)
        return out


def run_import(
    settings: KafkaSettings, paths: Sequence[str | Path], progress: Progress = silent
) -> ImportSummary:
    """Publish the events of OCF files (or directories of them) to `orders`/`inventory`, keyed by vendor.

    Topics that are missing are created as the worker would. Events the codec cannot encode (values
    outside their Avro type) and unreadable files are counted, located and skipped.
    """
    started = time.monotonic()
    files = archive_files(paths)
    topics = Topics.for_prefix(settings.topic_prefix)
    codec = FastavroCodec()
    problems = ArchiveProblems()
    sent: Counter[str] = Counter()

    async def publish() -> None:
        await ensure_topics(settings.bootstrap, topics, settings.partitions)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
        )
        await producer.start()
        try:
            pending: list[asyncio.Future[Any]] = []
            with progress("import", None) as m:
                for archived in in_log_order(read_archive(files, problems, codec)):
                    event = archived.event
                    try:
                        value = codec.encode(event)
                    except CodecError as exc:
                        problems.note(exc.code, f"{type(event).__name__} {event.event_id!r}: {exc}")
                        continue
                    topic = topics.orders if isinstance(event, ORDER_EVENTS) else topics.inventory
                    stamp = archived.ts if archived.ts >= 0 else None  # None: the producer's clock
                    pending.append(
                        await producer.send(topic, value, key=event.vendor_id.encode(), timestamp_ms=stamp)
                    )
                    sent[topic] += 1
                    if len(pending) >= 5000:
                        await asyncio.gather(*pending)
                        m.advance(len(pending), len(pending))
                        pending.clear()
                await producer.flush()
                await asyncio.gather(*pending)
                m.advance(len(pending), len(pending))
        finally:
            await producer.stop()

    asyncio.run(publish())
    return ImportSummary(
        files=[str(f) for f in files],
        sent=dict(sent),
        skipped=problems.skipped,
        samples=problems.samples,
        seconds=time.monotonic() - started,
    )
