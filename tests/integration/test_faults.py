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
from infra.chaos import Child, broker_loss, free_port, three_brokers, wait_ready
from infra.simulate import EventGenerator, SimConfig
from infra.soak import soak
from infra.topics import Topics
from schemas.codec import FastavroCodec
from schemas.events import OrderItem, OrderPlaced
from tests.conftest import _free_base_port
from tests.integration.conftest import ROOT, WorkerProcess, latest_snapshots, read_topic
from tests.integration.test_worker import Message, assert_converges, history, send
from tests.unit.reference import accepted_events

DAY = 86_400_000
codec = FastavroCodec()


@pytest.mark.chaos
def test_broker_loss_keeps_every_event_and_the_client_keeps_receiving(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with three_brokers(base_port=_free_base_port(36092)) as stack:
        result = broker_loss(stack, rate=150.0, duration=40.0)
        with capsys.disabled():
            print(f"\nbroker loss: {result.summary()}")
        assert [node for _, node in result.kills] == [2, 3]
        assert len(result.sent) >= 0.9 * 150 * 40
        worker = WorkerProcess(stack.env, stack.worker.log)
        worker.proc = stack.worker.proc
        worker.logs = [stack.worker.log]
        assert_converges(stack.bootstrap, stack.topics, result.sent, worker, within=120)
        assert stack.worker.alive(), stack.worker.tail()
        assert stack.api.alive(), stack.api.tail()
        assert (stack.worker.starts, stack.api.starts) == (1, 1)  # neither was restarted
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
    announced = sorted(orjson.loads(value)["eventId"] for _, value, _ in activity if value)
    accepted = sorted(
        e.event_id
        for vendor in {e.vendor_id for _, e in good}
        for e in accepted_events([e for _, e in good], vendor)[0]
        if isinstance(e, OrderPlaced)
    )
    assert announced == accepted
    assert worker.alive()
    assert worker.starts == 1  # never restarted


def test_short_soak_writes_its_chart_fds_flat_lag_bounded(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ROOT / "test-artifacts" / "soak-ci"
    result = soak(
        kafka_bootstrap,
        topics.orders.removesuffix("orders"),
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
        wait_ready(port, api)
        vendors = sorted({e.vendor_id for _, e in log})
        clients, kills = asyncio.run(
            _crash_under_load(kafka_bootstrap, topics, messages, worker, api, port, vendors)
        )
    finally:
        api.kill(signal.SIGTERM)
    assert kills == {"worker": 3, "api": 3}
    assert_converges(kafka_bootstrap, topics, log, worker, within=120)
    final = latest_snapshots(kafka_bootstrap, topics.metrics)
    accepted = {
        vendor: {e.event_id for e in accepted_events([e for _, e in log], vendor)[0] if isinstance(e, OrderPlaced)}
        for vendor in vendors
    }  # fmt: skip
    activity = asyncio.run(read_topic(kafka_bootstrap, topics.activity))
    announced = {orjson.loads(value)["eventId"] for _, value, _ in activity if value}
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
    await asyncio.to_thread(wait_ready, port, api)
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
