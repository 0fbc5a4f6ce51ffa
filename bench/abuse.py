"""Good clients' latency while the API is abused: `python -m bench.abuse [--clients 10] [--rate 50]
[--seconds 20] [--repeats 3] [--plan JSON]`.

One API process (`vendorpulse api`, production settings) on fresh prefixed topics of the broker of
`KAFKA_BOOTSTRAP_SERVERS` (default: `vendorpulse kafka start`'s), `clients` well-behaved WebSocket clients
over clients / 2 vendors, and `new_order` records produced at `rate` per second, each stamped with its
send time. Each repeat is a quiet phase of `seconds`, then an abuse phase: one wave of infra.harness.abuse (its
default plan: 2,000 half-open connections, hundreds of oversized, invalid and flooding ones, in a
child process) until every abuser has been closed, or `seconds` + 10 s. Per phase: produce -> client
latency p50/p99/max over every good client's orders; the table gives the median over repeats and the
ratio abuse / quiet. Writes bench/results/abuse.json. The budget (docs/API.md, "Abuse") is the soak's:
p99 under 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import machine
from bench.fanout import pct, proc_cpu_seconds, raise_fd_limit
from infra.harness.abuse import Good, Plan, ProducedActivity, Seen, good_client, produce_activity, run_attack
from infra.harness.chaos import WS_PATH, Child
from infra.ports import free_port, wait_http_ready
from processors.topics_admin import broker_count, ensure_topics
from schemas.settings import KafkaSettings
from schemas.topics import Topics

RESULTS = Path(__file__).resolve().parent / "results" / "abuse.json"
BUDGET_P99_MS = 5000.0  # the soak's new_order delivery budget (docs/GUARANTEES.md §4)
WARMUP_SECONDS = 3.0


def latencies(good: list[Good], phase: str) -> list[float]:
    return [x for g in good for x in g.latencies.get(phase, [])]


async def drive(
    port: int, pid: int, bootstrap: str, topics: Topics, env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    from api.auth import make_token
    from api.settings import api_settings

    settings = api_settings(env="dev", bootstrap_servers=bootstrap)
    plan = Plan(**json.loads(args.plan))
    vendors = [f"bench-good-{n}" for n in range(max(1, args.clients // 2))]
    good = [Good(vendors[n % len(vendors)]) for n in range(args.clients)]
    stop, stop_clients, produced = asyncio.Event(), asyncio.Event(), ProducedActivity(phase="warmup")
    clients = []
    for n, g in enumerate(good):
        token = make_token(g.vendor, settings=settings, subject=f"bench-good-{n}")
        url = f"ws://127.0.0.1:{port}{WS_PATH}?token={token}&vendor_id={g.vendor}"
        clients.append(asyncio.create_task(good_client(url, g, stop_clients)))
    await asyncio.wait_for(asyncio.gather(*(g.ready.wait() for g in good)), 30)
    producer = asyncio.create_task(
        produce_activity(bootstrap, topics.activity, topics.metrics, vendors, args.rate, stop, produced)
    )
    await asyncio.sleep(WARMUP_SECONDS)
    phases: list[dict[str, Any]] = []
    for repeat in range(1, args.repeats + 1):
        for kind in ("quiet", "abuse"):
            produced.phase = f"{kind}-{repeat}"
            cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
            seen: dict[str, list[Seen]] = {}
            if kind == "quiet":
                await asyncio.sleep(args.seconds)
            else:
                seen = await run_attack(port, plan, env)
            elapsed = time.monotonic() - t0
            cpu = proc_cpu_seconds(pid) - cpu0
            phases.append(
                {
                    "phase": produced.phase,
                    "kind": kind,
                    "seconds": round(elapsed, 1),
                    "cpu": cpu,
                    "seen": seen,
                }
            )
    stop.set()
    await producer
    await asyncio.sleep(2)  # the last orders arrive
    stop_clients.set()
    await asyncio.gather(*clients)
    results = []
    for p in phases:
        values = latencies(good, p["phase"])
        seen = p.pop("seen")
        results.append(
            p | {
                "orders_received": len(values),
                "latency_ms": {"p50": pct(values, 0.5), "p99": pct(values, 0.99), "max": pct(values, 1.0)},
                "server_cpu_percent": round(100 * p.pop("cpu") / p["seconds"], 1),
                "abusive_connections": sum(len(s) for s in seen.values()),
                "abusers_closed_by_server": sum(s.closed for ss in seen.values() for s in ss),
            }
        )  # fmt: skip
    missed = sum(len(produced.orders.get(g.vendor, [])) - len(g.orders) for g in good)
    return {
        "plan": asdict(plan),
        "abusive_messages_per_wave": plan.messages(),
        "good_clients": args.clients,
        "rate_per_s": args.rate,
        "good_client_disconnects": sum(g.closed is not None for g in good),
        "orders_missed_by_good_clients": missed,
        "phases": results,
    }


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, float]] = {}
    for kind in ("quiet", "abuse"):
        rows = [p for p in report["phases"] if p["kind"] == kind]
        by_kind[kind] = {
            q: statistics.median(p["latency_ms"][q] for p in rows) for q in ("p50", "p99", "max")
        } | {"server_cpu_percent": statistics.median(p["server_cpu_percent"] for p in rows)}
    quiet, abuse = by_kind["quiet"], by_kind["abuse"]
    return {
        "median_over_repeats": by_kind,
        "ratio_abuse_over_quiet": {q: round(abuse[q] / quiet[q], 2) for q in ("p50", "p99")},
        "budget_p99_ms": BUDGET_P99_MS,
        "within_budget": abuse["p99"] < BUDGET_P99_MS,
    }


def run(bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    import uvloop

    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    topics = Topics.for_prefix(prefix)
    asyncio.run(ensure_topics(bootstrap, topics, partitions=6))
    port = free_port()
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VENDORPULSE_TOPIC_PREFIX": prefix,
        "VENDORPULSE_ENV": os.environ.get("VENDORPULSE_ENV", "dev"),
    }
    log = Path(tempfile.mkdtemp(prefix="vendorpulse-bench-abuse-")) / "api.log"
    api = Child(["api", "--port", str(port)], env, log).start()
    try:
        wait_http_ready(port, detail=api.tail)
        assert api.proc is not None
        report = uvloop.run(drive(port, api.proc.pid, bootstrap, topics, env, args))
        report["api_alive_after"] = api.alive()
        return report
    finally:
        api.kill(signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=10, help="well-behaved clients")
    parser.add_argument("--rate", type=float, default=50.0, help="new_order records produced per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="quiet phase length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--plan", default='{"wait_seconds": 25}', help="JSON overrides of infra.harness.abuse.Plan"
    )
    args = parser.parse_args()
    raise_fd_limit()
    bootstrap = KafkaSettings().bootstrap
    console = Console(width=160)
    try:
        asyncio.run(asyncio.wait_for(broker_count(bootstrap), 20))
    except Exception as exc:
        console.print(
            f"[red]no Kafka at {bootstrap} ({type(exc).__name__}); run `vendorpulse kafka start` "
            "or set KAFKA_BOOTSTRAP_SERVERS[/]"
        )
        raise SystemExit(2) from exc
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    report = run(bootstrap, args)
    summary = summarize(report)
    table = Table(
        title=f"abuse: good clients' produce -> client latency; {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    for column in (
        "phase",
        "seconds",
        "orders",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU %",
        "abusers (closed)",
    ):
        table.add_column(column, justify="right")
    for p in report["phases"]:
        lat = p["latency_ms"]
        table.add_row(
            p["phase"], str(p["seconds"]), str(p["orders_received"]), str(lat["p50"]), str(lat["p99"]),
            str(lat["max"]), str(p["server_cpu_percent"]),
            f"{p['abusive_connections']:,} ({p['abusers_closed_by_server']:,})" if p["kind"] == "abuse" else "",
        )  # fmt: skip
    med, ratio = summary["median_over_repeats"], summary["ratio_abuse_over_quiet"]
    for kind in ("quiet", "abuse"):
        table.add_row(
            f"median {kind}", "", "", str(med[kind]["p50"]), str(med[kind]["p99"]), str(med[kind]["max"]),
            str(med[kind]["server_cpu_percent"]), "",
        )  # fmt: skip
    table.add_row("ratio abuse/quiet", "", "", str(ratio["p50"]), str(ratio["p99"]), "", "", "")
    console.print(table)
    console.print(
        f"{report['abusive_messages_per_wave']:,} abusive messages per wave; good-client disconnects: "
        f"{report['good_client_disconnects']}, orders missed: {report['orders_missed_by_good_clients']}; "
        f"p99 under abuse {med['abuse']['p99']} ms, budget {BUDGET_P99_MS:.0f} ms: "
        + ("[green]within[/]" if summary["within_budget"] else "[red]over[/]")
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": "abuse",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_at_start),
        "warmup_seconds": WARMUP_SECONDS,
        "summary": summary,
        **report,
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
