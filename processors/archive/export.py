"""`run_export`: the `vendorpulse export` command, a range of the input topics to archive files."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from processors.archive.layout import TOPIC_KINDS, ArchiveWriter
from processors.exceptions import ArchiveError
from processors.progress import Progress, silent
from processors.replay import (
    Refused,
    check_range,
    consumer_for,
    plan,
    read,
)
from processors.schema_ids import with_schemas
from schemas.settings import KafkaSettings
from schemas.topics import Topics


@dataclass
class ExportSummary:
    out_dir: str
    files: dict[str, int]
    """file name -> records written"""
    records: int
    skipped: Counter[str]
    """by DLQ code; every one is in `skipped_path`"""
    samples: list[Refused]
    seconds: float
    complete: bool
    """every partition was exported from its beginning"""
    skipped_path: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = dict(self.skipped)
        out["events_per_s"] = round(self.events_per_s, 1)
        return out


def run_export(
    settings: KafkaSettings,
    topic_kind: str = "all",
    from_ms: int | None = None,
    to_ms: int | None = None,
    out_dir: str | Path = "export",
    progress: Progress = silent,
    overwrite: bool = False,
    codec_name: str = "deflate",
    file_format: str = "avro",
) -> ExportSummary:
    """Write the events of `orders`, `inventory` or both ("all") stamped in [from_ms, to_ms] to OCFs
    (or, with `file_format` "parquet", to Parquet files: processors/parquet.py).

    The range works as replay's (Kafka record timestamps, end offsets captured at start). Existing
    archive files in `out_dir` are refused unless `overwrite`.
    """
    writer_class = ArchiveWriter
    if file_format == "parquet":
        from processors.archive.parquet import ParquetArchiveWriter

        writer_class, codec_name = ParquetArchiveWriter, "zstd"
    elif file_format != "avro":
        raise ArchiveError(f"format must be avro or parquet, not {file_format!r}")
    if topic_kind not in (*TOPIC_KINDS, "all"):
        raise ArchiveError(f"topic kind must be orders, inventory or all, not {topic_kind!r}")
    check_range(from_ms, to_ms)
    started = time.monotonic()
    topics = Topics.for_prefix(settings.topic_prefix)
    kinds = list(TOPIC_KINDS) if topic_kind == "all" else [topic_kind]
    names = [topics.orders if k == "orders" else topics.inventory for k in kinds]
    types = [t for kind in kinds for t in TOPIC_KINDS[kind]]

    async def export() -> ExportSummary:
        consumer = consumer_for(settings.bootstrap)
        await consumer.start()
        try:
            spans = await plan(consumer, settings.bootstrap, names, from_ms, to_ms)
            complete = all(s.start == s.first for s in spans)
            meta = {
                "vendorpulse.from_ms": "" if from_ms is None else str(from_ms),
                "vendorpulse.to_ms": "" if to_ms is None else str(to_ms),
                "vendorpulse.exported_at": str(int(time.time() * 1000)),
                "vendorpulse.complete": str(complete).lower(),
            }
            total = 0
            with writer_class(
                out_dir, types, topics, meta, codec_name=codec_name, overwrite=overwrite
            ) as archive:
                with progress("export", sum(s.size for s in spans)) as m:
                    batches = read(consumer, spans, m)
                    async for _, records in with_schemas(
                        batches, archive.codec, settings.schema_registry_url
                    ):
                        for r in records:
                            archive.add(r)
                        total += len(records)
                files = archive.commit()
            return ExportSummary(
                out_dir=str(archive.directory),
                files=files,
                records=total,
                skipped=archive.skipped,
                samples=archive.samples,
                seconds=0.0,
                complete=complete,
                skipped_path=str(archive.skipped_path) if archive.skipped else None,
                warnings=[
                    f"{archive.odd_times} events have an occurred_at outside years 1-9999: valid Avro that "
                    "import and replay read, but fastavro (and pandas through it) cannot make datetimes of"
                ]
                if archive.odd_times
                else [],
            )
        finally:
            await consumer.stop()

    summary = asyncio.run(export())
    summary.seconds = time.monotonic() - started
    return summary
