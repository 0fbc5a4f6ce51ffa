"""Faults end to end: broker loss on a three-broker cluster and worker/API SIGKILLs under load with
clients connected (both `-m chaos`), bad input at volume, and a 60-second soak (docs/GUARANTEES.md).

The judge is always the same: every vendor's snapshot equals the independent reference
(tests/unit/reference.py) over the log as Kafka holds it (`assert_converges`).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest

from api import Backoff, VendorPulseClient
from api.auth import make_token
from api.settings import api_settings
from infra.harness.chaos import Child, Stack, broker_loss, three_brokers
from infra.harness.soak import soak
from infra.ports import free_port, wait_http_ready
from infra.simulate import EventGenerator, SimConfig, produce
from schemas.codec import FastavroCodec
from schemas.events import Event, OrderItem, OrderPlaced
from schemas.topics import Topics
from tests.integration.conftest import (
    ROOT,
    WorkerProcess,
    assert_no_watchdog_restart,
    latest_snapshots,
    read_topic,
)
from tests.integration.test_worker import Message, assert_converges, history, send
from tests.unit.reference import accepted_events

DAY = 86_400_000
codec = FastavroCodec()


@pytest.mark.chaos
@pytest.mark.timeout(600)  # each loss lasts until the broker is back in every ISR: slow on a loaded machine
def test_broker_loss_keeps_every_event_and_the_client_keeps_receiving(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with three_brokers(base_port=27092) as stack:
        result = broker_loss(stack, rate=150.0, duration=40.0)
        with capsys.disabled():
            print(f"\nbroker loss: {result.summary()}")
        assert [loss.node for loss in result.losses] == [2, 3]  # one at a time, each back in every ISR
        assert all(loss.sent > 0 for loss in result.losses)  # the producer kept sending through each loss
        assert len(result.sent) >= 0.9 * 150 * 40
        worker = WorkerProcess(stack.env, stack.worker.log)
        worker.proc = stack.worker.proc
        worker.logs = [stack.worker.log]
        assert_converges(stack.bootstrap, stack.topics, result.sent, worker, within=120)
        assert stack.worker.alive(), stack.worker.tail()
        assert stack.api.alive(), stack.api.tail()
        assert (stack.worker.starts, stack.api.starts) == (1, 1)  # neither was restarted
        assert_no_watchdog_restart(worker)  # nor did the worker replace itself
        seen = result.watch
        assert seen.disconnects == 0  # the client stayed connected: the API reconnected to Kafka itself
        assert seen.versions == sorted(seen.versions)  # never an older snapshot
        assert len(seen.updates) >= 20
        assert seen.longest_gap() < 30.0


def bad_input(topics: Topics, n: int, seed: int) -> tuple[list[Message], dict[bytes, tuple[str, str]]]:
    """n events where every 20th is bad, cycling through the four kinds; returns the messages and, per
    bad value, (source topic, the DLQ reason code it must get)."""
    now = int(time.time() * 1000)
    config = SimConfig(
        vendors=4, products=12, customers=60, seed=seed, start_ms=now - 40 * DAY, step_ms=40 * DAY // n
    )
    rng = random.Random(seed)
    topic_of = {"orders": topics.orders, "inventory": topics.inventory}
    messages: list[Message] = []
    bad: dict[bytes, tuple[str, str]] = {}
    for i, (kind, event) in enumerate(islice(EventGenerator(config), n)):
        topic, key, good = topic_of[kind], event.vendor_id.encode(), codec.encode(event)
        if i % 20 != 19:
            messages.append((topic, key, good))
            continue
        match (i // 20) % 4:
            case 0:
                value, code = bytes([rng.randrange(0, 0xC3)]) + rng.randbytes(40), "bad_marker"
            case 1:
                value, code = b"\xc3\x01" + rng.randbytes(8) + good[10:], "unknown_fingerprint"
            case 2:
                value, code = good[: len(good) // 2], "truncated_body"
            case _:
                item = OrderItem("p", "Books", -rng.randint(1, 9), 100)
                broken = OrderPlaced(
                    f"bad-{i}", now - DAY, event.vendor_id, f"bad-o{i}", "c", "EUR", 0, (item,)
                )
                topic, value, code = topics.orders, codec.encode(broken), "invalid_event"
        messages.append((topic, key, value))
        bad[value] = (topic, code)
    return messages, bad


def test_bad_input_at_volume_goes_to_the_dlq_and_every_good_event_counts(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess]
) -> None:
    messages, bad = bad_input(topics, 4000, seed=31)
    worker = make_worker().start()
    asyncio.run(send(kafka_bootstrap, messages))  # full rate, into a running worker
    good = [(t, codec.decode(v)) for t, _, v in messages if v not in bad]
    assert_converges(kafka_bootstrap, topics, good, worker)
    dead = asyncio.run(read_topic(kafka_bootstrap, topics.orders_dlq)) + asyncio.run(
        read_topic(kafka_bootstrap, topics.inventory_dlq)
    )
    by_value = {value: dict(headers) for _, value, headers in dead}
    assert len(dead) == len(by_value) == len(bad) == 200  # each bad one once, nothing else
    for value, (topic, code) in bad.items():
        headers = by_value[value]  # the original bytes, unchanged
        assert (headers["vp.source.topic"].decode(), headers["vp.error.code"].decode()) == (topic, code)
        assert headers["vp.error.message"]
    assert Counter(code for _, code in bad.values()) == {
        "bad_marker": 50, "unknown_fingerprint": 50, "truncated_body": 50, "invalid_event": 50,
    }  # fmt: skip
    # every good order was announced once on vendor-activity
    activity = asyncio.run(read_topic(kafka_bootstrap, topics.activity))
    notices = [orjson.loads(value) for _, value, _ in activity if value]
    announced = sorted(n["eventId"] for n in notices if n.get("type") != "stock_alert")
    accepted = sorted(
        e.event_id
        for vendor in {e.vendor_id for _, e in good}
        for e in accepted_events([e for _, e in good], vendor)[0]
        if isinstance(e, OrderPlaced)
    )
    assert announced == accepted
    assert worker.alive()
    assert worker.starts == 1  # never restarted
    assert_no_watchdog_restart(worker)


def test_short_soak_writes_its_chart_fds_flat_lag_bounded(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ROOT / "test-artifacts" / "soak-ci"
    result = soak(
        kafka_bootstrap,
        topics.prefix,
        out,
        duration=60,
        clients=20,
        rate=50,
        interval=5,
    )
    with capsys.disabled():
        print(f"\nshort soak: {result.summary()}")
    assert result.csv_path.exists()
    assert result.png_path.stat().st_size > 10_000
    assert len(result.rows) >= 10
    assert (result.worker_starts, result.api_starts, result.disconnects) == (1, 1, 0)
    assert result.deliveries > 100  # new_order notifications reached the clients
    assert all(r["clients_connected"] == 20 for r in result.rows)
    p99 = result.latency_p99_ms()
    assert p99 is not None
    assert p99 < 5000
    settled = result.rows[len(result.rows) // 2 :]
    for name in ("worker_fds", "api_fds"):  # no leak: the second half stays within a few descriptors
        assert max(r[name] for r in settled) - min(r[name] for r in settled) <= 20
    api_rss = [r["api_rss_mb"] for r in settled]
    assert max(api_rss) - min(api_rss) < 10  # the API's memory is flat (the worker's is not: GUARANTEES.md)
    assert max(r["lag"] for r in result.rows[-3:]) < 50 * 10  # keeps up: under ten seconds of input behind


@pytest.mark.chaos
def test_worker_and_api_killed_under_load_clients_converge_and_miss_no_order(
    kafka_bootstrap: str,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    messages, log = history(topics, 4000, seed=41)
    worker = make_worker(flush_interval_ms="100").start()
    port = free_port()
    api = Child(["api", "--port", str(port)], {**worker.env, "VENDORPULSE_ENV": "dev"}, tmp_path / "api.log")
    api.start()
    try:
        wait_http_ready(port, detail=api.tail)
        vendors = sorted({e.vendor_id for _, e in log})
        clients, kills = asyncio.run(
            _crash_under_load(kafka_bootstrap, topics, messages, worker, api, port, vendors)
        )
    finally:
        api.kill(signal.SIGTERM)
    assert kills == {"worker": 3, "api": 3}
    assert_converges(kafka_bootstrap, topics, log, worker, within=120)
    assert worker.starts == 4  # the first start and the three after the test's kills
    assert_no_watchdog_restart(worker)  # and no restart by the worker's own watchdog
    final = latest_snapshots(kafka_bootstrap, topics.metrics)
    accepted = {
        vendor: {e.event_id for e in accepted_events([e for _, e in log], vendor)[0] if isinstance(e, OrderPlaced)}
        for vendor in vendors
    }  # fmt: skip
    activity = asyncio.run(read_topic(kafka_bootstrap, topics.activity))
    notices = [orjson.loads(value) for _, value, _ in activity if value]
    announced = {n["eventId"] for n in notices if n.get("type") != "stock_alert"}
    with capsys.disabled():
        print(
            f"\ncrashes under load: events={len(messages)} worker_kills={kills['worker']} "
            f"api_kills={kills['api']} "
            + " ".join(
                f"{c.vendor}: orders={len(c.orders)}/{len(accepted[c.vendor])} "
                f"never_written={len(accepted[c.vendor] - announced)} resumes={len(c.resumes)} "
                f"dup_dropped={c.duplicates_dropped} final_version_ok={c.final_version == final[c.vendor]['version']}"
                for c in clients
            )
        )
    for c in clients:
        assert c.final_version == final[c.vendor]["version"], c.vendor  # converged to the final snapshot
        assert len(c.orders) == len(set(c.orders)), f"{c.vendor} got a new_order twice"
        missed = accepted[c.vendor] - set(c.orders)
        assert not missed, (
            f"{c.vendor} missed {len(missed)} of {len(accepted[c.vendor])} orders, "
            f"{len(missed - announced)} of them never written to vendor-activity"
        )
        assert set(c.orders) <= accepted[c.vendor]
        assert c.resumes, f"{c.vendor} never resumed"  # it did reconnect to a restarted API
        assert all(r["complete"] for r in c.resumes)


@dataclass
class Seen:
    vendor: str
    orders: list[str] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    final_version: int | None = None
    duplicates_dropped: int = 0


async def _crash_under_load(
    bootstrap: str,
    topics: Topics,
    messages: list[Message],
    worker: WorkerProcess,
    api: Child,
    port: int,
    vendors: list[str],
) -> tuple[list[Seen], dict[str, int]]:
    settings = api_settings(env="dev", bootstrap_servers=bootstrap)
    backoff = Backoff(base_delay=0.1, max_delay=1.0)
    clients = {
        v: VendorPulseClient(
            f"http://127.0.0.1:{port}", v, make_token(v, settings=settings), backoff=backoff, max_attempts=200
        )
        for v in vendors
    }
    seen = {v: Seen(v) for v in vendors}

    async def collect(client: VendorPulseClient, into: Seen) -> None:
        async for m in client:
            if m.type == "new_order":
                into.orders.append(m.data["eventId"])
            elif m.type == "connection_status" and m.data.get("status") == "resumed":
                into.resumes.append(m.data)

    for client in clients.values():
        await client.connect()
    readers = [asyncio.create_task(collect(clients[v], seen[v])) for v in vendors]
    producer = asyncio.create_task(send(bootstrap, messages, rate=150))
    rng = random.Random(43)
    kills = {"worker": 0, "api": 0}
    for _ in range(3):
        await asyncio.sleep(rng.uniform(2.0, 5.0))
        await asyncio.to_thread(worker.kill, signal.SIGKILL)
        worker.start()
        kills["worker"] += 1
        await asyncio.sleep(rng.uniform(2.0, 5.0))
        await asyncio.to_thread(api.kill, signal.SIGKILL)
        api.start()
        kills["api"] += 1
    await producer
    await asyncio.to_thread(wait_http_ready, port, detail=api.tail)
    # every client converges to the final snapshot, however many versions it skipped
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        final = await asyncio.to_thread(latest_snapshots, bootstrap, topics.metrics)
        if all(
            (clients[v].snapshot or {}).get("version") == final.get(v, {}).get("version") for v in vendors
        ):
            break
        await asyncio.sleep(2)
    await asyncio.sleep(3)  # the last new_orders
    for v, client in clients.items():
        seen[v].final_version = (client.snapshot or {}).get("version")
        seen[v].duplicates_dropped = client.statistics()["duplicatesDropped"]
        await client.close()
    await asyncio.gather(*readers, return_exceptions=True)
    return list(seen.values()), kills


@pytest.mark.chaos
def test_total_kafka_outage_nothing_restarts_and_everything_converges(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every broker SIGKILLed for 25 s while `simulate` runs and one client per vendor is connected."""
    # Ports below Linux's ephemeral range (32768-60999): while every broker is down, clients retry
    # their ports hundreds of times a second, and a retry can take a dead broker's port as its own
    # local port (a TCP self-connect), so the broker could not listen again when restarted.
    with three_brokers(base_port=26092) as stack:
        stack.wait_api_ready()
        worker = WorkerProcess(stack.env, stack.worker.log)
        worker.proc = stack.worker.proc
        worker.logs = [stack.worker.log]
        outage = asyncio.run(_total_outage(stack, worker, rate=100.0, before=15.0, down=25.0, after=20.0))
        with capsys.disabled():
            print(f"\ntotal outage: {outage.summary()}")
        assert outage.produce_error is None, f"the simulator failed: {outage.produce_error}"
        assert outage.lost_acked == 0  # every record acknowledged before the kill is still in Kafka
        assert outage.acked_before > 0
        assert stack.worker.alive(), stack.worker.tail()
        assert stack.api.alive(), stack.api.tail()
        assert (stack.worker.starts, stack.api.starts) == (1, 1)  # neither was restarted
        assert_no_watchdog_restart(worker)  # nor did the worker replace itself
        for seen in outage.clients.values():
            assert seen.disconnects == 0, seen.vendor  # stayed connected through the outage
            assert seen.pings_during_outage >= 1, seen.vendor  # the heartbeat went on
            assert seen.refreshed_during_outage, seen.vendor  # the API kept serving what it holds
            assert seen.versions == sorted(seen.versions), seen.vendor  # never an older snapshot
        assert outage.first_update is not None  # updates flowed again, nothing restarted
        assert outage.clients_converged is not None  # every client reached its vendor's final snapshot
        # what an operator sees: /readyz 200 before, 503 while Kafka is down, 200 again after
        assert outage.ready_before
        assert outage.ready_after
        assert outage.readyz_503 is not None, "/readyz stayed 200 through a total Kafka outage"
        assert outage.status_during is not None
        assert outage.status_during["ready"] is False  # the admin status says so too
        assert outage.status_during["kafkaReachable"] is False


@dataclass
class Listener:
    """One vendor's WebSocket client through the outage."""

    vendor: str
    versions: list[int] = field(default_factory=list)
    updates: list[float] = field(default_factory=list)  # metrics_update arrivals
    pings: list[float] = field(default_factory=list)
    refresh_sent: float | None = None
    refreshed_during_outage: bool = False
    disconnects: int = 0
    pings_during_outage: int = 0


@dataclass
class Outage:
    clients: dict[str, Listener]
    sent: list[tuple[str, Event]] = field(default_factory=list)
    killed_at: float = 0.0
    restarted_at: float = 0.0
    cluster_ready: float = 0.0
    """seconds from the restart until every broker answered"""
    acked_before: int = 0
    """records Kafka held (high watermarks of orders and inventory) just before the kill"""
    lost_acked: int = 0
    produce_error: str | None = None
    first_update: float | None = None
    """seconds from the restart until the first metrics_update reached a client"""
    snapshots_converged: float | None = None
    clients_converged: float | None = None
    ready_before: bool = False
    ready_after: bool = False
    readyz_503: float | None = None
    """seconds from the kill until /readyz first answered 503 with kafkaReachable false"""
    readyz_200: float | None = None
    """seconds from the restart until /readyz answered 200 again"""
    status_during: dict[str, Any] | None = None

    def summary(self) -> str:
        def s(x: float | None) -> str:
            return "never" if x is None else f"{x:.1f}s"

        return (
            f"events={len(self.sent)} acked_before_kill={self.acked_before} lost_acked={self.lost_acked} "
            f"brokers_down={self.restarted_at - self.killed_at:.1f}s cluster_back={s(self.cluster_ready)} "
            f"first_update={s(self.first_update)} snapshots_converged={s(self.snapshots_converged)} "
            f"clients_converged={s(self.clients_converged)} (all after the restart) "
            f"readyz_503={s(self.readyz_503)} after the kill, readyz_200={s(self.readyz_200)} after the restart; "
            f"pings_during_outage={sorted(c.pings_during_outage for c in self.clients.values())} "
            f"disconnects={sum(c.disconnects for c in self.clients.values())} "
            f"simulator={'ok' if self.produce_error is None else self.produce_error}"
        )


async def _listen(url: str, seen: Listener, stop: asyncio.Event, refresh: asyncio.Event) -> None:
    """Stay connected, answer pings, record snapshots; send one `refresh` once `refresh` is set."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    while not stop.is_set():
        try:
            async with connect(url, open_timeout=10) as ws:
                while not stop.is_set():
                    if refresh.is_set() and seen.refresh_sent is None:
                        seen.refresh_sent = time.monotonic()
                        await ws.send(
                            orjson.dumps({"type": "refresh", "data": None, "timestamp": _now_iso()}).decode()
                        )
                    try:
                        message = orjson.loads(await asyncio.wait_for(ws.recv(), 0.5))
                    except TimeoutError:
                        continue
                    now, kind = time.monotonic(), message["type"]
                    if kind in ("analytics_update", "metrics_update"):
                        seen.versions.append(int(message["data"]["version"]))
                        if kind == "metrics_update":
                            seen.updates.append(now)
                        elif seen.refresh_sent is not None and now - seen.refresh_sent < 5:
                            seen.refreshed_during_outage = True  # the answer to our refresh
                    elif kind == "ping":
                        seen.pings.append(now)
                        pong = {"type": "pong", "data": message["data"], "timestamp": message["timestamp"]}
                        await ws.send(orjson.dumps(pong).decode())
        except (ConnectionClosed, OSError, TimeoutError):
            if not stop.is_set():
                seen.disconnects += 1
                await asyncio.sleep(0.5)


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _http(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a GET; (0, {}) when nothing answers."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=3) as r:
            return int(r.status), orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError):
        return 0, {}


async def _high_watermarks(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        assert tps, f"no partitions known for {topics}"
        return {(tp.topic, tp.partition): end for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def _offsets_held(bootstrap: str, topics: list[str]) -> set[tuple[str, int, int]]:
    """(topic, partition, offset) of every record Kafka holds in `topics` (read once the input stopped)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    held: set[tuple[str, int, int]] = set()
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            held |= {(r.topic, r.partition, r.offset) for rs in batch.values() for r in rs}
    finally:
        await consumer.stop()
    return held


async def _total_outage(
    stack: Stack, worker: WorkerProcess, rate: float, before: float, down: float, after: float
) -> Outage:
    """`simulate` at `rate` for before + down + after s; after `before` s SIGKILL every broker and
    restart them all `down` s later. One WebSocket client per vendor and a /readyz poll throughout."""
    config = SimConfig(vendors=4, products=12, customers=60, seed=19)
    vendors = [f"vendor-{i:03d}" for i in range(1, config.vendors + 1)]
    outage = Outage({v: Listener(v) for v in vendors})
    stop, refresh = asyncio.Event(), asyncio.Event()
    listeners = [
        asyncio.create_task(_listen(stack.ws_url(v), outage.clients[v], stop, refresh)) for v in vendors
    ]
    readyz: list[tuple[float, int, object]] = []  # (when, status, kafkaReachable)
    base = f"http://127.0.0.1:{stack.api_port}"

    async def poll_readyz() -> None:
        while not stop.is_set():
            code, body = await asyncio.to_thread(_http, f"{base}/readyz")
            readyz.append((time.monotonic(), code, body.get("kafkaReachable")))
            await asyncio.sleep(0.5)

    poller = asyncio.create_task(poll_readyz())
    sim = asyncio.create_task(
        produce(
            stack.bootstrap, stack.topics.orders, stack.topics.inventory, config,
            rate=rate, duration=before + down + after, keep=outage.sent,
        )
    )  # fmt: skip
    inputs = [stack.topics.orders, stack.topics.inventory]
    await asyncio.sleep(before)
    watermarks = await _high_watermarks(stack.bootstrap, inputs)  # acknowledged by every in-sync replica
    outage.acked_before = sum(watermarks.values())
    outage.killed_at = time.monotonic()
    for node in stack.cluster.nodes:
        await asyncio.to_thread(stack.cluster.kill_node, node.node_id, signal.SIGKILL)
    await asyncio.sleep(down / 2)
    refresh.set()  # mid-outage: the API still answers a refresh with the snapshot it holds
    settings = api_settings(env="dev", bootstrap_servers=stack.bootstrap)
    admin = make_token(None, admin=True, settings=settings)
    await asyncio.sleep(max(0.0, outage.killed_at + down - 2 - time.monotonic()))
    outage.status_during = (
        await asyncio.to_thread(_http, f"{base}/api/v1/analytics/websocket/status", admin)
    )[1]
    await asyncio.sleep(max(0.0, outage.killed_at + down - time.monotonic()))
    for c in outage.clients.values():
        c.pings_during_outage = sum(t >= outage.killed_at for t in c.pings)
    outage.restarted_at = time.monotonic()
    for node in stack.cluster.nodes:
        await asyncio.to_thread(stack.cluster.start_node, node.node_id)
    await asyncio.to_thread(stack.cluster.wait_ready, 180)
    outage.cluster_ready = time.monotonic() - outage.restarted_at
    try:  # the simulator's buffered sends are delivered, or it says why not
        await asyncio.wait_for(sim, timeout=before + down + after + 180)
    except Exception as exc:
        outage.produce_error = f"{type(exc).__name__}: {exc}"
    await asyncio.to_thread(assert_converges, stack.bootstrap, stack.topics, outage.sent, worker, 180)
    outage.snapshots_converged = time.monotonic() - outage.restarted_at
    final = await asyncio.to_thread(latest_snapshots, stack.bootstrap, stack.topics.metrics)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(c.versions and c.versions[-1] == final[v]["version"] for v, c in outage.clients.items()):
            outage.clients_converged = time.monotonic() - outage.restarted_at
            break
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*listeners, poller)
    held = await _offsets_held(stack.bootstrap, inputs)
    outage.lost_acked = sum(
        (topic, partition, offset) not in held
        for (topic, partition), end in watermarks.items()
        for offset in range(end)
    )
    updates = [t for c in outage.clients.values() for t in c.updates if t > outage.restarted_at]
    outage.first_update = min(updates) - outage.restarted_at if updates else None
    outage.ready_before = any(code == 200 for t, code, _ in readyz if t < outage.killed_at)
    outage.ready_after = bool(readyz) and readyz[-1][1] == 200
    down_503 = [
        t for t, code, reachable in readyz
        if outage.killed_at <= t < outage.restarted_at and code == 503 and reachable is False
    ]  # fmt: skip
    outage.readyz_503 = down_503[0] - outage.killed_at if down_503 else None
    up_200 = [t for t, code, _ in readyz if t >= outage.restarted_at and code == 200]
    outage.readyz_200 = up_200[0] - outage.restarted_at if up_200 else None
    return outage
