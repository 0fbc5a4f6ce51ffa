"""What the worker reports of its storage (processors/worker/storage_stats.py) from real RocksDB databases
opened as the worker opens them, and how bench/history.py sorts table keys into families."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.history_breakdown import FAUST_OFFSET_KEY, Compacted, family, store_families
from processors.core.history import Order, OrderEntry
from processors.worker import storage_stats
from processors.worker.faust_app import ROCKSDB_OPTIONS
from processors.worker.faust_patches import TableOptions
from processors.worker.table_layout import (
    CUSTOMERS,
    IDS,
    ORDER_IDS,
    checkpoint_key,
    chunk_key,
    directory_key,
    encode_order,
    expiry_key,
    history_prefix,
    tail_key,
    watermark_key,
)

pytest.importorskip("rocksdict")


def test_rocksdb_figures_count_keys_and_deletions_and_the_shared_cache_once(tmp_path: Path) -> None:
    options = TableOptions(**ROCKSDB_OPTIONS, use_rocksdict=True)
    dbs = {p: options.open(tmp_path / f"t-{p}.db") for p in (0, 1)}
    try:
        for p, db in dbs.items():
            for i in range(1000):
                db[b"k%05d" % i] = b"v" * 50
            for i in range(300 + p * 100):
                del db[b"k%05d" % i]
            db.flush()
            for i in range(900, 1000):
                assert db[b"k%05d" % i] == b"v" * 50  # fills the block cache
        figures = storage_stats.snapshot(dbs, {"vendors": 3})
    finally:
        for db in dbs.values():
            db.close()
    per = figures["partitions"]
    assert [per[p]["sst_entries"] for p in ("0", "1")] == [1000, 1000]  # a flush keeps a key's last write
    assert [per[p]["sst_deletions"] for p in ("0", "1")] == [300, 400]
    totals = figures["rocksdb"]
    assert totals["sst_deletions"] == 700
    assert 0 < totals["block_cache"] == per["0"]["block_cache"] == per["1"]["block_cache"]
    assert figures["heap"]["vendors"] == 3
    assert figures["heap"]["python_blocks"] > 0
    storage_stats.write(tmp_path / storage_stats.FILE_NAME, figures)
    assert storage_stats.read(tmp_path) == figures


def test_table_keys_sort_into_their_families(tmp_path: Path) -> None:
    history = history_prefix("vendor-007")
    placed = encode_order(OrderEntry(Order(1, "c1", 100, (("p1", "books", 1, 100),), None, ()), ()))
    waiting = encode_order(OrderEntry(None, (5,)))
    assert orjson.loads(waiting)[0] is None
    keys = {
        history + IDS + b"e-1": (b"\x00" * 8, "ids"),
        history + ORDER_IDS + b"o-1": (placed, "orders"),
        history + ORDER_IDS + b"o-2": (waiting, "waiting cancellations"),
        history + ORDER_IDS + b"o-3": (None, "orders"),  # a tombstone: no value to tell
        history + CUSTOMERS + b"c1": (b"\x00" * 8, "customers' first orders"),
        expiry_key("vendor-007", IDS, 20_000, 0): (b"", "expiry index"),
        checkpoint_key("vendor-007"): (b"x", "checkpoints"),
        chunk_key("vendor-007", 3, 99, 0): (b"x", "checkpoints"),
        tail_key("vendor-007", 12): (b"x", "tails"),
        watermark_key(2): (b"{}", "watermarks"),
        directory_key(2): (b"[]", "watermarks"),
        FAUST_OFFSET_KEY: (b"41", "other"),
    }
    assert {k: family(k, v) for k, (v, _) in keys.items()} == {k: f for k, (_, f) in keys.items()}

    db = TableOptions(**ROCKSDB_OPTIONS, use_rocksdict=True).open(tmp_path / "v1" / "tables" / "t-0.db")
    try:
        for key, (value, _) in keys.items():
            if value is not None:
                db[key] = value
    finally:
        db.close()
    found = store_families(tmp_path)
    assert not found.error
    assert found.counts["orders"][0] == 1
    assert found.counts["waiting cancellations"][0] == 1
    assert found.counts["checkpoints"][:2] == [
        2,
        len(checkpoint_key("vendor-007")) + len(chunk_key("vendor-007", 3, 99, 0)) + 2,
    ]


def test_a_compacted_changelog_keeps_the_latest_live_record_of_each_key() -> None:
    history = history_prefix("vendor-007")
    compacted = Compacted()
    compacted.add(history + IDS + b"e-1", b"\x00" * 8)
    compacted.add(history + IDS + b"e-2", b"\x00" * 8)
    compacted.add(history + IDS + b"e-1", None)  # e-1 expired: its tombstone
    compacted.add(history + ORDER_IDS + b"o-1", encode_order(OrderEntry(None, (5,))))  # waiting
    placed = encode_order(OrderEntry(Order(1, "c1", 100, (("p1", "books", 1, 100),), None, ()), (5,)))
    compacted.add(history + ORDER_IDS + b"o-1", placed)  # then placed: the cancellation met it
    counts = compacted.families.counts
    assert counts["ids"] == [1, len(history + IDS + b"e-2") + 8, 0]
    assert counts["waiting cancellations"] == [0, 0, 0]
    assert counts["orders"] == [1, len(history + ORDER_IDS + b"o-1") + len(placed), 0]
    compacted.add(history + IDS + b"e-2", None)
    compacted.add(history + IDS + b"e-2", None)  # a second tombstone of a key already gone
    assert counts["ids"] == [0, 0, 0]
