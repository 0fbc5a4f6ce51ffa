"""Fixtures for tests that run real worker processes against the session's Kafka."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processors.worker.counters import FILE_NAME, Counters
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
CLIENT_TS = ROOT / "api" / "client-ts"


@pytest.fixture(scope="session")
def ts_client() -> Path:
    """The TypeScript client (`api/client-ts`) built from its current sources by `make client` (`npm ci`
    from the lockfile on first use, then `dist/` and the dashboard's copy in `api/static/`). Without
    Node.js the tests that need it are skipped, except under CI=true, where they fail."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        reason = "the TypeScript client needs Node.js 20+ and npm on the PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: not skipped)")
        pytest.skip(reason)
    built = subprocess.run(["make", "-s", "client"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert built.returncode == 0, f"make client failed:\n{built.stdout}\n{built.stderr}"
    return CLIENT_TS


@dataclass
class WorkerProcess:
    """`vendorpulse worker` as a child process with its own data dir and log file."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    def start(self) -> WorkerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        path = self.log_path.with_suffix(f".{self.starts}.log")
        self.logs.append(path)
        with path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infra", "worker", "--loglevel", os.environ.get("VENDORPULSE_TEST_WORKER_LOGLEVEL", "warning")],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.logs)

    @property
    def data_dir(self) -> Path:
        return Path(self.env["VENDORPULSE_DATA_DIR"])


def self_healing_counts(data_dir: Path) -> dict[str, int]:
    """How often the self-healing paths of the worker that used `data_dir` fired, from the
    `counters.json` it keeps there (processors/worker/counters.py). The worker writes that file when
    it starts, so a missing file means the worker ran with another data directory than the test's."""
    path = data_dir / FILE_NAME
    assert path.exists(), f"no {path}: the worker under test did not use this data directory"
    return Counters.in_dir(data_dir).as_dict()


def assert_no_watchdog_restart(*workers: WorkerProcess) -> dict[str, dict[str, int]]:
    """No worker replaced itself through the recovery watchdog (`recovery_restarts`, an exec in the
    same pid, which `starts` and `alive()` do not see): the result came from the batch protocol, not
    from a self-healing path. Every counter is printed (`pytest -rP` shows it) and returned."""
    counts = {w.log_path.name: self_healing_counts(w.data_dir) for w in workers}
    print(f"worker self-healing counters: {counts}")
    restarted = {name: c for name, c in counts.items() if c["recovery_restarts"]}
    assert not restarted, f"watchdog restarts happened: {counts}\n" + "\n".join(w.output() for w in workers)
    return counts


@pytest.fixture
def make_worker(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []
    prefix = topics.prefix

    def make(name: str = "w1", **settings: str) -> WorkerProcess:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "VENDORPULSE_TOPIC_PREFIX": prefix,
            "VENDORPULSE_DATA_DIR": str(tmp_path / f"data-{name}"),
            **{f"VENDORPULSE_{k.upper()}": v for k, v in settings.items()},
        }
        worker = WorkerProcess(env, tmp_path / f"worker-{name}")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        if worker.alive():
            worker.kill(signal.SIGTERM)


async def read_topic(
    bootstrap: str, topic: str, idle_ms: int = 1500, within: float = 90.0
) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Every record of `topic` from the start: at least up to the end offsets it has when called, then
    until nothing new arrives for `idle_ms`. A partition that cannot be read to that end in `within` s
    (its leader does not answer) fails the test, naming it, instead of passing for an empty one."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [
        TopicPartition(topic, p["partition"])
        for d in described
        if d["error_code"] == 0
        for p in d["partitions"]
    ]
    out: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    if not tps:  # no such topic
        return out
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + within
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            out += [(r.key, r.value, list(r.headers)) for rs in batch.values() for r in rs]
            if batch:
                continue
            behind = {}
            for tp in tps:
                try:
                    position = await asyncio.wait_for(consumer.position(tp), idle_ms / 1000)
                except TimeoutError:
                    position = -1  # its offset could not even be looked up yet
                if position < ends[tp]:
                    behind[tp.partition] = (position, ends[tp])
            if not behind:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{topic}: partitions (position, end offset) {behind} not read to the end offsets "
                    f"they had when the read began, within {within:.0f} s"
                )
    finally:
        await consumer.stop()


def latest_snapshots(bootstrap: str, topic: str) -> dict[str, dict[str, object]]:
    latest: dict[str, dict[str, object]] = {}
    for key, value, _ in asyncio.run(read_topic(bootstrap, topic, idle_ms=800)):
        assert key is not None
        assert value is not None
        snap = orjson.loads(value)
        vendor = key.decode()
        if vendor not in latest or snap["version"] >= latest[vendor]["version"]:  # type: ignore[operator]
            latest[vendor] = snap
    return latest
