"""bench/peers.py's timing: a contender's rate and CPU per event between the commits at 10 % and 90 %
of the log, read from polls of its group's committed offsets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.peers import CONTENDERS, Log, Sample, SpanError, commits, launch, span, tree_cpu_seconds
from schemas.topics import Topics

TOTAL = 100_000


def polls(
    commit_times: list[float], committed: list[int], cpu_per_event_us: float, every: float = 0.05
) -> list[Sample]:
    """Polls every `every` s from t=0 of a group that committed `committed[i]` at `commit_times[i]`,
    with CPU growing with the events committed (one CPU-second per 1e6/cpu_per_event_us events)."""
    out = []
    t = 0.0
    while t <= commit_times[-1] + 1:
        seen = max([c for at, c in zip(commit_times, committed, strict=True) if at <= t], default=0)
        out.append(Sample(t, seen, seen * cpu_per_event_us / 1e6))
        t = round(t + every, 6)
    return out


def test_the_rate_is_taken_between_the_commits_at_10_and_90_percent_whatever_the_start_and_the_tail() -> None:
    # 8 s of start-up (group join, recovery) with nothing committed, then 5,000 events/s committed
    # every second up to 90 %, then a slow tail (the last partitions): neither end may count.
    times = [8.0 + i for i in range(1, 19)] + [41.0, 56.0]
    committed = [5_000 * i for i in range(1, 19)] + [95_000, TOTAL]
    result = span(polls(times, committed, cpu_per_event_us=80.0), TOTAL)
    # the first commit at or past 10 % is 10,000 (t=10); the last at or before 90 % is 90,000 (t=26)
    assert result.events == 80_000
    assert result.seconds == pytest.approx(16.0, abs=0.06)
    assert result.events_per_s == pytest.approx(5_000, rel=0.01)
    assert result.cpu_us_per_event == pytest.approx(80.0, rel=0.01)


def test_polls_that_see_no_new_commit_do_not_move_the_ends() -> None:
    # Commits every 2 s, polled every 50 ms: 40 polls per commit see the same total.
    times = [2.0 * i for i in range(1, 11)]
    committed = [10_000 * i for i in range(1, 11)]
    samples = polls(times, committed, cpu_per_event_us=50.0)
    assert [s.committed for s in commits(samples)] == [0, *committed]
    result = span(samples, TOTAL)
    assert (result.events, result.seconds) == (80_000, pytest.approx(16.0, abs=0.06))
    assert result.events_per_s == pytest.approx(5_000, rel=0.01)


def test_ends_that_fall_between_commits_use_the_commits_inside_the_span() -> None:
    # Commits at 7 %, 23 %, 51 %, 88 %, 100 %: the span is 23 % -> 88 %.
    times = [1.0, 2.0, 4.0, 7.0, 8.0]
    committed = [7_000, 23_000, 51_000, 88_000, TOTAL]
    result = span(polls(times, committed, cpu_per_event_us=100.0), TOTAL)
    assert result.events == 65_000
    assert result.seconds == pytest.approx(5.0, abs=0.06)
    assert result.cpu_us_per_event == pytest.approx(100.0, rel=0.01)


def test_a_log_committed_in_too_few_steps_is_an_error_not_a_figure() -> None:
    # One commit inside 10..90 % (or none) leaves no span to time.
    with pytest.raises(SpanError, match="no two commits between 10% and 90%"):
        span(polls([1.0, 2.0, 3.0], [5_000, 50_000, TOTAL], cpu_per_event_us=10.0), TOTAL)
    with pytest.raises(SpanError):
        span(polls([1.0, 2.0], [5_000, TOTAL], cpu_per_event_us=10.0), TOTAL)


def test_cpu_is_read_for_a_live_process_and_grows_with_its_work() -> None:
    before = tree_cpu_seconds(os.getpid())
    x = 0
    for i in range(3_000_000):
        x += i
    after = tree_cpu_seconds(os.getpid())
    assert after - before > 0.01


def test_the_worker_runs_from_its_cli_and_is_timed_by_the_group_it_really_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from processors.worker.faust_app import app_id
    from processors.worker.settings import worker_settings

    log = Log("localhost:1", "p1-", Topics.for_prefix("p1-"), 6, 1000)
    argv, env, group = launch("worker", log, 1, tmp_path)
    assert (Path(argv[0]).name, argv[1]) == ("vendorpulse", "worker")
    for name, value in env.items():
        if name.startswith(("VENDORPULSE_", "KAFKA_")):
            monkeypatch.setenv(name, value)
    assert app_id(worker_settings()) == group


def test_every_contender_and_run_has_a_group_of_its_own(tmp_path: Path) -> None:
    log = Log("localhost:1", "p1-", Topics.for_prefix("p1-"), 6, 1000)
    groups = [launch(c.name, log, run, tmp_path)[2] for c in CONTENDERS for run in (1, 2)]
    assert len(set(groups)) == len(groups) == 2 * len(CONTENDERS)
    _, _, faust_group = launch("faust", log, 1, tmp_path)
    assert faust_group.startswith("p1-")
