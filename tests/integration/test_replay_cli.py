"""`vendorpulse replay`, `export` and `import` as an analyst runs them, against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from infra.simulate import SimConfig, produce
from processors.topics_admin import ensure_topics
from schemas.topics import Topics
from tests.conftest import make_topics

ROOT = Path(__file__).resolve().parents[2]


def cli(args: list[str], bootstrap: str, topics: Topics) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VENDORPULSE_TOPIC_PREFIX": topics.prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "infra", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_export_import_and_replay_give_the_same_snapshots(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    config = SimConfig(
        vendors=3, products=8, customers=30, seed=17, start_ms=1_795_000_000_000, step_ms=60_000
    )
    asyncio.run(produce(kafka_bootstrap, topics.orders, topics.inventory, config, rate=0, count=1500))
    as_of = "2026-11-20T12:00:00Z"

    first = cli(
        ["replay", "--as-of", as_of, "--out", str(tmp_path / "a.jsonl"), "--no-progress", "--json"],
        kafka_bootstrap,
        topics,
    )
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["counts"]["records"] == 1500
    snapshots = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [s["vendorId"] for s in snapshots] == ["vendor-001", "vendor-002", "vendor-003"]
    assert all(s["asOf"] == "2026-11-20T12:00:00.000Z" for s in snapshots)

    exported = cli(
        ["export", "--out-dir", str(tmp_path / "export"), "--no-progress"], kafka_bootstrap, topics
    )
    assert exported.returncode == 0, exported.stderr
    files = sorted((tmp_path / "export").glob("*.avro"))
    assert len(files) == 4  # one per event type

    other = make_topics()
    asyncio.run(ensure_topics(kafka_bootstrap, other, 6))
    imported = cli(["import", *map(str, files), "--no-progress"], kafka_bootstrap, other)
    assert imported.returncode == 0, imported.stderr
    again = cli(
        ["replay", "--as-of", as_of, "--out", str(tmp_path / "b.jsonl"), "--no-progress"],
        kafka_bootstrap,
        other,
    )
    assert again.returncode == 0, again.stderr
    # versions and figures agree: the same events folded by the same core
    assert [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()] == snapshots


def test_replay_rejects_a_bad_time_with_a_clear_message(kafka_bootstrap: str, topics: Topics) -> None:
    result = cli(["replay", "--to", "yesterday-ish"], kafka_bootstrap, topics)
    assert result.returncode == 2
    assert "ISO-8601" in result.stderr
