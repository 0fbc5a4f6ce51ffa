"""The FastAPI application factory: `create_app(settings)` wires hub, Kafka feed, routes and WebSocket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Verifier
from api.broadcast import Broadcaster
from api.dashboard import mount_dashboard
from api.hub import Hub
from api.kafka import Feed
from api.protocol import WS_PATH
from api.resume import Replayer
from api.routes import router
from api.session import TOKEN_SCOPE_KEY, Services, serve
from api.settings import ApiSettings, api_settings
from api.tasks import cancel_and_wait
from api.telemetry import Telemetry
from processors.core.snapshot import snapshot
from processors.core.state import new_state

if TYPE_CHECKING:
    from schemas.confluent import RegistryProbe

DESCRIPTION = """Live vendor analytics. HTTP routes below; the WebSocket protocol
(`WS /api/v1/analytics/ws/vendor/analytics?token=<jwt>&vendor_id=<id>`) is described in docs/API.md
and docs/asyncapi.yaml."""


class TokenQueryMiddleware:
    """Moves `?token=` out of the query string into the scope before anything can log the URL.

    ASGI servers log the request line from this same scope dict (uvicorn's "WebSocket ... [accepted]"
    line), so the scope is changed in place: the logged query shows `token=REDACTED`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"")
        if scope["type"] in ("http", "websocket") and b"token=" in query:
            pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            tokens = [value for key, value in pairs if key == "token"]
            rest = [(key, value) for key, value in pairs if key != "token"]
            scope[TOKEN_SCOPE_KEY] = tokens[-1] if tokens else None
            scope["query_string"] = urlencode([*rest, ("token", "REDACTED")]).encode("latin-1")
        await self.app(scope, receive, send)


def registry_probe(settings: ApiSettings) -> RegistryProbe | None:
    """With a schema registry configured, /readyz also says whether it answers (the worker waits
    while it does not, so snapshots stop changing; docs/API.md)."""
    if not settings.schema_registry_url:
        return None
    from schemas.confluent import RegistryProbe

    return RegistryProbe(settings.schema_registry_url)


def create_app(settings: ApiSettings | None = None, *, kafka: bool = True) -> FastAPI:
    """The API for `settings` (default: from the environment). `kafka=False` runs without a broker:
    the hub then starts empty and ready, and tests feed it directly (`app.state.hub`)."""
    settings = settings or api_settings()
    telemetry = Telemetry()

    def zero(vendor_id: str) -> dict[str, Any]:
        return snapshot(new_state(vendor_id), int(time.time() * 1000), settings.period_days)

    hub = Hub(telemetry, zero)
    feed = Feed(settings, hub, telemetry) if kafka else None
    replayer = Replayer(settings) if kafka else None
    services = Services(settings, Verifier(settings), hub, telemetry, feed, replayer)
    if feed is None:
        hub.caught_up = True
    telemetry.ready.set_function(lambda: float(feed.ready if feed is not None else hub.caught_up))
    broadcaster = Broadcaster(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(hub.run_refresher(settings.refresh_seconds), name="refresher")]
        if feed is not None:
            tasks.append(asyncio.create_task(feed.run(), name="kafka-feed"))
        try:
            yield
        finally:
            await cancel_and_wait(*tasks)
            await broadcaster.stop()
            if replayer is not None:
                await replayer.stop()

    app = FastAPI(title="vendorpulse API", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    app.state.verifier = services.verifier
    app.state.hub = hub
    app.state.feed = feed
    app.state.broadcaster = broadcaster
    app.state.registry_probe = registry_probe(settings)
    app.include_router(router)
    mount_dashboard(app)

    @app.websocket(WS_PATH)
    async def vendor_analytics(websocket: WebSocket) -> None:
        await serve(websocket, services)

    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
    )
    app.add_middleware(TokenQueryMiddleware)
    return app
