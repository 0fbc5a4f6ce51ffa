"""The worker's table layout: checkpoints, tail batches and the history on disk restore exactly the state
that was flushed, survive a crash part way through a write, and forget what the horizon has passed."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from itertools import islice

import pytest

import processors.worker.table_layout as changelog
from infra.simulate import EventGenerator, SimConfig
from processors.core.apply import apply
from processors.core.calendar import DAY_MS
from processors.core.history import MemoryHistory
from processors.core.snapshot import snapshot
from processors.core.state import new_state
from processors.core.state_codec import dumps
from processors.exceptions import StateFormatError
from processors.outputs import Record
from processors.worker.stored_history import DELETED, HistoryMemory, StoredHistory
from processors.worker.table_layout import (
    HISTORY,
    MIN_CHECKPOINT_BYTES,
    Checkpoint,
    TailBatch,
    decode_directory,
    decode_watermark,
    encode_directory,
    encode_watermark,
    is_chunk_key,
    tail_key,
    watermark_key,
)
from processors.worker.vendor_log import restore
from processors.worker.vendors import VendorStates
from schemas.codec import FastavroCodec
from schemas.events import Event

codec = FastavroCodec()
NOW = int(time.time() * 1000)
VENDOR = "vendor-001"
DLQ = {"orders": "orders.dlq", "inventory": "inventory.dlq"}
Table = dict[bytes, bytes]


def vendor_events(n: int, seed: int = 1, days: int = 10) -> list[tuple[Event, int]]:
    """One vendor's events over `days` days, each stamped a little after it occurred (an aging log)."""
    step = days * DAY_MS // max(n, 1)
    config = SimConfig(
        vendors=1, products=15, customers=40, seed=seed, start_ms=NOW - days * DAY_MS, step_ms=step
    )
    rng = random.Random(seed)
    return [(e, e.occurred_at + rng.randrange(0, 60_000)) for _, e in islice(EventGenerator(config), n)]


def make_vendor_states(table: Table, lateness_days: int = 400) -> VendorStates:
    """The worker's vendor states over a dict that plays the table, its floor at NOW (snapshots as of NOW on)."""
    states = VendorStates(
        codec, orders_topic="orders", inventory_topic="inventory", metrics_topic="vendor-metrics",
        activity_topic="vendor-activity", dlq_topics=DLQ,
        load=lambda v, p: restore(v, p, table.get, codec, lateness_days),
    )  # fmt: skip
    states.floor = NOW
    return states


def topic_of(event: Event) -> str:
    return "orders" if type(event).__name__.startswith("Order") else "inventory"


def feed(
    states: VendorStates, table: Table, events: list[tuple[Event, int]], rng: random.Random, start: int = 0
) -> list[Record]:
    """Fold events as offsets start.. of one partition, flushing into `table` at random points."""
    out: list[Record] = []
    for offset, (event, ts) in enumerate(events[start:], start):
        out += states.handle(topic_of(event), 0, offset, VENDOR.encode(), codec.encode(event), ts)
        if rng.random() < 0.1:
            if rng.random() < 0.05:
                states.vendors[VENDOR].force_checkpoint = True
            write(table, states.flush(0))
    write(table, states.flush(0))
    return out


def checkpoint(states: VendorStates, table: Table) -> None:
    states.vendors[VENDOR].force_checkpoint = True
    states.dirty_by_partition.setdefault(0, set()).add(VENDOR)
    write(table, states.flush(0))


def write(table: Table, writes: list[tuple[bytes, bytes | None]]) -> None:
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def pure(events: list[tuple[Event, int]], lateness_days: int = 400):  # type: ignore[no-untyped-def]
    """The same events folded with the history in memory: what the table must be equivalent to."""
    state = new_state(VENDOR, MemoryHistory(), lateness_days)
    verdicts = [apply(state, e, ts) for e, ts in events]
    return state, verdicts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_restore_gives_back_the_flushed_state(seed: int) -> None:
    events = vendor_events(3000, seed)
    table: Table = {}
    states = make_vendor_states(table)
    feed(states, table, events, random.Random(seed))
    live = states.vendors[VENDOR]
    again = restore(VENDOR, 0, table.get, codec)
    assert dumps(again.state) == dumps(live.state)
    assert (
        snapshot(again.state, NOW, 30) == snapshot(live.state, NOW, 30) == snapshot(pure(events)[0], NOW, 30)
    )
    assert max(again.state.offsets.values()) == 2999


def test_checkpoints_keep_the_tail_short() -> None:
    table: Table = {}
    feed(make_vendor_states(table), table, vendor_events(6000), random.Random(7))
    tails = [v for k, v in table.items() if k.startswith(VENDOR.encode() + b"\x00")]
    checkpoint = Checkpoint.decode(table[VENDOR.encode()])
    assert sum(map(len, tails)) <= max(MIN_CHECKPOINT_BYTES, len(checkpoint.live)) + 64 * 1024
    assert len(tails) < 60  # far fewer records than flushes: the tail is folded into checkpoints


def test_a_crash_part_way_through_any_write_loses_and_double_counts_nothing() -> None:
    """Whatever prefix of a flush's writes reached the changelog, restoring and reading the input again
    from the stored offsets gives the state an uninterrupted run has."""
    events = vendor_events(900, seed=4, days=30)
    whole, verdicts = pure(events, lateness_days=5)
    table: Table = {}
    states = make_vendor_states(table, lateness_days=5)
    rng = random.Random(4)
    crashes = 0
    for offset, (event, ts) in enumerate(events):
        states.handle(topic_of(event), 0, offset, VENDOR.encode(), codec.encode(event), ts)
        if rng.random() < 0.08:
            log = states.vendors[VENDOR]
            log.force_checkpoint = rng.random() < 0.5
            writes = states.flush(0)
            if rng.random() < 0.3 and len(writes) > 1:  # crash: a prefix lands, the process starts over
                crashes += 1
                write(table, writes[: rng.randrange(1, len(writes))])
                states = make_vendor_states(table, lateness_days=5)
                for again, (e, t) in enumerate(events[: offset + 1]):
                    states.handle(topic_of(e), 0, again, VENDOR.encode(), codec.encode(e), t)
            else:
                write(table, writes)
    write(table, states.flush(0))
    assert crashes > 5
    restored_state = restore(VENDOR, 0, table.get, codec, 5).state
    for t in (NOW, NOW + 3 * DAY_MS, NOW + 40 * DAY_MS):
        assert snapshot(restored_state, t, 7) == snapshot(whole, t, 7)
    assert restored_state.version == whole.version == sum(v.status.value == "applied" for v in verdicts)


def test_the_stored_history_forgets_what_the_horizon_passed_and_nothing_else() -> None:
    """Sixty days of one vendor with L = 5: the table keeps about five days of ids and orders, and the
    vendor states' verdicts are those of the pure fold that forgets nothing."""
    events = vendor_events(6000, seed=5, days=60)
    # re-sends: some events again, a little later; old ones come back new (their id was forgotten)
    rng = random.Random(5)
    resent = [(events[rng.randrange(i + 1)][0], events[i][1]) for i in range(0, len(events), 40)]
    log = sorted([*events, *resent], key=lambda pair: pair[1])
    whole, verdicts = pure(log, lateness_days=5)
    table: Table = {}
    states = make_vendor_states(table, lateness_days=5)
    feed(states, table, log, rng)
    assert states.counts.duplicates == sum(v.status.value == "duplicate" for v in verdicts)
    assert states.counts.dead_lettered == sum(v.status.value in ("too_late", "rejected") for v in verdicts)
    checkpoint(states, table)
    prefix = VENDOR.encode() + HISTORY
    ids = [k for k in table if k.startswith(prefix + b"i")]
    orders = [k for k in table if k.startswith(prefix + b"o")]
    per_day = len(events) / 60
    assert len(ids) < 8 * per_day  # ~5 days of ids (plus the days not yet whole), not 60
    assert len(orders) < 8 * per_day
    assert len([k for k in table if k.startswith(prefix + b"c")]) == len(whole.history.customers)  # type: ignore[attr-defined]
    again = restore(VENDOR, 0, table.get, codec, 5).state
    assert snapshot(again, NOW, 30) == snapshot(whole, NOW, 30)


def test_a_stale_tail_left_by_a_lost_tombstone_is_ignored() -> None:
    events = vendor_events(400)
    table: Table = {}
    states = make_vendor_states(table)
    feed(states, table, events, random.Random(3))
    checkpoint(states, table)
    assert not [k for k in table if k.startswith(VENDOR.encode() + b"\x00")]  # every tail tombstoned
    stale = TailBatch(0, {"orders:0": 5}, [None, None], 0, ((0, codec.encode(events[0][0])),))
    table[tail_key(VENDOR, 0)] = stale.encode()  # its tombstone was lost in a crash
    again = restore(VENDOR, 0, table.get, codec)
    assert dumps(again.state) == dumps(states.vendors[VENDOR].state)


def test_a_tail_that_does_not_re_apply_is_an_error() -> None:
    event, ts = vendor_events(1)[0]
    batch = TailBatch(
        0, {"orders:0": 1}, [ts, None], 0, ((ts, codec.encode(event)), (ts, codec.encode(event)))
    )
    table: Table = {tail_key(VENDOR, 0): batch.encode()}
    with pytest.raises(StateFormatError, match="did not re-apply"):
        restore(VENDOR, 0, table.get, codec)


def test_tail_batch_and_checkpoint_round_trip_and_bad_bytes() -> None:
    batch = TailBatch(
        7,
        {"orders:3": 11, "inventory:3": 4},
        [5, None],
        3,
        ((1, b"\xc3\x01abc"), (2, b""), (-1, b"x" * 1000)),
    )
    assert TailBatch.decode(batch.encode()) == batch
    with pytest.raises(StateFormatError):
        TailBatch.decode(batch.encode()[:-3])
    checkpoint = Checkpoint(
        b'{"live":1}', 9, {b"i": {20000: 2}, b"o": {}}, ((b"ie1", b"\x00" * 8), (b"oo1", None))
    )
    assert Checkpoint.decode(checkpoint.encode()) == checkpoint
    with pytest.raises(StateFormatError, match="not of this format"):
        Checkpoint.decode(b'{"format": 1}')
    with pytest.raises(StateFormatError, match="unreadable"):
        Checkpoint.decode(checkpoint.encode()[:-2])


def test_partition_records_are_apart_from_vendor_keys_and_round_trip() -> None:
    keys = [watermark_key(p) for p in range(12)]
    assert len(set(keys)) == 12  # one per partition: the memory store is one dict for all of them
    assert all(k.startswith(b"\x00") for k in keys)  # a vendor id never starts with a control character
    positions = {"vp-orders": 1041, "vp-inventory": 17}
    assert decode_watermark(encode_watermark(positions)) == positions
    assert decode_watermark(None) == {}
    assert decode_directory(encode_directory({"v2", "v1"})) == {"v1", "v2"}
    assert decode_directory(None) == set()
    for bad in (b"[1]", b"{", b'{"t": "x"}'):
        with pytest.raises(StateFormatError):
            decode_watermark(bad)


def test_a_checkpoint_too_big_for_one_record_is_stored_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changelog, "CHUNK_BYTES", 4096)
    events = vendor_events(600)
    table: Table = {}
    states = make_vendor_states(table)
    feed(states, table, events, random.Random(5))
    log = states.vendors[VENDOR]
    log.force_checkpoint = True
    states.dirty_by_partition[0] = {VENDOR}
    for key, value in states.flush(0):
        if value is None:
            table.pop(key, None)
        else:
            assert len(value) <= 4096 or HISTORY in key  # every checkpoint record fits the limit
            table[key] = value
    pieces = sorted(k for k in table if is_chunk_key(k))
    assert len(pieces) > 1
    assert table[VENDOR.encode()].startswith(changelog.MANIFEST)
    assert dumps(restore(VENDOR, 0, table.get, codec).state) == dumps(log.state)

    # A crash after the next checkpoint's pieces but before its manifest: the previous one still restores.
    before = dumps(log.state)
    log.state.offsets["orders:0"] += 1  # some input since, so the next flush writes a checkpoint
    log.offsets_dirty = True
    log.force_checkpoint = True
    states.dirty_by_partition[0] = {VENDOR}
    writes = states.flush(0)
    manifest_at = next(i for i, (k, _) in enumerate(writes) if k == VENDOR.encode())
    crashed = dict(table)
    crashed.update({k: v for k, v in writes[:manifest_at] if v is not None})
    assert dumps(restore(VENDOR, 0, crashed.get, codec).state) == before
    write(table, writes)  # completed: the old pieces are deleted and the new checkpoint restores
    assert sorted(k for k in table if is_chunk_key(k)) == sorted(log.chunk_keys)
    assert restore(VENDOR, 0, table.get, codec).state.offsets == log.state.offsets
    del table[sorted(log.chunk_keys)[1]]  # a lost piece is an error, not a silent hole
    with pytest.raises(StateFormatError, match="lacks pieces"):
        restore(VENDOR, 0, table.get, codec)


def test_history_reads_see_pending_changes_and_deletes_before_the_table() -> None:
    table: Table = {}
    history = StoredHistory(b"v\x02", table.get)
    history.mark_seen("e1", 100)
    assert history.seen("e1") == 100
    for key, value in history.checkpoint_writes():
        write(table, [(b"v\x02" + key, value)])
    assert history.pending == {}
    assert history.seen("e1") == 100  # from the table now
    history.pending[b"ie1"] = DELETED
    assert history.seen("e1") is None
    assert replace(history, pending={}).seen("e1") == 100


def test_the_history_in_the_heap_stays_under_its_limit_across_vendors() -> None:
    """Many vendors each below their own checkpoint threshold: past the worker's limit, the vendors
    holding the most history checkpoint early, and the state restores all the same."""
    table: Table = {}
    memory = HistoryMemory(cache_limit=500, pending_limit=3000)
    states = VendorStates(
        codec, orders_topic="orders", inventory_topic="inventory", metrics_topic="vendor-metrics",
        activity_topic="vendor-activity", dlq_topics=DLQ, memory=memory,
        load=lambda v, p: restore(v, p, table.get, codec, 400, memory),
    )  # fmt: skip
    states.floor = NOW
    config = SimConfig(
        vendors=30, products=10, customers=50, seed=9, start_ms=NOW - 5 * DAY_MS, step_ms=20_000
    )
    peak = 0
    for offset, (_, event) in enumerate(islice(EventGenerator(config), 12_000)):
        key = event.vendor_id.encode()
        states.handle(topic_of(event), 0, offset, key, codec.encode(event), event.occurred_at)
        if offset % 50 == 49:
            write(table, states.flush(0))
            peak = max(peak, memory.pending)
            assert memory.pending == sum(len(log.history.pending) for log in states.vendors.values())
    assert states.early_checkpoints > 0
    assert peak < 3000 + 50 * 4  # the limit, plus what one batch adds
    assert len(memory.cache) <= 500
    write(table, states.flush(0))
    for vendor_id, log in states.vendors.items():
        again = restore(vendor_id, 0, table.get, codec)
        assert snapshot(again.state, NOW, 30) == snapshot(log.state, NOW, 30)
