"""The worker against a real broker: its snapshots equal the independent reference over the log,
after SIGKILLs at random moments and with two workers sharing the partitions; bad input lands in the DLQ.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from itertools import islice

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra.simulate import EventGenerator, SimConfig
from processors.replay import run_replay
from processors.topics_admin import record_counts
from processors.worker.faust_app import TABLE
from schemas.codec import Codec, FastavroCodec
from schemas.events import Event, OrderCancelled, OrderItem, OrderPlaced, ProductUpserted
from schemas.exceptions import CodecError
from schemas.topics import Topics
from tests.fakes import kafka_settings
from tests.integration.conftest import (
    WorkerProcess,
    assert_no_watchdog_restart,
    latest_snapshots,
    read_topic,
)
from tests.polling import eventually
from tests.unit.reference import accepted_events, reference_snapshot

DAY = 86_400_000
codec = FastavroCodec()
Message = tuple[str, bytes, bytes]  # topic, key, value


def history(
    topics: Topics, n: int, seed: int = 5, vendors: int = 4
) -> tuple[list[Message], list[tuple[str, Event]]]:
    """n simulated events spread over the last 45 days, plus the hard cases of contract §4:
    re-sent events (same event_id), a second placement of an order_id, a cancellation before its order,
    orders dated in the future, and one in another currency (rejected)."""
    now = int(time.time() * 1000)
    config = SimConfig(
        vendors=vendors, products=12, customers=60, seed=seed, start_ms=now - 45 * DAY, step_ms=45 * DAY // n
    )
    rng = random.Random(seed)
    events: list[tuple[str, Event]] = list(islice(EventGenerator(config), n))
    extra: list[tuple[str, Event]] = []
    for kind, event in rng.sample(events, 40):  # duplicates by event_id, re-sent later in the log
        extra.append((kind, event))
    orders = [e for _, e in events if isinstance(e, OrderPlaced)]
    for order in rng.sample(orders, 5):  # same order_id again with another event_id: ignored
        extra.append(
            ("orders", dataclasses.replace(order, event_id=f"again-{order.event_id}", total=order.total + 1))
        )
    item = OrderItem("v001-p0001", "Books", 2, 1500)
    early = OrderCancelled("cancel-first", now - DAY, "vendor-001", "late-order", "customer request")
    late = OrderPlaced(
        "late-order-evt", now - 2 * DAY, "vendor-001", "late-order", "cust-x", "EUR", 3000, (item,)
    )
    future = OrderPlaced(
        "future-evt", now + 3 * DAY, "vendor-002", "future-order", "cust-y", "USD", 9000, (item,)
    )
    wrong_currency = OrderPlaced("fx-evt", now - DAY, "vendor-001", "fx-order", "cust-z", "JPY", 100, (item,))
    extra += [("orders", early), ("orders", late), ("orders", future), ("orders", wrong_currency)]
    log = events + extra
    topic_of = {"orders": topics.orders, "inventory": topics.inventory}
    messages = [(topic_of[kind], e.vendor_id.encode(), codec.encode(e)) for kind, e in log]
    return messages, [(topic_of[kind], e) for kind, e in log]


async def send(bootstrap: str, messages: list[Message], rate: float = 0.0) -> list[tuple[int, int]]:
    """Sends `messages` in order (at about `rate` a second, if given); the (partition, offset) of each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        sent = []
        for i, (topic, key, value) in enumerate(messages):
            sent.append(await producer.send(topic, value=value, key=key))
            if rate and i % 50 == 0:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        await producer.flush()
        return [(m.partition, m.offset) for m in await asyncio.gather(*sent)]
    finally:
        await producer.stop()


def expected_at(log: list[tuple[str, Event]], topics: Topics, vendor: str, as_of: int) -> dict[str, object]:
    # Each topic's events in their own log order; orders and inventory events never affect each
    # other's figures, so their interleaving across the two topics does not matter.
    of_vendor = [
        e
        for t in (topics.orders, topics.inventory)
        for topic, e in log
        if topic == t and e.vendor_id == vendor
    ]
    return reference_snapshot(of_vendor, vendor, as_of, 30)


def log_in_kafka(bootstrap: str, topics: Topics, codec: Codec = codec) -> list[tuple[str, Event]]:
    """The input as the broker holds it: each partition in offset order (the contract's log order).
    Confluent-framed records need a `codec` whose schema ids were resolved (tests/integration/test_registry.py)."""
    out: list[tuple[str, Event]] = []
    for topic in (topics.orders, topics.inventory):
        for key, value, _ in asyncio.run(read_topic(bootstrap, topic)):
            try:
                event = codec.decode(value or b"", validate=False)
            except CodecError:
                continue  # poison: the reference never sees it, as the fold must not
            if key == event.vendor_id.encode():  # a record keyed otherwise is dead-lettered
                out.append((topic, event))
    return out


def assert_converges(
    bootstrap: str, topics: Topics, sent: list[tuple[str, Event]], worker: WorkerProcess, within: float = 90,
    codec: Codec = codec,
) -> None:  # fmt: skip
    log = log_in_kafka(bootstrap, topics, codec)
    assert not Counter(e.event_id for _, e in sent) - Counter(e.event_id for _, e in log)  # all in Kafka
    vendors = sorted({e.vendor_id for _, e in log})
    final = {v: expected_at(log, topics, v, int(time.time() * 1000))["version"] for v in vendors}
    latest: dict[str, dict[str, object]] = {}

    def caught_up() -> bool:
        latest.update(latest_snapshots(bootstrap, topics.metrics))
        return all(latest.get(v, {}).get("version") == final[v] for v in vendors)

    try:
        eventually(caught_up, "final version of every vendor's snapshot", within, detail=worker.output)
    except AssertionError as exc:
        short = {v: (latest.get(v, {}).get("version"), final[v]) for v in vendors}
        short = {v: versions for v, versions in short.items() if versions[0] != versions[1]}
        raise AssertionError(f"vendors (latest version, final): {short}\n{exc}") from None
    for vendor in vendors:
        snap = latest[vendor]
        as_of = int(datetime.fromisoformat(str(snap["asOf"]).replace("Z", "+00:00")).timestamp() * 1000)
        expected = expected_at(log, topics, vendor, as_of)
        differing = {
            k: {"worker": snap.get(k), "reference": expected.get(k)}
            for k in expected
            if snap.get(k) != expected[k]
        }
        assert not differing, f"{vendor} at {snap['asOf']}: {differing}"


def test_snapshots_equal_the_reference_over_the_log(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    messages, log = history(topics, 3000)
    asyncio.run(send(kafka_bootstrap, messages))
    worker = make_worker().start()
    assert_converges(kafka_bootstrap, topics, log, worker)
    # every accepted order was announced on vendor-activity, once (no crash in this run)
    activity = asyncio.run(read_topic(kafka_bootstrap, topics.activity))
    notices = [orjson.loads(value) for _, value, _ in activity if value]
    announced = sorted(n["eventId"] for n in notices if n.get("type") != "stock_alert")
    accepted = sorted(
        e.event_id
        for vendor in {e.vendor_id for _, e in log}
        for e in accepted_events([e for _, e in log], vendor)[0]
        if isinstance(e, OrderPlaced)
    )
    assert announced == accepted
    # the order in JPY for a EUR vendor was rejected to the DLQ, with the reason
    dlq = asyncio.run(read_topic(kafka_bootstrap, topics.orders_dlq))
    assert [dict(h)["vp.error.code"] for _, _, h in dlq] == [b"invalid_event"]
    assert b"currency" in dict(dlq[0][2])["vp.error.message"]
    assert_no_watchdog_restart(worker)


def test_killed_three_times_mid_stream_still_exact(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("VENDORPULSE_TEST_WORKER_LOGLEVEL", "info")  # the bulk restore's report
    messages, log = history(topics, 6000, seed=9)
    worker = make_worker(flush_interval_ms="100").start()
    producer = threading.Thread(target=lambda: asyncio.run(send(kafka_bootstrap, messages, rate=200)))
    producer.start()
    rng = random.Random(1)
    changelog = f"{topics.prefix}vendorpulse-worker-{TABLE}-changelog"

    def stored() -> int:
        return asyncio.run(record_counts(kafka_bootstrap, [changelog]))[changelog]  # 0 while there is none

    kills, before = 0, 0
    while kills < 3:
        # While the log is being produced, each kill comes after the worker stored something since it
        # started, so that each restart restores a table that grew (a kill during start-up tests less).
        eventually(lambda b=before: stored() > b or not producer.is_alive(), "the worker stores folded input", within=90, interval=0.2,
                   detail=worker.output)  # fmt: skip
        time.sleep(rng.uniform(0.0, 2.0))
        assert worker.alive(), worker.output()
        worker.kill(signal.SIGKILL)
        kills += 1
        before = stored()
        worker.start()
    producer.join()
    assert kills == 3
    assert_converges(kafka_bootstrap, topics, log, worker, within=120)
    assert worker.starts == 4  # the three restarts after the kills, by the test
    assert_no_watchdog_restart(worker)
    # After a kill the store is discarded, and the table comes back through the bulk restore
    # (processors/worker/bulk_restore.py), not only through Faust's record-by-record recovery.
    restored = [
        p.name for p in worker.logs[1:] if "table brought up to date from its changelog" in p.read_text()
    ]
    print(f"restarts that restored the table in bulk: {restored}")
    assert restored, worker.output()


def test_two_workers_share_partitions_and_one_leaves(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Keep the rebalance and recovery steps in the worker logs, should this ever fail again.
    monkeypatch.setenv("VENDORPULSE_TEST_WORKER_LOGLEVEL", "info")
    messages, log = history(topics, 4000, seed=13, vendors=8)
    first = make_worker("a").start()
    second = make_worker("b").start()
    producer = threading.Thread(target=lambda: asyncio.run(send(kafka_bootstrap, messages, rate=500)))
    producer.start()
    # It leaves once it has started and read for a while: on a loaded machine a start can take longer
    # than any fixed pause (it was once killed before it wrote its counters).
    eventually(lambda: "Ready" in second.output(), "the second worker's start (Faust logs Ready)", 120,
               detail=second.output)  # fmt: skip
    time.sleep(2)
    second.kill(signal.SIGTERM)  # leaves: its partitions move to the first worker
    producer.join()
    assert_converges(kafka_bootstrap, topics, log, first, within=120)
    assert first.alive(), first.output()
    assert_no_watchdog_restart(first, second)


def test_traffic_after_quiet_spells_is_not_taken_for_a_stalled_input(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Input that arrives after seconds of silence is read as it comes: the input watchdog (which seeks a
    partition back when records wait in it undelivered for 3 s while nothing else is delivered) stays
    quiet. It once counted from a partition's last delivery, so a check that saw the first record of a
    burst before the fetcher delivered it took every partition idle for 3 s for a stalled one."""
    monkeypatch.setenv("VENDORPULSE_TEST_WORKER_LOGLEVEL", "info")
    messages, log = history(topics, 1200, seed=29, vendors=8)
    worker = make_worker().start()
    eventually(lambda: "Ready" in worker.output(), "the worker's start (Faust logs Ready)", 120,
               detail=worker.output)  # fmt: skip
    bursts = 6
    size = -(-len(messages) // bursts)
    for n in range(bursts):
        time.sleep(4.5)  # longer than the watchdog's 3 s: every partition has been idle for it
        asyncio.run(send(kafka_bootstrap, messages[n * size : (n + 1) * size]))
    assert_converges(kafka_bootstrap, topics, log, worker, within=120)
    counts = assert_no_watchdog_restart(worker)[worker.log_path.name]
    assert counts["input_resumes"] == 0, worker.output()
    assert counts["gap_seeks"] == 0, worker.output()


def test_a_worker_joining_mid_stream_takes_over_partitions_exactly(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("VENDORPULSE_TEST_WORKER_LOGLEVEL", "info")
    messages, log = history(topics, 4000, seed=17, vendors=8)
    first = make_worker("a").start()
    producer = threading.Thread(target=lambda: asyncio.run(send(kafka_bootstrap, messages, rate=500)))
    producer.start()
    time.sleep(4)
    second = make_worker("b").start()  # joins: half the partitions move to it, with state in memory
    producer.join()
    assert_converges(kafka_bootstrap, topics, log, first, within=120)
    assert first.alive(), first.output()
    assert second.alive(), second.output()
    assert_no_watchdog_restart(first, second)


def test_poison_messages_go_to_the_dlq_and_the_stream_continues(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    messages, log = history(topics, 600, seed=21)
    fresh = ProductUpserted("fresh", int(time.time() * 1000), "vendor-001", "p-new", "Lamp", "Home", True)
    good = codec.encode(fresh)  # bytes no valid message of the log shares
    item = OrderItem("p", "Books", -3, 100)
    negative = codec.encode(
        OrderPlaced("neg", int(time.time() * 1000), "vendor-001", "neg-o", "c", "EUR", 0, (item,))
    )
    poison = [
        (topics.orders, b"vendor-001", bytes(random.Random(3).getrandbits(8) for _ in range(40))),
        (topics.orders, b"vendor-001", b"\xc3\x01" + b"\x00" * 8 + good[10:]),  # unknown fingerprint
        (topics.inventory, b"vendor-002", good[: len(good) // 2]),  # truncated body
        (topics.orders, b"vendor-001", negative),  # schema-valid, breaks a rule
        (topics.orders, b"", good),  # no vendor key
    ]
    half = len(messages) // 2
    positions = asyncio.run(send(kafka_bootstrap, messages[:half] + poison + messages[half:]))
    poison_positions = positions[half : half + len(poison)]
    worker = make_worker().start()
    assert_converges(kafka_bootstrap, topics, log, worker)
    dead = asyncio.run(read_topic(kafka_bootstrap, topics.orders_dlq)) + asyncio.run(
        read_topic(kafka_bootstrap, topics.inventory_dlq)
    )
    by_value = {value: dict(headers) for _, value, headers in dead}
    for (topic, _, value), (partition, offset) in zip(poison, poison_positions, strict=True):
        headers = by_value[value]  # the original bytes, unchanged
        source = (headers["vp.source.topic"], headers["vp.source.partition"], headers["vp.source.offset"])
        assert source == (topic.encode(), str(partition).encode(), str(offset).encode())
    codes = [by_value[value]["vp.error.code"].decode() for _, _, value in poison]
    assert codes == ["bad_marker", "unknown_fingerprint", "truncated_body", "invalid_event", "bad_key"]
    assert worker.alive()  # never crashed
    assert_no_watchdog_restart(worker)


async def read_stamped(bootstrap: str, topic: str) -> list[tuple[int, Event]]:
    """The decodable records of `topic` with their Kafka timestamps, each partition in offset order."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list[tuple[int, Event]] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            for records in batch.values():
                for r in records:
                    try:
                        event = codec.decode(r.value or b"", validate=False)
                    except CodecError:
                        continue
                    if r.key == event.vendor_id.encode():
                        out.append((r.timestamp, event))
    finally:
        await consumer.stop()
    return out


def test_a_lateness_horizon_dead_letters_late_events_and_replay_equals_live(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Thirty days of traffic stamped as it happened, with L = 5 days: re-sends of old events come too
    late (DLQ, reason "too late ..."), order ids and event ids used again after the horizon count anew,
    and the worker's snapshots and a replay both equal the reference of contract §4.1."""
    now = int(time.time() * 1000)
    rng = random.Random(31)
    config = SimConfig(
        vendors=4, products=12, customers=60, seed=31, start_ms=now - 30 * DAY, step_ms=30 * DAY // 3000
    )
    events = [e for _, e in islice(EventGenerator(config), 3000)]
    stamped = [(e.occurred_at + rng.randrange(0, 60_000), e) for e in events]
    early = [e for e in events[:600]]
    resent = [(now, e) for e in rng.sample(early, 30)]  # too late by now
    placed = [e for e in early if isinstance(e, OrderPlaced)]
    again = (
        [  # the same order ids and event ids, dated now: new orders (the old ones lie behind H)
            (now, dataclasses.replace(o, occurred_at=now - 1000, event_id=f"again-{o.event_id}"))
            for o in placed[:5]
        ]
        + [(now, dataclasses.replace(o, occurred_at=now - 2000)) for o in placed[5:8]]
    )
    log = stamped + resent + again

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for ts, e in log:
                topic = topics.orders if isinstance(e, OrderPlaced | OrderCancelled) else topics.inventory
                await producer.send(topic, codec.encode(e), key=e.vendor_id.encode(), timestamp_ms=ts)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    worker = make_worker(lateness_days="5").start()
    in_kafka = {t: asyncio.run(read_stamped(kafka_bootstrap, t)) for t in (topics.orders, topics.inventory)}

    def expected(vendor: str, as_of: int) -> dict[str, object]:
        of_vendor = [(ts, e) for t in in_kafka.values() for ts, e in t if e.vendor_id == vendor]
        return reference_snapshot(
            [e for _, e in of_vendor], vendor, as_of, 30, [ts for ts, _ in of_vendor], lateness_days=5
        )

    vendors = sorted({e.vendor_id for _, e in log})
    final = {v: expected(v, now)["version"] for v in vendors}
    latest: dict[str, dict[str, object]] = {}

    def caught_up() -> bool:
        latest.update(latest_snapshots(kafka_bootstrap, topics.metrics))
        return all(latest.get(v, {}).get("version") == final[v] for v in vendors)

    eventually(caught_up, "final version of every vendor's snapshot", 90, detail=worker.output)
    for vendor in vendors:
        snap = latest[vendor]
        as_of = int(datetime.fromisoformat(str(snap["asOf"]).replace("Z", "+00:00")).timestamp() * 1000)
        assert snap == expected(vendor, as_of)
    dlq = asyncio.run(read_topic(kafka_bootstrap, topics.orders_dlq)) + asyncio.run(
        read_topic(kafka_bootstrap, topics.inventory_dlq)
    )
    late = [dict(h) for _, _, h in dlq if dict(h)["vp.error.code"] == b"too_late"]
    assert len(late) == 30
    assert all(h["vp.error.message"].startswith(b"too late: occurred_at ") for h in late)
    assert all(
        b"horizon H = " in h["vp.error.message"] and b"record ts " in h["vp.error.message"] for h in late
    )
    # A replay with the same L reads the same records and timestamps: the same numbers.
    settings = kafka_settings(kafka_bootstrap, topics, lateness_days=5)
    t = int(time.time() * 1000)
    summary = run_replay(settings, as_of_ms=t)
    assert summary.counts.refused["too_late"] == 30
    for snap in summary.snapshots:
        assert snap == expected(str(snap["vendorId"]), t)
    assert worker.alive()
    assert_no_watchdog_restart(worker)


async def committed_and_ends(
    bootstrap: str, group: str, topics: Topics
) -> tuple[dict[str, int], dict[str, int]]:
    """The group's committed offsets and the end offsets, summed per input topic."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    except GroupCoordinatorNotAvailableError:
        committed = {}  # the group has not joined yet
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in (topics.orders, topics.inventory) for p in range(6)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    done = {
        t: sum(m.offset for tp, m in committed.items() if tp.topic == t)
        for t in (topics.orders, topics.inventory)
    }
    total = {t: sum(o for tp, o in ends.items() if tp.topic == t) for t in (topics.orders, topics.inventory)}
    return done, total


@pytest.mark.parametrize("store_interval_ms", ["3000", "100"])
def test_the_last_input_is_stored_and_committed_without_more_input(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], store_interval_ms: str
) -> None:
    # Folded input is stored at most every VENDORPULSE_STORE_INTERVAL_MS (3 s: the last store is due
    # after the input ends) and committed at most once a second (100 ms: the last commit is), yet what
    # the last batches folded must be stored, and its offsets committed, when no more input comes.
    messages, log = history(topics, 1500, seed=21)
    worker = make_worker(store_interval_ms=store_interval_ms).start()
    group = f"{topics.prefix}vendorpulse-worker"
    progress: list[tuple[dict[str, int], dict[str, int]]] = []

    def all_committed() -> bool:
        progress.append(asyncio.run(committed_and_ends(kafka_bootstrap, group, topics)))
        return progress[-1][0] == progress[-1][1]

    half = len(messages) // 2
    asyncio.run(send(kafka_bootstrap, messages[:half]))
    eventually(
        all_committed, "the first half committed", within=90, interval=0.2, detail=lambda: str(progress[-1])
    )
    asyncio.run(send(kafka_bootstrap, messages[half:]))  # soon after the first half was stored and committed
    assert_converges(kafka_bootstrap, topics, log, worker, within=60)
    eventually(
        all_committed,
        "every input offset committed",
        within=30,
        interval=0.5,
        detail=lambda: str(progress[-1]),
    )
    assert_no_watchdog_restart(worker)
