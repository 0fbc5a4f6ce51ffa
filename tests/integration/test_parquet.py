"""Parquet exports from a real Kafka (both framings, with a real registry), checked as an analyst would:
DuckDB's revenue per vendor per month and pandas' counts equal the replayed snapshots."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd

from infra.simulate import SimConfig, produce
from processors.archive import run_export
from processors.replay import run_replay
from schemas.events import Event
from schemas.topics import Topics
from tests.fakes import kafka_settings
from tests.unit.test_parquet import revenue_per_vendor_per_month

DAY = 86_400_000


def test_parquet_export_sums_equal_the_snapshots(
    kafka_bootstrap: str, topics: Topics, schema_registry: str, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    config = SimConfig(
        vendors=3, products=10, customers=50, seed=5, start_ms=now - 200 * DAY, step_ms=200 * DAY // 3000
    )
    sent: list[tuple[str, Event]] = []
    asyncio.run(
        produce(kafka_bootstrap, topics.orders, topics.inventory, config, rate=0, count=3000, keep=sent,
                framing="mixed", registry_url=schema_registry)
    )  # fmt: skip
    settings = kafka_settings(kafka_bootstrap, topics, schema_registry_url=schema_registry)
    summary = run_export(settings, out_dir=tmp_path / "export", file_format="parquet")
    sent_by_type = Counter(type(e).__name__ for _, e in sent)
    assert summary.files == {f"{name}.parquet": n for name, n in sent_by_type.items()}
    assert not summary.skipped
    for name, n in sent_by_type.items():
        assert len(pd.read_parquet(tmp_path / "export" / f"{name}.parquet")) == n

    replayed = run_replay(settings, as_of_ms=now, out_path=tmp_path / "snapshots.parquet")
    by_month = {
        (s["vendorId"], m["month"]): (m["revenue"], m["orders"])
        for s in replayed.snapshots
        for m in s["monthlyTrends"]
        if m["orders"]
    }
    rows = duckdb.sql(
        revenue_per_vendor_per_month(tmp_path / "export")
    ).fetchall()  # 200 days: all in 12 months
    assert {(v, m): (r, n) for v, m, r, n in rows} == by_month
    assert len({m for _, m in by_month}) >= 7
    snapshots = pd.read_parquet(tmp_path / "snapshots.parquet")
    assert list(snapshots["vendorId"]) == [s["vendorId"] for s in replayed.snapshots]
    assert [m["revenue"]["current"] for m in snapshots["metrics"]] == [
        s["metrics"]["revenue"]["current"] for s in replayed.snapshots
    ]
