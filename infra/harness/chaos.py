"""Fault scenarios against a real three-broker cluster, for `make chaos` and tests/integration/test_faults.py.

`broker_loss()` starts a private cluster (`LocalKafka(nodes=3)`) in a temporary folder, a worker and an
API as child processes, and one WebSocket client; `simulate` sends at a steady rate while one broker is
SIGKILLed and later restarted, then a different one, never two at once. It returns what a test needs to
judge the run: the events sent, each broker's loss (and the events sent meanwhile), the client's longest
gap between snapshot updates and whether it stayed connected.
The comparison with the independent reference lives in the tests, which own the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka.errors import KafkaError

from infra.kafka import LocalKafka, free_base_port
from infra.ports import free_port, wait_http_ready
from infra.simulate import EventGenerator, SimConfig, produce
from processors.topics_admin import ensure_topics
from schemas.events import Event
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
WS_PATH = "/api/v1/analytics/ws/vendor/analytics"
UPDATES = {"analytics_update", "metrics_update"}
TRICKLE_RATE = 10.0
"""events/s sent once the broker-loss scenario outlasts its planned duration"""


@dataclass
class Child:
    """A `python -m infra <command>` child process logging to a file."""

    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Child:
        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infra", *self.args], cwd=ROOT, env=self.env, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Watch:
    """What one WebSocket client saw: arrival times of snapshot updates, and its disconnects."""

    vendor: str
    updates: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    disconnects: int = 0

    def longest_gap(self) -> float:
        return self.longest_gap_at()[1]

    def longest_gap_at(self) -> tuple[float, float]:
        """(when it began, monotonic; its length in s) of the longest gap between two updates"""
        gaps = [(a, b - a) for a, b in zip(self.updates, self.updates[1:], strict=False)]
        return max(gaps, key=lambda gap: gap[1], default=(0.0, 0.0))


async def watch(url: str, seen: Watch, stop: asyncio.Event) -> None:
    """Stay connected to `url`, answer pings, record every snapshot update; reconnect when dropped."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    while not stop.is_set():
        try:
            async with connect(url, open_timeout=5) as ws:
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    message = orjson.loads(raw)
                    if message["type"] in UPDATES:
                        seen.updates.append(time.monotonic())
                        seen.versions.append(int(message["data"]["version"]))
                    elif message["type"] == "ping":
                        pong = {"type": "pong", "data": message["data"], "timestamp": message["timestamp"]}
                        await ws.send(orjson.dumps(pong).decode())
        except (ConnectionClosed, OSError, TimeoutError):
            if not stop.is_set():
                seen.disconnects += 1
                await asyncio.sleep(0.5)


@dataclass
class Stack:
    """A three-broker cluster, the contract's topics under a prefix, a worker and an API."""

    cluster: LocalKafka
    topics: Topics
    worker: Child
    api: Child
    api_port: int
    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def ws_url(self, vendor: str) -> str:
        from api.auth import make_token
        from api.settings import api_settings

        settings = api_settings(env="dev", bootstrap_servers=self.bootstrap)
        token = make_token(vendor, settings=settings)
        return f"ws://127.0.0.1:{self.api_port}{WS_PATH}?token={token}&vendor_id={vendor}"

    def wait_api_ready(self, within: float = 60.0) -> None:
        wait_http_ready(self.api_port, within, detail=self.api.tail)


@contextlib.contextmanager
def three_brokers(base_port: int = 27092, prefix: str = "chaos-") -> Iterator[Stack]:
    """The whole stack on a private cluster in a temporary folder (not under pytest's basetemp, which
    another session may prune), torn down afterwards. Ports sit below Linux's ephemeral range
    (32768-60999): a client's reconnect attempts could otherwise take a killed broker's port as their
    own local port, and the broker could not listen there again when it restarts."""
    state = Path(tempfile.mkdtemp(prefix="vendorpulse-chaos-"))
    cluster = LocalKafka(nodes=3, base_port=free_base_port(base_port), state_dir=state)
    try:
        bootstrap = cluster.start()
        topics = Topics.for_prefix(prefix)
        _retry(lambda: asyncio.run(ensure_topics(bootstrap, topics, partitions=6)), within=60)
        with worker_and_api(bootstrap, prefix, state) as (worker, api, port, env):
            yield Stack(cluster, topics, worker, api, port, env)
    finally:
        cluster.stop(timeout=10)
        if os.environ.get("VENDORPULSE_CHAOS_KEEP"):
            print(f"chaos: state and logs kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def worker_and_api(
    bootstrap: str, prefix: str, state: Path
) -> Iterator[tuple[Child, Child, int, dict[str, str]]]:
    """`vendorpulse worker` and `vendorpulse api` (free port, dev token secret) as child processes with
    their logs in `state`; both stopped with SIGTERM afterwards."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VENDORPULSE_TOPIC_PREFIX": prefix,
        "VENDORPULSE_DATA_DIR": str(state / "worker"),
        "VENDORPULSE_ENV": "dev",
    }
    port = free_port()
    worker = Child(["worker", "--loglevel", "warning"], env, state / "worker.log").start()
    api = Child(["api", "--port", str(port)], env, state / "api.log").start()
    try:
        yield worker, api, port, env
    finally:
        api.kill(signal.SIGTERM)
        worker.kill(signal.SIGTERM)


def _retry(step: Callable[[], object], within: float) -> None:
    """A freshly started broker can be listening before its peers see it (NodeNotReadyError)."""
    deadline = time.monotonic() + within
    while True:
        try:
            step()
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


async def _cluster_view(bootstrap: str) -> tuple[set[int], list[tuple[set[int], set[int]]]] | None:
    """The brokers the cluster's metadata lists (registered and not fenced) and each partition's (ISR,
    replicas) over every topic; None while no broker answers."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        brokers = {int(b["node_id"]) for b in (await admin.describe_cluster())["brokers"]}
        described = await admin.describe_topics()
        return brokers, [(set(p["isr"]), set(p["replicas"])) for t in described for p in t["partitions"]]
    except (KafkaError, OSError):
        return None
    finally:
        await admin.close()


async def _answers(address: str) -> bool:
    """Whether the broker at `address` itself serves a metadata request (its acceptors start last)."""
    return await _cluster_view(address) is not None


async def broker_gone(bootstrap: str, node: int, within: float) -> None:
    """Until the cluster has taken note of `node`'s loss: its metadata no longer lists it and no ISR
    holds it. A SIGKILLed broker stays registered, and in every ISR, until its controller session
    expires (`broker.session.timeout.ms`, 9 s, counted afresh when the controller itself moves), so
    before that a view of the cluster cannot tell the dead broker from its restarted self."""
    deadline = time.monotonic() + within
    while True:
        view = await _cluster_view(bootstrap)
        if view is not None and node not in view[0] and all(node not in isr for isr, _ in view[1]):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"node {node} still listed by the cluster {within:.0f} s after its loss: {view}"
            )
        await asyncio.sleep(0.5)


async def broker_back(cluster: LocalKafka, node: int, within: float) -> None:
    """Until the restarted `node` answers on its own address, the cluster lists it again and every
    partition of every topic has all its replicas in sync. Only meaningful after `broker_gone`: that
    is what makes a listing of `node` come from its new registration."""
    address = f"localhost:{cluster.nodes[node - 1].port}"
    deadline = time.monotonic() + within
    while True:
        view = await _cluster_view(bootstrap=cluster.bootstrap)
        if (
            view is not None
            and node in view[0]
            and all(isr == replicas for isr, replicas in view[1])
            and await _answers(address)
        ):
            return
        if time.monotonic() > deadline:
            lagging = -1 if view is None else sum(isr != replicas for isr, replicas in view[1])
            raise RuntimeError(
                f"node {node} not back within {within:.0f} s: listed={view is not None and node in view[0]}, "
                f"{lagging} partitions under-replicated"
            )
        await asyncio.sleep(0.5)


@dataclass
class Loss:
    """One broker's loss: when it was SIGKILLed and when it was back in every ISR (seconds into the
    run), and how many events the simulator sent in between."""

    node: int
    killed: float
    back: float
    sent: int


@dataclass
class BrokerLossResult:
    sent: list[tuple[str, Event]]
    losses: list[Loss]
    watch: Watch
    elapsed: float
    worker_starts: int
    api_starts: int
    started: float
    """when the run began (monotonic)"""

    @property
    def kills(self) -> list[tuple[float, int]]:
        """(seconds into the run, node id) of every SIGKILL"""
        return [(loss.killed, loss.node) for loss in self.losses]

    def summary(self) -> str:
        down = [f"node {x.node} {x.killed:.1f}-{x.back:.1f}s ({x.sent} sent)" for x in self.losses]
        at, gap = self.watch.longest_gap_at()
        return (
            f"events={len(self.sent)} down=[{', '.join(down)}] "
            f"updates={len(self.watch.updates)} longest_update_gap={gap:.2f}s from {at - self.started:.1f}s "
            f"disconnects={self.watch.disconnects} elapsed={self.elapsed:.1f}s"
        )


async def _broker_loss(
    stack: Stack, rate: float, duration: float, schedule: list[tuple[int, float, float]], vendor: str
) -> BrokerLossResult:
    seen = Watch(vendor)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(stack.ws_url(vendor), seen, stop))
    sent: list[tuple[str, Event]] = []
    progress: list[tuple[float, int]] = [(time.monotonic(), 0)]  # (when, events sent so far)
    config = SimConfig(vendors=4, products=12, customers=60, seed=17)
    generator = EventGenerator(config)
    started = time.monotonic()
    done = asyncio.Event()

    async def traffic() -> None:
        """`rate` for `duration` s, then, while the schedule is not done, a trickle: a loaded machine
        restarts brokers slowly, and the reference fold's cost grows faster than the log."""
        for pace, until_done in ((rate, False), (TRICKLE_RATE, True)):
            if until_done and done.is_set():
                return
            await produce(
                stack.bootstrap, stack.topics.orders, stack.topics.inventory, config, rate=pace,
                duration=None if until_done else duration, stop=done if until_done else None,
                generator=generator, keep=sent,
                on_progress=lambda _: progress.append((time.monotonic(), len(sent))),
            )  # fmt: skip

    sim = asyncio.create_task(traffic())

    def sent_by(when: float) -> int:
        return max((n for t, n in progress if t <= when), default=0)

    async def until(at: float) -> None:
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))

    losses: list[Loss] = []
    for node, kill_at, restart_at in schedule:
        # One broker down at a time: each loss starts once the previous broker is back in every ISR
        # (two down at once leaves fewer in-sync replicas than min.insync.replicas, and writes rightly
        # stop), and each restart waits until the cluster has noticed the loss.
        await until(kill_at)
        await asyncio.to_thread(stack.cluster.kill_node, node, signal.SIGKILL)
        killed = time.monotonic()
        await broker_gone(stack.bootstrap, node, within=90)
        await until(restart_at)
        await asyncio.to_thread(stack.cluster.start_node, node)
        await broker_back(stack.cluster, node, within=120)
        back = time.monotonic()
        losses.append(Loss(node, killed - started, back - started, sent_by(back) - sent_by(killed)))
    # Traffic goes on for the planned duration, and for a fifth of it at least after the last loss.
    await until(max(duration, losses[-1].back + 0.2 * duration) if losses else duration)
    done.set()
    await sim
    await asyncio.sleep(5)  # the last updates reach the client
    stop.set()
    await watcher
    return BrokerLossResult(
        sent, losses, seen, time.monotonic() - started, stack.worker.starts, stack.api.starts, started
    )


def broker_loss(
    stack: Stack, rate: float = 150.0, duration: float = 40.0, vendor: str = "vendor-001"
) -> BrokerLossResult:
    """Simulate at `rate`/s for `duration` s, then at `TRICKLE_RATE` while brokers are still being lost
    and for a fifth of `duration` after the last is back; SIGKILL node 2 at 20 % of it and restart it at
    45 % (or once the cluster has noticed its loss, if later), then SIGKILL node 3 at 55 % (or once node
    2 is back in every ISR, if later) and restart it at 80 %."""
    schedule = [(2, 0.20 * duration, 0.45 * duration), (3, 0.55 * duration, 0.80 * duration)]
    stack.wait_api_ready()
    return asyncio.run(_broker_loss(stack, rate, duration, schedule, vendor))


def main() -> None:
    """`python -m infra.harness.chaos`: the broker-loss scenario with its figures (the equality check against
    the reference is `pytest -m chaos tests/integration/test_faults.py`)."""
    with three_brokers() as stack:
        result = broker_loss(stack)
        print(result.summary())


if __name__ == "__main__":
    main()
