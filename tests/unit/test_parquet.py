"""Parquet exports and snapshots, read back as an analyst would: pandas and DuckDB (no broker here;
tests/integration/test_parquet.py exports from Kafka and checks the sums against replayed snapshots)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.simulate import EventGenerator, SimConfig
from processors.archive import ArchiveProblems, ArchiveWriter, read_archive
from processors.archive.parquet import UTC_MILLIS, ParquetArchiveWriter, arrow_schema, write_snapshots
from processors.core.apply import apply
from processors.core.snapshot import snapshot
from processors.core.state import new_state
from processors.replay import write_jsonl
from schemas.codec import FastavroCodec
from schemas.events import EVENT_TYPES, ORDER_EVENTS, Event, OrderCancelled, OrderPlaced
from schemas.topics import Topics

DAY = 86_400_000
START = 1_760_000_000_000
TOPICS = Topics.for_prefix("")
codec = FastavroCodec()


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = -1


def simulated(n: int = 3000) -> list[Event]:
    config = SimConfig(vendors=3, products=8, customers=50, seed=4, start_ms=START, step_ms=60 * DAY // n)
    return [e for _, e in islice(EventGenerator(config), n)]


def export(events: list[Event], out: Path, writer: type[ArchiveWriter]) -> dict[str, int]:
    with writer(out, list(EVENT_TYPES.values()), TOPICS) as archive:
        for offset, e in enumerate(events):
            topic = TOPICS.orders if isinstance(e, ORDER_EVENTS) else TOPICS.inventory
            archive.add(
                Consumed(topic, 0, offset, e.vendor_id.encode(), codec.encode(e), e.occurred_at + 500)
            )
        archive.add(Consumed(TOPICS.orders, 0, 10**6, b"vendor-001", b"garbage"))  # refused, listed
        return archive.commit()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Event], Path, Path]:
    events = simulated()
    parquet, avro = tmp_path_factory.mktemp("parquet"), tmp_path_factory.mktemp("avro")
    export(events, parquet, ParquetArchiveWriter)
    export(events, avro, ArchiveWriter)
    return events, parquet, avro


def test_one_file_per_event_type_with_proper_logical_types(exported: tuple[list[Event], Path, Path]) -> None:
    events, folder, _ = exported
    assert sorted(p.name for p in folder.iterdir()) == [
        "InventoryAdjusted.parquet", "OrderCancelled.parquet", "OrderPlaced.parquet", "ProductUpserted.parquet",
        "skipped.jsonl",
    ]  # fmt: skip
    schema = pq.read_schema(folder / "OrderPlaced.parquet")
    assert schema.field("occurred_at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("total").type == pa.int64()  # money in minor units, never floats
    item = schema.field("items").type.value_type
    assert [(f.name, f.type) for f in item] == [
        ("product_id", pa.string()), ("category", pa.string()), ("quantity", pa.int32()), ("unit_price", pa.int64()),
    ]  # fmt: skip
    assert pq.read_schema(folder / "OrderCancelled.parquet").field("reason").nullable
    assert schema.metadata[b"vendorpulse.topic"] == b"orders"
    orders = pd.read_parquet(folder / "OrderPlaced.parquet")
    placed = [e for e in events if isinstance(e, OrderPlaced)]
    assert len(orders) == len(placed)
    assert str(orders["occurred_at"].dt.tz) == "UTC"
    first = orders.iloc[0]
    assert first["occurred_at"] == datetime.fromtimestamp(placed[0].occurred_at / 1000, UTC)
    assert [dict(i) for i in first["items"]] == [
        {
            "product_id": i.product_id,
            "category": i.category,
            "quantity": i.quantity,
            "unit_price": i.unit_price,
        }
        for i in placed[0].items
    ]
    assert int(orders["total"].sum()) == sum(e.total for e in placed)
    # where each record was in the log: its Kafka timestamp (UTC), partition and offset
    assert schema.field("kafka_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert first["kafka_timestamp"] == datetime.fromtimestamp((placed[0].occurred_at + 500) / 1000, UTC)
    assert (int(first["kafka_partition"]), int(first["kafka_offset"])) == (0, events.index(placed[0]))
    skipped = [orjson.loads(line) for line in (folder / "skipped.jsonl").read_bytes().splitlines()]
    assert [s["code"] for s in skipped] == ["bad_marker"]


def test_parquet_holds_the_same_rows_as_the_avro_export(exported: tuple[list[Event], Path, Path]) -> None:
    _, parquet, avro = exported
    from_avro = list(read_archive([avro], ArchiveProblems()))
    for name, event_type in EVENT_TYPES.items():
        short = name.rpartition(".")[2]
        rows = pq.read_table(parquet / f"{short}.parquet").to_pylist()
        expected = [
            {
                **a.event.to_record(),
                "kafka_timestamp": a.ts,
                "kafka_partition": a.partition,
                "kafka_offset": a.offset,
            }
            for a in from_avro
            if isinstance(a.event, event_type)
        ]
        for row in rows:
            row["occurred_at"] = int(row["occurred_at"].timestamp() * 1000)
            row["kafka_timestamp"] = int(row["kafka_timestamp"].timestamp() * 1000)
        assert rows == expected, short


def test_duckdb_revenue_per_vendor_per_month_equals_the_snapshots(
    exported: tuple[list[Event], Path, Path],
) -> None:
    events, folder, _ = exported
    as_of = START + 61 * DAY
    states = {v: new_state(v) for v in {e.vendor_id for e in events}}
    for e in events:
        apply(states[e.vendor_id], e)
    expected = {
        (v, m["month"]): (m["revenue"], m["orders"])
        for v, state in states.items()
        for m in snapshot(state, as_of, 30)["monthlyTrends"]
        if m["orders"]
    }
    assert any(isinstance(e, OrderCancelled) for e in events)
    rows = duckdb.sql(revenue_per_vendor_per_month(folder)).fetchall()
    assert {(v, m): (r, n) for v, m, r, n in rows} == expected


def revenue_per_vendor_per_month(folder: Path) -> str:
    """The query docs/REPLAY.md shows: first placements of orders never cancelled."""
    return f"""
        WITH placed AS (
            SELECT *, row_number() OVER (PARTITION BY vendor_id, order_id ORDER BY file_row_number) AS nth
            FROM read_parquet('{folder}/OrderPlaced.parquet', file_row_number = true)
        ),
        cancelled AS (SELECT DISTINCT vendor_id, order_id FROM '{folder}/OrderCancelled.parquet')
        SELECT vendor_id, strftime(occurred_at AT TIME ZONE 'UTC', '%Y-%m') AS month,
               sum(total) AS revenue, count(*) AS orders
        FROM placed ANTI JOIN cancelled USING (vendor_id, order_id)
        WHERE nth = 1
        GROUP BY ALL ORDER BY ALL
    """


def test_snapshots_to_parquet_read_back_like_the_json_lines(tmp_path: Path) -> None:
    events = simulated(1500)
    states = {v: new_state(v) for v in sorted({e.vendor_id for e in events})}
    for e in events:
        apply(states[e.vendor_id], e)
    snaps = [snapshot(s, START + 40 * DAY, 30) for s in states.values()]
    write_snapshots(tmp_path / "snapshots.parquet", snaps)
    write_jsonl(tmp_path / "snapshots.jsonl", snaps)
    table = pq.read_table(tmp_path / "snapshots.parquet")
    assert table.schema.field("asOf").type == UTC_MILLIS
    rows = table.to_pylist()
    for row in rows:
        row["asOf"] = row["asOf"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert rows == [orjson.loads(line) for line in (tmp_path / "snapshots.jsonl").read_bytes().splitlines()]
    revenue = duckdb.sql(
        f"SELECT vendorId, metrics.revenue.current FROM '{tmp_path}/snapshots.parquet' ORDER BY 1"
    ).fetchall()
    assert revenue == [(s["vendorId"], s["metrics"]["revenue"]["current"]) for s in snaps]
    frame = pd.read_parquet(tmp_path / "snapshots.parquet")
    assert list(frame["vendorId"]) == [s["vendorId"] for s in snaps]


def test_avro_types_map_to_arrow_columns() -> None:
    record: dict[str, Any] = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "maybe", "type": ["null", "int"], "default": None},
            {"name": "flags", "type": {"type": "array", "items": "boolean"}},
        ],
    }
    schema = arrow_schema(record)
    assert [(f.name, f.type, f.nullable) for f in schema] == [
        ("at", UTC_MILLIS, False), ("maybe", pa.int32(), True), ("flags", pa.list_(pa.bool_()), False),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unions of null and one type"):
        arrow_schema({"fields": [{"name": "x", "type": ["int", "string"]}]})
