"""One WebSocket connection from handshake to close (contract §6).

States: the handshake (Origin check, refused with HTTP 403 before accepting), authentication (accept,
then close 4001/4003/4000/4029 before any data), then until the connection ends:
- the reader (a task): size and rate limits, protocol messages, `refresh_token`;
- the watchdog (a timer on the event loop, not a task: one callback per ping, no coroutine, future or
  task step per connection): application ping every `heartbeat_seconds` with its round-trip time,
  close 4008 after `missed_pongs` unanswered pings, `error` + close 4001 when the token expires
  without a refresh.
Frames go out through the connection (`api.connection`) without a task of their own: under the server
`api.server` configures, straight to the socket's transport (`api.uvicorn_ws`), else through ASGI `send`
(`api.sinks`). The close frame goes through ASGI once the connection's control frames are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from api.auth import Claims, Verifier
from api.connection import Connection, Sink, State
from api.exceptions import BadMessageError, InvalidTokenError
from api.hub import Hub
from api.kafka import Feed
from api.protocol import Close, In, Inbound, Out, error, frame, frame_json, iso_now, parse
from api.resume import Cursor, Replayer, resume
from api.settings import ApiSettings
from api.sinks import AsgiSink
from api.tasks import cancel_and_wait
from api.telemetry import Telemetry
from api.uvicorn_ws import transport_sink

log = logging.getLogger("vendorpulse.api.ws")
TOKEN_SCOPE_KEY = "vendorpulse.token"  # where the app's middleware puts `?token=` (see api.app)
UPDATE_MODES = ("full", "delta")  # `?updates=`: metrics_update frames, or metrics_delta (contract §6)


@dataclass
class Services:
    """What the HTTP routes and the WebSocket sessions of one app share."""

    settings: ApiSettings
    verifier: Verifier
    hub: Hub
    telemetry: Telemetry
    feed: Feed | None = None
    replayer: Replayer | None = None
    tokens: Counter[str] = field(default_factory=Counter)  # open connections per token digest


def _token(ws: WebSocket) -> str | None:
    token = ws.scope.get(TOKEN_SCOPE_KEY)
    if isinstance(token, str) and token:
        return token
    header = ws.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def origin_allowed(origin: str | None, allowed: list[str], host: str | None = None) -> bool:
    """Non-browser clients send no Origin; browsers must come from a configured origin, or from this
    server itself (the dashboard it serves: the Origin's host is the Host the request was sent to)."""
    if origin is None or "*" in allowed or origin.rstrip("/") in {o.rstrip("/") for o in allowed}:
        return True
    return host is not None and origin.rstrip("/").partition("://")[2] == host


async def serve(ws: WebSocket, services: Services) -> None:
    """The WebSocket route: checks, then the connection's tasks until it ends."""
    settings = services.settings
    if not origin_allowed(ws.headers.get("origin"), settings.allowed_origins, ws.headers.get("host")):
        await ws.close(code=int(Close.FORBIDDEN), reason="origin not allowed")  # before accept: HTTP 403
        return
    await ws.accept()
    token = _token(ws)
    try:
        if token is None:
            raise InvalidTokenError("missing token (?token= or Authorization: Bearer)")
        claims = services.verifier.verify(token)
    except InvalidTokenError as exc:
        await _refuse(ws, services, Close.UNAUTHORIZED, str(exc))
        return
    vendor = ws.query_params.get("vendor_id") or claims.vendor_id
    if not vendor or len(vendor) > 200:
        await _refuse(
            ws, services, Close.BAD_REQUEST, "vendor_id query parameter is required (at most 200 chars)"
        )
        return
    if not claims.may_read(vendor):
        await _refuse(ws, services, Close.FORBIDDEN, "this token may not read that vendor")
        return
    if services.feed is not None and not services.feed.owns(vendor):
        feed = services.feed
        reason = f"vendor served by shard {feed.owner(vendor)}; this node is shard {feed.shard}"
        await _refuse(ws, services, Close.MISDIRECTED, reason)
        return
    after: Cursor | None = None
    if resume_after := ws.query_params.get("resume_after"):
        try:
            after = Cursor.parse(resume_after)
        except BadMessageError as exc:
            await _refuse(ws, services, Close.BAD_REQUEST, str(exc))
            return
    updates = ws.query_params.get("updates", "full")
    if updates not in UPDATE_MODES:
        await _refuse(ws, services, Close.BAD_REQUEST, f"updates must be one of {', '.join(UPDATE_MODES)}")
        return
    digest = hashlib.sha256(token.encode()).hexdigest()
    if services.tokens[digest] >= settings.max_connections_per_token:
        await _refuse(ws, services, Close.TOO_MANY, "too many connections for this token")
        return
    services.tokens[digest] += 1
    try:
        await _run(ws, services, claims, vendor, after, delta=updates == "delta")
    finally:
        services.tokens[digest] -= 1
        if services.tokens[digest] <= 0:
            del services.tokens[digest]


async def _refuse(ws: WebSocket, services: Services, code: Close, reason: str) -> None:
    services.telemetry.closes.labels(str(int(code))).inc()
    log.info("websocket refused: %d %s", code, reason)
    with contextlib.suppress(WebSocketDisconnect, OSError):  # the client may be gone already
        await ws.close(code=int(code), reason=reason)


class Session:
    """The reader and watchdog of one accepted, authenticated connection (the writer is `conn`'s)."""

    def __init__(self, ws: WebSocket, services: Services, claims: Claims, conn: Connection) -> None:
        self.ws = ws
        self.services = services
        self.settings = services.settings
        self.conn = conn
        self.expires_at = claims.expires_at + self.settings.jwt_leeway_seconds
        self.pings: dict[int, float] = {}  # unanswered ping id -> monotonic time sent
        self.next_ping_id = 1
        self.rtt_ms: float | None = None
        self.tokens = float(self.settings.message_burst)
        self.refilled = time.monotonic()
        self.strikes = 0
        self.next_ping = 0.0  # monotonic time of the next heartbeat ping
        self._timer: asyncio.TimerHandle | None = None

    # --- reader

    async def read(self) -> None:
        limit = self.settings.max_message_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            size = len(text.encode()) if text is not None else len(message.get("bytes") or b"")
            if size > limit:
                self._reject("message_too_big", f"messages are limited to {limit} bytes")
                self.conn.close(Close.MESSAGE_TOO_BIG, "message too big")
                return
            if not self._take_token():
                self.strikes += 1
                self._reject("rate_limited", f"at most {self.settings.messages_per_second:g} messages/s")
                if self.strikes >= self.settings.message_burst:
                    self.conn.close(Close.TOO_MANY, "inbound rate limit exceeded")
                    return
                continue
            self.strikes = 0
            if text is None:
                self._reject("bad_message", "binary frames are not supported; send JSON text")
                continue
            try:
                inbound = parse(text)
            except BadMessageError as exc:
                self._reject("bad_message", str(exc))
                continue
            if not self.handle(inbound):
                return

    def _take_token(self) -> bool:
        now = time.monotonic()
        rate, burst = self.settings.messages_per_second, self.settings.message_burst
        self.tokens = min(float(burst), self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def _reject(self, code: str, message: str) -> None:
        self.services.telemetry.rejected.labels(code).inc()
        self.conn.control(Out.ERROR, error(code, message))

    def handle(self, inbound: Inbound) -> bool:
        """Act on one client message; False when the connection is being closed."""
        if inbound.kind is In.PING:
            self.conn.control(Out.PONG, frame(Out.PONG, inbound.data))
        elif inbound.kind is In.PONG:
            self._pong(inbound.data)
        elif inbound.kind is In.REFRESH:
            if self.services.hub.caught_up:  # while rebuilding, the first snapshot comes when it is done
                self.services.hub.send_analytics(self.conn)
        else:
            return self._refresh_token(inbound.data)
        return True

    def _pong(self, data: Any) -> None:
        ping_id = data.get("id") if isinstance(data, dict) else None
        sent = self.pings.pop(ping_id, None) if isinstance(ping_id, int) else None
        if sent is None or not isinstance(ping_id, int):
            self._reject("bad_message", 'pong data must be {"id": <id of an unanswered ping>}')
            return
        rtt = time.monotonic() - sent
        self.rtt_ms = round(rtt * 1000, 3)
        self.services.telemetry.rtt.observe(rtt)
        self.pings = {i: t for i, t in self.pings.items() if i > ping_id}  # older pings are answered too

    def _refresh_token(self, data: Any) -> bool:
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            self._reject("bad_message", 'refresh_token data must be {"token": "<jwt>"}')
            return True
        try:
            claims = self.services.verifier.verify(token)
        except InvalidTokenError as exc:
            self._reject("invalid_token", str(exc))
            return True
        if not claims.may_read(self.conn.vendor_id):
            self.conn.close(
                Close.FORBIDDEN,
                "token may not read this vendor",
                error("forbidden", "token may not read this vendor"),
            )
            return False
        self.expires_at = claims.expires_at + self.settings.jwt_leeway_seconds
        status = {"status": "token_refreshed", "expiresAt": int(claims.expires_at)}
        self.conn.control(Out.CONNECTION_STATUS, frame(Out.CONNECTION_STATUS, status))
        return True

    # --- watchdog

    def watch(self) -> None:
        """Start the heartbeat: `_beat` runs at the next ping or at the token's expiry, whichever is first."""
        self.next_ping = time.monotonic() + self.settings.heartbeat_seconds
        self._schedule()

    def unwatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        delay = min(self.next_ping - time.monotonic(), self.expires_at - time.time())
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._beat)

    def _beat(self) -> None:
        self._timer = None
        if self.conn.state is not State.OPEN:
            return
        if self.expires_at <= time.time():
            self.conn.close(
                Close.UNAUTHORIZED,
                "token expired",
                error("token_expired", "token expired; reconnect with a new token"),
            )
            return
        if time.monotonic() >= self.next_ping:
            if len(self.pings) >= self.settings.missed_pongs:
                self.conn.close(Close.HEARTBEAT_TIMEOUT, "missed pongs")
                return
            self._ping()
            self.next_ping += self.settings.heartbeat_seconds
        self._schedule()

    def _ping(self) -> None:
        ping_id = self.next_ping_id
        self.next_ping_id += 1
        self.pings[ping_id] = time.monotonic()
        data = {"id": ping_id, "rttMs": self.rtt_ms}
        self.conn.control_json(Out.PING, frame_json(Out.PING, data))


def _sink(ws: WebSocket) -> Sink:
    sink = transport_sink(ws.scope)
    if sink is not None:
        return sink

    async def send(text: str) -> None:
        await ws.send({"type": "websocket.send", "text": text})

    return AsgiSink(send)


async def _run(
    ws: WebSocket, services: Services, claims: Claims, vendor: str, after: Cursor | None, delta: bool
) -> None:
    settings = services.settings
    conn = Connection(
        vendor, _sink(ws), services.telemetry, settings.send_queue_size, settings.close_grace_seconds, delta
    )
    session = Session(ws, services, claims, conn)
    status = {
        "status": "connected",
        "vendorId": vendor,
        "connectionId": conn.id,
        "instance": settings.instance_id,
        "heartbeatSeconds": settings.heartbeat_seconds,
        "refreshSeconds": settings.refresh_seconds,
        "updates": "delta" if delta else "full",
        "serverTime": iso_now(),
        "cursor": None if after is not None else _live_cursor(services.feed, vendor),
    }
    # No await from here to `hub.add`: `cursor` is exactly where this connection's live delivery starts.
    conn.control(Out.CONNECTION_STATUS, frame(Out.CONNECTION_STATUS, status))
    if after is not None:
        conn.hold(settings.resume_max_records)
    services.hub.add(conn)
    reader = asyncio.create_task(session.read(), name=f"ws-reader-{conn.id}")
    session.watch()
    resumer = None
    if after is not None:
        resumer = asyncio.create_task(
            resume(conn, services.feed, services.replayer, after, settings), name=f"ws-resume-{conn.id}"
        )
    try:
        await asyncio.wait({conn.closing, reader}, return_when=asyncio.FIRST_COMPLETED)
        if conn.state is State.CLOSING:
            await conn.closing  # the control frames are written, or the close deadline aborted
        if conn.state is State.CLOSING:
            code, reason = conn.close_with
            try:
                await asyncio.wait_for(ws.close(code=code, reason=reason), settings.close_grace_seconds)
            except TimeoutError:
                conn.abort()  # the close did not get through: the socket is not draining
    except (WebSocketDisconnect, OSError):  # the client went away (uvicorn's ClientDisconnected)
        pass
    finally:
        session.unwatch()
        conn.detach()
        services.hub.remove(conn)
        await cancel_and_wait(reader, resumer)


def _live_cursor(feed: Feed | None, vendor: str) -> str | None:
    """The cursor just before the first notification this connection gets live (None: not known
    yet); a client that reconnects with it as `resume_after` misses nothing in between."""
    partition = feed.activity_partition(vendor) if feed is not None else None
    position = feed.activity_position(partition) if feed is not None and partition is not None else None
    return None if partition is None or position is None else str(Cursor(partition, position - 1))
