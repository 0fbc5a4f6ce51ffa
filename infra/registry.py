"""A real Confluent-compatible schema registry on loopback, built from a pinned Go module.

The server is AxonOps Schema Registry (github.com/axonops/axonops-schema-registry, Apache-2.0): it
speaks the Confluent REST API (subjects, versions, ids, compatibility) and keeps schemas in memory, so
every start is empty. It is pinned as a Go *tool* dependency of the small module in
`infra/schema-registry/` (`go get -tool …@v0.2.1`; go.sum holds the checksums) and built with
`go build` into `.vendorpulse/bin/schema-registry-<hash of go.mod and go.sum>`, once per pin. Go's own
caches (module and build) make a rebuild after a clean checkout take a second or two; the first build on a
machine downloads and compiles the module (about a minute on two cores).

A start is idempotent (a running registry of the same state folder is reused), detached from the caller,
and returns once the registry answers `GET /config`. Nothing here is specific to this server but the
build and its environment variables: the project and its tests speak only the standard REST API, so any
Confluent-compatible registry can take its place (`VENDORPULSE_SCHEMA_REGISTRY_URL`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from infra.exceptions import PortBusyError, RegistryStartError, ToolMissingError
from infra.kafka import INFRA_DIR
from infra.ports import port_listening
from schemas.settings import default_state_dir

TOOL_MODULE = INFRA_DIR / "schema-registry"
PACKAGE = "github.com/axonops/axonops-schema-registry/cmd/schema-registry"
DEFAULT_PORT = 8081

NO_GO_HELP = (
    "Go is needed to build the local schema registry but `go` was not found on PATH. Ways on:\n"
    "  1. install Go 1.26 (Debian: apt-get install -y golang, or the official tarball);\n"
    "  2. point VENDORPULSE_SCHEMA_REGISTRY_URL at a Confluent-compatible registry you already run;\n"
    "  3. with a Docker engine: docker compose up schema-registry (see docker-compose.yml)."
)


def binary_path() -> Path:
    """Where the build of the pinned version goes (the hash changes when go.mod or go.sum does)."""
    pin = (TOOL_MODULE / "go.mod").read_bytes() + (TOOL_MODULE / "go.sum").read_bytes()
    return default_state_dir() / "bin" / f"schema-registry-{hashlib.sha256(pin).hexdigest()[:12]}"


def build() -> Path:
    """The registry binary, built with `go build` from the tool module if this pin has none yet."""
    target = binary_path()
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise ToolMissingError(NO_GO_HELP)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    proc = subprocess.run(
        [go, "build", "-trimpath", "-o", str(tmp), PACKAGE],
        cwd=TOOL_MODULE, capture_output=True, text=True, check=False,
        env={**os.environ, "CGO_ENABLED": "0"},
    )  # fmt: skip
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RegistryStartError(
            f"`go build {PACKAGE}` in {TOOL_MODULE} failed (exit {proc.returncode}). Is the Go module "
            f"proxy reachable (GOPROXY)?\n{proc.stderr[-2000:]}"
        )
    tmp.replace(target)  # atomic: a concurrent build of the same pin wrote the same bytes
    return target


class LocalRegistry:
    """One registry process on 127.0.0.1:`port`, with its pid, port and log under `state_dir/registry`."""

    def __init__(self, port: int = DEFAULT_PORT, state_dir: Path | None = None) -> None:
        self.home = (state_dir or default_state_dir()) / "registry"
        self.port = port
        self._child: subprocess.Popen[bytes] | None = None

    @classmethod
    def existing(cls, state_dir: Path | None = None) -> LocalRegistry:
        """The registry last started with `state_dir` (on the port it recorded)."""
        registry = cls(DEFAULT_PORT, state_dir)
        with contextlib.suppress(OSError, ValueError):
            registry.port = int((registry.home / "port").read_text())
        return registry

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.home / "registry.log"

    def pid(self) -> int | None:
        """The process id if it is alive and is this folder's registry, else None."""
        try:
            pid = int((self.home / "pid").read_text())
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if f"VENDORPULSE_REGISTRY_HOME={self.home}".encode() in environ.split(b"\0") else None

    def start(self, timeout: float = 15.0) -> str:
        """Build if needed, start unless running, wait until it answers; returns the URL."""
        binary = build()
        if self.pid() is None:
            if port_listening(self.port):
                raise PortBusyError(
                    f"port {self.port} is already in use by another process; start the registry on "
                    "another one with --port."
                )
            self.home.mkdir(parents=True, exist_ok=True)
            env = {
                **os.environ,
                "SCHEMA_REGISTRY_HOST": "127.0.0.1",
                "SCHEMA_REGISTRY_PORT": str(self.port),
                "SCHEMA_REGISTRY_STORAGE_TYPE": "memory",
                "SCHEMA_REGISTRY_COMPATIBILITY_LEVEL": "BACKWARD",
                "VENDORPULSE_REGISTRY_HOME": str(self.home),  # how pid() recognises its own process
            }
            with self.log_file.open("ab") as log:
                self._child = subprocess.Popen(
                    [str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            (self.home / "pid").write_text(str(self._child.pid))
            (self.home / "port").write_text(str(self.port))
        self.wait_ready(timeout)
        return self.url

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._exited():
                tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                raise RegistryStartError(
                    f"the schema registry exited during start; {self.log_file} ends:\n{tail}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/config", timeout=1) as response:
                    json.load(response)
                    return
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.01)
        raise RegistryStartError(
            f"the schema registry at {self.url} did not answer within {timeout:.0f}s ({last})"
        )

    def _exited(self) -> bool:
        # A child just spawned may not have exec'd yet (its environment is still ours): ask the child.
        return self._child.poll() is not None if self._child is not None else self.pid() is None

    def signal(self, sig: int) -> bool:
        """Send `sig` to the registry (SIGSTOP/SIGCONT make it stop answering, then answer again)."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (after SIGCONT, should it be paused), SIGKILL after `timeout`. Its schemas are gone."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            if self._child is not None and self._child.poll() is not None:
                break
            time.sleep(0.02)
        self.signal(signal.SIGKILL)
        if self._child is not None:
            self._child.wait(timeout=10)
            self._child = None
        (self.home / "pid").unlink(missing_ok=True)
