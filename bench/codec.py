"""Encode/decode throughput of the two codecs: `python -m bench.codec`.

One OrderPlaced with 3 items, through the codec (header, int range check, event building and
validation included) and through each library alone (body only, parsed schemas reused) to show the
codec's own overhead. Each case: a warm-up, then REPEATS timed runs of about RUN_SECONDS, interleaved
with the other cases; the median is reported, with the load average (the machine may be shared).
Writes bench/results/codec.json.
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import avro
import avro.io
import avro.schema
import fastavro
from rich.console import Console
from rich.table import Table

from schemas.codec import HEADER_SIZE, AvroCodec, Codec, FastavroCodec
from schemas.events import OrderItem, OrderPlaced

REPEATS = 9
RUN_SECONDS = 0.25
RESULTS = Path(__file__).resolve().parent / "results" / "codec.json"

EVENT = OrderPlaced(
    event_id="6f1c9b1e-3d2a-4c56-9a57-0e4b8f2d7c11",
    occurred_at=1_732_000_000_123,
    vendor_id="vendor-0042",
    order_id="5a3e2f10-8b7c-4d1e-a2f3-9c8b7a6d5e4f",
    customer_id="customer-001337",
    currency="EUR",
    total=12_345,
    items=(
        OrderItem("product-00017", "books", 2, 1_500),
        OrderItem("product-00231", "games", 1, 9_000),
        OrderItem("product-00005", "books", 3, 115),
    ),
)


def measure(
    cases: dict[tuple[str, str, str], Callable[[], object]],
    clock: Callable[[], float] = timeit.default_timer,
) -> dict[tuple[str, str, str], list[float]]:
    """Microseconds per call of each case: REPEATS runs each, interleaved so that load from other
    processes falls on every case alike; loop counts are fitted to RUN_SECONDS (also the warm-up).
    `clock=time.process_time` counts this process's CPU time instead of wall time."""
    timers = {key: timeit.Timer(fn, timer=clock) for key, fn in cases.items()}
    loops = {}
    for key, timer in timers.items():
        n, elapsed = timer.autorange()
        loops[key] = max(1, int(n * RUN_SECONDS / elapsed))
    runs: dict[tuple[str, str, str], list[float]] = {key: [] for key in cases}
    for _ in range(REPEATS):
        for key, timer in timers.items():
            runs[key].append(timer.timeit(loops[key]) / loops[key] * 1e6)
    return runs


def codec_cases(codec: Codec) -> dict[str, Callable[[], object]]:
    message = codec.encode(EVENT)
    return {"encode": lambda: codec.encode(EVENT), "decode": lambda: codec.decode(message)}


def fastavro_cases(codec: FastavroCodec) -> dict[str, Callable[[], object]]:
    parsed = fastavro.parse_schema(codec.schemas.latest("vendorpulse.events.OrderPlaced").plain)
    record = EVENT.to_record()
    body = codec.encode(EVENT)[HEADER_SIZE:]

    def encode() -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, record)
        return out.getvalue()

    return {"encode": encode, "decode": lambda: fastavro.schemaless_reader(io.BytesIO(body), parsed, None)}


def avro_cases(codec: AvroCodec) -> dict[str, Callable[[], object]]:
    plain = codec.schemas.latest("vendorpulse.events.OrderPlaced").plain
    schema = avro.schema.parse(json.dumps(plain))
    writer, reader = avro.io.DatumWriter(schema), avro.io.DatumReader(schema, schema)
    record = EVENT.to_record()
    body = codec.encode(EVENT)[HEADER_SIZE:]

    def encode() -> bytes:
        out = io.BytesIO()
        writer.write(record, avro.io.BinaryEncoder(out))
        return out.getvalue()

    return {"encode": encode, "decode": lambda: reader.read(avro.io.BinaryDecoder(io.BytesIO(body)))}


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "fastavro": fastavro.__version__,
        "avro": avro.__version__,
    }


def main() -> None:
    fast, ref = FastavroCodec(), AvroCodec()
    groups = {
        ("fastavro", "codec"): codec_cases(fast),
        ("avro", "codec"): codec_cases(ref),
        ("fastavro", "library only"): fastavro_cases(fast),
        ("avro", "library only"): avro_cases(ref),
    }
    cases = {(library, scope, op): fn for (library, scope), ops in groups.items() for op, fn in ops.items()}
    console = Console()
    about = machine()
    console.print(
        f"[bold]Codec benchmark[/] — OrderPlaced with 3 items, {len(fast.encode(EVENT))} bytes; "
        f"{about['platform']}, {about['cpu_count']} CPUs (load {about['load_average'][0]:.2f}), "
        f"Python {about['python']}, fastavro {about['fastavro']}, avro {about['avro']}; "
        f"median of {REPEATS} interleaved runs"
    )
    results: list[dict[str, Any]] = []
    for (library, scope, op), runs in measure(cases).items():
        median = statistics.median(runs)
        results.append(
            {
                "library": library,
                "scope": scope,
                "op": op,
                "us_per_record": round(median, 3),
                "records_per_s": round(1e6 / median),
                "runs_us": [round(r, 3) for r in runs],
            }
        )

    table = Table(title="records/s (µs/record), higher is better")
    table.add_column("scope")
    table.add_column("op")
    for library in ("avro", "fastavro"):
        table.add_column(library, justify="right")
    table.add_column("fastavro ÷ avro", justify="right")
    for scope in ("codec", "library only"):
        for op in ("encode", "decode"):
            row = {r["library"]: r for r in results if r["scope"] == scope and r["op"] == op}
            cells = [
                f"{row[lib]['records_per_s']:,} ({row[lib]['us_per_record']:.1f})"
                for lib in ("avro", "fastavro")
            ]
            speedup = row["avro"]["us_per_record"] / row["fastavro"]["us_per_record"]
            table.add_row(scope, op, *cells, f"{speedup:.1f}x")
    console.print(table)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "codec",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "event": "OrderPlaced, 3 items",
        "message_bytes": len(fast.encode(EVENT)),
        "repeats": REPEATS,
        "machine": about,
        "results": results,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    console.print(
        f"wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )


if __name__ == "__main__":
    main()
