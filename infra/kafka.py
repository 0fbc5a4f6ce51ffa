"""A real Apache Kafka cluster (KRaft, combined broker+controller nodes) on loopback, run from jars.

The jars come from Maven Central through `infra/pom.xml` (`mvn dependency:copy-dependencies`), once per
pom version, into `.vendorpulse/jars/` (shared by every state folder, e.g. the tests' private broker); Maven's own cache (~/.m2) makes later resolutions offline. Each node
is one `java ... kafka.Kafka node-N/server.properties` process, detached from the caller, with its data,
log and pid file under `<state>/kafka/node-N/`. Starting is idempotent (running nodes are left alone,
formatted storage is kept), and a start returns only when the cluster answers a metadata request with
every node registered.

Ports: node N (1-based) listens for clients on `base_port + 100*(N-1)` and for the controller quorum on
that plus one, so one node is `localhost:9092`/`9093` and three are 9092, 9192, 9292.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.exceptions import BrokerStartError, PortBusyError, ToolMissingError
from infra.ports import port_listening
from schemas.settings import DEFAULT_PORT, default_state_dir

INFRA_DIR = Path(__file__).resolve().parent
POM = INFRA_DIR / "pom.xml"
LOG4J = INFRA_DIR / "log4j2.properties"
PORT_STRIDE = 100

NO_TOOLS_HELP = (
    "{tool} is needed to run the local Kafka broker but was not found on PATH. Three ways on:\n"
    "  1. install Java 17+ and Maven (Debian: apt-get install -y openjdk-17-jre-headless maven);\n"
    "  2. point KAFKA_BOOTSTRAP_SERVERS at a Kafka cluster you already run (nothing is started then);\n"
    "  3. with a Docker engine: docker compose up kafka (see docker-compose.yml)."
)


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int
    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / "pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def pid(self) -> int | None:
        """The node's process id if that process is alive and is a Kafka broker, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if not cmdline:  # the java launcher re-execs itself; for an instant the command line is empty
            return pid
        return pid if b"kafka.Kafka" in cmdline and str(self.config_file).encode() in cmdline else None


class LocalKafka:
    """A cluster of `nodes` KRaft nodes on 127.0.0.1 with state under `state_dir/kafka`."""

    def __init__(self, nodes: int = 1, base_port: int = DEFAULT_PORT, state_dir: Path | None = None):
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self.state = (state_dir or default_state_dir()) / "kafka"
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # nodes this object started: reaped on stop
        self.base_port = base_port
        self.nodes = [
            Node(
                i,
                base_port + PORT_STRIDE * (i - 1),
                base_port + PORT_STRIDE * (i - 1) + 1,
                self.state / f"node-{i}",
            )
            for i in range(1, nodes + 1)
        ]

    @classmethod
    def existing(cls, base_port: int = DEFAULT_PORT, state_dir: Path | None = None) -> LocalKafka:
        """The cluster whose nodes have state in `state_dir` (one node when there is none yet)."""
        root = (state_dir or default_state_dir()) / "kafka"
        count = len(list(root.glob("node-*"))) if root.exists() else 0
        return cls(max(1, count), base_port, state_dir)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"localhost:{n.port}" for n in self.nodes)

    # -- jars ---------------------------------------------------------------------------------------
    def libs(self) -> Path:
        """The broker's classpath folder, resolved by Maven on first use and cached by pom hash."""
        digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
        libs = default_state_dir() / "jars" / f"kafka-{digest}"
        if (libs / ".complete").exists():
            return libs
        _require("java")
        mvn = _require("mvn")
        tmp = libs.with_name(libs.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BrokerStartError(
                "Maven could not resolve the Kafka jars from infra/pom.xml "
                f"(exit {proc.returncode}). Is Maven Central reachable?\n{proc.stdout[-2000:]}"
            )
        (tmp / ".complete").write_text(POM.read_text())
        try:
            tmp.rename(libs)
        except OSError:  # another process finished the same resolution first
            shutil.rmtree(tmp, ignore_errors=True)
        return libs

    # -- configuration ------------------------------------------------------------------------------
    def _server_properties(self, node: Node) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        replicas = min(3, len(self.nodes))
        min_isr = 2 if replicas >= 3 else 1
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node.node_id}",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
                f"advertised.listeners=PLAINTEXT://localhost:{node.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={node.home / 'data'}",
                "num.partitions=6",
                f"default.replication.factor={replicas}",
                f"min.insync.replicas={min_isr}",
                f"offsets.topic.replication.factor={replicas}",
                f"transaction.state.log.replication.factor={replicas}",
                f"transaction.state.log.min.isr={min_isr}",
                # Topics are created explicitly with the contract's layout; a typo must not make one.
                "auto.create.topics.enable=false",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=-1",
                "log.segment.bytes=67108864",
                "",
            ]
        )

    def _cluster_id(self) -> str:
        path = self.state / "cluster-id"
        if not path.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            # KRaft cluster ids are 16 random bytes, url-safe base64 without padding.
            import base64

            path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
        return path.read_text().strip()

    def _format(self, node: Node, libs: Path) -> None:
        node.home.mkdir(parents=True, exist_ok=True)
        node.config_file.write_text(self._server_properties(node))
        if (node.home / "data" / "meta.properties").exists():
            return
        cmd = [
            "java", "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={LOG4J}",
            "kafka.tools.StorageTool", "format", f"--cluster-id={self._cluster_id()}",  # ids may start with "-"
            "-c", str(node.config_file), "--ignore-formatted",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BrokerStartError(f"formatting node {node.node_id} failed:\n{proc.stdout}{proc.stderr}")

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> str:
        """Start every node that is not running and wait until the cluster serves metadata."""
        libs = self.libs()
        for node in self.nodes:
            if node.pid() is None:
                self._format(node, libs)
                self._spawn(node, libs)
        self.wait_ready(timeout)
        return self.bootstrap

    def start_node(self, node_id: int) -> None:
        node = self.nodes[node_id - 1]
        if node.pid() is None:
            libs = self.libs()
            self._format(node, libs)
            self._spawn(node, libs)

    def _spawn(self, node: Node, libs: Path) -> None:
        for port in (node.port, node.controller_port):
            if port_listening(port):
                raise PortBusyError(
                    f"port {port} is already in use by a process that is not node {node.node_id} of "
                    f"{self.state}; stop it, or start on other ports with --port."
                )
        heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx768m")
        cmd = [
            "java", *heap.split(), "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG4J}",
            "-cp", f"{libs}/*", "kafka.Kafka", str(node.config_file),
        ]  # fmt: skip
        with node.log_file.open("ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        node.pid_file.write_text(str(proc.pid))
        self._children[node.node_id] = proc

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            dead = [n for n in self.nodes if n.pid() is None]
            if dead:
                tail = (
                    dead[0].log_file.read_text(errors="replace")[-3000:] if dead[0].log_file.exists() else ""
                )
                raise BrokerStartError(
                    f"Kafka node {dead[0].node_id} exited during start; its log ({dead[0].log_file}) ends:\n{tail}"
                )
            # The count alone is not enough: a node killed a moment ago stays registered until its
            # controller session expires, so a node started again counts before it listens.
            silent = [n.node_id for n in self.nodes if not port_listening(n.port)]
            try:
                brokers = asyncio.run(_broker_count(self.bootstrap))
                if brokers == len(self.nodes) and not silent:
                    return
                last_error = (
                    f"{brokers} of {len(self.nodes)} brokers registered, nodes {silent} not listening"
                )
            except Exception as exc:  # any client error just means "not yet"
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        raise BrokerStartError(
            f"Kafka at {self.bootstrap} did not answer within {timeout:.0f}s ({last_error})"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node cleanly (SIGTERM, controlled shutdown), SIGKILL after `timeout`."""
        for node in self.nodes:
            self.kill_node(node.node_id, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(n.pid() for n in self.nodes):
            time.sleep(0.2)
        for node in self.nodes:
            self.kill_node(node.node_id, signal.SIGKILL)
            node.pid_file.unlink(missing_ok=True)
        for proc in self._children.values():
            proc.wait(timeout=10)
        self._children.clear()

    def kill_node(self, node_id: int, sig: int = signal.SIGKILL) -> bool:
        pid = self.nodes[node_id - 1].pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        child = self._children.get(node_id)
        if child is not None and sig == signal.SIGKILL:
            child.wait(timeout=10)
            del self._children[node_id]
        return True

    def status(self) -> Iterator[tuple[Node, int | None]]:
        for node in self.nodes:
            yield node, node.pid()

    def wipe(self) -> None:
        """Stop the cluster and delete its data (the cached jars stay)."""
        self.stop()
        for node in self.nodes:
            shutil.rmtree(node.home, ignore_errors=True)
        (self.state / "cluster-id").unlink(missing_ok=True)


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolMissingError(NO_TOOLS_HELP.format(tool="Java" if tool == "java" else "Maven"))
    return path


def free_base_port(start: int, nodes: int = 3) -> int:
    """The first base port from `start` (in steps of 10) where none of a `nodes`-node cluster's client
    and controller ports listens."""
    for base in range(start, start + 3000, 10):
        ports = [base + PORT_STRIDE * i + d for i in range(nodes) for d in (0, 1)]
        if not any(port_listening(p) for p in ports):
            return base
    raise RuntimeError(f"no free ports from {start} up")


async def _broker_count(bootstrap: str) -> int:
    import logging

    from aiokafka import AIOKafkaClient

    # Refused connections are expected while the broker boots; the caller reports the last error.
    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.CRITICAL)
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return len(metadata.brokers())
    finally:
        await client.close()
        log.setLevel(level)
