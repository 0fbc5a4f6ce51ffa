"""What the history benchmark reads about a running worker: its memory and CPU from /proc, the disk
of its store and changelog, its group's committed offsets and its changelog topic's configs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from bench.processor import cpu_seconds

MIB = 1024 * 1024


@dataclass
class Sample:
    fraction: float
    wall_s: float
    committed: int
    rss_mb: float
    hwm_mb: float
    store_mb: float
    changelog_mb: float
    cpu_s: float
    load_1m: float
    """the machine's 1-minute load average then (it is shared)"""

    @classmethod
    def take(
        cls, fraction: float, wall_s: float, done: int, pid: int, store: Path, changelog: list[Path]
    ) -> Sample:
        """The worker `pid` now: memory, its store's and its changelog partitions' disk, CPU so far."""
        rss, hwm = memory_mb(pid)
        on_disk = disk_mb([p for p in changelog if p.exists()])
        cpu, load = cpu_seconds([pid]), os.getloadavg()[0]
        return cls(fraction, wall_s, done, rss, hwm, disk_mb([store]), on_disk, cpu, load)


def memory_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM of a process, MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def disk_mb(paths: list[Path]) -> float:
    """Allocated bytes of every file under `paths`, MB (Kafka's preallocated indexes are sparse)."""
    total = 0
    for root in paths:
        for folder, _, files in os.walk(root):
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # a segment the cleaner just swapped
                    total += os.stat(os.path.join(folder, name)).st_blocks * 512
    return total / MIB


async def end_offsets(bootstrap: str, names: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=100)  # fetch metadata for the subscription
        tps = [TopicPartition(n, p) for n in names for p in consumer.partitions_for_topic(n) or ()]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


class Broker:
    """The admin calls the bench makes to watch a worker's group and its changelog topic."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
        self.prefix = prefix
        self.group: str | None = None
        self.last: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> Broker:
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def committed(self, inputs: set[str]) -> dict[TopicPartition, int]:
        """The worker group's committed offsets on `inputs` (the last known ones while the
        coordinator is busy, as it is on a new broker loading its offsets topic)."""
        try:
            if self.group is None:  # the worker's group: its app id under the topic prefix
                groups = [g for g, _ in await self.admin.list_consumer_groups() if g.startswith(self.prefix)]
                if not groups:
                    return self.last
                self.group = groups[0]
            offsets = await self.admin.list_consumer_group_offsets(self.group)
        except KafkaError:
            return self.last
        self.last = {tp: o.offset for tp, o in offsets.items() if tp.topic in inputs and o.offset >= 0}
        return self.last

    async def changelog(self, within: float = 120.0) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            names = [t for t in await self.admin.list_topics() if t.startswith(self.prefix)]
            if found := [t for t in names if t.endswith("-changelog")]:
                return str(found[0])
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the worker created no changelog topic under {self.prefix} in {within:.0f}s")

    async def configs(self, topic: str) -> dict[str, tuple[str, int]]:
        """Every config of `topic`: value and where it comes from (1 topic, 4 broker file, 5 default)."""
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, None)
        (response,) = await self.admin.describe_configs([resource])
        (_, _, _, _, entries) = response.resources[0]
        return {e[0]: (e[1], e[3]) for e in entries}

    async def set_configs(self, topic: str, changes: dict[str, str]) -> None:
        """AlterConfigs replaces a topic's whole set: keep the topic's own configs, add `changes`."""
        own = {k: v for k, (v, source) in (await self.configs(topic)).items() if source == 1}
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, own | changes)
        (response,) = await self.admin.alter_configs([resource])
        for error, message, *_ in response.resources:
            if error:
                raise RuntimeError(f"setting {changes} on {topic} failed: {error} {message}")
        deadline = time.monotonic() + 30  # the broker applies it through the metadata log, a moment later
        while time.monotonic() < deadline:
            configs = await self.configs(topic)
            if all(configs[k][0] == v for k, v in changes.items()):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{topic} does not show {changes} 30 s after they were set")


async def latest_versions(
    bootstrap: str, ends: dict[TopicPartition, int], vendors: set[str]
) -> dict[str, int]:
    """The last snapshot version of each of `vendors` on vendor-metrics, read from the partitions'
    ends backwards (the topic holds a snapshot per change: reading all of it would take minutes)."""
    found: dict[str, int] = {}
    back = 2000
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(ends))
        while True:
            for tp, end in ends.items():
                consumer.seek(tp, max(0, end - back))
            position = {tp: max(0, end - back) for tp, end in ends.items()}
            while any(position[tp] < end for tp, end in ends.items()):
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, rs in batch.items():
                    for r in rs:
                        position[tp] = r.offset + 1
                        if r.key and r.value and r.offset < ends[tp] and r.key.decode() in vendors:
                            version = orjson.loads(r.value)["version"]
                            found[r.key.decode()] = max(version, found.get(r.key.decode(), 0))
            if vendors <= found.keys() or all(end <= back for end in ends.values()):
                return {v: found.get(v, 0) for v in vendors}
            back *= 4
    finally:
        await consumer.stop()
