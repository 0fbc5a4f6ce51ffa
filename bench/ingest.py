"""How fast one API process ingests `vendor-metrics`, alone and while serving dashboards:
`python -m bench.ingest [--clients 0,5000] [--backlog 60000] [--vendors 20000] [--rate 1000]`.

Every API node reads every snapshot of the topic (docs/SCALING.md), so its ingest rate bounds the
number of vendors one node can follow. Per case: fresh prefixed topics, one API server in a subprocess
(the production configuration, as `bench.fanout` runs it), N clients over N / 10 vendors fed at `rate`
snapshots/s (as in `bench.fanout`), then the server is stopped (SIGSTOP) while `backlog` snapshots of
`vendors` other vendors (no client watches them) are written, and continued (SIGCONT): the time and
server CPU it takes to consume them (its `vendorpulse_consumer_records_total`) give the ingest rate
at full speed and the CPU per ingested snapshot. The clients' produce -> client latency of the
snapshots produced during the catch-up is reported too (both share the API's event loop). Clients and producer run in this process, on
the same cores. Prints a table and writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from bench import machine
from bench.fanout import (
    Client,
    Stats,
    pct,
    proc_cpu_seconds,
    produce,
    raise_fd_limit,
    sample_snapshot,
)
from infra.ports import free_port, wait_http_ready
from processors.topics_admin import ensure_topics
from schemas.settings import KafkaSettings
from schemas.topics import Topics

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"


async def consumed(port: int, topic: str) -> float:
    """The server's `vendorpulse_consumer_records_total` for `topic` (from /metrics)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    needle = f'vendorpulse_consumer_records_total{{topic="{topic}"}} '
    for line in body.splitlines():
        if line.startswith(needle):
            return float(line[len(needle) :])
    return 0.0


async def backlog(producer: AIOKafkaProducer, topic: str, count: int, vendors: int) -> None:
    data = sample_snapshot()
    pending = []
    for n in range(count):
        vendor = f"ingest-v{n % vendors:06d}"
        data["vendorId"], data["version"] = vendor, n // vendors + 1
        pending.append(await producer.send(topic, orjson.dumps(data), key=vendor.encode()))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


async def drive(
    pid: int, port: int, bootstrap: str, topics: Topics, args: argparse.Namespace, clients: int
) -> dict[str, Any]:
    from api.auth import make_token
    from api.settings import api_settings

    stats = Stats()
    conns: list[Client] = []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1, max_batch_size=1 << 20)
    feeding: asyncio.Task[int] | None = None
    try:
        await asyncio.to_thread(wait_http_ready, port, 30.0, interval=0.05)
        settings = api_settings(env="dev")
        vendors = [f"bench-v{n:05d}" for n in range(max(1, clients // 10))]
        gate = asyncio.Semaphore(10)
        loop = asyncio.get_running_loop()

        async def open_one(n: int) -> None:
            vendor = vendors[n % len(vendors)]
            token = make_token(vendor, ttl=3600, settings=settings)
            uri = (
                f"ws://127.0.0.1:{port}/api/v1/analytics/ws/vendor/analytics?token={token}&vendor_id={vendor}"
            )
            async with gate:
                client = Client(uri, stats)
                await loop.create_connection(lambda: client, "127.0.0.1", port)
                await asyncio.wait_for(client.ready, 30)
                conns.append(client)

        await asyncio.gather(*(open_one(n) for n in range(clients)))
        await producer.start()
        versions = dict.fromkeys(vendors, 0)
        if clients:
            feeding = asyncio.create_task(produce(producer, topics.metrics, versions, args.rate, 10_000.0))
        await asyncio.sleep(2.0)  # warm-up
        await asyncio.sleep(0.5)
        start_count, fed0 = await consumed(port, topics.metrics), sum(versions.values())
        os.kill(pid, signal.SIGSTOP)
        try:
            await backlog(producer, topics.metrics, args.backlog, args.vendors)
            await producer.flush()
        finally:
            # everything written so far: the backlog and the clients' own snapshots meanwhile
            target = start_count + args.backlog + sum(versions.values()) - fed0
            cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
            stats.since = time.time()  # frames produced while it was stopped waited for that, not for ingest
            os.kill(pid, signal.SIGCONT)
        stats.recording = True
        count = await consumed(port, topics.metrics)
        while count < target:  # polled over HTTP: the server is another process
            await asyncio.sleep(0.05)
            count = await consumed(port, topics.metrics)
        elapsed, cpu = time.monotonic() - t0, proc_cpu_seconds(pid) - cpu0
        stats.recording = False
        records = count - start_count
        fed = sum(versions.values()) - fed0
    finally:
        if feeding is not None:
            feeding.cancel()
        for client in conns:
            client.close()
        await producer.stop()
    return {
        "clients": clients,
        "backlog": args.backlog,
        "backlog_vendors": args.vendors,
        "fanout_rate_per_s": args.rate if clients else 0,
        "records_consumed": int(records),
        "fanout_snapshots_meanwhile": fed,
        "seconds": round(elapsed, 2),
        "ingest_per_s": round(records / elapsed),
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "server_cpu_us_per_snapshot": round(1e6 * cpu / max(1, records), 1),
        "client_latency_ms": {"p50": pct(stats.latencies, 0.5), "p99": pct(stats.latencies, 0.99)},
        "frames_during_catch_up": stats.frames,
    }


def run_case(bootstrap: str, args: argparse.Namespace, clients: int) -> dict[str, Any]:
    import uvloop

    prefix = f"ingest{uuid.uuid4().hex[:8]}-"
    topics = Topics.for_prefix(prefix)
    asyncio.run(ensure_topics(bootstrap, topics, partitions=6))
    port = free_port()
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VENDORPULSE_TOPIC_PREFIX": prefix,
        "VENDORPULSE_ENV": "dev",
        "VENDORPULSE_MAX_CONNECTIONS_PER_TOKEN": str(max(1, clients)),
    }
    command = os.environ.get("BENCH_SERVER_COMMAND", f"{sys.executable} -m bench.fanout --serve").split()
    server = subprocess.Popen([*command, str(port)], env=env)
    try:
        return uvloop.run(drive(server.pid, port, bootstrap, topics, args, clients))
    finally:
        server.send_signal(signal.SIGCONT)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", default="0,5000", help="comma-separated client counts")
    parser.add_argument(
        "--backlog", type=int, default=60_000, help="snapshots written while the API is stopped"
    )
    parser.add_argument("--vendors", type=int, default=20_000, help="vendors of the backlog (no client)")
    parser.add_argument("--rate", type=int, default=1000, help="snapshots/s to the clients' vendors")
    args = parser.parse_args()
    raise_fd_limit()
    bootstrap = KafkaSettings().bootstrap
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    console = Console(width=160)
    results = []
    for clients in (int(c) for c in args.clients.split(",")):
        console.print(f"{clients} clients, backlog {args.backlog} ...")
        results.append(run_case(bootstrap, args, clients))
    table = Table(
        title=f"ingest: catch-up on a backlog; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    for column in (
        "clients",
        "records",
        "s",
        "snapshots/s",
        "server CPU %",
        "µs CPU/snapshot",
        "clients p50/p99 ms",
    ):
        table.add_column(column, justify="right")
    for r in results:
        lat = r["client_latency_ms"]
        table.add_row(
            f"{r['clients']:,}",
            f"{r['records_consumed']:,}",
            str(r["seconds"]),
            f"{r['ingest_per_s']:,}",
            str(r["server_cpu_percent"]),
            str(r["server_cpu_us_per_snapshot"]),
            f"{lat['p50']} / {lat['p99']}",
        )
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "ingest",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_at_start),
        "results": results,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
