"""The input watchdog's clock: what counts as a partition that stalled (`processors.worker.watchdogs`).

The worker around it is a stand-in here (its consumer's high watermarks, the batch loop's delivery
times); the integration tests run the watchdog in real workers on a real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from processors.worker import watchdogs
from processors.worker.counters import Counters
from processors.worker.watchdogs import Watchdogs

TP = TopicPartition("orders", 5)


class Worker:
    """The consumer and batch loop as the watchdog reads them: one partition with records 100..199 to
    fold, none delivered since t = 0; `seeks` records what the watchdog did."""

    def __init__(self) -> None:
        self.now = 0.0
        self.seeks: list[dict[Any, int]] = []
        consumer = SimpleNamespace(
            assignment=lambda: {TP}, highwaters=self.highwaters, _paused_partitions=set(),
            _get_active_partitions=lambda: {TP}, _buffered_partitions=set(), _read_offset={},
            resume_partitions=lambda tps: None,
        )  # fmt: skip
        self.app = SimpleNamespace(
            should_stop=False, consumer=consumer, flow_control=SimpleNamespace(is_active=lambda: True)
        )
        self.loop = SimpleNamespace(
            paused=False, resolver=None, positions=SimpleNamespace(expected={TP: 100}), delivered_at={TP: 0.0},
            resumed_at=0.0, any_delivered_at=0.0, alignment=SimpleNamespace(paused=set()), seek_back=self.seek_back,
        )  # fmt: skip

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        return {tp: 200 for tp in tps}

    async def seek_back(self, offsets: dict[Any, int]) -> None:
        self.seeks.append(offsets)


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Worker:
    w = Worker()
    monkeypatch.setattr(watchdogs, "time", SimpleNamespace(monotonic=lambda: w.now))
    return w


def check_at(dogs: Watchdogs, worker: Worker, t: float) -> int:
    worker.now = t
    asyncio.run(dogs.watch_input())
    return len(worker.seeks)


def test_time_the_event_loop_was_blocked_does_not_count_as_a_stall(worker: Worker, tmp_path: Path) -> None:
    counters = Counters(tmp_path / "counters.json")
    dogs = Watchdogs(worker.app, worker.loop, counters, [])  # type: ignore[arg-type]
    assert check_at(dogs, worker, 1.0) == 0  # records seen waiting
    assert check_at(dogs, worker, 2.0) == 0
    # a flush held the loop for 4 s: the next check comes 3 s late, and nothing was delivered meanwhile;
    # of the 5 s since the records were seen, the loop ran for 2
    assert check_at(dogs, worker, 6.0) == 0
    assert counters.input_resumes == 0
    # the loop runs on time and the records still do not come: after 3 s of that, it is a stall
    assert check_at(dogs, worker, 7.0) == 1
    assert worker.seeks == [{TP: 100}]
    assert counters.input_resumes == 1


def test_a_partition_that_delivers_nothing_for_the_stall_time_is_sought_back(
    worker: Worker, tmp_path: Path
) -> None:
    counters = Counters(tmp_path / "counters.json")
    dogs = Watchdogs(worker.app, worker.loop, counters, [])  # type: ignore[arg-type]
    for t in range(1, 4):
        assert check_at(dogs, worker, float(t)) == 0
    assert check_at(dogs, worker, 4.0) == 1  # waiting since the check at t = 1, 3 s on time
    worker.loop.delivered_at[TP] = 4.5  # it delivers again
    assert check_at(dogs, worker, 5.0) == 1
