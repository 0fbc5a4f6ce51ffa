"""What an operator can switch on to see inside a running worker; none of it changes what it does.

- `VENDORPULSE_TRACE_INPUT=1`: every batch's input offsets, per partition, at WARNING.
- `kill -USR1 <pid>`: the stack of every asyncio task, at WARNING (what a stalled worker waits on).
- `VENDORPULSE_PROFILE=<path>`: a cProfile of the whole run, written there when the worker stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from processors.worker.batch import BatchLoop, Chunk

log = logging.getLogger("vendorpulse.worker")


def tracing() -> bool:
    return bool(os.environ.get("VENDORPULSE_TRACE_INPUT"))


def trace_batches(loop: BatchLoop) -> None:
    """Log each batch's offsets (per topic partition: first, last, count) and the rebalance state."""
    app = loop.app

    def trace(chunks: list[Chunk]) -> None:
        ranges = {
            (c.tp.topic, c.tp.partition): (c.records[0].offset, c.records[-1].offset, len(c.records))
            for c in chunks
        }
        log.warning(
            "batch: generation %s (now %s), paused %s, offsets %s",
            {c.generation for c in chunks}, app.consumer_generation_id, loop.paused, ranges,
        )  # fmt: skip

    loop.on_batch = trace


def dump_tasks() -> None:
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=12)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        log.warning("task %s: %s", task.get_name(), where or "(no frames)")


def dump_tasks_on_sigusr1() -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
