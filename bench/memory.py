"""Memory benchmark of the pure core: what a vendor state keeps per event folded, and the fold's speed.

The states keep their history in memory (`processors.core.history.MemoryHistory`, as replay does), so the
bytes per event are what replay holds; the worker keeps the history in its table and holds per vendor
only the live part (`bench.history` measures the worker).

    python -m bench.memory [--events 80000] [--vendors 20] [--repeats 3]

Folds simulated events (infra.simulate, a fixed seed and start, one event every 10 ms, no prune), each
Avro-encoded, then decoded just before `apply` as the worker does, and reports per event: the Python
bytes the states hold (tracemalloc, after a full collection), the same for the states `loads` rebuilds
from their checkpoints, the checkpoint (`dumps`) bytes and the Avro message bytes; which state fields
hold the bytes (`sys.getsizeof`, each object counted once, for the first field that reaches it); and
apply's events/s in CPU time, the median of --repeats runs (the machine may be shared): with each
event decoded just before (decode + apply, less decode alone), and over events all decoded beforehand
(as bench.processor does; this keeps every decoded event alive, which the worker does not).
No Kafka. Prints tables and writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import machine
from infra.simulate import EventGenerator, SimConfig
from processors.core.apply import apply
from processors.core.state import State, new_state
from processors.core.state_codec import dumps, loads
from schemas.codec import FastavroCodec
from schemas.events import Event

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
START_MS = 1_709_251_200_000  # 2024-03-01T00:00:00Z: a fixed start, so that runs fold the same events
CACHED_INTS = range(-5, 257)  # CPython's shared small ints: free for whoever holds them


def fold(events: Iterable[Event]) -> dict[str, State]:
    states: dict[str, State] = {}
    for event in events:
        state = states.get(event.vendor_id)
        if state is None:
            state = states[event.vendor_id] = new_state(event.vendor_id)
        apply(state, event)
    return states


def cpu_seconds(work: Callable[[], object]) -> float:
    """CPU time of `work()` (other load on a shared machine disturbs it less than wall time)."""
    gc.collect()
    started = time.process_time()
    result = work()
    seconds = time.process_time() - started
    del result  # freeing the states is not part of the fold
    return seconds


def traced(build: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes allocated by `build()` and still held by what it returns, after a full collection."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, result
    finally:
        tracemalloc.stop()


def held_by_field(states: list[State]) -> Counter[str]:
    """sys.getsizeof bytes reachable from each State field, each object counted once (first field wins)."""
    seen: set[int] = set()

    def size(o: Any) -> int:
        if o is None or isinstance(o, bool) or (type(o) is int and o in CACHED_INTS) or id(o) in seen:
            return 0
        seen.add(id(o))
        n = sys.getsizeof(o)
        if isinstance(o, dict):
            n += sum(size(k) + size(v) for k, v in o.items())
        elif isinstance(o, list | tuple | set | frozenset):
            n += sum(size(x) for x in o)
        elif hasattr(type(o), "__slots__"):
            n += sum(size(getattr(o, name, None)) for name in type(o).__slots__)
        return n

    fields = State.__slots__
    return Counter({name: sum(size(getattr(s, name)) for s in states) for name in fields})


def speeds(codec: FastavroCodec, messages: list[bytes], repeats: int) -> tuple[list[float], list[float]]:
    """apply's events/s (CPU time) with each event decoded just before, and over events decoded beforehand.

    The first is decode + apply less decode alone (interleaved, so that other load falls on both alike),
    so it includes what keeping decoded objects costs the decoder: fresh memory for each event.
    """
    n = len(messages)
    streamed, beforehand = [], []
    for _ in range(repeats):
        decoding = cpu_seconds(lambda: deque(map(codec.decode, messages), maxlen=0))
        streamed.append(n / (cpu_seconds(lambda: fold(map(codec.decode, messages))) - decoding))
    decoded = [codec.decode(m) for m in messages]  # only now: while alive, they slow every collection
    for _ in range(repeats):
        beforehand.append(n / cpu_seconds(lambda: fold(decoded)))
    return streamed, beforehand


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = SimConfig(vendors=args.vendors, start_ms=START_MS, step_ms=10)
    codec = FastavroCodec()
    messages = [codec.encode(e) for _, e in islice(EventGenerator(config), args.events)]
    n = len(messages)
    streamed_rates, decoded_rates = speeds(codec, messages, args.repeats)  # first, on a fresh heap

    def streamed() -> dict[str, State]:  # one event decoded at a time, as the worker does
        return fold(map(codec.decode, messages))

    held, states = traced(streamed)
    checkpoints = [dumps(s) for s in states.values()]
    restored_held, restored = traced(lambda: [loads(data) for data in checkpoints])
    if [dumps(s) for s in restored] != checkpoints:
        raise RuntimeError("loads(dumps(state)) does not give the state back; see tests/unit/test_metrics.py")
    fields = held_by_field(list(states.values()))
    return {
        "events": n,
        "vendors": args.vendors,
        "state_bytes_per_event": held / n,
        "restored_state_bytes_per_event": restored_held / n,
        "checkpoint_bytes_per_event": sum(map(len, checkpoints)) / n,
        "avro_bytes_per_event": sum(map(len, messages)) / n,
        "apply_events_per_s": statistics.median(streamed_rates),
        "apply_events_per_s_runs": [round(r) for r in streamed_rates],
        "apply_decoded_beforehand_events_per_s": statistics.median(decoded_rates),
        "apply_decoded_beforehand_events_per_s_runs": [round(r) for r in decoded_rates],
        "held_by_field_bytes_per_event": {
            k: round(v / n, 1) for k, v in fields.most_common() if round(v / n, 1)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=80_000)
    parser.add_argument("--vendors", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    console = Console(width=max(Console().width, 100))  # the table stays readable in a log
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    result = run(args)
    about = machine(load_at_start)

    table = Table(
        title=f"pure core memory, {result['events']:,} events over {result['vendors']} vendors "
        f"({about['cpu_count']} CPUs, Python {about['python']}, load {about['load_average'][0]:.2f})"
    )
    table.add_column("per event folded")
    table.add_column("value", justify="right")
    table.add_row("Python bytes held by the states (tracemalloc)", f"{result['state_bytes_per_event']:,.0f}")
    table.add_row("  the same, states rebuilt by loads", f"{result['restored_state_bytes_per_event']:,.0f}")
    table.add_row("checkpoint (dumps) bytes", f"{result['checkpoint_bytes_per_event']:,.0f}")
    table.add_row("Avro message bytes", f"{result['avro_bytes_per_event']:,.0f}")
    for label, key in (
        ("apply events/s, CPU; events decoded one at a time", "apply_events_per_s"),
        ("apply events/s, CPU; all events decoded beforehand", "apply_decoded_beforehand_events_per_s"),
    ):
        runs = result[f"{key}_runs"]
        table.add_row(f"{label} ({min(runs):,} - {max(runs):,})", f"{result[key]:,.0f}")
    console.print(table)
    where = Table(title="which state fields hold the bytes (sys.getsizeof, each object once)")
    where.add_column("field")
    where.add_column("bytes/event", justify="right")
    for name, per_event in result["held_by_field_bytes_per_event"].items():
        where.add_row(name, f"{per_event:,.1f}")
    console.print(where)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "memory",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": about,
        "args": vars(args),
        **result,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
