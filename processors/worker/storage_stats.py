"""What the worker's storage holds, as RocksDB and the heap count it, written to `storage.json` in the
data directory every few seconds (`faust_app`), for an operator and for `bench/history.py`.

Per table partition, RocksDB's own view: live data (`estimate-live-data-size`) against the SST files
on disk, entries and deletions not yet compacted away (summed over the SST files' table properties),
and its memory (memtables, block cache, table readers: index and filter blocks; the block cache is
shared by all partitions, so its usage is counted once). For the heap: the
history cache and pending changes (`HistoryMemory`), the vendors in memory, Python's allocated blocks
and the C allocator's bytes in use, so that RSS can be split between RocksDB and Python.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FILE_NAME = "storage.json"
INT_PROPERTIES = {
    "live_data": "rocksdb.estimate-live-data-size",
    "sst_files": "rocksdb.total-sst-files-size",
    "keys": "rocksdb.estimate-num-keys",
    "memtables": "rocksdb.cur-size-all-mem-tables",
    "block_cache": "rocksdb.block-cache-usage",
    "table_readers": "rocksdb.estimate-table-readers-mem",
    "pending_compaction": "rocksdb.estimate-pending-compaction-bytes",
    "l0_files": "rocksdb.num-files-at-level0",
}
_TABLE_COUNTS = re.compile(r"# (entries|deletions|range deletions)=(\d+)")


def rocksdb_stats(db: Any) -> dict[str, int]:
    """RocksDB's properties of one database (module docstring); a property it lacks counts 0."""
    out = {name: int(db.property_int_value(prop) or 0) for name, prop in INT_PROPERTIES.items()}
    counts = dict(_TABLE_COUNTS.findall(db.property_value("rocksdb.aggregated-table-properties") or ""))
    out["sst_entries"] = int(counts.get("entries", 0))
    out["sst_deletions"] = int(counts.get("deletions", 0)) + int(counts.get("range deletions", 0))
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
            "keepcost",
        )
    ]  # fmt: skip


def malloc_in_use() -> int | None:
    """Bytes the C allocator has handed out and not got back (glibc's mallinfo2), or None elsewhere."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    mallinfo2 = getattr(libc, "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


def snapshot(dbs: Mapping[int, Any], heap: Mapping[str, int]) -> dict[str, Any]:
    """The figures to write: per partition RocksDB's, their sums, and the heap's."""
    partitions = {str(p): rocksdb_stats(db) for p, db in sorted(dbs.items())}
    totals: dict[str, int] = {}
    for stats in partitions.values():
        for name, value in stats.items():
            totals[name] = totals.get(name, 0) + value
    if partitions:  # one block cache serves every partition (`faust_patches.TableOptions`): each reports it
        totals["block_cache"] = max(stats["block_cache"] for stats in partitions.values())
    return {
        "rocksdb": totals,
        "partitions": partitions,
        "heap": {**heap, "python_blocks": sys.getallocatedblocks(), "malloc_in_use": malloc_in_use()},
    }


def write(path: Path, figures: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures))
    tmp.replace(path)


def read(data_dir: Path) -> dict[str, Any] | None:
    """The figures a worker last wrote into `data_dir`, if any."""
    try:
        figures: dict[str, Any] = json.loads((data_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return figures
