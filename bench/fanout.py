"""WebSocket fan-out from Kafka to N dashboards: `python -m bench.fanout [--clients 1000,5000,10000]
[--rate 1000] [--per-vendor 10] [--seconds 10] [--connect-concurrency 10] [--mode full,delta]
[--traffic simulator|sample] [--server app,bare,floor]`.

Per case: fresh prefixed topics on the broker of `KAFKA_BOOTSTRAP_SERVERS` (default: the local broker
of `vendorpulse kafka start`), one API server in a subprocess (the production uvicorn configuration),
N clients spread over N / per-vendor vendors in this process (a light sans-I/O client on uvloop, so the
clients cost little next to the server), and snapshots produced to `vendor-metrics` at `rate` per second
round-robin over the vendors, each stamped with its produce time. The snapshots are the simulator's
traffic by default: each vendor's next snapshot is the one after one more simulated event of a vendor
with two months of history (`simulated_streams`), so consecutive snapshots differ as live ones do;
`--traffic sample` sends one fixed ~2 KB snapshot with only the version and the stamp changing. With
`--mode delta` the clients connect with `updates=delta` and get `metrics_delta` merge patches; each
case reports the payload bytes per update a client receives, so `--mode full,delta` compares the two
on the same traffic (the stamp, `benchSentAt`, adds ~35 bytes to every patch). Measured: produce -> client latency
(p50/p99/max) of `metrics_update` frames, connection set-up (TCP connect to the first
`analytics_update`: handshake, token check, first snapshot) p50/p99, frames/s delivered, the server's
CPU (from /proc) and its memory per connection. The server's CPU per frame is given in total and as
the marginal cost over its idle CPU (clients connected, nothing produced: heartbeats, Kafka polling),
which stays comparable when other load on the machine starves the producer and fewer frames are
delivered. `--server bare` runs `serve_bare` instead of the API: the same stack without the product,
measured by the same clients; `--server floor` runs `serve_floor`: one prepared frame per record written
to each socket's transport and nothing else, the least any Python server on uvloop pays. Warm-up first; prints a table and writes bench/results/fanout.json.
`BENCH_PROFILE=<file>` samples the server with py-spy during the measured phase, `BENCH_PERF=<file>`
with `perf record -g` (kernel and native frames: uvloop, libpython, the TCP path).
`BENCH_SERVER_COMMAND` replaces `python -m bench.fanout --serve` (the port is appended), e.g. to run
another checkout's server against the same clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from bench import machine
from processors.topics_admin import broker_count, ensure_topics
from schemas.settings import KafkaSettings
from schemas.topics import Topics

RESULTS = Path(__file__).resolve().parent / "results" / "fanout.json"
WARMUP_SECONDS = 2.0
IDLE_SECONDS = 3.0
TICK = 0.005
STAMP = b'"benchSentAt":'
UPDATE_PREFIXES = (b'{"type":"metrics_update"', b'{"type":"metrics_delta"')
TEMPLATES = 20  # simulated vendors whose snapshot streams the bench vendors share (vendor i: i % 20)
HISTORY_EVENTS = 3000  # per template vendor, before the recorded snapshots


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(port: int) -> None:
    """The server side (a subprocess): the API as `vendorpulse api` runs it, quieter logs."""
    import uvicorn

    from api.app import create_app
    from api.server import config, tune_gc
    from api.settings import api_settings

    raise_fd_limit()
    settings = api_settings()
    server = uvicorn.Server(config(create_app(settings), settings, "127.0.0.1", port, log_level="warning"))
    tune_gc()
    server.run()


def serve_bare(port: int) -> None:
    """A bare baseline server (a subprocess): uvicorn with the same options (uvloop, httptools,
    websockets-sansio, no permessage-deflate) and a raw ASGI app with no framework, authentication,
    heartbeat, refresh, conflation or telemetry. It accepts any client, sends one `analytics_update`,
    and writes every record of `vendor-metrics` (one aiokafka consumer without a group, as the API's
    feed) in a `metrics_update` envelope to the vendor's sockets with a sequential `await send(...)`
    per socket: what any app on this stack pays per frame, measured by the same clients in the same
    minutes as the real one."""
    from urllib.parse import parse_qs

    import uvicorn
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    raise_fd_limit()
    topic = Topics.for_prefix(os.environ.get("VENDORPULSE_TOPIC_PREFIX", "")).metrics
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", KafkaSettings().bootstrap)
    sends: dict[str, list[Any]] = {}
    state = {"ready": False}

    async def feed() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]])
            state["ready"] = True
            while True:
                for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                    for record in records:
                        vendor = (record.key or b"").decode()
                        if record.value is None or vendor not in sends:
                            continue
                        text = b'{"type":"metrics_update","data":%s,"timestamp":"x"}' % record.value
                        message = {"type": "websocket.send", "text": text.decode()}
                        for send in list(sends[vendor]):
                            try:
                                await send(message)
                            except Exception:  # the client went away
                                continue
        finally:
            await consumer.stop()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            tasks = []
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    tasks.append(asyncio.create_task(feed()))
                    await send({"type": "lifespan.startup.complete"})
                else:
                    for task in tasks:
                        task.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            status = 200 if state["ready"] else 503
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        vendor = parse_qs(scope["query_string"].decode()).get("vendor_id", [""])[0]
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": '{"type":"analytics_update","data":{}}'})
        sends.setdefault(vendor, []).append(send)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            sends[vendor].remove(send)

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", ws="websockets-sansio",
                ws_per_message_deflate=False, log_level="warning")  # fmt: skip


def serve_floor(port: int) -> None:
    """The floor (a subprocess): the least a Python asyncio server on uvloop pays per frame here. The
    same aiokafka feed as `serve_bare`; each record is put in its `metrics_update` envelope and framed
    once (websockets' `Frame.serialize`, unmasked, as a server sends it), and that one `bytes` object
    goes to every socket of the vendor with `transport.write`, nothing else per frame: no ASGI `send`,
    no check, no bookkeeping. uvicorn (uvloop, httptools, websockets-sansio, no permessage-deflate, no
    ping) does the handshake only; the transport is taken from the protocol as `api.uvicorn_ws` hands
    it to the API."""
    from urllib.parse import parse_qs

    import uvicorn
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from api.uvicorn_ws import EXTENSION, HubWebSocketProtocol

    raise_fd_limit()
    topic = Topics.for_prefix(os.environ.get("VENDORPULSE_TOPIC_PREFIX", "")).metrics
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", KafkaSettings().bootstrap)
    sockets: dict[bytes, list[Any]] = {}
    state = {"ready": False}

    async def feed() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]])
            state["ready"] = True
            while True:
                for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                    for record in records:
                        transports = sockets.get(record.key or b"")
                        if record.value is None or not transports:
                            continue
                        text = b'{"type":"metrics_update","data":%s,"timestamp":"x"}' % record.value
                        wire = Frame(Opcode.TEXT, text).serialize(mask=False, extensions=[])
                        for transport in transports:
                            transport.write(wire)
        finally:
            await consumer.stop()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            tasks = []
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    tasks.append(asyncio.create_task(feed()))
                    await send({"type": "lifespan.startup.complete"})
                else:
                    for task in tasks:
                        task.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            status = 200 if state["ready"] else 503
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        vendor = parse_qs(scope["query_string"].decode()).get("vendor_id", [""])[0].encode()
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": '{"type":"analytics_update","data":{}}'})
        transport = scope["extensions"][EXTENSION].transport
        sockets.setdefault(vendor, []).append(transport)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            sockets[vendor].remove(transport)

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", ws=HubWebSocketProtocol,
                ws_per_message_deflate=False, ws_ping_interval=None, ws_ping_timeout=None,
                log_level="warning")  # fmt: skip


@dataclass(frozen=True)
class Case:
    mode: str  # "full" (metrics_update) or "delta" (updates=delta: metrics_delta)
    clients: int
    per_vendor: int  # clients per vendor
    rate: int  # snapshots produced per second
    seconds: float  # measured
    connect_concurrency: int  # clients connecting at once (set-up time, not a thundering herd)
    server: str = "app"  # "app" (the API), "bare" (`serve_bare`) or "floor" (`serve_floor`)


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    setups: list[float] = field(default_factory=list)
    frames: int = 0
    payload_bytes: int = 0  # of the update frames counted in `frames`
    full_frames: int = 0  # of them, full metrics_update frames
    recording: bool = False
    since: float = 0.0  # only frames produced from then on (epoch seconds) count


class Client(asyncio.Protocol):
    """A WebSocket client on websockets' sans-I/O protocol: parses only what the benchmark needs."""

    def __init__(self, uri: str, stats: Stats) -> None:
        self.ws = ClientProtocol(parse_uri(uri), max_size=2**22)
        self.stats = stats
        self.started = time.perf_counter()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self._text(bytes(event.data))
        self._flush()

    def _text(self, data: bytes) -> None:
        if data.startswith(UPDATE_PREFIXES):
            at = data.find(STAMP)
            if at >= 0 and self.stats.recording:
                end = at + len(STAMP)
                while data[end] in b"0123456789.e+-":
                    end += 1
                sent_at = float(data[at + len(STAMP) : end])
                if sent_at >= self.stats.since:
                    self.stats.latencies.append(time.time() - sent_at)
                    self.stats.frames += 1
                    self.stats.payload_bytes += len(data)
                    self.stats.full_frames += data.startswith(UPDATE_PREFIXES[0])
        elif data.startswith(b'{"type":"analytics_update"') and not self.ready.done():
            self.stats.setups.append(time.perf_counter() - self.started)
            self.ready.set_result(None)
        elif data.startswith(b'{"type":"ping"'):
            ping = orjson.loads(data)
            pong = {"type": "pong", "data": {"id": ping["data"]["id"]}, "timestamp": ping["timestamp"]}
            self.ws.send_text(orjson.dumps(pong))

    def _flush(self) -> None:
        if self.transport is not None:
            for chunk in self.ws.data_to_send():
                if chunk:
                    self.transport.write(chunk)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the first snapshot: {exc}"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def proc_cpu_seconds(pid: int) -> float:
    user, system = proc_cpu_split(pid)
    return user + system


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """The process's CPU seconds in user space (Python, C extensions) and in the kernel (system calls,
    the loopback TCP path they drive)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_switches(pid: int) -> int:
    """Voluntary context switches of all the process's threads: how often it went to sleep waiting
    for something (for the event loop: a wake-up)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def proc_wait_seconds(pid: int) -> float:
    """Time the process's main thread spent runnable but waiting for a CPU (other load on the machine)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(port: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            status = (await reader.readline()).split()
            writer.close()
            if len(status) > 1 and status[1] == b"200":
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the API did not become ready; see its output above")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2) if ordered else float("nan")


def sample_snapshot() -> dict[str, Any]:
    """A contract §5 snapshot of realistic size (~2 KB): 5 top products, 4 categories, 12 months."""
    from processors.core import new_state, snapshot

    data = snapshot(new_state("bench"), int(time.time() * 1000))
    data["currency"] = "EUR"
    data["topProducts"] = [
        {"productId": f"product-{n:05d}", "name": f"Product number {n}", "revenue": 123_456 - n, "units": 42}
        for n in range(5)
    ]
    data["salesByCategory"] = [
        {"category": c, "revenue": 99_999, "orders": 321, "percentage": 25.0}
        for c in ("books", "games", "music", "toys")
    ]
    return data


def simulated_streams(templates: int, length: int, seed: int = 7) -> list[list[dict[str, Any]]]:
    """`templates` vendors of the simulator (infra.simulate), each folded by the core through
    HISTORY_EVENTS events over the last 60 days, then the snapshot after each of its next `length`
    events: consecutive snapshots of one vendor, as the worker writes them one event apart."""
    from infra.simulate import EventGenerator, SimConfig
    from processors.core import apply, new_state, snapshot

    now = int(time.time() * 1000)
    total = templates * (HISTORY_EVENTS + length)
    step = 60 * 86_400_000 // total
    generator = EventGenerator(
        SimConfig(vendors=templates, seed=seed, start_ms=now - step * total, step_ms=step)
    )
    states: dict[str, Any] = {}
    streams: dict[str, list[dict[str, Any]]] = {}
    seen: dict[str, int] = {}
    for _, event in generator:
        vendor = event.vendor_id
        state = states.setdefault(vendor, new_state(vendor))
        apply(state, event, event.occurred_at)
        seen[vendor] = seen.get(vendor, 0) + 1
        if seen[vendor] > HISTORY_EVENTS:
            stream = streams.setdefault(vendor, [])
            if len(stream) < length:
                stream.append(snapshot(state, event.occurred_at))
            if len(streams) == templates and all(len(s) >= length for s in streams.values()):
                break
    return [streams[v] for v in sorted(streams)]


class Traffic:
    """The next snapshot of each bench vendor: its template's next one (simulator), or the sample."""

    def __init__(self, vendors: list[str], kind: str, per_vendor: int) -> None:
        self.kind = kind
        self.sample = sample_snapshot()
        self.streams = simulated_streams(TEMPLATES, per_vendor) if kind == "simulator" else []
        self.index = {v: n for n, v in enumerate(vendors)}
        self.sent = dict.fromkeys(vendors, 0)

    def next(self, vendor: str) -> dict[str, Any]:
        n = self.sent[vendor]
        self.sent[vendor] = n + 1
        if not self.streams:
            return self.sample
        stream = self.streams[self.index[vendor] % len(self.streams)]
        return dict(stream[n % len(stream)])  # a shallow copy: the vendor's fields are set on it


async def produce(
    producer: AIOKafkaProducer,
    topic: str,
    versions: dict[str, int],
    rate: int,
    seconds: float,
    traffic: Traffic | None = None,
) -> int:
    """Snapshots at `rate`/s, round-robin over the vendors of `versions` (each vendor's version rises
    across calls), each stamped with its send time (`benchSentAt`, epoch seconds); `traffic` gives
    each vendor's next snapshot (default: the fixed sample)."""
    vendors = list(versions)
    traffic = traffic or Traffic(vendors, "sample", 0)
    loop = asyncio.get_running_loop()
    start, sent, i = loop.time(), 0, 0
    while (elapsed := loop.time() - start) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            vendor = vendors[i % len(vendors)]
            i += 1
            versions[vendor] += 1
            data = traffic.next(vendor)
            data["vendorId"], data["version"], data["benchSentAt"] = vendor, versions[vendor], time.time()
            value = orjson.dumps(data)
            await producer.send(topic, value, key=vendor.encode())
            sent += 1
        await asyncio.sleep(TICK)
    return sent


def run_case(bootstrap: str, case: Case, traffic: str) -> dict[str, Any]:
    """One case: fresh topics, a server subprocess, the clients and the producer in this process."""
    import uvloop

    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    topics = Topics.for_prefix(prefix)
    asyncio.run(ensure_topics(bootstrap, topics, partitions=6))
    port = free_port()
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VENDORPULSE_TOPIC_PREFIX": prefix,
        "VENDORPULSE_ENV": os.environ.get("VENDORPULSE_ENV", "dev"),
        "VENDORPULSE_MAX_CONNECTIONS_PER_TOKEN": str(case.clients),
    }
    serve_option = {"app": "--serve", "bare": "--serve-bare", "floor": "--serve-floor"}[case.server]
    command = os.environ.get(
        "BENCH_SERVER_COMMAND", f"{sys.executable} -m bench.fanout {serve_option}"
    ).split()
    server = subprocess.Popen([*command, str(port)], env=env)
    try:
        return uvloop.run(drive(server.pid, port, bootstrap, topics, env["VENDORPULSE_ENV"], case, traffic))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


async def drive(
    pid: int,
    port: int,
    bootstrap: str,
    topics: Topics,
    env: str,
    case: Case,
    traffic_kind: str,
) -> dict[str, Any]:
    from api.auth import make_token
    from api.settings import api_settings

    clients, rate, seconds = case.clients, case.rate, case.seconds
    stats = Stats()
    conns: list[Client] = []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks=1)
    try:
        await wait_ready(port)
        rss_before, setup_cpu0 = proc_rss_kb(pid), proc_cpu_seconds(pid)
        settings = api_settings(env=env)
        vendors = [f"bench-v{n:05d}" for n in range(max(1, clients // case.per_vendor))]
        per_vendor = int(rate * (WARMUP_SECONDS + seconds) / len(vendors)) + 2
        traffic = Traffic(vendors, traffic_kind, per_vendor)
        updates = "&updates=delta" if case.mode == "delta" else ""
        tokens = {v: make_token(v, ttl=3600, settings=settings) for v in vendors}
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(case.connect_concurrency)

        async def open_one(n: int) -> None:
            vendor = vendors[n % len(vendors)]
            uri = f"ws://127.0.0.1:{port}/api/v1/analytics/ws/vendor/analytics?token={tokens[vendor]}&vendor_id={vendor}{updates}"
            async with gate:
                client = Client(uri, stats)
                await loop.create_connection(lambda: client, "127.0.0.1", port)
                await asyncio.wait_for(client.ready, 30)
                conns.append(client)

        await asyncio.gather(*(open_one(n) for n in range(clients)))
        rss_after, setup_cpu = proc_rss_kb(pid), proc_cpu_seconds(pid) - setup_cpu0
        await producer.start()
        versions = dict.fromkeys(vendors, 0)
        await produce(producer, topics.metrics, versions, rate, WARMUP_SECONDS, traffic)
        await asyncio.sleep(0.5)
        idle0, idle_t0 = proc_cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)  # clients connected, nothing produced: heartbeats, polling
        idle_rate = (proc_cpu_seconds(pid) - idle0) / (time.monotonic() - idle_t0)
        load_before = os.getloadavg()[0]
        stats.recording = True
        profiler = profile(pid, seconds)
        (user0, sys0), wait0, own0, switches0, t0 = (
            proc_cpu_split(pid),
            proc_wait_seconds(pid),
            time.process_time(),
            proc_switches(pid),
            time.monotonic(),
        )
        cpu0 = user0 + sys0
        produced = await produce(producer, topics.metrics, versions, rate, seconds, traffic)
        await producer.flush()
        await asyncio.sleep(0.5)  # let the last frames arrive
        elapsed = time.monotonic() - t0
        user1, sys1 = proc_cpu_split(pid)
        cpu, user, system = user1 + sys1 - cpu0, user1 - user0, sys1 - sys0
        wait = proc_wait_seconds(pid) - wait0
        own = time.process_time() - own0
        switches = proc_switches(pid) - switches0
        stats.recording = False
        if profiler is not None:
            await asyncio.to_thread(profiler.wait)
    finally:
        for client in conns:
            client.close()
        await producer.stop()
    return {
        "server": case.server,
        "mode": case.mode,
        "traffic": traffic_kind,
        "clients": clients,
        "connect_concurrency": case.connect_concurrency,
        "vendors": len(vendors),
        "rate_per_s": rate,
        "seconds": seconds,
        "events_produced": produced,
        "frames_delivered": stats.frames,
        "frames_per_s": round(stats.frames / elapsed),
        "bytes_per_update": round(stats.payload_bytes / max(1, stats.frames)),
        "full_update_share": round(stats.full_frames / max(1, stats.frames), 3),
        "latency_ms": {
            "p50": pct(stats.latencies, 0.5),
            "p99": pct(stats.latencies, 0.99),
            "max": pct(stats.latencies, 1.0),
        },
        "setup_ms": {"p50": pct(stats.setups, 0.5), "p99": pct(stats.setups, 0.99)},
        "server_cpu_us_per_setup": round(1e6 * setup_cpu / clients),
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "server_cpu_us_per_frame": round(1e6 * cpu / max(1, stats.frames), 1),
        "server_idle_cpu_percent": round(100 * idle_rate, 1),
        "server_user_us_per_frame": round(1e6 * user / max(1, stats.frames), 1),
        "server_system_us_per_frame": round(1e6 * system / max(1, stats.frames), 1),
        "server_wakeups_per_s": round(switches / elapsed),
        "server_cpu_us_per_frame_marginal": round(
            1e6 * max(0.0, cpu - idle_rate * elapsed) / max(1, stats.frames), 1
        ),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "server_cpu_wait_percent": round(100 * wait / elapsed, 1),
        "server_rss_mb": round(rss_after / 1024, 1),
        "server_kb_per_connection": round((rss_after - rss_before) / clients, 1),
        "client_cpu_percent": round(100 * own / elapsed, 1),
    }


def profile(pid: int, seconds: float) -> subprocess.Popen[bytes] | None:
    """`BENCH_PROFILE=<file>`: py-spy samples the server during the measured phase only (collapsed
    stacks, one line per stack, for `flamegraph.pl` or a grep); extra py-spy options in
    `BENCH_PROFILE_OPTIONS` (default `--nonblocking`). `BENCH_PERF=<file>` instead: `perf record -g`
    at 999 Hz over the same phase (native and kernel frames; `perf report -i <file>`)."""
    perf = os.environ.get("BENCH_PERF")
    if perf:
        command = ["perf", "record", "-g", "-F", "999", "-p", str(pid), "-o", perf, "--", "sleep", str(int(seconds))]  # fmt: skip
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = os.environ.get("BENCH_PROFILE")
    if not out:
        return None
    options = os.environ.get("BENCH_PROFILE_OPTIONS", "--nonblocking").split()
    pyspy = Path(sys.executable).with_name("py-spy")
    command = [str(pyspy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "250", "-f", "raw"]
    return subprocess.Popen([*command, *options, "-o", out], stdout=subprocess.DEVNULL)


class SocketSink:
    """A connection's sink on one end of a socketpair (what `api.uvicorn_ws` does with a transport,
    minus the event loop): every frame is one `send` of the shared bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.on_writable: Any = None

    def writable(self) -> bool:
        return True

    def write(self, frame: Any) -> None:
        self.sock.send(frame.wire)

    def abort(self) -> None:
        self.sock.close()


def inprocess_cpu(clients: int, per_vendor: int, updates: int, repeats: int) -> dict[str, Any]:
    """The API's fan-out path alone, in this process, timed in its own CPU time (other load on the
    machine does not count): the hub, N connections writing to socketpairs (drained after each
    update), `updates` snapshots of the simulator's traffic per vendor; full and delta interleaved,
    `repeats` times each. Per frame: the hub's publish (for delta, the one patch per update
    included), the write, and the reader's drain."""
    from api.connection import Connection
    from api.hub import Hub
    from api.telemetry import Telemetry

    vendors = [f"bench-v{n:05d}" for n in range(max(1, clients // per_vendor))]
    streams = simulated_streams(TEMPLATES, updates + 1)
    feeds = {v: [orjson.dumps(s | {"vendorId": v, "version": k + 1}) for k, s in enumerate(streams[n % len(streams)])]
             for n, v in enumerate(vendors)}  # fmt: skip
    timings: dict[str, list[float]] = {"full": [], "delta": []}
    payload: dict[str, int] = {"full": 0, "delta": 0}

    async def once(mode: str) -> float:
        hub = Hub(Telemetry(), lambda v: {"vendorId": v, "version": 0, "asOf": ""})
        hub.caught_up = True
        pairs = []
        for n in range(clients):
            a, b = socket.socketpair()
            b.setblocking(False)
            pairs.append((a, b))
            hub.add(
                Connection(
                    vendors[n % len(vendors)], SocketSink(a), hub.telemetry, 1 << 20, 2.0, mode == "delta"
                )
            )
        buffer = bytearray(1 << 20)
        readers = [b for _, b in pairs]

        def drain() -> int:
            got = 0
            for b in readers:
                while True:
                    try:
                        n = b.recv_into(buffer)
                    except BlockingIOError:
                        break
                    got += n
                    if n < len(buffer):
                        break
            return got

        for v in vendors:  # the base: one full snapshot each, not timed
            hub.publish(v, 1, "", feeds[v][0])
        drain()
        received = 0
        started = time.process_time()
        for k in range(1, updates + 1):
            for v in vendors:
                hub.publish(v, k + 1, "", feeds[v][k])
            received += drain()
        spent = time.process_time() - started
        payload[mode] = received
        for a, b in pairs:
            a.close()
            b.close()
        return spent / (updates * clients)

    for _ in range(repeats):
        for mode in ("full", "delta"):
            timings[mode].append(asyncio.run(once(mode)))
    medians = {m: statistics.median(t) * 1e6 for m, t in timings.items()}
    return {
        "clients": clients,
        "updates_per_vendor": updates,
        "repeats": repeats,
        "cpu_us_per_frame": {m: round(v, 2) for m, v in medians.items()},
        "cpu_us_per_frame_runs": {m: [round(x * 1e6, 2) for x in t] for m, t in timings.items()},
        "wire_bytes_per_update": {m: round(b / (updates * clients)) for m, b in payload.items()},
        "cpu_ratio_delta_over_full": round(medians["delta"] / medians["full"], 2),
    }


def compare(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Full against delta per client count: bytes per update and CPU per frame, as ratios."""
    out = []
    by = {(r["mode"], r["clients"]): r for r in results}
    for clients in sorted({r["clients"] for r in results}):
        full, delta = by.get(("full", clients)), by.get(("delta", clients))
        if full is None or delta is None:
            continue
        out.append({
            "clients": clients,
            "bytes_per_update": {"full": full["bytes_per_update"], "delta": delta["bytes_per_update"]},
            "bytes_ratio": round(full["bytes_per_update"] / max(1, delta["bytes_per_update"]), 2),
            "cpu_per_frame_ratio": round(
                delta["server_cpu_us_per_frame"] / max(0.1, full["server_cpu_us_per_frame"]), 2
            ),
            "marginal_cpu_ratio": round(
                delta["server_cpu_us_per_frame_marginal"] / max(0.1, full["server_cpu_us_per_frame_marginal"]), 2
            ),
        })  # fmt: skip
    return out


def main_inprocess(args: argparse.Namespace) -> None:
    console = Console(width=140)
    rows = []
    for clients in (int(c) for c in args.clients.split(",")):
        console.print(f"{clients} clients in process, full and delta ...")
        rows.append(inprocess_cpu(clients, args.per_vendor, updates=20, repeats=5))
    table = Table(title=f"fan-out path in process (CPU time, median of 5); {os.cpu_count()} CPUs")
    for column in ("clients", "µs CPU/frame full", "µs CPU/frame delta", "delta/full", "bytes/update full",
                   "bytes/update delta", "bytes full/delta"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in rows:
        cpu, size = r["cpu_us_per_frame"], r["wire_bytes_per_update"]
        table.add_row(f"{r['clients']:,}", str(cpu["full"]), str(cpu["delta"]), str(r["cpu_ratio_delta_over_full"]),
                      f"{size['full']:,}", f"{size['delta']:,}", f"{size['full'] / max(1, size['delta']):.2f}")  # fmt: skip
    console.print(table)
    out = RESULTS.with_name("fanout_inprocess.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "fanout --inprocess", "at": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine([round(x, 2) for x in os.getloadavg()]), "results": rows}  # fmt: skip
    out.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", default="1000,5000,10000", help="comma-separated client counts")
    parser.add_argument("--rate", type=int, default=1000, help="snapshots produced per second")
    parser.add_argument("--per-vendor", type=int, default=10, help="clients per vendor")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per case")
    parser.add_argument("--connect-concurrency", type=int, default=10, help="clients connecting at once")
    parser.add_argument(
        "--mode", default="full", help="comma-separated: full (metrics_update), delta (updates=delta)"
    )
    parser.add_argument("--traffic", choices=("simulator", "sample"), default="simulator",
                        help="consecutive snapshots of simulated vendors, or one fixed sample")  # fmt: skip
    parser.add_argument("--inprocess", action="store_true",
                        help="only the fan-out path in this process, timed in CPU time: full against delta")  # fmt: skip
    parser.add_argument("--server", default="app",
                        help="comma-separated: app (the API), bare (uvicorn + websockets + aiokafka, nothing else), "
                             "floor (one prepared frame written to each transport, nothing else)")  # fmt: skip
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return
    raise_fd_limit()
    if args.inprocess:
        main_inprocess(args)
        return
    bootstrap = KafkaSettings().bootstrap
    console = Console(width=180)
    try:
        asyncio.run(asyncio.wait_for(broker_count(bootstrap), 20))
    except Exception as exc:
        console.print(
            f"[red]no Kafka at {bootstrap} ({type(exc).__name__}); run `vendorpulse kafka start` "
            "or set KAFKA_BOOTSTRAP_SERVERS[/]"
        )
        raise SystemExit(2) from exc
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    results = []
    modes = [m.strip() for m in args.mode.split(",")]
    if not set(modes) <= {"full", "delta"}:
        parser.error("--mode takes full, delta or both")
    servers = [s.strip() for s in args.server.split(",")]
    if not set(servers) <= {"app", "bare", "floor"}:
        parser.error("--server takes app, bare, floor or several")
    for clients in (int(c) for c in args.clients.split(",")):
        for server in servers:
            for mode in modes if server == "app" else ["full"]:
                console.print(
                    f"{clients} clients, {server} server, {mode} updates, {args.rate} snapshots/s ..."
                )
                case = Case(
                    mode, clients, args.per_vendor, args.rate, args.seconds, args.connect_concurrency, server
                )
                results.append(run_case(bootstrap, case, args.traffic))
    table = Table(title=f"fan-out: produce -> client; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    for column in (
        "server",
        "mode",
        "clients",
        "vendors",
        "frames/s",
        "bytes/update",
        "load",
        "latency p50/p99/max ms",
        "set-up p50/p99 ms",
        "µs CPU/set-up",
        "server CPU %",
        "waiting for CPU %",
        "µs CPU/frame",
        "user/sys µs",
        "marginal µs/frame",
        "wake-ups/s",
        "KB/conn",
        "client CPU %",
    ):
        table.add_column(column, justify="right")
    for r in results:
        lat, setup = r["latency_ms"], r["setup_ms"]
        table.add_row(
            r["server"],
            r["mode"],
            f"{r['clients']:,}",
            str(r["vendors"]),
            f"{r['frames_per_s']:,}",
            f"{r['bytes_per_update']:,}",
            f"{r['load_average'][0]:.1f}-{r['load_average'][1]:.1f}",
            f"{lat['p50']} / {lat['p99']} / {lat['max']}",
            f"{setup['p50']} / {setup['p99']}",
            str(r["server_cpu_us_per_setup"]),
            str(r["server_cpu_percent"]),
            str(r["server_cpu_wait_percent"]),
            str(r["server_cpu_us_per_frame"]),
            f"{r['server_user_us_per_frame']} / {r['server_system_us_per_frame']}",
            str(r["server_cpu_us_per_frame_marginal"]),
            f"{r['server_wakeups_per_s']:,}",
            str(r["server_kb_per_connection"]),
            str(r["client_cpu_percent"]),
        )
    console.print(table)
    comparison = compare(results)
    for row in comparison:
        console.print(
            f"{row['clients']:,} clients: {row['bytes_ratio']}x fewer bytes per update with deltas; "
            f"CPU per frame delta/full {row['cpu_per_frame_ratio']} (marginal {row['marginal_cpu_ratio']})"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "fanout",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_at_start),
        "warmup_seconds": WARMUP_SECONDS,
        "results": results,
        "full_vs_delta": comparison,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
