"""The archive's files: one Avro Object Container File per event type, its schema (the event's published
schema with the position fields appended) and the writer that fills them (processors/archive/__init__.py)."""

from __future__ import annotations

import base64
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from fastavro.write import Writer

from processors.exceptions import ArchiveError
from processors.intake import BAD_KEY, Refusal, read_event, vendor_of
from processors.replay import (
    MAX_SAMPLES,
    InputRecord,
    Refused,
)
from schemas.codec import Codec, FastavroCodec, SchemaVersion
from schemas.events import (
    NAMESPACE,
    ORDER_EVENTS,
    Event,
    InventoryAdjusted,
    OrderCancelled,
    OrderPlaced,
    ProductUpserted,
)
from schemas.topics import Topics

SUFFIX = ".avro"


POSITION_FIELDS: list[dict[str, Any]] = [
    {
        "name": "kafka_timestamp",
        "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
        "default": None,
    },
    {"name": "kafka_partition", "type": "int", "default": -1},
    {"name": "kafka_offset", "type": "long", "default": -1},
]
"""Appended to each event schema in an archive: where the record was in the log (module docstring)."""


SKIPPED = "skipped.jsonl"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


DATETIME_MS = range(
    (dt.datetime.min.replace(tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(milliseconds=1),
    (dt.datetime.max.replace(tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(milliseconds=1) + 1,
)
"""Times fastavro (hence pandas) can read as datetimes; others are valid Avro, and exported with a warning."""


TOPIC_KINDS: dict[str, tuple[type[Event], ...]] = {
    "orders": (OrderPlaced, OrderCancelled),
    "inventory": (ProductUpserted, InventoryAdjusted),
}


def reader_version(codec: Codec, event_type: type[Event]) -> SchemaVersion:
    return codec.schemas.latest(f"{NAMESPACE}.{event_type.NAME}")


def with_positions(schema: dict[str, Any]) -> dict[str, Any]:
    """An event schema with the archive's position fields appended."""
    return {**schema, "fields": [*schema["fields"], *POSITION_FIELDS]}


@dataclass(frozen=True, slots=True)
class Archived:
    """An archived event and where its record was: Kafka timestamp (-1: none), partition, offset (-1:
    an archive without positions)."""

    event: Event
    ts: int
    partition: int
    offset: int


KEY_MISMATCH = "key_mismatch"
"""Export's code for a record keyed by another vendor (the worker rejects it as invalid_event)."""


class ArchiveWriter:
    """Writes exported records to one OCF per event type (and refused ones to `skipped.jsonl`).

    Files are written under temporary names and renamed by `commit()`; `abort()` (or leaving the
    `with` block by an exception) deletes them, so a failed export leaves no partial archive.
    """

    def __init__(
        self,
        directory: str | Path,
        types: Sequence[type[Event]],
        topics: Topics,
        metadata: dict[str, str] | None = None,
        codec: Codec | None = None,
        codec_name: str = "deflate",
        overwrite: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.codec = codec or FastavroCodec()
        self.orders_topic = topics.orders
        self.targets = {t: self.directory / f"{t.NAME}{self.suffix}" for t in types}
        self.skipped_path = self.directory / SKIPPED
        paths = [*self.targets.values(), self.skipped_path]
        if not overwrite and (taken := [str(p) for p in paths if p.exists()]):
            raise ArchiveError(f"{', '.join(taken)} already exist; export to an empty directory or overwrite")
        self.written: Counter[type[Event]] = Counter()
        self.odd_times = 0
        """events dated outside years 1-9999 (see DATETIME_MS)"""
        self.skipped: Counter[str] = Counter()
        self.samples: list[Refused] = []
        self._files: dict[Path, IO[bytes]] = {}
        self._writers: dict[type[Event], Writer] = {}
        for t, path in self.targets.items():
            topic = topics.orders if t in ORDER_EVENTS else topics.inventory
            meta = {**(metadata or {}), "vendorpulse.topic": topic}
            self._writers[t] = self._open_writer(t, path, meta, codec_name)
        self._skipped = self._open(self.skipped_path)

    suffix = SUFFIX

    def _open_writer(
        self, event_type: type[Event], path: Path, metadata: dict[str, str], codec_name: str
    ) -> Any:
        """The writer of one event type's file (an OCF here; processors/parquet.py writes Parquet)."""
        return Writer(self._open(path), self._reader_schema(event_type), codec=codec_name, metadata=metadata)

    def _reader_schema(self, event_type: type[Event]) -> dict[str, Any]:
        """The event type's published schema with the position fields appended (module docstring)."""
        return with_positions(reader_version(self.codec, event_type).schema)

    def _open(self, path: Path) -> IO[bytes]:
        fo = self._files[path] = _tmp(path).open("wb")
        return fo

    def add(self, record: InputRecord) -> Refusal | None:
        """Archive one consumed record, or say why not (and keep it in `skipped.jsonl`)."""
        why = self._write(record)
        if why is not None:
            self.skipped[why.code] += 1
            if len(self.samples) < MAX_SAMPLES:
                self.samples.append(
                    Refused(record.topic, record.partition, record.offset, why.code, why.message)
                )
            self._skipped.write(_skipped_line(record, why))
        return why

    def _write(self, record: InputRecord) -> Refusal | None:
        vendor_id = vendor_of(record.key)
        if vendor_id is None:
            return BAD_KEY
        event = read_event(self.codec, record.value, record.topic == self.orders_topic)
        if isinstance(event, Refusal):
            return event
        if event.vendor_id != vendor_id:
            message = f"keyed {vendor_id!r}, but the event's vendor_id is {event.vendor_id!r}"
            return Refusal(KEY_MISMATCH, "InvalidEvent", message)
        record_ts = record.timestamp
        self._writers[type(event)].write(
            {
                **event.to_record(),
                "kafka_timestamp": record_ts if record_ts >= 0 else None,
                "kafka_partition": record.partition,
                "kafka_offset": record.offset,
            }
        )
        self.written[type(event)] += 1
        if event.occurred_at not in DATETIME_MS:
            self.odd_times += 1
        return None

    def commit(self) -> dict[str, int]:
        """Finish the files and put them in place; `skipped.jsonl` only if something was skipped."""
        for w in self._writers.values():
            w.flush()
        for fo in self._files.values():
            fo.close()
        for path in self.targets.values():
            _tmp(path).replace(path)
        if self.skipped:
            _tmp(self.skipped_path).replace(self.skipped_path)
        else:
            _tmp(self.skipped_path).unlink()
        return {path.name: self.written[t] for t, path in self.targets.items()}

    def abort(self) -> None:
        for path, fo in self._files.items():
            fo.close()
            _tmp(path).unlink(missing_ok=True)

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.abort()


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _skipped_line(record: InputRecord, why: Refusal) -> bytes:
    line = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "code": why.code,
        "error": why.error,
        "message": why.message,
        "key": None if record.key is None else base64.b64encode(record.key).decode(),
        "value": None if record.value is None else base64.b64encode(record.value).decode(),
    }
    return orjson.dumps(line) + b"\n"
