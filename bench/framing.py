"""Decode per event by framing (contract §3): `python -m bench.framing`.

Single-object against Confluent framing with a cached schema id, through the codec the worker uses
(`codec.decode`: header, body, int checks, event objects), on the same OrderPlaced (3 items) and on a
simulated mix of all four event types. The Confluent case adds the resolver's per-batch scan
(`SchemaResolver.prepare` on a batch of 2,000 values whose ids are all known: what the worker pays per
event when nothing is new), measured apart and per event. The ids are handed to the codec as the
resolver does after a registry answered (no registry is needed for a cached id). Also the file sizes
of one export of the mix, Avro (deflate) against Parquet (zstd).

Interleaved runs, medians (bench.codec's method), timed in this process's CPU time
(`time.process_time`): on a shared machine wall time mostly measures the other processes.
Writes bench/results/framing.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import machine
from bench.codec import EVENT, REPEATS, measure
from infra.simulate import EventGenerator, SimConfig
from processors.archive import ArchiveWriter
from processors.archive.parquet import ParquetArchiveWriter
from schemas.codec import HEADER_SIZE, FastavroCodec
from schemas.confluent import SchemaResolver
from schemas.events import EVENT_TYPES, ORDER_EVENTS, Event
from schemas.topics import Topics

RESULTS = Path(__file__).resolve().parent / "results" / "framing.json"
BATCH = 2000
EXPORT_EVENTS = 200_000


def confluent_codec() -> tuple[FastavroCodec, dict[str, int]]:
    codec = FastavroCodec()
    codec.accept_confluent()
    ids = {}
    for schema_id, name in enumerate(codec.schemas.names, start=1):
        codec.add_writer(schema_id, codec.schemas.latest(name))
        ids[name] = schema_id
    return codec, ids


def framed(codec: FastavroCodec, ids: dict[str, int], event: Event) -> bytes:
    single = codec.encode(event)
    return b"\x00" + ids[codec.peek(single).name].to_bytes(4, "big") + single[HEADER_SIZE:]


def cases() -> dict[tuple[str, str, str], Callable[[], object]]:
    codec, ids = confluent_codec()
    mix = [e for _, e in islice(EventGenerator(SimConfig(vendors=5, products=40, seed=7, start_ms=0)), BATCH)]
    single_mix = [codec.encode(e) for e in mix]
    confluent_mix = [framed(codec, ids, e) for e in mix]
    resolver = SchemaResolver(codec, "http://127.0.0.1:9")  # never asked: every id is known
    loop = asyncio.new_event_loop()

    def decode_all(values: list[bytes]) -> Callable[[], object]:
        decode = codec.decode
        return lambda: [decode(v, validate=False) for v in values]

    single_one, confluent_one = codec.encode(EVENT), framed(codec, ids, EVENT)
    return {
        ("OrderPlaced, 3 items", "single-object", "decode"): lambda: codec.decode(single_one, validate=False),
        ("OrderPlaced, 3 items", "confluent", "decode"): lambda: codec.decode(confluent_one, validate=False),
        (f"mix of {BATCH}", "single-object", "decode"): decode_all(single_mix),
        (f"mix of {BATCH}", "confluent", "decode"): decode_all(confluent_mix),
        (f"mix of {BATCH}", "confluent", "prepare (ids known)"): lambda: loop.run_until_complete(
            resolver.prepare(confluent_mix)
        ),
    }


@dataclass
class Sizes:
    events: int
    avro_bytes: int
    parquet_bytes: int


def export_sizes(n: int) -> Sizes:
    """One export of `n` simulated events in both formats, through the export's own writers."""

    @dataclass(frozen=True)
    class Record:
        topic: str
        partition: int
        offset: int
        key: bytes | None
        value: bytes | None
        timestamp: int

    codec = FastavroCodec()
    topics = Topics.for_prefix("")
    events = [
        e for _, e in islice(EventGenerator(SimConfig(vendors=20, products=200, seed=7, start_ms=0)), n)
    ]
    records = [
        Record(topics.orders if isinstance(e, ORDER_EVENTS) else topics.inventory, 0, i, e.vendor_id.encode(),
               codec.encode(e), e.occurred_at + 1000)
        for i, e in enumerate(events)
    ]  # fmt: skip
    sizes = []
    for writer in (ArchiveWriter, ParquetArchiveWriter):
        with (
            tempfile.TemporaryDirectory() as folder,
            writer(folder, list(EVENT_TYPES.values()), topics) as archive,
        ):
            for r in records:
                archive.add(r)
            archive.commit()
            sizes.append(sum(p.stat().st_size for p in Path(folder).iterdir()))
    return Sizes(n, sizes[0], sizes[1])


def main() -> None:
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    console = Console()
    per_event = {(f"mix of {BATCH}", "single-object", "decode"), (f"mix of {BATCH}", "confluent", "decode"),
                 (f"mix of {BATCH}", "confluent", "prepare (ids known)")}  # fmt: skip
    results: list[dict[str, Any]] = []
    for key, runs in measure(cases(), clock=time.process_time).items():
        scale = BATCH if key in per_event else 1
        us = [r / scale for r in runs]
        results.append(
            {"input": key[0], "framing": key[1], "op": key[2], "us_per_event": round(statistics.median(us), 3),
             "runs_us": [round(r, 3) for r in us]}
        )  # fmt: skip
    table = Table(
        title=f"decode CPU µs per event (median of {REPEATS}), load {load_at_start[0]:.2f} at start"
    )
    for column in ("input", "framing", "op", "µs/event"):
        table.add_column(column, justify="right" if column == "µs/event" else "left")
    for r in results:
        table.add_row(r["input"], r["framing"], r["op"], f"{r['us_per_event']:.2f}")
    console.print(table)
    sizes = export_sizes(EXPORT_EVENTS)
    console.print(
        f"export of {sizes.events:,} simulated events: Avro (deflate) {sizes.avro_bytes / 1e6:.1f} MB, "
        f"Parquet (zstd) {sizes.parquet_bytes / 1e6:.1f} MB ({sizes.parquet_bytes / sizes.avro_bytes:.0%})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "framing",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeats": REPEATS,
        "machine": machine(load_at_start),
        "results": results,
        "export_sizes": sizes.__dict__,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
