"""WebSocket abuse at volume against a running API (`vendorpulse api` as a child process on the session's
Kafka), next to well-behaved clients (docs/GUARANTEES.md §4, docs/API.md "Abuse").

Thousands of half-open connections and hundreds of oversized, invalid and flooding ones (infra.harness.abuse,
in a child process) while `new_order` records and snapshots flow to four good clients. Asserted: each
abuser got its error frames and close code (or HTTP status) from the server, which closed every one of
them; the good clients got every order in order and the final snapshot, and were never disconnected;
the API still runs and its descriptors return to where they were. Timings are not asserted here
(bench/abuse.py measures the good clients' latency with and without abuse).
"""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from api.auth import make_token
from api.settings import api_settings
from infra.harness.abuse import (
    INVALID,
    Good,
    Plan,
    ProducedActivity,
    Seen,
    good_client,
    produce_activity,
    run_attack,
)
from infra.harness.chaos import WS_PATH, Child
from infra.harness.soak import open_fds
from infra.ports import free_port, wait_http_ready
from schemas.topics import Topics
from tests.polling import settle

REQUEST_TIMEOUT = 3  # seconds: half-open connections are closed after it (default 10)
HEARTBEAT = 1  # seconds: silent authenticated connections miss two pings quickly (default 15)
GOOD_VENDORS = ["good-1", "good-2"]
PLAN = Plan(vendor="abuser", wait_seconds=45)


def codes(seen: list[Seen]) -> Counter[int | None]:
    return Counter(s.code for s in seen)


def test_abuse_at_volume_leaves_good_clients_served(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "VENDORPULSE_TOPIC_PREFIX": topics.prefix,
        "VENDORPULSE_ENV": "dev",
        "VENDORPULSE_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT),
        "VENDORPULSE_HEARTBEAT_SECONDS": str(HEARTBEAT),
    }
    port = free_port()
    api = Child(["api", "--port", str(port)], env, tmp_path / "api.log").start()
    try:
        wait_http_ready(port, detail=api.tail)
        assert api.proc is not None
        run = asyncio.run(_abuse(port, api.proc.pid, kafka_bootstrap, topics, env))
        assert api.alive(), api.tail()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        api.kill(signal.SIGTERM)
    seen, good, produced, fds = run
    with capsys.disabled():
        print(
            f"\nabuse: connections={sum(len(s) for s in seen.values())} messages={PLAN.messages()} "
            f"orders={sum(len(o) for o in produced.orders.values())} fds baseline/peak/after={fds}"
        )

    # every abuser was answered as documented, and the server closed it (none left to the client)
    assert codes(seen["half_open"]) == {408: PLAN.half_open}
    # 431, unless the close overtook the last of the head (a reset); the counter below is exact
    assert set(codes(seen["huge_head"])) <= {431, None}
    assert codes(seen["silent_upgrade"]) == {4001: PLAN.silent_upgrade}
    assert codes(seen["silent_authenticated"]) == {4008: PLAN.silent_authenticated}
    assert codes(seen["huge_frame"]) == {1009: PLAN.huge_frame}
    assert codes(seen["oversized"]) == {1009: PLAN.oversized}
    app_limit = seen["oversized"][0::2]  # over max_message_bytes: an error frame first
    assert all(s.errors == ["message_too_big"] for s in app_limit)
    assert codes(seen["bad_utf8"]) == {1007: PLAN.bad_utf8}
    assert codes(seen["flood"]) == {4029: PLAN.flood}
    for s in seen["flood"]:
        assert set(s.errors) == {"rate_limited"}
        assert len(s.errors) >= api_settings(env="dev").message_burst
    for kind, abusers in seen.items():
        if kind != "invalid":
            assert all(s.closed for s in abusers), f"{kind}: the server left some open"
    for s in seen["invalid"]:  # one error per bad message, and the connection stays usable
        assert s.errors == [code for _, code in INVALID]
        assert s.pong
        assert not s.closed

    # the good clients were served throughout
    for g in good:
        assert g.closed is None, f"{g.vendor}: closed by the server with {g.closed}"
        assert g.orders == produced.orders[g.vendor]  # every order, in order, none twice
        assert g.latencies.get("abuse"), "orders produced during the abuse reached the client"
        assert g.versions == sorted(g.versions)
        assert g.versions[-1] == produced.versions[g.vendor]

    # descriptors back to their baseline; refusals counted
    baseline, peak, after = fds
    assert peak > baseline + PLAN.half_open // 2  # the abuse did hold descriptors
    assert after <= baseline + 2
    assert f'vendorpulse_http_refused_total{{reason="request_timeout"}} {float(PLAN.half_open)}' in metrics
    assert f'vendorpulse_http_refused_total{{reason="head_too_large"}} {float(PLAN.huge_head)}' in metrics


async def _abuse(
    port: int, pid: int, bootstrap: str, topics: Topics, env: dict[str, str]
) -> tuple[dict[str, list[Seen]], list[Good], ProducedActivity, tuple[int, int, int]]:
    settings = api_settings(env="dev", bootstrap_servers=bootstrap)
    stop, stop_clients, produced = asyncio.Event(), asyncio.Event(), ProducedActivity(phase="abuse")
    good = [Good(v) for v in GOOD_VENDORS for _ in range(2)]
    clients = []
    for n, g in enumerate(good):
        token = make_token(g.vendor, settings=settings, subject=f"good-{n}")
        url = f"ws://127.0.0.1:{port}{WS_PATH}?token={token}&vendor_id={g.vendor}"
        clients.append(asyncio.create_task(good_client(url, g, stop_clients)))
    await asyncio.wait_for(asyncio.gather(*(g.ready.wait() for g in good)), 30)
    await asyncio.sleep(1)
    baseline = open_fds(pid)
    peak = baseline

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, open_fds(pid))
            await asyncio.sleep(0.2)

    producer = asyncio.create_task(
        produce_activity(bootstrap, topics.activity, topics.metrics, GOOD_VENDORS, 20, stop, produced)
    )
    sampler = asyncio.create_task(sample())
    seen = await run_attack(port, PLAN, env)
    stop.set()
    await asyncio.gather(producer, sampler)
    await settle(lambda: all(g.orders == produced.orders[g.vendor] for g in good), within=20)
    await asyncio.sleep(1)  # the last snapshot version
    await settle(lambda: open_fds(pid) <= baseline + 2, within=20)
    after = open_fds(pid)
    stop_clients.set()
    await asyncio.gather(*clients)
    return seen, good, produced, (baseline, peak, after)
