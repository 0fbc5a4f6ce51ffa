"""How a vendor's fold state is kept in the worker's changelog-backed table: keys, values, restore.

Each vendor has a *live part* (`processors.core.state`: what a snapshot reads, bounded by the windows, months
and catalog) and a *history* (`processors.core.history`: ids, orders, first orders, bounded by the lateness
horizon, contract §4.1). Both live in the table, so the heap holds per vendor only the live part, the
history changed since the last checkpoint, and a bounded read cache. Keys (vendor ids never contain a
control character, `processors.intake.vendor_of`):

    <vendor>                          checkpoint: the live part, the history writes made since the
                                      previous checkpoint, and where the tail starts (`Checkpoint`)
    <vendor> 00 <seq:016x>            tail batch: the raw input messages the fold accepted since the
                                      previous write, with the clock each was applied at, and the
                                      vendor's offsets, clocks and floor after them (`TailBatch`)
    <vendor> 01 <v:016x><crc:08x><i:08x>  piece i of a checkpoint too big for one Kafka record
    <vendor> 02 i <event_id>          history: the occurred_at of the event that marked the id seen
    <vendor> 02 o <order_id>          history: the order id's `OrderEntry` (placement, waiting cancellations)
    <vendor> 02 c <customer_id>       history: the customer's first order (never deleted)
    <vendor> 02 x <i|o> <day:08x> <n:08x>  expiry index: the history keys written by one checkpoint whose
                                      time falls on that day (the n-th such record of the day), each
                                      as u32 length + the id
    00 "watermark:" <partition>       per table partition: {input topic: next offset to fold}
    00 "vendors:" <partition>         per table partition: the vendors stored in it

Writing a vendor. A flush writes one tail batch per changed vendor (only new bytes). When the tail
outgrows the live part (and at least `MIN_CHECKPOINT_BYTES`), or the history changed since the last
checkpoint passes `MAX_PENDING_HISTORY` keys, the flush writes a checkpoint instead, in this order:
1. the checkpoint record, which carries the history writes since the previous one;
2. the same history writes as keys of their own, an expiry index record per day they fall on, and the
   deletes of history entries the horizon has passed (found through the expiry index);
3. the tombstones of the tail batches and of the previous checkpoint's pieces.
One Kafka partition holds all of a vendor's records, so a crash part way leaves a prefix of this list.
A restore that finds the new checkpoint (1) re-applies the history writes it carries, which are puts
and deletes of whole values, so applying them twice changes nothing; one that does not find it sees
none of (2) either, and restores the previous checkpoint and its tail, which the history as of that
checkpoint is consistent with. The write cost per event is a constant factor of its bytes: its tail
bytes once, a share of a live part, and its history entries twice (in the checkpoint and as keys).

Forgetting. Each checkpoint files the history keys it writes under the day of their time (an id's
occurred_at; an order entry's latest time) in the expiry index. When a vendor's horizon passes a whole
day, the next checkpoint reads that day's index records and deletes the entries whose time lies before
the horizon (an entry written again later is filed under a later day too, and is kept). Ids are deleted
behind the earlier of the two topics' horizons (an event of either topic may repeat an id), and not at
all while one topic has no clock yet; order entries behind the `orders` horizon. Deletes are
tombstones in the changelog. A vendor forgets at its checkpoints, so its history holds its last `L`
days of events plus at most one checkpoint interval (until the tail outgrows the live part, at least
`MIN_CHECKPOINT_BYTES`, or `MAX_PENDING_HISTORY` keys): for a vendor with few events a day that
interval can span weeks of event time. The history's live bytes stop growing once the log is that
old; the live parts (day buckets) once it is 2 P days old (`bench/history.py` measures both).

Restore: the table's RocksDB partitions come back from the changelog (in bulk, `bulk_restore.py`; then
Faust's recovery for the rest). A vendor's state is then read on first use: the checkpoint (assembled from its pieces when it is a manifest), its history writes put back in
front of the table's, then the tail batches from the checkpoint's `tail` sequence number on, re-applied in
order with the same pure `apply` (deterministic, so the result equals the state that was flushed).
The offsets say which input is already contained, and are how the worker skips input that Kafka
delivers again after a crash (see docs/EFFECTIVELY_ONCE.md).

A watermark is written with every batch. After a rebalance the worker commits it as the group's offset
before Faust seeks there, so input is read from where the stored state ends.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from processors.core.history import Line, Order, OrderEntry
from processors.core.state import repeated_categories
from processors.exceptions import StateFormatError

SEP = b"\x00"
CHUNK = b"\x01"
HISTORY = b"\x02"
IDS, ORDER_IDS, CUSTOMERS, EXPIRY = b"i", b"o", b"c", b"x"
MIN_CHECKPOINT_BYTES = 64 * 1024
MAX_PENDING_HISTORY = 20_000
"""History keys changed since a vendor's last checkpoint before the next flush checkpoints it (the
worker's `HistoryMemory.pending_limit` bounds the sum over vendors)."""
CHUNK_BYTES = 512 * 1024  # half the default max record size, leaving room for the key and framing
MANIFEST = b"\x00chunks"
CHECKPOINT = b"\x00vp-checkpoint-2"
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
Write = tuple[bytes, bytes | None]
Get = Callable[[bytes], bytes | None]


# --- keys -------------------------------------------------------------------------------------------------


def checkpoint_key(vendor_id: str) -> bytes:
    return vendor_id.encode()


def tail_key(vendor_id: str, seq: int) -> bytes:
    return vendor_id.encode() + SEP + b"%016x" % seq


def chunk_key(vendor_id: str, version: int, crc: int, index: int) -> bytes:
    """Piece `index` of the checkpoint taken at `version` whose bytes have CRC-32 `crc`: two checkpoints
    at one version (a prune, new offsets) differ in `crc`, so a crash between them cannot mix pieces."""
    return vendor_id.encode() + CHUNK + b"%016x%08x%08x" % (version, crc, index)


def history_prefix(vendor_id: str) -> bytes:
    return vendor_id.encode() + HISTORY


def expiry_key(vendor_id: str, kind: bytes, day: int, n: int) -> bytes:
    return history_prefix(vendor_id) + EXPIRY + kind + b"%08x%08x" % (day, n)


def watermark_key(partition: int) -> bytes:
    return SEP + b"watermark:%d" % partition


def directory_key(partition: int) -> bytes:
    return SEP + b"vendors:%d" % partition


def is_chunk_key(key: bytes) -> bool:
    return CHUNK in key and HISTORY not in key.partition(CHUNK)[0]


def encode_watermark(positions: dict[str, int]) -> bytes:
    return orjson.dumps(positions, option=orjson.OPT_SORT_KEYS)


def decode_watermark(data: bytes | None) -> dict[str, int]:
    """{input topic: next offset to read}; empty when nothing was stored for the partition yet."""
    if data is None:
        return {}
    try:
        return {str(topic): int(offset) for topic, offset in orjson.loads(data).items()}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise StateFormatError(f"unreadable watermark: {exc}") from exc


def encode_directory(vendors: Iterable[str]) -> bytes:
    return orjson.dumps(sorted(vendors))


def decode_directory(data: bytes | None) -> set[str]:
    if data is None:
        return set()
    try:
        return {str(v) for v in orjson.loads(data)}
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise StateFormatError(f"unreadable vendor directory: {exc}") from exc


# --- checkpoints ------------------------------------------------------------------------------------------


def checkpoint_writes(vendor_id: str, data: bytes, version: int) -> list[Write]:
    """The records that store checkpoint `data`: itself, or its pieces followed by their manifest."""
    if len(data) <= CHUNK_BYTES:
        return [(checkpoint_key(vendor_id), data)]
    crc = zlib.crc32(data)
    pieces = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    writes: list[Write] = [(chunk_key(vendor_id, version, crc, i), piece) for i, piece in enumerate(pieces)]
    manifest = orjson.dumps(
        {"v": version, "crc": crc, "n": len(pieces), "size": len(data)}, option=orjson.OPT_SORT_KEYS
    )
    return [*writes, (checkpoint_key(vendor_id), MANIFEST + manifest)]


def assemble(vendor_id: str, checkpoint: bytes, get: Get) -> tuple[bytes, list[bytes]]:
    """The checkpoint's bytes (itself, or the pieces its manifest names, all of them or an error) and
    the keys of its pieces."""
    if not checkpoint.startswith(MANIFEST):
        return checkpoint, []
    try:
        manifest = orjson.loads(checkpoint[len(MANIFEST) :])
        version, crc = int(manifest["v"]), int(manifest["crc"])
        count, size = int(manifest["n"]), int(manifest["size"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StateFormatError(f"{vendor_id}: unreadable checkpoint manifest: {exc}") from exc
    keys = [chunk_key(vendor_id, version, crc, i) for i in range(count)]
    pieces = [get(key) for key in keys]
    missing = [i for i, piece in enumerate(pieces) if piece is None]
    if missing:
        raise StateFormatError(f"{vendor_id}: the checkpoint at version {version} lacks pieces {missing}")
    data = b"".join(p for p in pieces if p is not None)
    if len(data) != size or zlib.crc32(data) != crc:
        raise StateFormatError(f"{vendor_id}: the checkpoint's pieces do not add up to it")
    return data, keys


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint record: `CHECKPOINT`, u32 length + the live part (`processors.core.state_codec.dumps`), u32
    length + a JSON header {"tail": first tail seq, "expiry": {"i"|"o": {day: records}}}, then the
    history writes since the previous checkpoint, each as u32 key length, key, i32 value length (-1 for
    a delete), value. Keys are relative to the vendor's history prefix."""

    live: bytes
    tail: int
    expiry: dict[bytes, dict[int, int]]
    writes: tuple[Write, ...]

    def encode(self) -> bytes:
        header = orjson.dumps(
            {
                "tail": self.tail,
                "expiry": {
                    k.decode(): {str(d): n for d, n in sorted(v.items())} for k, v in self.expiry.items()
                },
            },
            option=orjson.OPT_SORT_KEYS,
        )
        parts = [CHECKPOINT, _U32.pack(len(self.live)), self.live, _U32.pack(len(header)), header]
        for key, value in self.writes:
            parts += (_U32.pack(len(key)), key)
            parts += (struct.pack(">i", -1),) if value is None else (struct.pack(">i", len(value)), value)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Checkpoint:
        if not data.startswith(CHECKPOINT):
            raise StateFormatError(
                "stored vendor checkpoint is not of this format (vp-checkpoint-2); run the vendorpulse "
                "version that wrote it, or start the worker on a new app id to re-fold the input"
            )
        try:
            pos = len(CHECKPOINT)
            (n,) = _U32.unpack_from(data, pos)
            live = data[pos + 4 : pos + 4 + n]
            pos += 4 + n
            (n,) = _U32.unpack_from(data, pos)
            header = orjson.loads(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
            writes: list[Write] = []
            while pos < len(data):
                (n,) = _U32.unpack_from(data, pos)
                key = data[pos + 4 : pos + 4 + n]
                pos += 4 + n
                (m,) = struct.unpack_from(">i", data, pos)
                pos += 4
                if m < 0:
                    writes.append((key, None))
                else:
                    writes.append((key, data[pos : pos + m]))
                    pos += m
            if pos != len(data):
                raise ValueError("a write runs past the end")
            expiry = {k.encode(): {int(d): int(c) for d, c in v.items()} for k, v in header["expiry"].items()}
            return cls(live, int(header["tail"]), expiry, tuple(writes))
        except (struct.error, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateFormatError(f"unreadable checkpoint: {exc}") from exc


# --- tail batches -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TailBatch:
    """Framing (integers big-endian): u32 length of a JSON header {"s": seq, "o": offsets, "c": clocks,
    "f": floor}, then per message an i64 clock (of the message's topic, as it was applied: the re-apply
    sees the same horizon), a u32 length and the message's bytes."""

    seq: int
    offsets: dict[str, int]
    clocks: list[int | None]
    floor: int
    messages: tuple[tuple[int, bytes], ...]

    def encode(self) -> bytes:
        header = orjson.dumps(
            {"s": self.seq, "o": self.offsets, "c": self.clocks, "f": self.floor}, option=orjson.OPT_SORT_KEYS
        )
        parts = [_U32.pack(len(header)), header]
        for clock, message in self.messages:
            parts += (_I64.pack(clock), _U32.pack(len(message)), message)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> TailBatch:
        try:
            (size,) = _U32.unpack_from(data, 0)
            header = orjson.loads(data[4 : 4 + size])
            pos = 4 + size
            messages = []
            while pos < len(data):
                (clock,) = _I64.unpack_from(data, pos)
                (n,) = _U32.unpack_from(data, pos + 8)
                messages.append((clock, data[pos + 12 : pos + 12 + n]))
                pos += 12 + n
            if pos != len(data):
                raise ValueError("a message runs past the end")
            return cls(
                int(header["s"]),
                {str(k): int(v) for k, v in header["o"].items()},
                [None if c is None else int(c) for c in header["c"]],
                int(header["f"]),
                tuple(messages),
            )
        except (struct.error, ValueError, KeyError, TypeError) as exc:
            raise StateFormatError(f"unreadable tail batch: {exc}") from exc


def encode_index(keys: Iterable[bytes]) -> bytes:
    """An expiry index record: the keys (relative to the vendor's history prefix, kind byte stripped),
    each as u32 length + bytes."""
    return b"".join(_U32.pack(len(k)) + k for k in keys)


def decode_index(data: bytes) -> list[bytes]:
    try:
        keys, pos = [], 0
        while pos < len(data):
            (n,) = _U32.unpack_from(data, pos)
            keys.append(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
        if pos != len(data):
            raise ValueError("a key runs past the end")
        return keys
    except (struct.error, ValueError) as exc:
        raise StateFormatError(f"unreadable expiry index record: {exc}") from exc


# --- history values ------------------------------------------------------------------------------------


def encode_order(entry: OrderEntry) -> bytes:
    p = entry.placed
    placed = None if p is None else [p.occurred_at, p.customer_id, p.total, p.items, p.cancelled_at]
    return orjson.dumps([placed, entry.waiting])


def decode_order(data: bytes) -> OrderEntry:
    placed, waiting = orjson.loads(data)
    if placed is None:
        return OrderEntry(None, tuple(waiting))
    at, customer, total, items, cancelled_at = placed
    lines: tuple[Line, ...] = tuple((p, c, q, u) for p, c, q, u in items)
    order = Order(at, customer, total, lines, cancelled_at, repeated_categories(lines))
    return OrderEntry(order, tuple(waiting))


def encode_value(key: bytes, value: Any) -> bytes | None:
    if value is None:
        return None
    if key[:1] == ORDER_IDS:
        return encode_order(value)
    return _I64.pack(value)


def decode_value(key: bytes, data: bytes) -> Any:
    if key[:1] == ORDER_IDS:
        return decode_order(data)
    return _I64.unpack(data)[0]
