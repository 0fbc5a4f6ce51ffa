"""How a vendor's fold state is kept in the worker's changelog-backed table: keys, values, restore.

Writing the whole state on every change would cost more as the vendor's history grows (its dedupe ids
grow with every event), so the table holds, per vendor, one *checkpoint* and a short *tail*:

    key  b"<vendor_id>"                        -> checkpoint: `processors.state.dumps(state)`
    key  b"<vendor_id>\\x00<first_version:016x>" -> tail batch: the raw input messages (Avro single-object
                                                  bytes, exactly as consumed) of the events the fold
                                                  accepted since the previous write, and the input
                                                  offsets after them

A flush writes one tail batch per changed vendor: only new bytes. When a vendor's tail outgrows its
last checkpoint (and at least `MIN_CHECKPOINT_BYTES`), the flush writes a new checkpoint and deletes
(tombstones) the tail keys, so the write cost per event stays a constant factor of the event's own size
(about twice: its tail bytes, and as many again of checkpoint) and a restore re-applies at most a
checkpoint's worth of events (a few thousand per MB, at the core's 100,000+ events/s). Session 2 wrote
a checkpoint at a quarter of that: five times the event's bytes, and the worker's largest writer.

A checkpoint larger than `CHUNK_BYTES` does not fit one Kafka record (the producer's and the broker's
default limit is 1 MB; a busy vendor's state passes that within hours), so it is stored in pieces:

    key  b"<vendor_id>\\x01<version:016x><crc:08x><i:08x>"  -> bytes i*CHUNK_BYTES.. of the checkpoint
                                                  taken at `version`, whose bytes have CRC-32 `crc`
    key  b"<vendor_id>"                          -> manifest: b"\\x00chunks" + `{"v": version, "crc": crc,
                                                  "n": count, "size": total bytes}`

written in that order (one changelog partition keeps it), then the tombstones of the previous
checkpoint's pieces: a crash part way leaves the previous manifest and pieces intact, and pieces no
manifest names are deleted at the next checkpoint.

Restore: `loads(checkpoint)` (assembled from its pieces when it is a manifest), then re-apply the tail batches' events in version order with the same
pure `apply` (deterministic, so the result equals the state that was flushed), and take the offsets of
the last batch. The offsets say which input is already contained, and are how the worker skips input
that Kafka delivers again after a crash (see docs/EFFECTIVELY_ONCE.md).

Tail value framing (all integers big-endian): u32 length of a JSON header, the header
`{"v": first_version, "o": {"topic:partition": offset}}`, then per message a u32 length and its bytes.

Besides the vendors, each partition of the table holds one *watermark*:

    key  b"\\x00watermark:<partition>"        -> `{"<input topic>": next_offset}`: every input record of
                                                  that partition below `next_offset` is contained in the
                                                  stored vendor states (or was refused to the DLQ)

It is written with every batch. After a rebalance the worker commits it as the group's offset before
Faust seeks there, so input is read from where the stored state ends (docs/EFFECTIVELY_ONCE.md).
Vendor ids never contain NUL, so a watermark key never collides with a vendor's.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from processors.exceptions import StateFormatError
from processors.metrics import Status, apply
from processors.state import State, dumps, loads, new_state
from schemas.codec import Codec

SEP = b"\x00"
CHUNK = b"\x01"
MIN_CHECKPOINT_BYTES = 64 * 1024
CHUNK_BYTES = 512 * 1024  # half the default max record size, leaving room for the key and framing
MANIFEST = b"\x00chunks"
_U32 = struct.Struct(">I")


def checkpoint_key(vendor_id: str) -> bytes:
    return vendor_id.encode()


def tail_key(vendor_id: str, first_version: int) -> bytes:
    return vendor_id.encode() + SEP + b"%016x" % first_version


def chunk_key(vendor_id: str, version: int, crc: int, index: int) -> bytes:
    """Piece `index` of the checkpoint taken at `version` whose bytes have CRC-32 `crc`: two checkpoints
    at one version (a prune, new offsets) differ in `crc`, so a crash between them cannot mix pieces."""
    return vendor_id.encode() + CHUNK + b"%016x%08x%08x" % (version, crc, index)


def is_chunk_key(key: bytes) -> bool:
    return CHUNK in key


def checkpoint_writes(vendor_id: str, data: bytes, version: int) -> list[tuple[bytes, bytes | None]]:
    """The records that store checkpoint `data`: itself, or its pieces followed by their manifest."""
    if len(data) <= CHUNK_BYTES:
        return [(checkpoint_key(vendor_id), data)]
    crc = zlib.crc32(data)
    pieces = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    writes: list[tuple[bytes, bytes | None]] = [
        (chunk_key(vendor_id, version, crc, i), piece) for i, piece in enumerate(pieces)
    ]
    manifest = orjson.dumps(
        {"v": version, "crc": crc, "n": len(pieces), "size": len(data)}, option=orjson.OPT_SORT_KEYS
    )
    return [*writes, (checkpoint_key(vendor_id), MANIFEST + manifest)]


def assemble(vendor_id: str, checkpoint: bytes, chunks: Mapping[bytes, bytes]) -> bytes:
    """The checkpoint's bytes: itself, or the pieces its manifest names (all of them, or an error)."""
    if not checkpoint.startswith(MANIFEST):
        return checkpoint
    try:
        manifest = orjson.loads(checkpoint[len(MANIFEST) :])
        version, crc = int(manifest["v"]), int(manifest["crc"])
        count, size = int(manifest["n"]), int(manifest["size"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StateFormatError(f"{vendor_id}: unreadable checkpoint manifest: {exc}") from exc
    keys = [chunk_key(vendor_id, version, crc, i) for i in range(count)]
    missing = [i for i, key in enumerate(keys) if key not in chunks]
    if missing:
        raise StateFormatError(f"{vendor_id}: the checkpoint at version {version} lacks pieces {missing}")
    data = b"".join(chunks[key] for key in keys)
    if len(data) != size or zlib.crc32(data) != crc:
        raise StateFormatError(f"{vendor_id}: the checkpoint's pieces do not add up to it")
    return data


def watermark_key(partition: int) -> bytes:
    return SEP + b"watermark:%d" % partition


def is_vendor_key(key: bytes) -> bool:
    """False for the partitions' watermark keys."""
    return not key.startswith(SEP)


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


def split_key(key: bytes) -> tuple[str, int | None]:
    """(vendor_id, first_version of a tail batch, or None for a checkpoint or a checkpoint piece)."""
    if CHUNK in key:
        return key.partition(CHUNK)[0].decode(), None
    vendor, sep, version = key.partition(SEP)
    return vendor.decode(), (int(version, 16) if sep else None)


@dataclass(frozen=True, slots=True)
class TailBatch:
    first_version: int
    offsets: dict[str, int]
    messages: tuple[bytes, ...]

    def encode(self) -> bytes:
        header = orjson.dumps({"v": self.first_version, "o": self.offsets}, option=orjson.OPT_SORT_KEYS)
        parts = [_U32.pack(len(header)), header]
        for message in self.messages:
            parts += (_U32.pack(len(message)), message)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> TailBatch:
        try:
            (size,) = _U32.unpack_from(data, 0)
            header = orjson.loads(data[4 : 4 + size])
            pos = 4 + size
            messages = []
            while pos < len(data):
                (n,) = _U32.unpack_from(data, pos)
                messages.append(data[pos + 4 : pos + 4 + n])
                pos += 4 + n
            if pos != len(data):
                raise ValueError("a message runs past the end")
            return cls(int(header["v"]), {str(k): int(v) for k, v in header["o"].items()}, tuple(messages))
        except (struct.error, ValueError, KeyError, TypeError) as exc:
            raise StateFormatError(f"unreadable tail batch: {exc}") from exc


def restore(
    vendor_id: str, checkpoint: bytes | None, tails: Iterable[bytes], codec: Codec,
    chunks: Mapping[bytes, bytes] | None = None,
) -> State:  # fmt: skip
    """The vendor's state from its checkpoint (with its pieces, by key) and tail batches (any order)."""
    if checkpoint is None:
        state = new_state(vendor_id)
    else:
        state = loads(assemble(vendor_id, checkpoint, chunks or {}))
    batches = sorted((TailBatch.decode(t) for t in tails), key=lambda b: b.first_version)
    for batch in batches:
        if batch.first_version > state.version:
            raise StateFormatError(
                f"{vendor_id}: the changelog lacks versions {state.version}..{batch.first_version - 1} "
                "(a tail batch is missing); the stored state cannot be trusted"
            )
        for i, message in enumerate(batch.messages):
            if batch.first_version + i < state.version:
                continue  # already in the checkpoint (its tail's tombstone was lost with a crash)
            outcome = apply(state, codec.decode(message, validate=False))
            if outcome.status is not Status.APPLIED:
                raise StateFormatError(
                    f"tail batch of {vendor_id} at version {batch.first_version} did not re-apply: "
                    f"{outcome.reason}"
                )
        for source, offset in batch.offsets.items():  # offsets only grow: a stale batch cannot regress them
            state.offsets[source] = max(offset, state.offsets.get(source, -1))
    return state


@dataclass
class VendorLog:
    """What the worker has in memory for one vendor besides its state: the unflushed tail."""

    state: State
    partition: int
    checkpoint_bytes: int = 0
    tail_bytes: int = 0
    tail_keys: list[bytes] | None = None
    chunk_keys: list[bytes] | None = None  # pieces stored for this vendor: deleted at the next checkpoint
    pending: list[bytes] | None = None
    pending_from: int = 0
    offsets_dirty: bool = False
    force_checkpoint: bool = False

    def __post_init__(self) -> None:
        self.tail_keys = self.tail_keys or []
        self.chunk_keys = self.chunk_keys or []
        self.pending = self.pending or []

    def accepted(self, message: bytes, version_before: int) -> None:
        assert self.pending is not None
        if not self.pending:
            self.pending_from = version_before
        self.pending.append(message)
        self.offsets_dirty = True

    def flush(self, force_checkpoint: bool = False) -> list[tuple[bytes, bytes | None]]:
        """The table writes that make the stored state equal the in-memory one; resets the tail."""
        assert self.pending is not None
        assert self.tail_keys is not None
        if not (self.offsets_dirty or force_checkpoint):
            return []
        vendor = self.state.vendor_id
        pending_bytes = sum(len(m) for m in self.pending)
        if force_checkpoint or self.tail_bytes + pending_bytes > max(
            MIN_CHECKPOINT_BYTES, self.checkpoint_bytes
        ):
            assert self.chunk_keys is not None
            data = dumps(self.state)
            writes = checkpoint_writes(vendor, data, self.state.version)
            pieces = [key for key, _ in writes if is_chunk_key(key)]
            writes += [(key, None) for key in self.tail_keys]
            writes += [(key, None) for key in self.chunk_keys if key not in pieces]
            self.checkpoint_bytes, self.tail_bytes, self.tail_keys = len(data), 0, []
            self.chunk_keys = pieces
        else:
            first = self.pending_from if self.pending else self.state.version
            key = tail_key(vendor, first)
            value = TailBatch(first, dict(self.state.offsets), tuple(self.pending)).encode()
            writes = [(key, value)]
            self.tail_keys.append(key)
            self.tail_bytes += len(value)
        self.pending = []
        self.offsets_dirty = False
        return writes
