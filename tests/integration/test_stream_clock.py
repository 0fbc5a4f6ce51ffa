"""A worker with VENDORPULSE_CLOCK=stream against a real broker: over a log aged through months of event
time it emits snapshots as of stream time (from the record timestamps read, not the machine's clock),
pauses the input partitions that run ahead of it, prunes at every UTC day of it, and still equals
`replay --as-of` the same instant."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from infra.backfill import DAY_MS, AgingGenerator, Backfill
from infra.simulate import SimConfig
from processors.replay import run_replay
from schemas.codec import FastavroCodec
from schemas.topics import Topics
from tests.fakes import kafka_settings
from tests.integration.conftest import WorkerProcess, assert_no_watchdog_restart, latest_snapshots
from tests.integration.test_replay import millis
from tests.polling import eventually

codec = FastavroCodec()


async def send_aged(bootstrap: str, topics: Topics, generator: AgingGenerator, n: int) -> None:
    """The generator's first `n` records with their aged timestamps, in small producer batches, so that
    the worker fetches each partition in many steps (a fetch returns whole batches)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0, max_batch_size=2048
    )
    await producer.start()
    try:
        topic = {"orders": topics.orders, "inventory": topics.inventory}
        sent = [
            await producer.send(
                topic[kind], codec.encode(event), key=event.vendor_id.encode(), timestamp_ms=ts
            )
            for kind, event, ts in islice(generator.records(), n)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def test_a_stream_clock_worker_snapshots_as_of_stream_time_and_equals_replay(
    kafka_bootstrap: str,
    topics: Topics,
    make_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = SimConfig(vendors=3, products=8, customers=40, seed=31, resend_rate=0.02)
    end = int(time.time() * 1000) - 30 * DAY_MS  # stream time ends a month before the wall clock
    backfill = Backfill(days=90, events=3000, end_ms=end)
    asyncio.run(send_aged(kafka_bootstrap, topics, AgingGenerator(config, backfill), 3000))
    settings = kafka_settings(kafka_bootstrap, topics, lateness_days=20)  # the horizon forgets too
    whole = run_replay(settings, as_of_ms=end + 1000)  # every record is stamped at most 1 s after `end`
    final = {s["vendorId"]: s["version"] for s in whole.snapshots}
    assert len(final) == 3
    monkeypatch.setenv("CONSUMER_MAX_FETCH_SIZE", "16384")  # Faust's: small fetches, so partitions lag
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
    # the sparse inventory partitions ran ahead of the orders and waited for stream time, and the input
    # watchdog took none of them, paused or resumed, for a stalled one
    counts = assert_no_watchdog_restart(worker)[worker.log_path.name]
    assert counts["alignment_pauses"] > 0
    assert counts["input_resumes"] == 0, worker.output()
    assert worker.alive()
