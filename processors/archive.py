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

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaProducer
from fastavro import block_reader, parse_schema, schemaless_reader
from fastavro.write import Writer

from processors.exceptions import ArchiveError
from processors.intake import BAD_KEY, Refusal, read_event, vendor_of
from processors.replay import (
    MAX_SAMPLES,
    InputRecord,
    Refused,
    ReplayStates,
    ReplaySummary,
    check_publish_topic,
    check_range,
    consumer_for,
    deliver,
    meter,
    plan,
    quiet_gc,
    read,
)
from processors.schema_ids import with_schemas
from processors.topics_admin import ensure_topics
from schemas.codec import Codec, FastavroCodec, SchemaVersion, strip_logical_types
from schemas.events import (
    EVENT_TYPES,
    NAMESPACE,
    ORDER_EVENTS,
    Event,
    InventoryAdjusted,
    OrderCancelled,
    OrderPlaced,
    ProductUpserted,
)
from schemas.exceptions import CodecError
from schemas.settings import KafkaSettings
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


# --- export ----------------------------------------------------------------------------------------------


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


def run_export(
    settings: KafkaSettings,
    topic_kind: str = "all",
    from_ms: int | None = None,
    to_ms: int | None = None,
    out_dir: str | Path = "export",
    progress: bool = True,
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
        from processors.parquet import ParquetArchiveWriter

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
                with meter("export", sum(s.size for s in spans), progress) as m:
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


# --- reading archives ------------------------------------------------------------------------------------


@dataclass
class ArchiveProblems:
    """What reading archives could not use: per-record (counted by code) and whole files."""

    skipped: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    """files exported without the beginning of the log (`vendorpulse.complete` false)"""

    def note(self, code: str, where: str) -> None:
        self.skipped[code] += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(f"{code}: {where}")


def archive_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories expanded to their `*.avro` files (sorted by name)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob(f"*{SUFFIX}"))
        elif p.exists():
            out.append(p)
        else:
            raise ArchiveError(f"{p} does not exist")
    return out


def read_archive(
    paths: Iterable[str | Path], problems: ArchiveProblems, codec: Codec | None = None
) -> Iterator[Archived]:
    """The events of OCF files, file after file, each in file order; what cannot be read is noted."""
    codec = codec or FastavroCodec()
    for path in archive_files(paths):
        yield from _read_file(path, codec, problems)


def in_log_order(archived: Iterable[Archived]) -> list[Archived]:
    """The events back in the order of their topics' partitions: per topic, by (partition, offset); the
    two topics one after the other (their relative order is not defined, contract §4.1)."""
    by_topic: dict[bool, list[Archived]] = {True: [], False: []}
    for a in archived:
        by_topic[isinstance(a.event, ORDER_EVENTS)].append(a)
    return [a for topic in (True, False) for a in sorted(by_topic[topic], key=_position)]


def _position(a: Archived) -> tuple[int, int]:
    return a.partition, a.offset


def _read_file(path: Path, codec: Codec, problems: ArchiveProblems) -> Iterator[Archived]:
    """Blocks decoded with the writer schema stripped of logical types: times stay epoch-ms ints, as the
    fold wants them, and a time outside datetime's years 1-9999 (valid Avro) reads like any other."""
    with path.open("rb") as fo:
        try:
            blocks = block_reader(fo)
            written = json.loads(blocks.metadata["avro.schema"])
            name = str(written.get("name", "")) if isinstance(written, dict) else ""
            if "." not in name and isinstance(written, dict) and written.get("namespace"):
                name = f"{written['namespace']}.{name}"
            event_type = EVENT_TYPES.get(name)
            if event_type is None:
                problems.note("not_an_event_file", f"{path}: its records are {name or 'not records'}")
                return
            if blocks.metadata.get("vendorpulse.complete") == "false":
                problems.incomplete.append(str(path))
            current = reader_version(codec, event_type)
            writer = parse_schema(strip_logical_types(written))
            reader = parse_schema(with_positions(current.plain))
        except Exception as exc:  # fastavro raises many kinds for a file that is not an OCF
            problems.note("unreadable_file", f"{path}: {type(exc).__name__}: {exc}")
            return
        index = 0
        try:
            for block in blocks:
                data = block.bytes_  # type: ignore[attr-defined]  # the decompressed block (a BytesIO); the stub omits it
                for _ in range(block.num_records):
                    record: Any = schemaless_reader(data, writer, reader)
                    try:
                        stamp = record["kafka_timestamp"]
                        yield Archived(
                            event_type.from_record(record),
                            -1 if stamp is None else stamp,
                            record["kafka_partition"],
                            record["kafka_offset"],
                        )
                    except (KeyError, TypeError, ValueError) as exc:
                        problems.note("bad_record", f"{path}: record {index}: {type(exc).__name__}: {exc}")
                    index += 1
                if data.read(1):
                    raise ValueError("a block holds more bytes than its records")
        except Exception as exc:  # a corrupt block: the rest of the file cannot be trusted
            problems.note("corrupt_file", f"{path}: after record {index}: {type(exc).__name__}: {exc}")


# --- import ----------------------------------------------------------------------------------------------


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


def run_import(settings: KafkaSettings, paths: Sequence[str | Path], progress: bool = True) -> ImportSummary:
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
            with meter("import", None, progress) as m:
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


# --- replay from files -----------------------------------------------------------------------------------


def run_replay_files(
    settings: KafkaSettings,
    paths: Sequence[str | Path],
    vendors: Collection[str] | None = None,
    as_of_ms: int | None = None,
    out_path: str | Path | None = None,
    publish_topic: str | None = None,
    progress: bool = True,
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
    fold = ReplayStates(FastavroCodec(), vendors, settings.lateness_days, as_of_ms)
    problems = ArchiveProblems()
    began = time.monotonic()
    with meter("replay", None, progress) as m, quiet_gc():
        batch: list[tuple[Event, int]] = []
        for archived in in_log_order(read_archive(files, problems, fold.codec)):
            batch.append((archived.event, archived.ts))
            if len(batch) == 5000:
                fold.take_events(batch)
                m.advance(len(batch), len(batch))
                batch = []
        fold.take_events(batch)
        m.advance(len(batch), len(batch))
    fold_seconds = time.monotonic() - began
    for code, n in problems.skipped.items():
        fold.counts.refused[code] += n
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
        counts=fold.counts,
        samples=fold.samples,
        snapshots=fold.snapshots(as_of_ms, settings.period_days),
        fold_seconds=fold_seconds,
        seconds=0.0,
        complete=not problems.incomplete,
        warnings=warnings,
    )
    deliver(summary, settings, out_path, publish_topic)
    summary.seconds = time.monotonic() - started
    return summary
