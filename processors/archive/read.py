"""Reading archives: the events of OCF files with where each record was, and their topics' log order."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import block_reader, parse_schema, schemaless_reader

from processors.archive.layout import SUFFIX, Archived, reader_version, with_positions
from processors.exceptions import ArchiveError
from processors.replay import (
    MAX_SAMPLES,
)
from schemas.codec import Codec, FastavroCodec, strip_logical_types
from schemas.events import (
    EVENT_TYPES,
    ORDER_EVENTS,
)


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
