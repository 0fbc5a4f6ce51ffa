"""How the API is served: one uvicorn configuration for `vendorpulse api`, the tests and the benchmark.

uvloop + httptools, uvicorn's sans-I/O websockets implementation with its transport handed to the hub
(`api.uvicorn_ws`: one update is framed once and the same bytes are written to every socket),
permessage-deflate off (MEASURED.md: it triples the CPU per frame; frames written beside websockets'
protocol must not need an extension), no WebSocket-level pings (the application heartbeat of contract §6
already pings every connection and closes it with 4008 after missed pongs; uvicorn's own ping every 20 s
doubled that per-connection work: a timer, a frame and a pong to parse), and a deadline and size cap on
request heads that uvicorn lacks (`api.handshake`). No `limit_concurrency`:
half-open sockets count towards it, so a flood of them would make uvicorn answer 503 to good clients.
"""

from __future__ import annotations

import gc
import resource
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG

from api.handshake import guarded_protocol
from api.settings import ApiSettings
from api.uvicorn_ws import HubWebSocketProtocol


def config(
    app: FastAPI,
    settings: ApiSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    own_logging: bool = True,
) -> uvicorn.Config:
    """`own_logging=False` leaves the logging setup to the caller (pytest's log capture)."""
    services = getattr(app.state, "services", None)  # create_app's; absent in a bare FastAPI app

    def refused(reason: str) -> None:
        if services is not None:
            services.telemetry.http_refused.labels(reason).inc()

    http = guarded_protocol(settings.request_timeout_seconds, settings.max_request_head_bytes, refused)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=http,
        ws=HubWebSocketProtocol,
        ws_per_message_deflate=False,
        ws_max_size=settings.ws_max_size,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        proxy_headers=False,
        timeout_graceful_shutdown=5,
        log_level=log_level,
        log_config=LOGGING_CONFIG if own_logging else None,
    )


def raise_fd_limit() -> None:
    """Every connection, half-open ones included, holds a descriptor until it is closed: use the hard
    limit, not the soft one (often 1024), so that a burst of them does not starve the Kafka feed."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tune_gc() -> None:
    """Call once the app is built, before serving. A server holding thousands of connections keeps
    hundreds of thousands of long-lived objects, and the default collector (a young collection every
    700 allocations, promoting into full collections over all of them) paused every client while
    connections were being set up: bench/fanout.py measured set-up p99 of 150-250 ms at 1,000-5,000
    clients with the defaults and 20-70 ms with this (and 25-35 % less CPU per set-up). So what exists
    after start-up is frozen out of the collector's sight and young collections run every 20,000
    allocations."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


class ServerThread:
    """A real uvicorn server on its own thread and event loop (integration tests): `with ServerThread(...)`."""

    def __init__(
        self,
        app: FastAPI,
        settings: ApiSettings,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.server = uvicorn.Server(config(app, settings, host, port, log_level, own_logging=False))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{port}", daemon=True)

    @property
    def port(self) -> int:
        sockets = [s for server in self.server.servers for s in server.sockets]
        return int(sockets[0].getsockname()[1])

    def start(self, within: float = 15.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + within
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start; is the port free?")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
