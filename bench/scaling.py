"""API nodes needed for a deployment, from the measured costs: `python -m bench.scaling [--vendors
100000] [--dashboards 1000000] [--updates 0.1,0.5,2] [--budget 0.6]`.

A model, not a measurement: it reads the marginal CPU per delivered frame, the idle CPU per connection
(heartbeats, refreshes) and memory per connection from bench/results/fanout.json (the case with the
most clients) and the CPU per ingested snapshot from
bench/results/ingest.json (the case without clients), and computes, for each rate of snapshots per
vendor, the fewest nodes (one process, one core each) that keep every node's event loop under
`budget` of its core, with and without splitting the vendors into shards (`VENDORPULSE_API_SHARD`):
- a node of shard s of N ingests 1/N of all snapshots and serves its share of that shard's dashboards;
- each dashboard receives every update of its vendor (updates <= the worker's 20/s cap);
- the shard count is at most the partition count of `vendor-metrics` (`--partitions`);
- a node holds at most `--max-connections` (default: the most clients `bench.fanout` measured).
The busy-fraction budget is what keeps the tail short: `bench.fanout` measured p99 < 50 ms with the API
near 40-60 % of a core. Prints a table and writes bench/results/scaling.json. docs/SCALING.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"


def measured() -> dict[str, float]:
    fanout = [  # the API's own cases, not the baselines' (`bench.fanout --server bare|floor`)
        r
        for r in json.loads((RESULTS / "fanout.json").read_text())["results"]
        if r.get("server", "app") == "app"
    ]
    ingest = json.loads((RESULTS / "ingest.json").read_text())["results"]
    biggest = max(fanout, key=lambda r: r["clients"])
    alone = min(ingest, key=lambda r: r["clients"])
    return {
        "us_per_frame": float(
            biggest["server_cpu_us_per_frame_marginal"] or biggest["server_cpu_us_per_frame"]
        ),
        "us_per_connection_s": 1e4 * float(biggest["server_idle_cpu_percent"]) / biggest["clients"],
        "kb_per_connection": float(biggest["server_kb_per_connection"]),
        "us_per_snapshot": float(alone["server_cpu_us_per_snapshot"]),
        "measured_clients": float(biggest["clients"]),
    }


def plan(
    vendors: int,
    dashboards: int,
    updates: float,
    costs: dict[str, float],
    budget: float,
    max_shards: int,
    max_connections: int,
) -> dict[str, Any]:
    """The fewest nodes for one update rate: for each shard count N, each shard's dashboards need
    ceil(load / spare) nodes where spare = budget - its ingest share; the best N wins."""
    ingest_total = vendors * updates * costs["us_per_snapshot"] / 1e6  # cores, if one node read it all
    fanout_total = dashboards * (updates * costs["us_per_frame"] + costs["us_per_connection_s"]) / 1e6
    best: dict[str, Any] | None = None
    unsplit: int | None = None
    for shards in range(1, max_shards + 1):
        spare = budget - ingest_total / shards
        if spare <= 0:
            continue
        per_shard = max(
            math.ceil(fanout_total / shards / spare), math.ceil(dashboards / shards / max_connections)
        )
        nodes = shards * per_shard
        if shards == 1:
            unsplit = nodes
        if best is None or nodes < best["nodes"]:
            best = {"nodes": nodes, "shards": shards, "nodes_per_shard": per_shard}
    assert best is not None, "no shard count fits: raise --partitions"
    per_node = dashboards / best["nodes"]
    return {
        "updates_per_vendor_s": updates,
        "snapshots_per_s": round(vendors * updates),
        "frames_per_s": round(dashboards * updates),
        "ingest_cores_if_one_node_reads_all": round(ingest_total, 2),
        "fanout_cores": round(fanout_total, 2),
        "nodes_without_split": unsplit,
        **best,
        "dashboards_per_node": round(per_node),
        "memory_per_node_mb": round(per_node * costs["kb_per_connection"] / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--vendors", type=int, default=100_000)
    parser.add_argument("--dashboards", type=int, default=1_000_000)
    parser.add_argument("--updates", default="0.1,0.5,2", help="snapshots per vendor per second")
    parser.add_argument("--budget", type=float, default=0.6, help="busy fraction of a node's core")
    parser.add_argument("--partitions", type=int, default=120, help="partitions of vendor-metrics")
    parser.add_argument("--max-connections", type=int, help="per node (default: the most measured)")
    args = parser.parse_args()
    costs = measured()
    max_connections = args.max_connections or int(costs["measured_clients"])
    rows = [
        plan(args.vendors, args.dashboards, float(u), costs, args.budget, args.partitions, max_connections)
        for u in args.updates.split(",")
    ]
    console = Console(width=180)
    table = Table(
        title=(
            f"{args.vendors:,} vendors, {args.dashboards:,} dashboards; measured {costs['us_per_frame']} µs/frame, "
            f"{costs['us_per_connection_s']:.1f} µs/s per idle connection, "
            f"{costs['us_per_snapshot']} µs/snapshot ingested, {costs['kb_per_connection']} KB/connection; "
            f"budget {args.budget:.0%} of a core and {max_connections:,} connections per node"
        )
    )
    for column in (
        "updates/vendor/s",
        "snapshots/s",
        "frames/s",
        "ingest cores (one node, all)",
        "fan-out cores",
        "nodes, no split",
        "nodes",
        "shards x nodes",
        "dashboards/node",
        "MB/node",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["updates_per_vendor_s"]),
            f"{r['snapshots_per_s']:,}",
            f"{r['frames_per_s']:,}",
            str(r["ingest_cores_if_one_node_reads_all"]),
            str(r["fanout_cores"]),
            "impossible" if r["nodes_without_split"] is None else str(r["nodes_without_split"]),
            str(r["nodes"]),
            f"{r['shards']} x {r['nodes_per_shard']}",
            f"{r['dashboards_per_node']:,}",
            f"{r['memory_per_node_mb']:,}",
        )
    console.print(table)
    report = {"benchmark": "scaling", "model_inputs": costs, "args": vars(args), "plans": rows}
    (RESULTS / "scaling.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
