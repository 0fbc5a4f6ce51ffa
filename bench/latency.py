"""End to end: produce -> worker -> `vendor-metrics` -> API -> WebSocket `metrics_update`, as users see it.

    python -m bench.latency [--rates 1000,5000] [--clients 1000] [--vendors 20] [--seconds 20] [--runs 1]
                            [--tree PATH]

Per rate: one private Kafka broker (on free ports), fresh topics, one worker (`vendorpulse worker`) and
one API (`vendorpulse api`) as users start them, and `--clients` WebSocket clients spread evenly over
the vendors (each with its vendor's token, made as `vendorpulse token` makes it) in a subprocess of their own (a
light sans-I/O client on uvloop, bench.fanout's), all connected before producing starts. Then
simulated events (the simulator and the Avro codec, as bench.processor produces them) are sent at
`rate` per second for 2 s of warm-up plus `--seconds`. An event's produce time is when it was handed
to the producer (`send` called; bench.processor.produce), and the fold is deterministic: every
simulated event is applied, so the vendor's snapshot `version` after it is the vendor's count of events
so far. Each client records the arrival time and `version` of every `metrics_update` and
`analytics_update` frame. The latency of an event, for each client of its vendor, is the arrival of
the first frame whose version is at least the event's, minus the event's produce time: updates are
coalesced, so several events share one frame, and that is the delay a dashboard shows. The same is
measured on the `vendor-metrics` topic (a plain consumer): the worker's share. Events of the warm-up
are left out. Also reported: the rates produced and folded, frames/s delivered, the worker's, the
API's and the clients' CPU % (from /proc) and the load average. All clocks are `time.time()` of this
one machine.

`--tree PATH` starts the worker, the API and the tokens from another checkout (its `.venv`, `make
venv`), e.g. an older commit in a `git worktree`; the broker, producer and clients stay this
checkout's. Prints a table and writes bench/results/latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from websockets.protocol import State

from bench import machine
from bench.fanout import Client, Stats, raise_fd_limit
from bench.processor import cpu_seconds, expected_versions, produce, sim, start_worker, watch_versions
from processors.topics_admin import ensure_topics
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latency.json"
WARMUP_SECONDS = 2.0
PORT_FROM = 27092  # below the ephemeral range, apart from bench.peers' 26092
CONNECT_CONCURRENCY = 20
CATCH_UP_SECONDS = (
    300.0  # after the last event is produced, for every client to see its vendor's last version
)
VERSION = b'"version":'
UPDATE = b'{"type":"metrics_update"'
FULL = b'{"type":"analytics_update"'


# -- the matching (pure) -----------------------------------------------------------------------


def latencies(
    events: Sequence[tuple[float, str, int]], frames: Mapping[str, Sequence[Sequence[tuple[float, int]]]]
) -> tuple[list[float], int]:
    """Per (event, client of its vendor): the arrival of the client's first frame whose version is at
    least the event's, minus the event's produce time (seconds).

    `events`: (produce time, vendor, the vendor's snapshot version once the event is folded);
    `frames`: per vendor, per client, (arrival time, version) in arrival order. Returns the latencies
    and the number of pairs no frame answered (the client never saw that version)."""
    out: list[float] = []
    missing = 0
    by_vendor: dict[str, list[tuple[float, int]]] = {}
    for sent, vendor, version in events:
        by_vendor.setdefault(vendor, []).append((sent, version))
    for vendor, evs in by_vendor.items():
        for client in frames.get(vendor, ()):
            reached: list[int] = []  # the highest version seen so far, per frame: never decreases
            top = -1
            for _, version in client:
                top = max(top, version)
                reached.append(top)
            for sent, version in evs:
                i = bisect.bisect_left(reached, version)
                if i < len(reached):
                    out.append(client[i][0] - sent)
                else:
                    missing += 1
    return out, missing


def percentile(ordered: Sequence[float], q: float) -> float:
    """`q` in [0, 1] of sorted values, in ms (nan if none)."""
    if not ordered:
        return float("nan")
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


# -- the clients (a subprocess: `python -m bench.latency --clients-serve`) -----------------------


class VersionClient(Client):
    """bench.fanout's client, recording (arrival, version) of each snapshot frame instead."""

    def __init__(self, uri: str, stats: Stats, target: int) -> None:
        super().__init__(uri, stats)
        self.frames: list[tuple[float, int, bool]] = []  # arrival, version, metrics_update (not analytics_)
        self.target = target  # the vendor's version once every event is folded
        self.reached: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _text(self, data: bytes) -> None:
        update = data.startswith(UPDATE)
        if update or data.startswith(FULL):
            at = data.find(VERSION) + len(VERSION)
            end = at
            while data[end] in b"0123456789":
                end += 1
            version = int(data[at:end])
            self.frames.append((time.time(), version, update))
            if version >= self.target and not self.reached.done():
                self.reached.set_result(None)
        if self.ws.state is State.OPEN:  # not after the server's close frame
            super()._text(data)  # the first analytics_update (ready), pings

    def close_code(self) -> int | None:
        """The code of the server's close frame, if it closed the connection."""
        return self.ws.close_rcvd.code if self.ws.close_rcvd else None


async def serve_clients(config: dict[str, Any]) -> dict[str, Any]:
    """Connect the clients, print "ready", then "caught-up <time>" once every client saw its vendor's
    final version (or "timeout" after `within` s); record until a line on stdin; returns what they saw."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    port, tokens, count = config["port"], config["tokens"], config["clients"]
    vendors = sorted(tokens)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[tuple[str, VersionClient]] = []

    async def open_one(n: int) -> None:
        vendor = vendors[n % len(vendors)]
        uri = f"ws://127.0.0.1:{port}/api/v1/analytics/ws/vendor/analytics?token={tokens[vendor]}&vendor_id={vendor}"
        async with gate:
            client = VersionClient(uri, stats, config["targets"][vendor])
            await loop.create_connection(lambda: client, "127.0.0.1", port)
            await asyncio.wait_for(client.ready, 60)
            clients.append((vendor, client))

    await asyncio.gather(*(open_one(n) for n in range(count)))
    print("ready", flush=True)
    cpu0 = time.process_time()
    try:
        await asyncio.wait_for(asyncio.gather(*(c.reached for _, c in clients)), config["within"])
        print(f"caught-up {time.time()}", flush=True)
    except TimeoutError:
        print("timeout", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    cpu = time.process_time() - cpu0
    for _, client in clients:
        client.close()
    return {
        "cpu_seconds": cpu,
        "clients": [{"vendor": v, "frames": c.frames, "closed": c.close_code()} for v, c in clients],
    }


# -- one case ------------------------------------------------------------------------------------


def tree_command(tree: Path | None) -> list[str]:
    return [str(tree / ".venv" / "bin" / "vendorpulse")] if tree else [sys.executable, "-m", "infra"]


def start_api(port: int, env: dict[str, str], log: Path, tree: Path | None) -> subprocess.Popen[bytes]:
    """`vendorpulse api --port PORT`, as users start it."""
    return subprocess.Popen(
        [*tree_command(tree), "api", "--port", str(port)],
        cwd=tree or ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def start_clients() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.latency", "--clients-serve"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip


async def tokens_for(vendors: list[str], env: dict[str, str], tree: Path | None) -> dict[str, str]:
    """One token per vendor, made by the function `vendorpulse token --vendor V` calls
    (`api.commands.make_token_cli`), all in one process of the tree: a `vendorpulse token` process per
    vendor costs ~1.5 s of interpreter start each, and hundreds at once overload the two cores."""
    python = str(tree / ".venv" / "bin" / "python") if tree else sys.executable
    script = "import sys\nfrom api.commands import make_token_cli\nfor v in sys.argv[1:]: print(make_token_cli(v, False, 7200))"
    proc = await asyncio.create_subprocess_exec(
        python, "-c", script, *vendors, env=env, cwd=tree or ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    lines = out.decode().split()
    if proc.returncode or len(lines) != len(vendors):
        raise RuntimeError(f"making {len(vendors)} tokens failed ({proc.returncode})")
    return dict(zip(vendors, lines, strict=True))


async def readline(stream: Any, within: float) -> str:
    line = await asyncio.wait_for(asyncio.to_thread(stream.readline), within)
    return str(line.decode().strip())


async def case(
    bootstrap: str, rate: int, args: argparse.Namespace, work: Path, console: Console
) -> dict[str, Any]:
    from infra.ports import free_port, wait_http_ready

    topics = Topics.for_prefix(f"lat{uuid.uuid4().hex[:8]}-")
    await ensure_topics(bootstrap, topics, 6)
    # Warm-up, not timed: the simulator's catalog and opening stock (every vendor's products), the
    # events before its first order; it also waits for the worker to start.
    catalog = 2 * 200 * args.vendors  # bench.processor.sim: 200 products per vendor, 2 events each
    events = sim(catalog + int(rate * (WARMUP_SECONDS + args.seconds)), args.vendors, seed=5)
    split = next(i for i, (kind, _) in enumerate(events) if kind == "orders")
    vendors = {e.vendor_id for _, e in events[:split]}  # type: ignore[attr-defined]
    warm, body = events[:split], events[split:]
    port = free_port()
    name = f"case{rate}-{uuid.uuid4().hex[:4]}"
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VENDORPULSE_TOPIC_PREFIX": topics.prefix,
        "VENDORPULSE_ENV": "dev",
        "VENDORPULSE_MAX_CONNECTIONS_PER_TOKEN": str(args.clients),
    }
    worker = start_worker(bootstrap, topics.prefix, work, f"{name}-worker", tree=args.tree, extra_env=env)
    api = start_api(port, env, work / f"{name}-api.log", args.tree)
    clients: subprocess.Popen[bytes] | None = None
    try:
        await produce(bootstrap, topics, warm)
        await watch_versions(bootstrap, topics.metrics, expected_versions(warm), 180, [])
        await asyncio.to_thread(wait_http_ready, port, 120)
        tokens = await tokens_for(sorted(vendors), env, args.tree)
        console.print(f"  {rate:,} events/s: worker and API up; connecting {args.clients:,} clients ...")
        clients = start_clients()
        assert clients.stdin is not None
        assert clients.stdout is not None
        out = work / f"{name}-frames.json"
        within = WARMUP_SECONDS + args.seconds + CATCH_UP_SECONDS
        targets = expected_versions(events)
        config = {"port": port, "tokens": tokens, "clients": args.clients, "out": str(out),
                  "targets": targets, "within": within}  # fmt: skip
        clients.stdin.write(orjson.dumps(config) + b"\n")
        clients.stdin.flush()
        if await readline(clients.stdout, 600) != "ready":
            raise RuntimeError("the clients did not connect")
        console.print(f"  {rate:,} events/s: clients connected; producing {len(body):,} events ...")
        pids = {"worker": worker.pid, "api": api.pid}
        load_before = os.getloadavg()[0]
        cpu0 = {k: cpu_seconds([p]) for k, p in pids.items()}
        arrivals: list[tuple[float, str, int]] = []
        watcher = asyncio.create_task(
            watch_versions(bootstrap, topics.metrics, expected_versions(events), within, arrivals)
        )
        t0 = time.monotonic()
        sent = await produce(bootstrap, topics, body, rate)
        try:  # until every vendor's snapshot reached its final version on the topic
            folded: float | None = await watcher
        except TimeoutError:  # the worker did not fold everything in time: what it did is reported
            folded = None
        caught_up = (await readline(clients.stdout, within + 30)).split()
        elapsed = time.monotonic() - t0
        # Every client saw its vendor's final version then (or the wait timed out: pairs unanswered).
        done = float(caught_up[1]) if caught_up[0] == "caught-up" else time.time()
        cpu = {k: cpu_seconds([p]) - cpu0[k] for k, p in pids.items()}
        load_after = os.getloadavg()[0]
        clients.stdin.write(b"stop\n")
        clients.stdin.flush()
        if await readline(clients.stdout, 120) != "done":
            raise RuntimeError("the clients did not write their frames")
        recorded = orjson.loads(out.read_bytes())
        out.unlink()
    finally:
        for proc in (clients, api, worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (clients, api, worker):
            if proc is not None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    # The version each event brings its vendor to, from the warm counts on.
    counts = expected_versions(warm)
    measured: list[tuple[float, str, int]] = []
    since = sent[0] + WARMUP_SECONDS
    for (_, e), at in zip(body, sent, strict=True):
        vendor = e.vendor_id  # type: ignore[attr-defined]
        counts[vendor] += 1
        if at >= since:
            measured.append((at, vendor, counts[vendor]))
    frames: dict[str, list[list[tuple[float, int]]]] = {}
    updates = 0
    for c in recorded["clients"]:
        frames.setdefault(c["vendor"], []).append([(t, v) for t, v, _ in c["frames"]])
        updates += sum(1 for t, _, update in c["frames"] if update and since <= t <= done)
    ws, missing = latencies(measured, frames)
    ws.sort()
    topic_frames: dict[str, list[list[tuple[float, int]]]] = {}
    for at, vendor, version in sorted(arrivals):
        topic_frames.setdefault(vendor, [[]])[0].append((at, version))
    topic, _ = latencies(measured, topic_frames)
    topic.sort()
    window = done - since
    top: dict[str, int] = {}
    for _, vendor, version in arrivals:
        top[vendor] = max(version, top.get(vendor, 0))
    folded_events = sum(top.values()) - len(warm)
    counters = work / f"{name}-worker" / "counters.json"  # the worker's self-healing paths, if it counts them
    return {
        "rate_target": rate,
        "clients": args.clients,
        "vendors": args.vendors,
        "events": len(body),
        "events_measured": len(measured),
        "produced_per_s": round((len(sent) - 1) / (sent[-1] - sent[0])),
        "folded_per_s": round(folded_events / ((folded or arrivals[-1][0]) - sent[0])),
        "folded_all": folded is not None,
        "delivered_all_after_last_produce_s": round(done - sent[-1], 2),
        "pairs": len(ws),
        "pairs_missing": missing,
        "latency_ms": {"p50": percentile(ws, 0.5), "p99": percentile(ws, 0.99), "max": percentile(ws, 1.0)},
        "snapshot_topic_latency_ms": {
            "p50": percentile(topic, 0.5),
            "p99": percentile(topic, 0.99),
            "max": percentile(topic, 1.0),
        },
        "frames_per_s": round(updates / window),
        "cpu_percent": {k: round(100 * v / elapsed, 1) for k, v in cpu.items()}
        | {"clients": round(100 * recorded["cpu_seconds"] / elapsed, 1)},
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "server_closes": dict(Counter(str(c["closed"]) for c in recorded["clients"] if c["closed"])),
        "worker_counters": orjson.loads(counters.read_bytes()) if counters.exists() else None,
    }


async def bench(
    bootstrap: str, args: argparse.Namespace, work: Path, console: Console
) -> list[dict[str, Any]]:
    results = []
    for run in range(args.runs):
        for rate in args.rates:
            console.print(f"run {run + 1}/{args.runs}: {rate:,} events/s, {args.clients:,} clients ...")
            results.append({"run": run + 1, **await case(bootstrap, rate, args, work, console)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000,5000", help="events produced per second, comma-separated")
    parser.add_argument(
        "--clients", type=int, default=1000, help="WebSocket clients, spread over the vendors"
    )
    parser.add_argument("--vendors", type=int, default=20)
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measured seconds per rate (after 2 s warm-up)"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of each rate")
    parser.add_argument("--tree", type=Path, default=None,
                        help="start the worker, API and tokens from this checkout's .venv")  # fmt: skip
    parser.add_argument(
        "--keep", action="store_true", help="keep the logs and data of the worker, API and broker"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    parser.add_argument("--clients-serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()  # the API and the clients inherit it
    if args.clients_serve:
        import uvloop

        config = orjson.loads(sys.stdin.readline())
        Path(config["out"]).write_bytes(orjson.dumps(uvloop.run(serve_clients(config))))
        print("done", flush=True)
        return
    args.rates = [int(r) for r in args.rates.split(",")]
    if args.tree:
        args.tree = args.tree.resolve()
        if not (args.tree / ".venv" / "bin" / "vendorpulse").exists():
            parser.error(f"{args.tree}/.venv/bin/vendorpulse is missing: run `make venv` there")
    console = Console(width=max(Console().width, 140))
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    head = subprocess.run(
        ["git", "-C", str(args.tree or ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    from infra.kafka import LocalKafka, free_base_port

    work = Path(tempfile.mkdtemp(prefix="vp-latency-"))
    cluster = LocalKafka(1, free_base_port(PORT_FROM, nodes=1), work / "kafka-state")
    try:
        bootstrap = cluster.start()
        results = asyncio.run(bench(bootstrap, args, work, console))
    finally:
        cluster.stop(timeout=10)
        if args.keep:
            console.print(f"kept the worker's, API's and broker's files in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    about = machine(load_at_start)
    code = str(args.tree) if args.tree else "this checkout"
    table = Table(
        title=f"produce -> WebSocket metrics_update, {args.clients:,} clients over {args.vendors} vendors, "
        f"{args.seconds:.0f} s after {WARMUP_SECONDS:.0f} s warm-up; worker and API of {code} ({head}); "
        f"{about['cpu_count']} CPUs, load {load_at_start} at start"
    )
    for column in ("run", "target ev/s", "produced ev/s", "folded ev/s", "latency p50 / p99 / max ms",
                   "of which on the topic p50 / p99 ms", "frames/s", "CPU % worker / API / clients", "load", "worker input resumes"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in results:
        lat, topic, cpu = r["latency_ms"], r["snapshot_topic_latency_ms"], r["cpu_percent"]
        table.add_row(
            str(r["run"]),
            f"{r['rate_target']:,}",
            f"{r['produced_per_s']:,}",
            f"{r['folded_per_s']:,}",
            f"{lat['p50']:,} / {lat['p99']:,} / {lat['max']:,}",
            f"{topic['p50']:,} / {topic['p99']:,}",
            f"{r['frames_per_s']:,}",
            f"{cpu['worker']} / {cpu['api']} / {cpu['clients']}",
            f"{r['load_average'][0]:.1f}-{r['load_average'][1]:.1f}",
            str((r["worker_counters"] or {}).get("input_resumes", "-")),
        )
    console.print(table)
    for r in results:
        if not r["folded_all"]:
            console.print(
                f"[red]{r['rate_target']:,} events/s: the worker had not folded every event "
                f"{CATCH_UP_SECONDS:.0f} s after the last was produced[/]"
            )
        if r["pairs_missing"]:
            console.print(
                f"[red]{r['rate_target']:,} events/s: {r['pairs_missing']:,} of "
                f"{r['pairs'] + r['pairs_missing']:,} (event, client) pairs never answered within "
                f"{CATCH_UP_SECONDS:.0f} s of the last event: the latencies above leave them out; "
                f"connections the server closed, by code: {r['server_closes'] or 'none'}[/]"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "latency",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": about,
        "code": {"tree": code, "commit": head},
        "produce_time": "when the event was handed to the producer (send called)",
        "warmup_seconds": WARMUP_SECONDS,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
