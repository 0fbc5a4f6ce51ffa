"""Avro archives of the input topics: export to Object Container Files, import back, replay from them.

Layout: one OCF per event type, `<dir>/<Name>.avro` (OrderPlaced, OrderCancelled from `orders`;
ProductUpserted, InventoryAdjusted from `inventory`), written with the type's published `.avsc` (the
reader version, logical types included, so `fastavro.reader` and pandas give `occurred_at` as UTC
datetimes) and the deflate codec every Avro implementation reads. Records keep the log order of their
partition; the header's metadata says where they came from (`vendorpulse.*` keys, see `export`).

The files hold what the worker would fold: export takes records through the worker's own checks
(`processors.intake.vendor_of`, `read_event`) plus "the key is the event's vendor_id" (the worker
rejects the others; an archive has no key, import keys by vendor_id). Schema-valid events that break a
rule of contract §4 are kept: the worker rejects them again after an import. Every record left out is
counted by its DLQ code and written, bytes and all, to `<dir>/skipped.jsonl`: nothing is dropped
silently. Import publishes each file's events in file order, keyed by vendor_id, to the topic of their
type; re-importing is harmless (the fold ignores repeated event_ids).

Where each record came from. Besides the event's fields, every record carries `kafka_timestamp` (the
input record's Kafka timestamp, null when it had none), `kafka_partition` and `kafka_offset`. The
lateness horizon (contract §4.1) makes both matter: the timestamps move the vendors' clocks, and the
order of a topic's records (placements and cancellations, whose meeting depends on which is read first)
is their partition's offset order. Import and replay from files merge a topic's files back into that
order and give each record its timestamp again, so files replay as the topics do. (Archives written
before these columns existed read with no timestamp and in file order.)
"""

from processors.archive.export import ExportSummary, run_export
from processors.archive.import_ import ImportSummary, run_import
from processors.archive.layout import (
    POSITION_FIELDS,
    SKIPPED,
    SUFFIX,
    Archived,
    ArchiveWriter,
    with_positions,
)
from processors.archive.read import ArchiveProblems, archive_files, in_log_order, read_archive
from processors.archive.replay_files import run_replay_files

__all__ = [
    "POSITION_FIELDS",
    "SKIPPED",
    "SUFFIX",
    "ArchiveProblems",
    "ArchiveWriter",
    "Archived",
    "ExportSummary",
    "ImportSummary",
    "archive_files",
    "in_log_order",
    "read_archive",
    "run_export",
    "run_import",
    "run_replay_files",
    "with_positions",
]
