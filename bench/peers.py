"""The worker against its peers: vendorpulse, a stock Faust app and a Quix Streams app on one log.

    python -m bench.peers [--events 200000] [--vendors 20] [--runs 2] [--only worker,quix]
                          [--py-spy DIR [--native] [--gil] [--idle]]

One private Kafka broker (KRaft, on free ports), one log of simulated events (Avro single-object
encoding, as the product's producers write it) on `orders` and `inventory`, then, one after the other,
each with its own consumer group on that same log:

- `worker`: the product's worker, started as users start it (`vendorpulse worker`); its group is its
  app id, `VENDORPULSE_TOPIC_PREFIX` + `VENDORPULSE_APP_ID` (set per run, so each run is a new group);
- `faust`: a minimal stock faust-streaming app (bench/peer_faust.py): decode, two table updates;
- `quix` and `quix-eos`: a minimal Quix Streams app (bench/peer_quix.py): decode, per-key RocksDB
  state; at least once, and exactly once.

Each is timed from its group's committed offsets, polled every 50 ms: the rate is taken between the
first commit at or past 10 % of the log and the last commit at or before 90 % (`span`), so neither
start-up, group joining, nor the last partitions' tail counts; CPU per event is the contender's
process CPU time (user + system, threads and children included) over that same span. Contenders run
in turn, run after run (`--runs`, medians); the ratio is to the at-least-once Quix app's events/s.

`--py-spy DIR` records a py-spy profile (raw collapsed stacks, 200 Hz) of each contender over the same
10-90 % span, to DIR/<contender>-<run>.txt; profiling slows what it watches, so the table of such a run
is not a result. Prints a table and writes bench/results/peers.json (with the machine and load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from subprocess import DEVNULL, STDOUT
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from bench import machine
from bench.processor import produce, sim
from infra.kafka import free_base_port
from processors.topics_admin import ensure_topics
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOW, HIGH = 0.10, 0.90
POLL_S = 0.05
PORT_FROM = 26092
STALL_S = 180.0
"""A contender whose committed offsets do not move for this long (once it began) has failed."""


# -- the 10-90 % span -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One poll: when (monotonic s), the group's committed offsets summed over the input partitions
    (= events processed, the log starting at offset 0), and the contender's CPU seconds so far."""

    at: float
    committed: int
    cpu: float


@dataclass(frozen=True)
class Span:
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6


class SpanError(ValueError):
    """The samples do not hold two commits between 10 % and 90 % of the log."""


def commits(samples: Sequence[Sample]) -> list[Sample]:
    """The polls that first saw each new committed total: the moments a commit landed (to within a
    poll), the only points where the committed offsets say where the contender really was. A poll
    that sees an unchanged total says nothing new: the contender went on processing meanwhile."""
    out: list[Sample] = []
    for s in samples:
        if not out or s.committed != out[-1].committed:
            out.append(s)
    return out


def span(samples: Sequence[Sample], total: int, low: float = LOW, high: float = HIGH) -> Span:
    """Events, seconds and CPU between the first commit at or past `low` of `total` and the last
    commit at or before `high`. Both ends are commits seen by a poll, so the poll delay is the same
    at both ends and cancels out; between them the contender's own commit batching does not matter."""
    points = commits(samples)
    start = next((p for p in points if p.committed >= low * total), None)
    end = next((p for p in reversed(points) if p.committed <= high * total), None)
    if start is None or end is None or end.committed <= start.committed or end.at <= start.at:
        seen = [p.committed for p in points]
        raise SpanError(
            f"no two commits between {low:.0%} and {high:.0%} of {total:,} events (commits seen: {seen}); "
            "commit more often or use a longer log (--events)"
        )
    return Span(end.committed - start.committed, end.at - start.at, end.cpu - start.cpu)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants, and of the children they reaped."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(entry.name)] = int(fields[1])
        stats[int(entry.name)] = fields
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    ticks = sum(sum(int(x) for x in stats[p][11:15]) for p in tree if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


# -- contenders -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contender:
    name: str
    label: str


CONTENDERS = (
    Contender("worker", "vendorpulse worker (full fold, effectively once)"),
    Contender("faust", "stock Faust app (decode, 2 table updates)"),
    Contender("quix", "Quix Streams app (decode, state, at least once)"),
    Contender("quix-eos", "Quix Streams app, exactly once"),
)
BASELINE = "quix"


@dataclass(frozen=True)
class Log:
    bootstrap: str
    prefix: str
    topics: Topics
    partitions: int
    total: int


def launch(contender: str, log: Log, run: int, work: Path) -> tuple[list[str], dict[str, str], str]:
    """The contender's command line, environment and consumer group for run `run`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    inputs = [log.topics.orders, log.topics.inventory]
    tag = f"{contender}-{run}-{uuid.uuid4().hex[:4]}"
    if contender == "worker":
        app_id = f"peers-{tag}"
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": log.bootstrap,
            "VENDORPULSE_TOPIC_PREFIX": log.prefix,
            "VENDORPULSE_APP_ID": app_id,
            "VENDORPULSE_DATA_DIR": str(work / tag),
        }
        script = Path(sys.executable).with_name("vendorpulse")
        return [str(script), "worker", "--loglevel", "warning"], env, log.prefix + app_id
    group = f"{log.prefix}peers-{tag}"
    if contender == "faust":
        argv = ["-m", "bench.peer_faust", "--data-dir", str(work / tag), "--partitions", str(log.partitions)]
    elif contender in ("quix", "quix-eos"):
        guarantee = "exactly-once" if contender == "quix-eos" else "at-least-once"
        argv = ["-m", "bench.peer_quix", "--state-dir", str(work / tag), "--guarantee", guarantee]
    else:
        raise ValueError(f"unknown contender {contender!r}; known: {[c.name for c in CONTENDERS]}")
    return [sys.executable, *argv, "--bootstrap", log.bootstrap, "--group", group, *inputs], env, group


@dataclass
class RunResult:
    contender: str
    run: int
    group: str
    load_before: list[float]
    load_after: list[float] = field(default_factory=list)
    span: Span | None = None
    to_end_s: float | None = None
    """from the process start until every input record was committed"""
    error: str | None = None
    profile: str | None = None


class Progress:
    """Polls a group's committed offsets over the log's input partitions."""

    def __init__(self, admin: AIOKafkaAdminClient, partitions: list[TopicPartition]):
        self.admin = admin
        self.partitions = partitions

    async def committed(self, group: str) -> int | None:
        """The events `group` committed, or None when the broker cannot say yet (its offsets topic
        is still being created, or the group's coordinator is loading)."""
        try:
            offsets = await self.admin.list_consumer_group_offsets(group, partitions=self.partitions)
        except KafkaError:
            return None
        return sum(max(0, int(meta.offset)) for meta in offsets.values())


async def run_one(
    contender: str, log: Log, run: int, work: Path, progress: Progress, limit_s: float,
    py_spy: Path | None, py_spy_options: Sequence[str] = (),
) -> RunResult:  # fmt: skip
    argv, env, group = launch(contender, log, run, work)
    result = RunResult(contender, run, group, [round(x, 2) for x in os.getloadavg()])
    out = work / f"{contender}-{run}.log"
    samples: list[Sample] = []
    spy: asyncio.subprocess.Process | None = None
    started = time.monotonic()
    with out.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, env=env, stdout=sink, stderr=STDOUT)
    try:
        last_move = started
        while True:
            await asyncio.sleep(POLL_S)
            now = time.monotonic()
            if proc.returncode is not None:
                raise RuntimeError(f"exited with {proc.returncode} before the end of the log")
            if now - started > limit_s:
                raise RuntimeError(f"the log was not committed within {limit_s:.0f} s")
            done = await progress.committed(group)
            if done is None:
                continue
            cpu = tree_cpu_seconds(proc.pid)
            if samples and done != samples[-1].committed:
                last_move = now
            samples.append(Sample(now, done, cpu))
            if py_spy is not None and spy is None and done >= LOW * log.total:
                result.profile = str(py_spy / f"{contender}-{run}.txt")
                spy = await start_py_spy(proc.pid, Path(result.profile), py_spy_options)
            if spy is not None and done > HIGH * log.total and spy.returncode is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            if done >= log.total:
                result.to_end_s = now - started
                break
            if done and now - last_move > STALL_S:
                raise RuntimeError(
                    f"committed offsets stuck at {done:,} of {log.total:,} for {STALL_S:.0f} s"
                )
            if not done and now - started > 120 and contender == "worker":
                raise RuntimeError(
                    f"no offsets committed by group {group!r} after 120 s: is the worker's group id "
                    "still VENDORPULSE_TOPIC_PREFIX + VENDORPULSE_APP_ID?"
                )
        result.span = span(samples, log.total)
    except (RuntimeError, SpanError) as exc:
        tail = out.read_text(errors="replace")[-1500:]
        result.error = f"{exc}; its log ({out}) ends:\n{tail}"
    finally:
        if spy is not None:
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)
            await asyncio.wait_for(spy.wait(), 60)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        result.load_after = [round(x, 2) for x in os.getloadavg()]
    return result


async def start_py_spy(pid: int, out: Path, options: Sequence[str]) -> asyncio.subprocess.Process:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    cmd = [exe, "record", "-r", "200", "--pid", str(pid), "-f", "raw", "-o", str(out), *options]
    return await asyncio.create_subprocess_exec(*cmd, stdout=DEVNULL, stderr=DEVNULL)


# -- the log --------------------------------------------------------------------------------------
async def make_log(bootstrap: str, events: int, vendors: int) -> Log:
    prefix = f"peers{uuid.uuid4().hex[:6]}-"
    topics = Topics.for_prefix(prefix)
    counts = await ensure_topics(bootstrap, topics, 6)
    await produce(bootstrap, topics, sim(events, vendors=vendors))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in (topics.orders, topics.inventory) for p in range(counts[t])]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    total = sum(ends.values())
    if total != events:
        raise RuntimeError(f"the log holds {total:,} records, not {events:,}")
    return Log(bootstrap, prefix, topics, counts[topics.orders], total)


async def bench(args: argparse.Namespace, bootstrap: str, work: Path, console: Console) -> dict[str, Any]:
    started = time.monotonic()
    log = await make_log(bootstrap, args.events, args.vendors)
    console.print(
        f"log: {log.total:,} events of {args.vendors} vendors in {time.monotonic() - started:.0f} s"
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    tps = [
        TopicPartition(t, p) for t in (log.topics.orders, log.topics.inventory) for p in range(log.partitions)
    ]
    runs: list[RunResult] = []
    spy_options = [
        flag for flag, on in (("--native", args.native), ("--gil", args.gil), ("--idle", args.idle)) if on
    ]
    try:
        for run in range(1, args.runs + 1):
            for name in args.only:
                r = await run_one(
                    name, log, run, work, Progress(admin, tps), args.timeout, args.py_spy, spy_options
                )
                runs.append(r)
                figure = (
                    f"{r.span.events_per_s:,.0f} events/s, {r.span.cpu_us_per_event:.0f} µs CPU per event"
                    if r.span
                    else f"failed: {r.error}"
                )
                console.print(f"run {run} {name}: {figure} (load {r.load_before} -> {r.load_after})")
    finally:
        await admin.close()
    return {"log": asdict(log) | {"vendors": args.vendors}, "runs": runs}


def medians(runs: list[RunResult]) -> dict[str, dict[str, float]]:
    out = {}
    for name in dict.fromkeys(r.contender for r in runs):
        spans = [r.span for r in runs if r.contender == name and r.span is not None]
        if spans:
            out[name] = {
                "events_per_s": statistics.median(s.events_per_s for s in spans),
                "cpu_us_per_event": statistics.median(s.cpu_us_per_event for s in spans),
                "runs": len(spans),
            }
    base = out.get(BASELINE)
    for figures in out.values():
        figures["ratio_to_quix"] = figures["events_per_s"] / base["events_per_s"] if base else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--vendors", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2, help="runs of each contender, in turn (medians)")
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=[c.name for c in CONTENDERS],
        help=f"contenders, comma-separated, in order (default: {','.join(c.name for c in CONTENDERS)})",
    )
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds one contender may take")
    parser.add_argument("--py-spy", type=Path, default=None, help="record py-spy profiles into this folder")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    parser.add_argument("--gil", action="store_true", help="py-spy --gil (only the thread holding the GIL)")
    parser.add_argument(
        "--idle", action="store_true", help="py-spy --idle (waiting threads too: where wall time goes)"
    )
    args = parser.parse_args()
    unknown = set(args.only) - {c.name for c in CONTENDERS}
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {[c.name for c in CONTENDERS]}")
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    console = Console(width=max(Console().width, 120))
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    from infra.kafka import LocalKafka

    work = Path(tempfile.mkdtemp(prefix="vp-peers-"))
    # Below the ephemeral port range (32768 up), where a client's own port may take the broker's.
    cluster = LocalKafka(1, free_base_port(PORT_FROM, nodes=1), work / "kafka-state")
    try:
        bootstrap = cluster.start()
        result = asyncio.run(bench(args, bootstrap, work, console))
    finally:
        cluster.stop(timeout=10)
    about = machine(load_at_start)
    where = f"{platform.machine()}, {about['cpu_count']} CPUs, Python {about['python']}"
    runs: list[RunResult] = result["runs"]
    figures = medians(runs)
    table = Table(
        title=f"{result['log']['total']:,} events of {args.vendors} vendors, one broker, medians of "
        f"{args.runs} run(s), 10-90 % of the committed offsets ({where}; load {load_at_start} at start, "
        f"{about['load_average']} at end)"
    )
    table.add_column("contender")
    table.add_column("events/s", justify="right")
    table.add_column("CPU µs per event", justify="right")
    table.add_column("x quix", justify="right")
    table.add_column("runs (events/s)", justify="right")
    for c in CONTENDERS:
        if c.name not in args.only:
            continue
        each = ", ".join(
            f"{r.span.events_per_s:,.0f}" if r.span else "failed" for r in runs if r.contender == c.name
        )
        f = figures.get(c.name)
        if f is None:
            table.add_row(c.label, "failed", "", "", each)
            continue
        table.add_row(
            c.label,
            f"{f['events_per_s']:,.0f}",
            f"{f['cpu_us_per_event']:.0f}",
            f"{f['ratio_to_quix']:.2f}",
            each,
        )
    console.print(table)
    for r in runs:
        if r.error:
            console.print(f"[red]{r.contender} run {r.run} failed[/red]: {r.error}")
    if args.py_spy:
        console.print(f"py-spy profiles in {args.py_spy} (profiled runs: the figures above are not results)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "machine": {**about, "summary": where},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "log": result["log"],
        "medians": figures,
        "runs": [
            asdict(r)
            | (
                {"events_per_s": r.span.events_per_s, "cpu_us_per_event": r.span.cpu_us_per_event}
                if r.span
                else {}
            )
            for r in runs
        ],
    }
    (RESULTS / "peers.json").write_text(json.dumps(out, indent=2, default=str))
    console.print(f"wrote {RESULTS / 'peers.json'}")
    if any(r.error for r in runs):
        console.print(f"the contenders' logs are kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
