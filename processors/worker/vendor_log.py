"""A vendor in the worker: its state restored from the table (`restore`), and what it writes back
(`VendorLog.flush`: a tail batch, or a checkpoint with the history changed since the last one). The
layout and its crash analysis are `processors.worker.table_layout`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.core.apply import apply, clock_of
from processors.core.state import DEFAULT_LATENESS_DAYS, State, new_state
from processors.core.state_codec import dumps, loads
from processors.exceptions import StateFormatError
from processors.worker.stored_history import HistoryMemory, StoredHistory
from processors.worker.table_layout import (
    IDS,
    MAX_PENDING_HISTORY,
    MIN_CHECKPOINT_BYTES,
    ORDER_IDS,
    Checkpoint,
    Get,
    TailBatch,
    Write,
    assemble,
    checkpoint_key,
    checkpoint_writes,
    history_prefix,
    is_chunk_key,
    tail_key,
)
from schemas.codec import Codec


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
