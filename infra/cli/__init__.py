"""The `vendorpulse` command line (contract §8): one console script, one subcommand per process.

Subcommands import what they run lazily, so `vendorpulse kafka status` does not load Faust or FastAPI.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from infra.cli.progress import progress_for
from infra.exceptions import InfraError
from processors.exceptions import ProcessorError

app = typer.Typer(
    name="vendorpulse",
    help="Real-time vendor analytics on Kafka: local broker, simulator, worker, API and tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kafka_app = typer.Typer(
    help="A local Apache Kafka cluster (KRaft) run from Maven Central jars.", no_args_is_help=True
)
app.add_typer(kafka_app, name="kafka")
registry_app = typer.Typer(
    help="A local Confluent-compatible schema registry (in memory), built from a pinned Go module.",
    no_args_is_help=True,
)
app.add_typer(registry_app, name="registry")
schemas_app = typer.Typer(help="The published Avro schemas and a schema registry.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")

Nodes = Annotated[
    int, typer.Option("--nodes", min=1, max=5, help="number of KRaft nodes (3 for fault tests)")
]
Port = Annotated[int, typer.Option("--port", help="client port of node 1; node N listens on PORT+100*(N-1)")]
StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="data, logs and cached jars (default: $VENDORPULSE_STATE_DIR or .vendorpulse/)"
    ),
]


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def _settings_error(exc: Exception) -> typer.Exit:
    """A setting out of range (pydantic's ValidationError): one line per setting, naming its variable."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        raise exc
    for error in exc.errors():
        name = "VENDORPULSE_" + "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        typer.secho(f"error: {name}: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


@kafka_app.command("start")
def kafka_start(nodes: Nodes = 1, port: Port = 9092, state_dir: StateDir = None) -> None:
    """Start the local cluster (idempotent) and print its bootstrap address."""
    from infra.kafka import LocalKafka
    from schemas.settings import kafka_settings

    settings = kafka_settings()
    if not settings.uses_local_broker:
        typer.echo(f"KAFKA_BOOTSTRAP_SERVERS is set; using {settings.bootstrap}, nothing started.")
        typer.echo(settings.bootstrap)
        return
    try:
        import time

        started = time.monotonic()
        bootstrap = LocalKafka(nodes, port, state_dir).start()
    except InfraError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"Kafka ready in {time.monotonic() - started:.1f}s ({nodes} node{'s' if nodes > 1 else ''})", err=True
    )
    typer.echo(bootstrap)


@kafka_app.command("stop")
def kafka_stop(port: Port = 9092, state_dir: StateDir = None) -> None:
    """Stop the local cluster's nodes (controlled shutdown, SIGKILL after 30 s); data is kept."""
    from infra.kafka import LocalKafka

    LocalKafka.existing(port, state_dir).stop()
    typer.echo("stopped")


@kafka_app.command("status")
def kafka_status(port: Port = 9092, state_dir: StateDir = None) -> None:
    """Show which local nodes run; exit 1 when none does."""
    from infra.kafka import LocalKafka

    running = 0
    for node, pid in LocalKafka.existing(port, state_dir).status():
        if pid is not None or node.home.exists():
            state = f"running (pid {pid})" if pid else "stopped"
            typer.echo(f"node {node.node_id}  localhost:{node.port}  {state}")
            running += pid is not None
    if not running:
        typer.echo("no local Kafka node is running")
        raise typer.Exit(code=1)


RegistryPort = Annotated[int, typer.Option("--port", help="port on 127.0.0.1 (0: any free port)")]


@registry_app.command("start")
def registry_start(port: RegistryPort = 8081, state_dir: StateDir = None) -> None:
    """Build the registry if needed, start it (idempotent) and print its URL."""
    import time

    from infra.ports import free_port
    from infra.registry import LocalRegistry

    started = time.monotonic()
    try:
        running = LocalRegistry.existing(state_dir)
        registry = running if running.pid() else LocalRegistry(port or free_port(), state_dir)
        url = registry.start()
    except InfraError as exc:
        raise _fail(exc) from exc
    typer.echo(f"schema registry ready in {time.monotonic() - started:.1f}s (in memory: empty at each start)",
               err=True)  # fmt: skip
    typer.echo(url)


@registry_app.command("stop")
def registry_stop(state_dir: StateDir = None) -> None:
    """Stop the local registry (its schemas are gone: it keeps them in memory)."""
    from infra.registry import LocalRegistry

    LocalRegistry.existing(state_dir).stop()
    typer.echo("stopped")


@registry_app.command("status")
def registry_status(state_dir: StateDir = None) -> None:
    """Show whether the local registry runs; exit 1 when it does not."""
    from infra.registry import LocalRegistry

    registry = LocalRegistry.existing(state_dir)
    pid = registry.pid()
    if pid is None:
        typer.echo("no local schema registry is running")
        raise typer.Exit(code=1)
    typer.echo(f"{registry.url}  running (pid {pid})")


@schemas_app.command("register")
def schemas_register(
    url: Annotated[
        str | None, typer.Option(help="registry URL (default: VENDORPULSE_SCHEMA_REGISTRY_URL)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check against the registry's subjects, register nothing")
    ] = False,
    local: Annotated[
        bool,
        typer.Option("--local", help="in a throwaway local registry: the published versions' own history"),
    ] = False,
) -> None:
    """Register every published .avsc version under the contract's subjects, checked BACKWARD by the
    registry's own compatibility endpoint; exit 1 when the registry refuses one."""
    import tempfile

    from infra.ports import free_port
    from infra.registry import LocalRegistry
    from schemas.exceptions import RegistryError
    from schemas.registration import register_published
    from schemas.settings import kafka_settings
    from schemas.topics import Topics

    settings = kafka_settings()
    names = Topics.for_prefix(settings.topic_prefix)
    topics = {
        names.orders: ["OrderPlaced", "OrderCancelled"],
        names.inventory: ["ProductUpserted", "InventoryAdjusted"],
    }
    throwaway = (
        LocalRegistry(free_port(), Path(tempfile.mkdtemp(prefix="vendorpulse-registry-"))) if local else None
    )
    try:
        if throwaway is not None:
            url = throwaway.start()
        url = url or settings.schema_registry_url
        if not url:
            raise _fail(ValueError("no registry: give --url, --local or set VENDORPULSE_SCHEMA_REGISTRY_URL"))
        steps = asyncio.run(register_published(url, topics, dry_run=dry_run))
    except (InfraError, RegistryError) as exc:
        raise _fail(exc) from exc
    finally:
        if throwaway is not None:
            throwaway.stop()
    for step in steps:
        where = f" (id {step.schema_id})" if step.schema_id is not None else ""
        typer.echo(f"{step.subject}  {step.version}: {step.outcome}{where}")
        for reason in step.reasons:
            typer.echo(f"    {reason}")
    if refused := [s for s in steps if s.refused]:
        typer.secho(f"error: the registry refused {len(refused)} version(s) as not {'BACKWARD'} compatible",
                    err=True, fg=typer.colors.RED)  # fmt: skip
        raise typer.Exit(code=1)


@app.command("topics")
def topics(
    partitions: Annotated[int | None, typer.Option(help="partitions for new topics (default 6)")] = None,
) -> None:
    """Create the contract's topics that are missing (existing ones are left as they are)."""
    from processors.topics_admin import ensure_topics
    from schemas.settings import kafka_settings
    from schemas.topics import Topics

    settings = kafka_settings()
    try:
        counts = asyncio.run(
            ensure_topics(
                settings.bootstrap,
                Topics.for_prefix(settings.topic_prefix),
                partitions or settings.partitions,
            )
        )
    except (InfraError, ProcessorError) as exc:
        raise _fail(exc) from exc
    for name, count in sorted(counts.items()):
        typer.echo(f"{name}\t{count} partitions")


@app.command("simulate")
def simulate(
    vendors: Annotated[int, typer.Option(min=1, help="vendors")] = 5,
    products: Annotated[int, typer.Option(min=1, help="products per vendor")] = 40,
    customers: Annotated[int, typer.Option(min=1, help="customers per vendor")] = 500,
    rate: Annotated[float, typer.Option(min=0, help="events per second (0: as fast as possible)")] = 200.0,
    duration: Annotated[float | None, typer.Option(help="seconds to run")] = None,
    count: Annotated[int | None, typer.Option(help="events to send")] = None,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same events")] = 7,
    start: Annotated[
        str | None,
        typer.Option(
            help="ISO time of the first event; events then step --step-ms apart (default: wall clock)"
        ),
    ] = None,
    step_ms: Annotated[int, typer.Option(min=0)] = 10,
    backfill_days: Annotated[
        float,
        typer.Option(
            min=0,
            help="first send history: --backfill-events events spread over the last N days, in "
            "occurred_at order, each with a Kafka timestamp just after its occurred_at, as fast as "
            "possible; then the live traffic (--count/--duration; neither: stop after the history)",
        ),
    ] = 0.0,
    backfill_events: Annotated[
        int | None, typer.Option(min=1, help="events in the history (default: 2,000 per vendor)")
    ] = None,
    resend_rate: Annotated[
        float, typer.Option(min=0, max=0.5, help="share of events sent twice, as a retrying producer does")
    ] = 0.0,
    framing: Annotated[
        str,
        typer.Option(
            help="single-object, confluent (AvroSerializer and VENDORPULSE_SCHEMA_REGISTRY_URL) or mixed"
        ),
    ] = "single-object",
) -> None:
    """Produce realistic orders, cancellations, product upserts and stock changes to Kafka."""
    import time
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from infra.backfill import DAY_MS, AgingGenerator, Backfill
    from infra.simulate import EventGenerator, SimConfig, SimSummary, produce
    from processors.topics_admin import ensure_topics, retention_ms
    from schemas.settings import kafka_settings
    from schemas.topics import Topics

    if backfill_days and start is not None:
        raise typer.BadParameter(
            "the history ends now; it cannot start at --start", param_hint="--backfill-days"
        )
    if duration is None and count is None:
        if backfill_days:
            count = 0
        else:
            duration = 60.0
    start_ms = None
    if start is not None:
        start_ms = int(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1000)
    settings = kafka_settings()
    names = Topics.for_prefix(settings.topic_prefix)
    config = SimConfig(
        vendors, products, customers, seed, start_ms=start_ms, step_ms=step_ms, resend_rate=resend_rate
    )
    generator = EventGenerator(config)
    backfill = None
    if backfill_days:
        backfill = Backfill(backfill_days, backfill_events or 2000 * vendors, int(time.time() * 1000))
        generator = AgingGenerator(config, backfill)
    console = Console(stderr=True)

    def line(s: SimSummary) -> str:
        return f"sent {s.total:,} events ({s.rate:,.0f}/s, {s.bytes / 1e6:.1f} MB) in {s.elapsed:.1f}s"

    async def run() -> SimSummary:
        await ensure_topics(settings.bootstrap, names, settings.partitions)
        if backfill is not None:
            for topic, kept in (
                await retention_ms(settings.bootstrap, [names.orders, names.inventory])
            ).items():
                if 0 <= kept < backfill_days * DAY_MS:
                    console.print(
                        f"[yellow]warning: {topic} keeps records for {kept / DAY_MS:.1f} days "
                        f"(retention.ms={kept}): Kafka deletes history stamped older than that within "
                        "minutes. Set retention.ms=-1 on the input topics, or backfill fewer days.[/]"
                    )
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            return await produce(
                settings.bootstrap, names.orders, names.inventory, config,
                rate=rate, count=count, duration=duration, on_progress=lambda s: live.update(line(s)),
                generator=generator, framing=framing, registry_url=settings.schema_registry_url,
            )  # fmt: skip

    try:
        summary = asyncio.run(run())
    except (InfraError, ProcessorError, ValueError) as exc:
        raise _fail(exc) from exc
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    table = Table(title=f"vendorpulse simulate -> {settings.bootstrap}")
    table.add_column("event")
    table.add_column("sent", justify="right")
    for name, n in sorted(summary.sent.items()):
        table.add_row(name, f"{n:,}")
    table.add_row("total", f"{summary.total:,}", end_section=True)
    for topic, n in sorted(summary.per_topic.items()):
        table.add_row(f"topic {topic}", f"{n:,}")
    Console().print(table)
    if backfill is not None:
        first = datetime.fromtimestamp(backfill.start_ms / 1000, UTC).strftime("%Y-%m-%d")
        console.print(
            f"history: {summary.history:,} events from {first} to now, Kafka timestamps just after "
            f"their occurred_at, sent in {summary.history_elapsed:.1f}s"
        )
    console.print(line(summary))


@app.command("worker")
def worker(
    loglevel: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Run the metrics worker (Faust): fold orders and inventory into per-vendor snapshots."""
    from processors.worker.faust_app import run_worker
    from processors.worker.settings import worker_settings

    try:
        settings = worker_settings()
    except ValueError as exc:  # pydantic's ValidationError: a setting out of range
        raise _settings_error(exc) from exc
    try:
        run_worker(settings, loglevel)
    except (InfraError, ProcessorError) as exc:
        raise _fail(exc) from exc


@app.command("api")
def api(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Serve the HTTP and WebSocket API (uvicorn) that dashboards talk to."""
    from api.commands import run_api
    from api.exceptions import ApiConfigError

    try:
        run_api(host, port)
    except ApiConfigError as exc:
        raise _fail(exc) from exc


@app.command("token")
def token(
    vendor: Annotated[str | None, typer.Option(help="the vendor this token may read")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="may read any vendor and use admin routes")] = False,
    ttl: Annotated[int, typer.Option(help="seconds until it expires")] = 3600,
) -> None:
    """Print a JWT signed with the configured secret (VENDORPULSE_JWT_SECRET)."""
    from api.commands import make_token_cli
    from api.exceptions import ApiConfigError

    try:
        typer.echo(make_token_cli(vendor, admin, ttl))
    except ApiConfigError as exc:
        raise _fail(exc) from exc


@app.command("watch")
def watch(
    vendor: Annotated[str, typer.Option(help="the vendor to watch")],
    url: Annotated[str, typer.Option(help="base URL of the API")] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None,
        typer.Option(envvar="VENDORPULSE_TOKEN", help="JWT (default: one made with the configured secret)"),
    ] = None,
) -> None:
    """A live terminal view of one vendor: KPIs with trends, top products, orders, connection, latency."""
    from infra.watch import run_watch

    code = run_watch(url, vendor, token, lambda line: typer.secho(line, err=True, fg=typer.colors.RED))
    raise typer.Exit(code=code)


@app.command("up")
def up(
    host: Annotated[str, typer.Option(help="interface the API listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port the API listens on")] = 8000,
    vendors: Annotated[int, typer.Option(min=1, help="simulated vendors")] = 5,
    rate: Annotated[float, typer.Option(min=0.1, help="simulated events per second")] = 20.0,
    simulate: Annotated[bool, typer.Option(help="run the simulator")] = True,
    registry: Annotated[
        bool,
        typer.Option(help="a schema registry too (a local one unless configured); simulate both framings"),
    ] = False,
    history_days: Annotated[
        float,
        typer.Option(
            min=0, help="days of aged history the simulator sends first into an empty log (0: none)"
        ),
    ] = 395.0,
    history_events: Annotated[int, typer.Option(min=1, help="history events per vendor")] = 3000,
) -> None:
    """Local Kafka, topics, worker, API and simulator at once; prints the dashboard URL. Ctrl-C stops all."""
    from infra.up import UpConfig, run

    config = UpConfig(
        host=host, port=port, vendors=vendors, rate=rate, simulate=simulate, registry=registry,
        history_days=history_days, history_events=history_events,
    )  # fmt: skip
    raise typer.Exit(code=run(config, lambda line: typer.echo(line, err=not line.startswith("dashboard"))))


def _ms(value: str | None, flag: str) -> int | None:
    """ISO-8601 (a trailing Z allowed; naive means UTC) to epoch milliseconds."""
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 time, e.g. 2026-11-27T18:00:00Z", param_hint=flag
        ) from exc
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)


def _report(summary: object, as_json: bool, lines: list[str]) -> None:
    import json

    for warning in getattr(summary, "warnings", []):
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), default=str))  # type: ignore[attr-defined]
    else:
        for line in lines:
            typer.echo(line, err=True)


@app.command("replay")
def replay(
    from_: Annotated[
        str | None, typer.Option("--from", help="ISO time: read records stamped from then")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="ISO time: the log as it stood then (default: now)")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="ISO time the snapshots are computed for (default --to)")
    ] = None,
    vendors: Annotated[
        str | None, typer.Option(help="comma-separated vendor ids (default: every vendor)")
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            help="one snapshot per vendor: JSON Lines ('-' for stdout), or Parquet if it ends in .parquet"
        ),
    ] = None,
    publish: Annotated[
        str | None, typer.Option(help="publish the snapshots to this (compacted) topic")
    ] = None,
    files: Annotated[
        list[Path] | None, typer.Option("--files", help="replay Avro container files instead of Kafka")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="processes reading partitions in parallel")] = 1,
    progress: Annotated[bool, typer.Option(help="show a progress bar with events/s")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Recompute snapshots from the log (or exported files) with the worker's own fold; never joins its group."""
    from processors.exceptions import ReplayError
    from schemas.settings import kafka_settings

    try:
        settings = kafka_settings()
    except ValueError as exc:  # pydantic's ValidationError: a setting out of range
        raise _settings_error(exc) from exc
    vendor_list = [v for v in (vendors or "").split(",") if v] or None
    try:
        if files:
            from processors.archive import run_replay_files

            summary = run_replay_files(
                settings, files, vendor_list, _ms(as_of, "--as-of"), out, publish, progress_for(progress)
            )
        else:
            from processors.replay import run_replay

            summary = run_replay(
                settings, _ms(from_, "--from"), _ms(to, "--to"), vendor_list, _ms(as_of, "--as-of"),
                out, publish, progress_for(progress), jobs,
            )  # fmt: skip
    except ReplayError as exc:
        raise _fail(exc) from exc
    _report(summary, as_json, [
        f"replayed {summary.counts.records:,} records into {len(summary.snapshots)} vendor snapshots "
        f"({summary.events_per_s:,.0f} events/s); as of {summary.as_of_ms}",
    ])  # fmt: skip


@app.command("export")
def export(
    topic: Annotated[str, typer.Option(help="orders, inventory or all")] = "all",
    from_: Annotated[str | None, typer.Option("--from", help="ISO time: records stamped from then")] = None,
    to: Annotated[str | None, typer.Option("--to", help="ISO time: records stamped until then")] = None,
    out_dir: Annotated[Path, typer.Option(help="folder for one file per event type")] = Path("export"),
    file_format: Annotated[
        str, typer.Option("--format", help="avro (Object Container Files) or parquet (for pandas, DuckDB)")
    ] = "avro",
    overwrite: Annotated[bool, typer.Option(help="replace files already in the folder")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Write a topic's events in a time range to Avro or Parquet files, one per event type (undecodable ones are listed)."""
    from processors.archive import run_export
    from processors.exceptions import ReplayError
    from schemas.settings import kafka_settings

    try:
        summary = run_export(
            kafka_settings(), topic, _ms(from_, "--from"), _ms(to, "--to"), out_dir, progress_for(progress), overwrite,
            file_format=file_format,
        )  # fmt: skip
    except ReplayError as exc:
        raise _fail(exc) from exc
    skipped = sum(summary.skipped.values())
    _report(summary, as_json, [f"{n:,} records -> {name}" for name, n in sorted(summary.files.items())] + [
        f"skipped {skipped:,} records (listed in {summary.skipped_path})" if skipped else "skipped none",
    ])  # fmt: skip


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Avro container files written by `vendorpulse export`")],
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Publish exported files back to their topics (repeated events are harmless: the fold dedupes them)."""
    from processors.archive import run_import
    from processors.exceptions import ReplayError
    from schemas.settings import kafka_settings

    try:
        summary = run_import(kafka_settings(), paths, progress_for(progress))
    except ReplayError as exc:
        raise _fail(exc) from exc
    _report(summary, as_json, [f"{n:,} records -> {topic}" for topic, n in sorted(summary.sent.items())] + [
        f"skipped {sum(summary.skipped.values()):,} records" ,
    ])  # fmt: skip


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
