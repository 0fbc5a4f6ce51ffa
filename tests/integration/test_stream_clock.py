"""A worker with VENDORPULSE_CLOCK=stream against a real broker: over a log aged through months of event
time it emits snapshots as of stream time (the greatest record timestamp read, not the machine's
clock), prunes at every UTC day of it, and still equals `replay --as-of` the same instant."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from infra.backfill import DAY_MS, AgingGenerator, Backfill
from infra.simulate import SimConfig, produce
from processors.replay import run_replay
from schemas.topics import Topics
from tests.fakes import kafka_settings
from tests.integration.conftest import WorkerProcess, latest_snapshots
from tests.integration.test_replay import millis
from tests.polling import eventually


def test_a_stream_clock_worker_snapshots_as_of_stream_time_and_equals_replay(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    config = SimConfig(vendors=3, products=8, customers=40, seed=31, resend_rate=0.02)
    end = int(time.time() * 1000) - 30 * DAY_MS  # stream time ends a month before the wall clock
    backfill = Backfill(days=90, events=3000, end_ms=end)
    summary = asyncio.run(
        produce(
            kafka_bootstrap, topics.orders, topics.inventory, config,
            rate=0, count=0, generator=AgingGenerator(config, backfill),
        )
    )  # fmt: skip
    assert summary.total == 3000
    settings = kafka_settings(kafka_bootstrap, topics, lateness_days=20)  # the horizon forgets too
    whole = run_replay(settings, as_of_ms=end + 1000)  # every record is stamped at most 1 s after `end`
    final = {s["vendorId"]: s["version"] for s in whole.snapshots}
    assert len(final) == 3
    worker = make_worker(clock="stream", lateness_days="20", flush_max_events="100").start()  # many batches
    live: dict[str, dict[str, object]] = {}

    def caught_up() -> bool:
        live.update(latest_snapshots(kafka_bootstrap, topics.metrics))
        return all(live.get(v, {}).get("version") == n for v, n in final.items())

    eventually(caught_up, "every vendor's final version", 120, detail=worker.output)
    for vendor, snap in sorted(live.items()):
        as_of = millis(str(snap["asOf"]))
        # as of stream time: within the log's timestamps, a month before the wall clock
        assert end - 90 * DAY_MS < as_of <= end + 1000, (vendor, snap["asOf"])
        replayed = run_replay(
            settings, vendors=[vendor], as_of_ms=as_of, out_path=tmp_path / f"{vendor}.jsonl"
        )
        (line,) = (tmp_path / f"{vendor}.jsonl").read_bytes().splitlines()
        assert orjson.loads(line) == snap, vendor
        assert replayed.complete
    assert worker.alive()
