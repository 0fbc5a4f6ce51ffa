"""The worker's table layout: checkpoints plus tail batches restore exactly the state that was flushed."""

from __future__ import annotations

import random
import time
from itertools import islice

import pytest

import processors.changelog as changelog
from infra.simulate import EventGenerator, SimConfig
from processors.changelog import (
    MIN_CHECKPOINT_BYTES,
    TailBatch,
    VendorLog,
    decode_watermark,
    encode_watermark,
    is_chunk_key,
    is_vendor_key,
    restore,
    split_key,
    tail_key,
    watermark_key,
)
from processors.exceptions import StateFormatError
from processors.metrics import apply, snapshot
from processors.state import dumps, new_state
from schemas.codec import FastavroCodec

codec = FastavroCodec()
NOW = int(time.time() * 1000)


def vendor_messages(n: int, seed: int = 1) -> list[bytes]:
    config = SimConfig(
        vendors=1, products=15, customers=40, seed=seed, start_ms=NOW - 10 * 86_400_000, step_ms=60_000
    )
    return [codec.encode(e) for _, e in islice(EventGenerator(config), n)]


def replay_into_table(messages: list[bytes], rng: random.Random) -> tuple[VendorLog, dict[bytes, bytes]]:
    """Fold messages, flushing at random points into a dict that plays the compacted table."""
    log = VendorLog(new_state("vendor-001"), partition=0)
    table: dict[bytes, bytes] = {}
    for offset, message in enumerate(messages):
        version = log.state.version
        apply(log.state, codec.decode(message))
        log.state.offsets["orders:0"] = offset
        log.accepted(message, version)
        if rng.random() < 0.1:
            for key, value in log.flush(force_checkpoint=rng.random() < 0.05):
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
    for key, value in log.flush():
        if value is not None:
            table[key] = value
    return log, table


def restored(table: dict[bytes, bytes]):  # type: ignore[no-untyped-def]
    checkpoint = table.get(b"vendor-001")
    tails = [v for k, v in table.items() if split_key(k)[1] is not None]
    chunks = {k: v for k, v in table.items() if is_chunk_key(k)}
    return restore("vendor-001", checkpoint, tails, codec, chunks)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_restore_gives_back_the_flushed_state(seed: int) -> None:
    log, table = replay_into_table(vendor_messages(3000, seed), random.Random(seed))
    state = restored(table)
    assert dumps(state) == dumps(log.state)
    assert snapshot(state, NOW, 30) == snapshot(log.state, NOW, 30)
    assert state.offsets == {"orders:0": 2999}


def test_checkpoints_keep_the_tail_short() -> None:
    _, table = replay_into_table(vendor_messages(6000), random.Random(7))
    tail_bytes = sum(len(v) for k, v in table.items() if split_key(k)[1] is not None)
    checkpoint = table[b"vendor-001"]
    assert tail_bytes <= max(MIN_CHECKPOINT_BYTES, len(checkpoint)) + 64 * 1024
    # the table holds far less than one checkpoint per flush would have written
    assert len(table) < 200


def test_a_stale_tail_left_by_a_lost_tombstone_is_ignored() -> None:
    messages = vendor_messages(400)
    log, table = replay_into_table(messages, random.Random(3))
    for key, value in log.flush(force_checkpoint=True):
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    assert list(table) == [b"vendor-001"]  # a checkpoint, and every tail tombstoned
    stale = TailBatch(0, {"orders:0": 5}, tuple(messages[:6]))  # its tombstone was lost in a crash
    table[tail_key("vendor-001", 0)] = stale.encode()
    state = restored(table)
    assert dumps(state) == dumps(log.state)
    assert state.offsets == {"orders:0": 399}


def test_a_missing_tail_batch_is_an_error_not_a_silent_gap() -> None:
    messages = vendor_messages(50)
    later = TailBatch(20, {"orders:0": 49}, tuple(messages[20:]))
    with pytest.raises(StateFormatError, match=r"lacks versions 0\.\.19"):
        restore("vendor-001", None, [later.encode()], codec)


def test_tail_batch_round_trip_and_bad_bytes() -> None:
    batch = TailBatch(7, {"orders:3": 11, "inventory:3": 4}, (b"\xc3\x01abc", b"", b"x" * 1000))
    assert TailBatch.decode(batch.encode()) == batch
    with pytest.raises(StateFormatError):
        TailBatch.decode(batch.encode()[:-3])


def test_watermark_keys_are_apart_from_vendor_keys_and_round_trip() -> None:
    keys = [watermark_key(p) for p in range(12)]
    assert len(set(keys)) == 12  # one per partition: the memory store is one dict for all of them
    assert not any(is_vendor_key(k) for k in keys)
    assert is_vendor_key(tail_key("vendor-001", 7))
    assert is_vendor_key(b"vendor-001")
    positions = {"vp-orders": 1041, "vp-inventory": 17}
    assert decode_watermark(encode_watermark(positions)) == positions
    assert decode_watermark(None) == {}
    for bad in (b"[1]", b"{", b'{"t": "x"}'):
        with pytest.raises(StateFormatError):
            decode_watermark(bad)


def test_a_checkpoint_too_big_for_one_record_is_stored_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changelog, "CHUNK_BYTES", 4096)
    messages = vendor_messages(600)
    log, table = replay_into_table(messages, random.Random(5))
    for key, value in log.flush(force_checkpoint=True):
        if value is None:
            table.pop(key, None)
        else:
            assert len(value) <= 4096  # every record fits the limit
            table[key] = value
    pieces = sorted(k for k in table if is_chunk_key(k))
    assert len(pieces) > 3
    assert table[b"vendor-001"].startswith(changelog.MANIFEST)
    assert {split_key(k)[0] for k in pieces} == {"vendor-001"}
    assert dumps(restored(table)) == dumps(log.state)

    # A crash after the next checkpoint's pieces but before its manifest: the previous one still restores.
    before = dumps(log.state)
    log.state.offsets["orders:0"] += 1  # some input since, so the next flush writes a checkpoint
    log.offsets_dirty = True
    writes = log.flush(force_checkpoint=True)
    manifest_at = next(i for i, (k, _) in enumerate(writes) if k == b"vendor-001")
    crashed = dict(table)
    crashed.update({k: v for k, v in writes[:manifest_at] if v is not None})
    assert dumps(restored(crashed)) == before
    # Completed, the old pieces are deleted (none left behind) and the new checkpoint restores.
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    assert sorted(k for k in table if is_chunk_key(k)) == sorted(log.chunk_keys or [])
    assert restored(table).offsets == log.state.offsets

    del table[sorted(log.chunk_keys or [])[1]]  # a lost piece is an error, not a silent hole
    with pytest.raises(StateFormatError, match="lacks pieces"):
        restored(table)
