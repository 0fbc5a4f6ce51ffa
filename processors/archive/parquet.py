"""Parquet for analysts (pandas, DuckDB, Spark): exports of the input topics and replayed snapshots.

`vendorpulse export --format parquet` writes one file per event type, `<dir>/<Name>.parquet`, with the
same records, checks and `skipped.jsonl` as the Avro export (`ParquetArchiveWriter` is an
`ArchiveWriter` that only writes another format). Column types follow the published `.avsc` (reader
version), mapped once (`arrow_schema`):

| Avro | Parquet / Arrow |
|---|---|
| `long` with `timestamp-millis` (occurred_at) | `timestamp[ms, tz=UTC]` |
| `long` (money: total, unit_price, in minor units) | `int64` |
| `int` (quantity, delta, thresholds) | `int32` |
| `string`, `boolean` | `string`, `bool` |
| union `{null, X}` | nullable X |
| `array` of `OrderItem` (items) | `list<struct<product_id, category, quantity, unit_price>>` |

Rows are written in row groups of `ROW_GROUP` (zstd); the header metadata of the Avro export is the
Parquet file's key-value metadata (`vendorpulse.topic`, `vendorpulse.complete`, ...).

`replay --out FILE.parquet` writes the snapshots of contract §5, one row per vendor, with the JSON's
camelCase names and nesting (`metrics.revenue.current` is a nested column; `asOf` a UTC timestamp).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from processors.archive.layout import ArchiveWriter
from schemas.events import Event

SUFFIX = ".parquet"
ROW_GROUP = 64 * 1024
COMPRESSION = "zstd"
UTC_MILLIS = pa.timestamp("ms", tz="UTC")
_PRIMITIVES = {
    "string": pa.string(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
}


def arrow_type(avro: Any) -> tuple[pa.DataType, bool]:
    """The Arrow type of an Avro type (as in an `.avsc`), and whether it is nullable."""
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise ValueError(f"only unions of null and one type map to a column, not {avro}")
        return arrow_type(branches[0])[0], True
    if isinstance(avro, str):
        return _PRIMITIVES[avro], False
    kind = avro["type"]
    if avro.get("logicalType") == "timestamp-millis" and kind == "long":
        return UTC_MILLIS, False
    if kind == "array":
        return pa.list_(arrow_type(avro["items"])[0]), False
    if kind == "record":
        return pa.struct([_field(f) for f in avro["fields"]]), False
    return arrow_type(kind)


def _field(avro_field: Mapping[str, Any]) -> pa.Field:
    kind, nullable = arrow_type(avro_field["type"])
    return pa.field(avro_field["name"], kind, nullable=nullable)


def arrow_schema(record: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> pa.Schema:
    """The Arrow schema of an Avro record schema: one column per field."""
    return pa.schema([_field(f) for f in record["fields"]], metadata=dict(metadata or {}))


class _ParquetFile:
    """Rows of one event type into one Parquet file, a row group at a time (fastavro Writer's interface)."""

    def __init__(self, sink: IO[bytes], schema: pa.Schema) -> None:
        self._schema = schema
        self._rows: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(sink, schema, compression=COMPRESSION)

    def write(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= ROW_GROUP:
            self._write_group()

    def _write_group(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def flush(self) -> None:
        """The rest of the rows and the footer: the file is complete."""
        self._write_group()
        self._writer.close()


class ParquetArchiveWriter(ArchiveWriter):
    """The export's records as one Parquet file per event type (see the module docstring)."""

    suffix = SUFFIX

    def _open_writer(
        self, event_type: type[Event], path: Path, metadata: dict[str, str], codec_name: str
    ) -> Any:
        schema = arrow_schema(self._reader_schema(event_type), metadata)
        return _ParquetFile(self._open(path), schema)


# --- snapshots -------------------------------------------------------------------------------------------

_TREND = pa.struct(
    [("current", pa.int64()), ("previous", pa.int64()), ("trend", pa.string()), ("percentage", pa.float64())]
)
SNAPSHOT_SCHEMA = pa.schema(
    [
        ("vendorId", pa.string()),
        ("asOf", UTC_MILLIS),
        ("periodDays", pa.int32()),
        ("currency", pa.string()),
        ("version", pa.int64()),
        (
            "metrics",
            pa.struct(
                [
                    ("revenue", _TREND),
                    ("orders", _TREND),
                    (
                        "products",
                        pa.struct([(k, pa.int64()) for k in ("total", "active", "lowStock", "outOfStock")]),
                    ),
                    ("customers", pa.struct([(k, pa.int64()) for k in ("total", "new", "returning")])),
                ]
            ),
        ),
        (
            "topProducts",
            pa.list_(
                pa.struct(
                    [
                        ("productId", pa.string()),
                        ("name", pa.string()),
                        ("revenue", pa.int64()),
                        ("units", pa.int64()),
                    ]
                )
            ),
        ),
        (
            "salesByCategory",
            pa.list_(
                pa.struct(
                    [
                        ("category", pa.string()),
                        ("revenue", pa.int64()),
                        ("orders", pa.int64()),
                        ("percentage", pa.float64()),
                    ]
                )
            ),
        ),
        (
            "monthlyTrends",
            pa.list_(pa.struct([("month", pa.string()), ("revenue", pa.int64()), ("orders", pa.int64())])),
        ),
    ],
    metadata={"vendorpulse.content": "snapshots (contract §5), one row per vendor"},
)
"""Contract §5 as columns, camelCase as in the JSON."""


def write_snapshots(path: str | Path, snapshots: Iterable[dict[str, Any]]) -> None:
    """One row per snapshot; written whole or not at all (temporary file, then rename)."""
    rows = [{**s, "asOf": datetime.fromisoformat(str(s["asOf"]).replace("Z", "+00:00"))} for s in snapshots]
    table = pa.Table.from_pylist(rows, schema=SNAPSHOT_SCHEMA)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression=COMPRESSION)
    tmp.replace(target)
