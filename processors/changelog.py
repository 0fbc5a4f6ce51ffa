"""How a vendor's fold state is kept in the worker's changelog-backed table: keys, values, restore.

Each vendor has a *live part* (`processors.core.state`: what a snapshot reads, bounded by the windows, months
and catalog) and a *history* (`processors.core.history`: ids, orders, first orders, bounded by the lateness
horizon, contract §4.1). Both live in the table, so the heap holds per vendor only the live part, the
history changed since the last checkpoint, and a bounded read cache. Keys (vendor ids never contain a
control character, `processors.fold.vendor_of`):

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
                                      time falls on that day (the n-th such record of the day)
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
tombstones in the changelog, so the changelog's live bytes stop growing once the log is `L` days old.

Restore: the checkpoint (assembled from its pieces when it is a manifest), its history writes put back in
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
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from processors.core.apply import apply, clock_of
from processors.core.calendar import DAY_MS
from processors.core.history import Line, Order, OrderEntry
from processors.core.state import (
    DEFAULT_LATENESS_DAYS,
    INVENTORY,
    NO_FLOOR,
    ORDERS,
    State,
    horizon,
    new_state,
    repeated_categories,
)
from processors.core.state_codec import dumps, loads
from processors.exceptions import StateFormatError
from schemas.codec import Codec

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


# --- the history in the table -----------------------------------------------------------------------------

DELETED: Any = object()


@dataclass
class HistoryMemory:
    """What the heap holds of the history, across the worker's vendors, and its bounds.

    `cache`: values read from the table, kept decoded (first orders of returning customers, orders a
    cancellation is about to meet), by table key, at most `cache_limit`, the oldest read first out.
    `pending`: history keys changed since their vendor's last checkpoint; past `pending_limit` the
    worker checkpoints the vendors that hold the most (`processors.fold.Folder.flush`)."""

    cache_limit: int = 100_000
    pending_limit: int = 400_000
    cache: OrderedDict[bytes, Any] = field(default_factory=OrderedDict)
    pending: int = 0


def _encode_order(entry: OrderEntry) -> bytes:
    p = entry.placed
    placed = None if p is None else [p.occurred_at, p.customer_id, p.total, p.items, p.cancelled_at]
    return orjson.dumps([placed, entry.waiting])


def _decode_order(data: bytes) -> OrderEntry:
    placed, waiting = orjson.loads(data)
    if placed is None:
        return OrderEntry(None, tuple(waiting))
    at, customer, total, items, cancelled_at = placed
    lines: tuple[Line, ...] = tuple((p, c, q, u) for p, c, q, u in items)
    order = Order(at, customer, total, lines, cancelled_at, repeated_categories(lines))
    return OrderEntry(order, tuple(waiting))


def _encode(key: bytes, value: Any) -> bytes | None:
    if value is DELETED:
        return None
    if key[:1] == ORDER_IDS:
        return _encode_order(value)
    return _I64.pack(value)


def _decode(key: bytes, data: bytes) -> Any:
    if key[:1] == ORDER_IDS:
        return _decode_order(data)
    return _I64.unpack(data)[0]


@dataclass
class StoredHistory:
    """`processors.core.history.History` over the worker's table: changes since the last checkpoint in the heap
    (`pending`, relative keys -> values), then a small cache of decoded table values, then the table."""

    prefix: bytes
    get: Get
    memory: HistoryMemory = field(default_factory=HistoryMemory)
    pending: dict[bytes, Any] = field(default_factory=dict)
    unfiled: set[bytes] = field(default_factory=set)
    """Keys of `pending` not yet in the expiry index (those a restore put back already are)."""
    raw: dict[bytes, bytes | None] = field(default_factory=dict)
    """Expiry index records a restore put back, to write again."""
    expiry: dict[bytes, dict[int, int]] = field(default_factory=lambda: {IDS: {}, ORDER_IDS: {}})
    reads: int = 0
    """Table reads (cache misses), for the benchmarks."""

    def _value(self, key: bytes) -> Any:
        value = self.pending.get(key)
        if value is not None:
            return None if value is DELETED else value
        full = self.prefix + key
        cache = self.memory.cache
        value = cache.get(full)
        if value is not None:
            return value
        self.reads += 1
        data = self.get(full)
        if data is None:
            return None
        value = _decode(key, data)
        if len(cache) >= self.memory.cache_limit:
            cache.popitem(last=False)
        cache[full] = value
        return value

    def _set_pending(self, key: bytes, value: Any) -> None:
        if key not in self.pending:
            self.memory.pending += 1
        self.pending[key] = value

    def _put(self, key: bytes, value: Any) -> None:
        self._set_pending(key, value)
        self.unfiled.add(key)
        self.memory.cache.pop(self.prefix + key, None)

    def seen(self, event_id: str) -> int | None:
        value: int | None = self._value(IDS + event_id.encode())
        return value

    def mark_seen(self, event_id: str, occurred_at: int) -> None:
        self._put(IDS + event_id.encode(), occurred_at)

    def order(self, order_id: str) -> OrderEntry | None:
        entry: OrderEntry | None = self._value(ORDER_IDS + order_id.encode())
        if entry is None:
            return None
        # A copy: the caller changes it and hands it back, and the cache must not see the change first.
        p = entry.placed
        placed = (
            None
            if p is None
            else Order(p.occurred_at, p.customer_id, p.total, p.items, p.cancelled_at, p.repeated)
        )
        return OrderEntry(placed, entry.waiting)

    def put_order(self, order_id: str, entry: OrderEntry) -> None:
        self._put(ORDER_IDS + order_id.encode(), entry)

    def first_order(self, customer_id: str) -> int | None:
        value: int | None = self._value(CUSTOMERS + customer_id.encode())
        return value

    def set_first_order(self, customer_id: str, occurred_at: int) -> None:
        self._put(CUSTOMERS + customer_id.encode(), occurred_at)

    # -- checkpoints ---------------------------------------------------------------------------------------

    def restore_writes(self, writes: Iterable[Write]) -> None:
        """Put back the history writes a checkpoint carries (they may not all have reached the table)."""
        for key, value in writes:
            if key[:1] == EXPIRY:
                self.raw[key] = value
            else:
                self._set_pending(key, DELETED if value is None else _decode(key, value))

    def forget(self, state: State) -> None:
        """Delete the entries the horizon has passed, through the expiry index (see the module docstring)."""
        h_orders = horizon(state, ORDERS)
        h_ids = min(h_orders, horizon(state, INVENTORY))
        for kind, h in ((IDS, h_ids), (ORDER_IDS, h_orders)):
            if h == NO_FLOOR:
                continue
            days = self.expiry[kind]
            for day in sorted(d for d in days if (d + 1) * DAY_MS <= h):
                for n in range(days.pop(day)):
                    index = self.prefix + EXPIRY + kind + b"%08x%08x" % (day, n)
                    relative = index[len(self.prefix) :]
                    data = self.raw.pop(relative) if relative in self.raw else self.get(index)
                    self._set_pending(relative, DELETED)
                    self.unfiled.discard(relative)
                    for key in orjson.loads(data) if data else ():
                        k = kind + key.encode()
                        value = self._value(k)
                        if value is not None and _time_of(kind, value) < h:
                            self._set_pending(k, DELETED)
                            self.unfiled.discard(k)
                            self.memory.cache.pop(self.prefix + k, None)

    def discard(self) -> None:
        """Let go of what the heap holds for this vendor (it is dropped from memory)."""
        self.memory.pending -= len(self.pending)
        self.pending = {}

    def checkpoint_writes(self) -> list[Write]:
        """The history writes since the last checkpoint, with the expiry index records that file them; the
        heap's pending changes are cleared (the caller writes them to the table at once)."""
        filed: dict[tuple[bytes, int], list[str]] = {}
        for key in self.unfiled:
            kind = key[:1]
            if kind == CUSTOMERS:
                continue
            value = self.pending[key]
            if value is DELETED:
                continue
            filed.setdefault((kind, _time_of(kind, value) // DAY_MS), []).append(key[1:].decode())
        writes: list[Write] = [(key, _encode(key, value)) for key, value in self.pending.items()]
        writes += self.raw.items()
        self.memory.pending -= len(self.pending)
        for (kind, day), keys in sorted(filed.items()):
            n = self.expiry[kind].get(day, 0)
            self.expiry[kind][day] = n + 1
            writes.append((EXPIRY + kind + b"%08x%08x" % (day, n), orjson.dumps(sorted(keys))))
        self.pending, self.unfiled, self.raw = {}, set(), {}
        return writes


def _time_of(kind: bytes, value: Any) -> int:
    if kind == ORDER_IDS:
        expires: int = value.expires()
        return expires
    time: int = value
    return time


# --- a vendor in the worker -------------------------------------------------------------------------------


def restore(
    vendor_id: str, partition: int, get: Get, codec: Codec, lateness_days: int = DEFAULT_LATENESS_DAYS,
    memory: HistoryMemory | None = None,
) -> VendorLog:  # fmt: skip
    """The vendor's state as last flushed (`get` reads its table partition): its checkpoint, then its tail
    batches re-applied. A vendor never stored comes back empty."""
    history = StoredHistory(history_prefix(vendor_id), get, memory if memory is not None else HistoryMemory())
    stored = get(checkpoint_key(vendor_id))
    log = VendorLog(new_state(vendor_id, history, lateness_days), partition)
    if stored is not None:
        data, pieces = assemble(vendor_id, stored, get)
        checkpoint = Checkpoint.decode(data)
        log.state = loads(checkpoint.live, history, lateness_days)
        history.restore_writes(checkpoint.writes)
        history.expiry = {IDS: {}, ORDER_IDS: {}, **checkpoint.expiry}
        log.tail_seq = checkpoint.tail
        log.checkpoint_bytes = len(data)
        log.live_bytes = len(checkpoint.live)
        log.chunk_keys = pieces
    state = log.state
    while (tail := get(tail_key(vendor_id, log.tail_seq))) is not None:
        batch = TailBatch.decode(tail)
        state.floor = batch.floor
        for clock, message in batch.messages:
            event = codec.decode(message, validate=False)
            outcome = apply(state, event, clock)
            if not outcome.changed:
                raise StateFormatError(
                    f"tail batch {batch.seq} of {vendor_id} did not re-apply: {outcome.reason}"
                )
        for source, offset in batch.offsets.items():  # offsets only grow: a stale batch cannot regress them
            state.offsets[source] = max(offset, state.offsets.get(source, -1))
        state.clocks = list(batch.clocks)
        log.tail_keys.append(tail_key(vendor_id, log.tail_seq))
        log.tail_bytes += len(tail)
        log.tail_seq += 1
    return log


@dataclass
class VendorLog:
    """What the worker has in memory for one vendor besides its state: the unflushed tail."""

    state: State
    partition: int
    checkpoint_bytes: int = 0
    live_bytes: int = 0
    tail_bytes: int = 0
    tail_seq: int = 0
    tail_keys: list[bytes] = field(default_factory=list)
    chunk_keys: list[bytes] = field(default_factory=list)
    """pieces stored for this vendor: deleted at the next checkpoint"""
    pending: list[tuple[int, bytes]] = field(default_factory=list)
    offsets_dirty: bool = False
    force_checkpoint: bool = False

    @property
    def history(self) -> StoredHistory:
        history = self.state.history
        assert isinstance(history, StoredHistory)
        return history

    def accepted(self, message: bytes, event_clock: int) -> None:
        """An input message changed the state; `event_clock` is its topic's clock after it."""
        self.pending.append((event_clock, message))
        self.offsets_dirty = True

    def applied(self, message: bytes, event: Any) -> None:
        """`accepted` with the clock of the event's topic as it stands now."""
        clock = self.state.clocks[clock_of(event)]
        self.accepted(message, -1 if clock is None else clock)

    def flush(self, force_checkpoint: bool = False) -> list[Write]:
        """The table writes that make the stored state equal the in-memory one; resets the tail."""
        if not (self.offsets_dirty or force_checkpoint):
            return []
        vendor = self.state.vendor_id
        pending_bytes = sum(len(m) for _, m in self.pending)
        history = self.history
        if (
            force_checkpoint
            or self.tail_bytes + pending_bytes > max(MIN_CHECKPOINT_BYTES, self.live_bytes)
            or len(history.pending) > MAX_PENDING_HISTORY
        ):
            history.forget(self.state)
            prefix = history.prefix
            relative = history.checkpoint_writes()
            live = dumps(self.state)
            data = Checkpoint(live, self.tail_seq, history.expiry, tuple(relative)).encode()
            writes = checkpoint_writes(vendor, data, self.state.version)
            pieces = [key for key, _ in writes if is_chunk_key(key)]
            writes += [(prefix + key, value) for key, value in relative]
            writes += [(key, None) for key in self.tail_keys]
            writes += [(key, None) for key in self.chunk_keys if key not in pieces]
            self.checkpoint_bytes, self.live_bytes, self.tail_bytes, self.tail_keys = (
                len(data),
                len(live),
                0,
                [],
            )
            self.chunk_keys = pieces
        else:
            key = tail_key(vendor, self.tail_seq)
            state = self.state
            batch = TailBatch(
                self.tail_seq, dict(state.offsets), list(state.clocks), state.floor, tuple(self.pending)
            )
            value = batch.encode()
            writes = [(key, value)]
            self.tail_keys.append(key)
            self.tail_bytes += len(value)
            self.tail_seq += 1
        self.pending = []
        self.offsets_dirty = False
        return writes
