"""Loopback ports for the processes vendorpulse starts itself (local registry, `vendorpulse up`, the
test and benchmark harnesses): a free port, whether one listens, and waiting for an HTTP readiness
endpoint. The block of ports of a local Kafka cluster is `infra.kafka.free_base_port`."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_listening(port: int) -> bool:
    """Whether something accepts connections on the loopback `port`."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


def wait_http_ready(
    port: int,
    within: float = 90.0,
    path: str = "/readyz",
    interval: float = 0.1,
    detail: Callable[[], str] = lambda: "",
) -> None:
    """Until `GET http://127.0.0.1:port{path}` answers 200 (the API: Kafka reached, snapshots rebuilt).
    RuntimeError after `within` seconds, with `detail()` (say, the server's log tail) appended."""
    deadline = time.monotonic() + within
    url = f"http://{LOOPBACK}:{port}{path}"
    last = "no answer"
    while time.monotonic() < deadline:
        with contextlib.suppress(urllib.error.URLError, OSError):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:  # a 503 while not ready
                last = f"HTTP {exc.code}: {exc.read()[:500].decode(errors='replace')}"
        time.sleep(interval)
    raise RuntimeError(f"{url} not ready within {within:.0f} s (last: {last})\n{detail()}")
