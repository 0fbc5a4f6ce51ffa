"""`vendorpulse up`: everything for a first look, as child processes of one command (`--registry`: and a
local schema registry, unless VENDORPULSE_SCHEMA_REGISTRY_URL names one, with the simulator mixing framings).

Order: Kafka (the local broker of `vendorpulse kafka start`, unless KAFKA_BOOTSTRAP_SERVERS names a
cluster), the contract's topics, `vendorpulse worker`, `vendorpulse api`, `vendorpulse simulate`; then it
prints the dashboard URL with a development token and waits.

History: when the input topics are empty, the simulator first sends 13 months of history
(`simulate --backfill-days`: each record's Kafka timestamp just after its occurred_at, so it ages as a
live log would), then goes live. `up` waits until the first vendor's snapshot shows twelve monthly
bars before it prints the URL, so a first look shows a year, not one bar. The default volume
(`HISTORY_EVENTS_PER_VENDOR`) keeps that wait short; `--history-days 0` skips it. A log that already
holds input (a second `up` on the kept local broker) gets no second history. Ctrl-C (or SIGTERM) stops the simulator,
the API and the worker in that order (SIGINT/SIGTERM, SIGKILL after a grace period) and the local broker
if this command started it. A child that exits on its own stops the rest and the command fails with
the tail of its log. Children run in their own sessions so a Ctrl-C reaches only this process, which
then stops them in order; their output goes to `<state dir>/up/<name>.log`.

Without VENDORPULSE_JWT_SECRET the children run with VENDORPULSE_ENV=dev (the fixed development secret),
so the printed token is a development token; with a secret set, the token is signed with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.exceptions import InfraError
from infra.kafka import LocalKafka
from infra.ports import free_port
from infra.registry import LocalRegistry
from processors.topics_admin import ensure_topics, record_counts
from schemas.settings import default_state_dir, kafka_settings
from schemas.topics import Topics

HISTORY_DAYS = 395.0
"""13 months: the 12 monthly bars ending with this month, the oldest one whole"""
HISTORY_EVENTS_PER_VENDOR = 3000


class UpError(InfraError):
    """A part of `vendorpulse up` did not start or stopped on its own; the message says which and why."""


@dataclass
class UpConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    vendors: int = 5
    rate: float = 20.0
    simulate: bool = True
    registry: bool = False
    """a schema registry too (VENDORPULSE_SCHEMA_REGISTRY_URL's, else a local one) and both framings"""
    history_days: float = HISTORY_DAYS
    history_events: int = HISTORY_EVENTS_PER_VENDOR
    """per vendor"""
    token_ttl: int = 24 * 3600
    ready_within: float = 120.0
    history_within: float = 300.0
    grace: float = 10.0
    state_dir: Path = field(default_factory=default_state_dir)


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infra", *self.args],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches `up` only; it stops the children in order
            )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float) -> int | None:
        """SIGINT (what Ctrl-C would have sent), SIGTERM after half the grace, SIGKILL after it."""
        if self.proc is None:
            return None
        for sig, wait in ((signal.SIGINT, grace / 2), (signal.SIGTERM, grace / 2), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.poll()

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Stack:
    """The running parts, stopped in reverse order of start."""

    def __init__(self, config: UpConfig, say: Callable[[str], None]) -> None:
        self.config = config
        self.say = say
        self.children: list[Child] = []
        self.kafka: LocalKafka | None = None
        self.registry: LocalRegistry | None = None
        self.logs = config.state_dir / "up"

    def start(self) -> tuple[str, str]:
        """Start everything; the dashboard URL and the vendor it shows."""
        settings = kafka_settings()
        env = dict(os.environ)
        if not env.get("VENDORPULSE_JWT_SECRET"):
            env["VENDORPULSE_ENV"] = "dev"
        if settings.uses_local_broker:
            self.say("starting the local Kafka broker (first run downloads the jars through Maven)…")
            kafka = LocalKafka(state_dir=self.config.state_dir)
            already = any(pid is not None for _, pid in kafka.status())
            bootstrap = kafka.start()
            self.kafka = None if already else kafka  # one we started is one we stop
        else:
            bootstrap = settings.bootstrap
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        self.say(f"Kafka at {bootstrap}")
        names = Topics.for_prefix(settings.topic_prefix)
        asyncio.run(ensure_topics(bootstrap, names, settings.partitions))
        c = self.config
        if c.registry and not settings.schema_registry_url:
            self.say("starting the local schema registry (the first run builds it with Go)…")
            registry = LocalRegistry.existing(c.state_dir)
            already = registry.pid() is not None
            if not already:
                registry = LocalRegistry(free_port(), c.state_dir)
            env["VENDORPULSE_SCHEMA_REGISTRY_URL"] = registry.start()
            self.registry = None if already else registry
        if c.registry or settings.schema_registry_url:
            self.say(
                f"schema registry at {env.get('VENDORPULSE_SCHEMA_REGISTRY_URL')}: both framings accepted"
            )
        history = self._history_events(bootstrap, names)
        parts = [
            Child("worker", ["worker", "--loglevel", "warning"], self.logs / "worker.log"),
            Child("api", ["api", "--host", c.host, "--port", str(c.port)], self.logs / "api.log"),
        ]
        if c.simulate:
            args = ["simulate", "--vendors", str(c.vendors), "--rate", str(c.rate), "--duration", "31536000"]
            if env.get("VENDORPULSE_SCHEMA_REGISTRY_URL"):
                args += ["--framing", "mixed"]
            if history:
                args += ["--backfill-days", str(c.history_days), "--backfill-events", str(history)]
            parts.append(Child("simulator", args, self.logs / "simulator.log"))
        started = time.monotonic()
        for child in parts:
            child.start(env)
            self.children.append(child)
            assert child.proc is not None
            self.say(f"{child.name} started (pid {child.proc.pid}, log {child.log_path})")
        base = f"http://{_url_host(c.host)}:{c.port}"
        self._wait_ready(base)
        vendor = "vendor-001"
        token = _token(env, vendor, c.token_ttl)
        if history:
            self._wait_history(
                bootstrap, names, history, f"{base}{METRICS_PATH.format(vendor)}", token, started
            )
        return f"{base}/dashboard?token={token}", vendor

    def _history_events(self, bootstrap: str, names: Topics) -> int:
        """How many history events the simulator sends first: none if disabled or the log has input."""
        c = self.config
        if not c.simulate or c.history_days <= 0 or c.history_events <= 0:
            return 0
        held = sum(asyncio.run(record_counts(bootstrap, [names.orders, names.inventory])).values())
        if held:
            self.say(f"the input topics already hold {held:,} records: no history is added")
            return 0
        return c.history_events * c.vendors

    def _wait_history(
        self, bootstrap: str, names: Topics, events: int, metrics_url: str, token: str, started: float
    ) -> None:
        """Until the history is in Kafka, then until the first vendor's snapshot shows its 12 months."""
        c = self.config
        self.say(
            f"history: {events:,} events ({c.history_events:,} per vendor) over the last "
            f"{c.history_days:g} days, then live traffic…"
        )
        deadline = started + c.history_within
        sent_after = None
        while time.monotonic() < deadline:
            self.check()
            if sent_after is None:
                held = sum(asyncio.run(record_counts(bootstrap, [names.orders, names.inventory])).values())
                if held >= events:
                    sent_after = time.monotonic() - started
            elif _months_shown(metrics_url, token) >= 12:
                self.say(
                    f"history: sent in {sent_after:.1f} s, on the dashboard (12 monthly bars) after "
                    f"{time.monotonic() - started:.1f} s; `up --history-days 0` skips it"
                )
                return
            time.sleep(0.5)
        self.say(
            f"history: not all on the dashboard after {c.history_within:.0f} s; it fills in as the "
            f"worker folds it (see {self.logs})"
        )

    def _wait_ready(self, base: str) -> None:
        deadline = time.monotonic() + self.config.ready_within
        while time.monotonic() < deadline:
            self.check()
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise UpError(
            f"the API at {base} was not ready within {self.config.ready_within:.0f} s; see {self.logs}"
        )

    def check(self) -> None:
        """UpError naming the first child that exited by itself."""
        for child in self.children:
            if not child.alive():
                code = child.proc.poll() if child.proc else None
                raise UpError(
                    f"{child.name} exited with {code}; last lines of {child.log_path}:\n{child.tail()}"
                )

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.alive():
                self.say(f"stopping {child.name}…")
            child.stop(self.config.grace)
        self.children.clear()
        if self.kafka is not None:
            self.say("stopping the local Kafka broker…")
            self.kafka.stop()
            self.kafka = None
        if self.registry is not None:
            self.say("stopping the local schema registry…")
            self.registry.stop()
            self.registry = None


METRICS_PATH = "/api/v1/analytics/vendors/{}/metrics"


def _months_shown(url: str, token: str) -> int:
    """Months with orders in the snapshot at `url` (0 while there is none or the API is not ready)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            snapshot = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return 0
    return sum(1 for month in snapshot.get("monthlyTrends", []) if month.get("orders", 0) > 0)


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host


def _token(env: dict[str, str], vendor: str, ttl: int) -> str:
    """A token for `vendor`, signed as the API child verifies it (its environment: dev secret in dev)."""
    from api.auth import make_token
    from api.settings import api_settings

    return make_token(vendor, ttl=ttl, settings=api_settings(env=env.get("VENDORPULSE_ENV", "prod")))


def run(config: UpConfig, say: Callable[[str], None]) -> int:
    """Start, print, wait for Ctrl-C or SIGTERM or a child's exit, stop; the exit code."""
    stack = Stack(config, say)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    # explicitly: a shell starts background jobs with SIGINT ignored, and Python keeps that
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 0
    try:
        url, vendor = stack.start()
        say("")
        say(f"dashboard:  {url}")
        say(f"terminal:   vendorpulse watch --vendor {vendor}   (the other vendors: vendor-002 …)")
        say("Ctrl-C stops everything.")
        while True:
            stack.check()
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("\nstopping…")
    except InfraError as exc:
        say(f"error: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        # a second Ctrl-C during the shutdown must not leave children behind
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            stack.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    say("stopped.")
    return code
