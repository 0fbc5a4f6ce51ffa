"""A resilient Python client of the live analytics WebSocket (docs/API.md), for dashboards and scripts.

    async with VendorPulseClient("http://127.0.0.1:8000", "v1", token) as client:
        async for message in client:          # Message(type, data, timestamp)
            if message.type == "new_order": ...
        client.snapshot                       # the vendor's latest snapshot, current after every reconnect

What it does for you:
- **Reconnects** after any drop with full-jitter exponential backoff (`client_policy.Backoff`: waits
  uniform in [0, 1 s], [0, 2 s], ... up to [0, 30 s]); after `max_attempts` (10) failures in a row the
  iterator raises `ReconnectFailedError` naming the last cause. Close codes that a retry cannot fix
  (4000 bad request, 4003 forbidden, 4001 without a `token_provider`) raise `ServerRefusedError`.
- **Queues** what the application sends (`send`, `refresh`) while offline: at most `queue_limit` (100)
  messages, the oldest dropped and counted when full; flushed in order after reconnecting, paced under
  the server's inbound rate limit.
- **Measures latency** with its own ping every `ping_interval` (5 s): the average round trip of the
  last 100 is `latency`; above `latency_warning_ms` (150) it logs a warning once (and again only after
  latency went back under). `connection_health()` and `health_check()` (answers within 1 s) report it.
- **Refreshes the token** before it expires: `token_provider()` (sync or async) is called
  `refresh_margin` seconds before `exp` and the new token is sent as `refresh_token`.
- **Misses no order notification or stock alert**: every `new_order` and `stock_alert` carries a
  `cursor` (one feed); the client reconnects with `resume_after=<last cursor>`, the server replays what
  was missed from Kafka, and the client drops any repeat (same cursor or same `eventId`), counting it
  in `statistics()["duplicatesDropped"]`. `on_alert(data)` is called once per alert, `alerts` holds
  the latest 20 (oldest first).
- **Delta updates** with `updates="delta"`: the server sends `metrics_delta` merge patches instead of
  full `metrics_update` frames; the client applies them to `snapshot` (a patch for a version it does
  not hold is dropped and a `refresh` sent), so `snapshot` is the same as with full updates.
Ping and pong frames are answered and consumed by the client; every other server message is yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from api.client_policy import Backoff, LatencyWindow, OutboundQueue, Pacer, token_expiry
from api.client_state import Received
from api.exceptions import ClientError, ReconnectFailedError, ServerRefusedError
from api.protocol import WS_PATH, iso_now

log = logging.getLogger("vendorpulse.client")
TokenProvider = Callable[[], str | Awaitable[str]]
AlertHandler = Callable[[dict[str, Any]], None]
FATAL_CLOSES = {4000: "bad request", 4003: "forbidden"}


class ConnectionState(enum.StrEnum):
    CONNECTING = "connecting"  # first connection
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # lost, trying again with backoff
    FAILED = "failed"  # attempts exhausted or refused: the iterator raises
    CLOSED = "closed"  # closed by the application


@dataclass(frozen=True, slots=True)
class Message:
    type: str
    data: Any
    timestamp: str | None


class _End:
    def __init__(self, error: ClientError | None) -> None:
        self.error = error


class VendorPulseClient:
    """One vendor's live analytics over one (re)connecting WebSocket; see the module docstring."""

    def __init__(
        self,
        url: str,
        vendor_id: str,
        token: str,
        *,
        token_provider: TokenProvider | None = None,
        max_attempts: int = 10,
        backoff: Backoff | None = None,
        queue_limit: int = 100,
        ping_interval: float = 5.0,
        latency_warning_ms: float = 150.0,
        refresh_margin: float = 60.0,
        open_timeout: float = 5.0,
        pacer: Pacer | None = None,
        rng: random.Random | None = None,
        updates: str = "full",
        on_alert: AlertHandler | None = None,
    ) -> None:
        if max_attempts < 1 or queue_limit < 1:
            raise ValueError("max_attempts and queue_limit must be at least 1")
        if updates not in ("full", "delta"):
            raise ValueError(f"updates must be 'full' or 'delta', not {updates!r}")
        self.updates = updates
        self.on_alert = on_alert
        self.url = _ws_url(url)
        self.vendor_id = vendor_id
        self.token = token
        self.token_provider = token_provider
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self.ping_interval = ping_interval
        self.latency_warning_ms = latency_warning_ms
        self.refresh_margin = refresh_margin
        self.open_timeout = open_timeout
        self.rng = rng or random.Random()
        self.state = ConnectionState.CONNECTING
        self.received = Received()
        self.delays: list[float] = []  # every backoff wait so far, in order
        self.latency = LatencyWindow(100)
        self.outbox = OutboundQueue(queue_limit)
        self.reconnects = 0
        self.disconnected_at: float | None = None  # monotonic time the last connection was lost
        self.latency_warnings = 0
        self._attempts = 0
        self._pacer = pacer or Pacer()
        self._inbox: asyncio.Queue[Message | _End] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._connected_at: float | None = None
        self._online = asyncio.Event()  # set while connected (after the server's `connected`)
        self._queued = asyncio.Event()  # set when the outbound queue may have something
        self._first: asyncio.Future[None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._pings: dict[int, tuple[float, asyncio.Future[float]]] = {}
        self._next_ping = 1
        self._missed_pongs = 0
        self._slow = False
        self._ended = False

    # --- lifecycle

    async def __aenter__(self) -> VendorPulseClient:
        await self.connect()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect (retrying with backoff); returns once the server said `connected`."""
        if self._runner is None:
            self._first = asyncio.get_running_loop().create_future()
            self._runner = asyncio.create_task(self._run(), name="vendorpulse-client")
        assert self._first is not None
        await asyncio.shield(self._first)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        self._set_state(ConnectionState.CLOSED)
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self._first is not None and not self._first.done():
            self._first.set_exception(ClientError("the client was closed before it connected"))
            self._first.exception()  # retrieved here: nobody may be waiting for it
        self._end(None)

    def __aiter__(self) -> VendorPulseClient:
        return self

    async def __anext__(self) -> Message:
        if self._ended and self._inbox.empty():
            raise StopAsyncIteration
        item = await self._inbox.get()
        if isinstance(item, _End):
            self._inbox.put_nowait(item)  # every later call ends the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    @property
    def snapshot(self) -> dict[str, Any] | None:
        """The vendor's latest snapshot: the one sent on (re)connect, then every newer one."""
        return self.received.snapshot

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The latest `stock_alert`s (at most 20), oldest first, each once."""
        return list(self.received.alerts)

    @property
    def cursor(self) -> str | None:
        """The cursor of the last `new_order` or `stock_alert` received: the acknowledgement sent when
        reconnecting."""
        return self.received.cursor

    # --- sending

    def send(self, kind: str, data: Any = None) -> None:
        """Queue a message for the server; sent at once while connected, else after reconnecting."""
        self.outbox.put({"type": kind, "data": data, "timestamp": iso_now()})
        self._queued.set()

    def refresh(self) -> None:
        """Ask for an `analytics_update` with the latest snapshot."""
        self.send("refresh")

    # --- health

    def connection_health(self) -> dict[str, Any]:
        """{isHealthy, latency (ms, average of the last 100 round trips), reconnectAttempts (failures
        since the last connection), queuedMessages, connectionState, uptime (s connected)}."""
        latency = self.latency.average
        connected = self.state is ConnectionState.CONNECTED
        overdue = self._missed_pongs > 0 or any(
            time.monotonic() - sent > self.ping_interval for sent, _ in self._pings.values()
        )
        return {
            "isHealthy": connected
            and not overdue
            and (latency is None or latency <= self.latency_warning_ms),
            "latency": latency,
            "reconnectAttempts": self._attempts,
            "queuedMessages": len(self.outbox),
            "connectionState": self.state.value,
            "uptime": time.monotonic() - self._connected_at if self._connected_at is not None else 0.0,
        }

    async def health_check(self, within: float = 1.0) -> dict[str, Any]:
        """Ping the server now and report `connection_health()`, within `within` seconds (at most 1); a
        ping not answered in time makes the answer unhealthy."""
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            async with asyncio.timeout(min(within, 1.0)):
                if self._ws is not None and self.state is ConnectionState.CONNECTED:
                    await self._ping(self._ws)
                    return self.connection_health()
        return self.connection_health() | {"isHealthy": False}

    def statistics(self) -> dict[str, Any]:
        return {
            "reconnects": self.reconnects,
            "droppedMessages": self.outbox.dropped,
            "duplicatesDropped": self.received.duplicates_dropped,
            "resumeGaps": self.received.resume_gaps,
            "deltasApplied": self.received.deltas_applied,
            "latencyWarnings": self.latency_warnings,
            "lastLatency": self.latency.last,
            "backoffDelays": list(self.delays),
            "cursor": self.received.cursor,
        }

    # --- the connection loop

    async def _run(self) -> None:
        error: ClientError | None = None
        try:
            error = await self._connect_loop()
        except Exception as exc:  # a bug must not leave the iterator hanging
            log.exception("client loop failed")
            error = ClientError(f"client loop failed: {type(exc).__name__}: {exc}")
        if error is not None:
            self._set_state(ConnectionState.FAILED)
            self._end(error)
            if self._first is not None and not self._first.done():
                self._first.set_exception(error)

    async def _connect_loop(self) -> ClientError | None:
        while True:
            cause = await self._connect_once()
            if isinstance(cause, ClientError):
                return cause
            self._attempts += 1
            if self._attempts >= self.max_attempts:
                return ReconnectFailedError(
                    f"gave up after {self._attempts} failed connection attempts to {self.url}: {cause}; "
                    "is the API (`vendorpulse api`) running and reachable?"
                )
            delay = self.backoff.delay(self._attempts, self.rng)
            self.delays.append(delay)
            log.info("connection attempt %d failed (%s); next in %.2f s", self._attempts, cause, delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> str | ClientError:
        """One connection from handshake to close: what went wrong (str) or a fatal error."""
        cursor = self.received.cursor
        query = {"vendor_id": self.vendor_id} | ({"resume_after": cursor} if cursor else {})
        if self.updates == "delta":
            query["updates"] = "delta"
        try:
            ws = await connect(
                f"{self.url}?{urlencode(query)}",
                additional_headers={"Authorization": f"Bearer {self.token}"},
                open_timeout=self.open_timeout,
                ping_interval=None,  # the application ping below measures latency and detects loss
                compression=None,
                max_size=8 * 1024 * 1024,
                close_timeout=2,
            )
        except InvalidStatus as exc:
            return f"handshake refused with HTTP {exc.response.status_code}"
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            return f"{type(exc).__name__}: {exc}"
        self._ws = ws
        tasks: list[asyncio.Task[None]] = []
        try:
            tasks = [asyncio.create_task(self._pinger(ws)), asyncio.create_task(self._sender(ws))]
            if self.token_provider is not None:
                tasks.append(asyncio.create_task(self._token_refresher(ws)))
            with contextlib.suppress(ConnectionClosed):
                await self._read(ws)
            return await self._closed(ws.close_code or 1006, ws.close_reason or "connection lost")
        finally:
            self._ws = None
            self._connected_at = None
            self._missed_pongs = 0
            self._online.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()
            if self.state is ConnectionState.CONNECTED:
                self.disconnected_at = time.monotonic()
                self._set_state(ConnectionState.RECONNECTING)
            for _, waiter in self._pings.values():
                waiter.cancel()
            self._pings.clear()

    async def _closed(self, code: int, reason: str) -> str | ClientError:
        if code in FATAL_CLOSES:
            return ServerRefusedError(code, f"{FATAL_CLOSES[code]}: {reason}")
        if code == 4001:
            if self.token_provider is None:
                return ServerRefusedError(code, f"unauthorized: {reason}; pass a token_provider to renew it")
            self.token = await _call(self.token_provider)
        return f"closed {code} {reason}".strip()

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                message = orjson.loads(raw)
                kind, data = message["type"], message.get("data")
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("ignoring a message that is not a protocol envelope")
                continue
            if kind == "ping":
                await ws.send(orjson.dumps({"type": "pong", "data": {"id": (data or {}).get("id")},
                                            "timestamp": iso_now()}).decode())  # fmt: skip
                continue
            if kind == "pong" and isinstance(data, dict) and isinstance(data.get("clientPing"), int):
                self._answered(data["clientPing"])
                continue
            if kind == "connection_status" and isinstance(data, dict) and data.get("status") == "connected":
                self._on_connected()
            if self.received.accept(kind, data):
                self._inbox.put_nowait(Message(kind, data, message.get("timestamp")))
                if kind == "stock_alert" and self.on_alert is not None:
                    self._alert(data)
            elif self.received.needs_refresh:
                self.received.needs_refresh = False
                self.refresh()

    def _alert(self, data: dict[str, Any]) -> None:
        assert self.on_alert is not None
        try:
            self.on_alert(data)
        except Exception:  # the application's handler must not end the connection
            log.exception("on_alert raised")

    def _on_connected(self) -> None:
        if self._first is not None and self._first.done():
            self.reconnects += 1
        self._attempts = 0
        self._connected_at = time.monotonic()
        self._set_state(ConnectionState.CONNECTED)
        self._online.set()
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    # --- per-connection tasks

    async def _sender(self, ws: ClientConnection) -> None:
        """Flushes the outbound queue in order, paced; a message is removed only once it was sent."""
        while True:
            await self._online.wait()
            message = self.outbox.peek()
            if message is None:
                self._queued.clear()
                await self._queued.wait()
                continue
            if wait := self._pacer.wait_time():
                await asyncio.sleep(wait)
                continue
            await ws.send(orjson.dumps(message).decode())
            if self.outbox.peek() is message:  # not dropped meanwhile by a full queue
                self.outbox.pop()

    async def _pinger(self, ws: ClientConnection) -> None:
        """A ping every `ping_interval`; two in a row unanswered within it: the connection is dead."""
        await self._online.wait()
        while True:
            sent_at = time.monotonic()
            try:
                await asyncio.wait_for(self._ping(ws), self.ping_interval)
                self._missed_pongs = 0
            except TimeoutError:
                self._missed_pongs += 1
                if self._missed_pongs >= 2:
                    log.warning("two pings unanswered within %.1f s; reconnecting", self.ping_interval)
                    await ws.close(4008, "pong timeout")
                    return
            await asyncio.sleep(max(0.0, self.ping_interval - (time.monotonic() - sent_at)))

    async def _ping(self, ws: ClientConnection) -> float:
        ping_id = self._next_ping
        self._next_ping += 1
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pings[ping_id] = (time.monotonic(), waiter)
        await ws.send(orjson.dumps({"type": "ping", "data": {"clientPing": ping_id},
                                    "timestamp": iso_now()}).decode())  # fmt: skip
        try:
            return await waiter
        finally:
            self._pings.pop(ping_id, None)

    def _answered(self, ping_id: int) -> None:
        entry = self._pings.pop(ping_id, None)
        if entry is None:
            return
        sent, waiter = entry
        rtt_ms = (time.monotonic() - sent) * 1000
        self.latency.add(rtt_ms)
        if not waiter.done():
            waiter.set_result(rtt_ms)
        average = self.latency.average or 0.0
        if average > self.latency_warning_ms and not self._slow:
            self._slow = True
            self.latency_warnings += 1
            log.warning(
                "latency %.0f ms (average of the last %d round trips) is above %.0f ms",
                average, len(self.latency.samples), self.latency_warning_ms,
            )  # fmt: skip
        elif average <= self.latency_warning_ms and self._slow:
            self._slow = False
            log.info("latency back to %.0f ms", average)

    async def _token_refresher(self, ws: ClientConnection) -> None:
        assert self.token_provider is not None
        while True:
            expires = token_expiry(self.token)
            if expires is None:
                return
            lifetime = expires - time.time()
            await asyncio.sleep(max(0.0, lifetime - min(self.refresh_margin, lifetime / 2)))
            self.token = await _call(self.token_provider)
            await ws.send(orjson.dumps({"type": "refresh_token", "data": {"token": self.token},
                                        "timestamp": iso_now()}).decode())  # fmt: skip

    # --- helpers

    def _set_state(self, state: ConnectionState) -> None:
        if self.state is not state and self.state not in (ConnectionState.CLOSED, ConnectionState.FAILED):
            log.debug("connection state %s -> %s", self.state.value, state.value)
            self.state = state

    def _end(self, error: ClientError | None) -> None:
        if not self._ended:
            self._ended = True
            self._inbox.put_nowait(_End(error))


def _ws_url(url: str) -> str:
    """`http(s)://host:port` (the API's base URL) or a full `ws(s)://` URL of the route."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"expected http(s):// or ws(s):// URL of the API, got {url!r}")
    path = parts.path.rstrip("/") or WS_PATH
    return f"{scheme}://{parts.netloc}{path}"


async def _call(provider: TokenProvider) -> str:
    token = provider()
    if inspect.isawaitable(token):
        token = await token
    assert isinstance(token, str)
    return token
