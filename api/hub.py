"""Live connections per vendor and the per-connection writers that feed them.

Each `Connection` has one writer task, the only code that sends on its socket. Producers (the Kafka
feed, the session, the refresh tick) never await a client: they drop a frame into the connection's
queue and wake the writer. The queue is bounded and keeps:
- control frames (connection_status, ping, pong, error, then the close) first, in order;
- one snapshot slot holding only the newest snapshot (a slow client gets the latest state, not a
  backlog); a snapshot older than the one last sent is never sent, so versions never go back;
- at most `send_queue_size` other frames (new_order, broadcasts); one more closes the connection
  with 1013 (`slow_consumer`) so that the client resumes from its cursor, instead of losing orders;
- while a connection resumes (`api.resume`), its live `new_order` frames are held aside and then
  queued behind the replayed ones, so the client gets each record once and in offset order.
A socket that stops draining blocks only its own writer (uvicorn's flow control pauses `send`).

Snapshots are held as the JSON bytes read from Kafka and spliced into frames without re-encoding:
one frame text per vendor and update, shared by all of that vendor's connections.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from api.protocol import Close, Out, frame, frame_raw
from api.telemetry import Telemetry

Send = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
_ids = itertools.count(1)


class State(enum.Enum):
    """OPEN -> CLOSING (close requested: queued control frames, then the close frame) -> CLOSED."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(slots=True)
class _Pending:
    kind: str
    text: str
    queued_at: float
    version: int = -1


Position = tuple[int, int]  # (partition, offset) of a vendor-activity record


class Connection:
    """One client socket as the hub sees it."""

    def __init__(
        self, vendor_id: str, send: Send, close: CloseSocket, telemetry: Telemetry, queue_size: int = 64
    ) -> None:
        self.id = next(_ids)
        self.vendor_id = vendor_id
        self.state = State.OPEN
        self.last_version = -1
        self.writer: asyncio.Task[None] | None = None
        self._send = send
        self._close = close
        self._telemetry = telemetry
        self._control: deque[_Pending] = deque()
        self._snapshot: _Pending | None = None
        self._events: deque[_Pending] = deque()
        self._replayed: deque[_Pending] = deque()  # resumed notifications: sent before `_events`
        self._held: deque[tuple[Position, _Pending]] | None = None  # live ones while resuming
        self._hold_limit = 0
        self._floor: Position | None = None  # activity at or below it was replayed: never send again
        self._queue_size = queue_size
        self._waiter: asyncio.Future[None] | None = None  # set while the writer is idle
        self._close_with = (int(Close.NORMAL), "")

    def start(self) -> asyncio.Task[None]:
        self.writer = asyncio.get_running_loop().create_task(self._write(), name=f"ws-writer-{self.id}")
        return self.writer

    def control(self, kind: Out, text: str) -> None:
        if self.state is State.OPEN:
            self._control.append(_Pending(kind.value, text, time.monotonic()))
            self._wake()

    def snapshot(self, kind: Out, version: int, text: str) -> None:
        """Offer a snapshot frame; keeps only the newest. `analytics_update` (a full refresh the client
        asked for or the periodic one) may repeat the version last sent, `metrics_update` may not."""
        newest = max(self.last_version, self._snapshot.version if self._snapshot else -1)
        repeat_ok = kind is Out.ANALYTICS_UPDATE
        if self.state is not State.OPEN or version < newest or (version == newest and not repeat_ok):
            self._telemetry.dropped.labels(kind.value).inc()
            return
        if self._snapshot is not None:
            self._telemetry.dropped.labels(self._snapshot.kind).inc()
        self._snapshot = _Pending(kind.value, text, time.monotonic(), version)
        self._wake()

    def event(self, kind: Out, text: str, position: Position | None = None) -> None:
        if self.state is not State.OPEN:
            return
        if position is not None and self._floor is not None and _covered(position, self._floor):
            return
        if self._held is not None and position is not None:
            if len(self._held) >= self._hold_limit:
                self._telemetry.dropped.labels(self._held.popleft()[1].kind).inc()
            self._held.append((position, _Pending(kind.value, text, time.monotonic())))
            return
        if len(self._events) >= self._queue_size:
            # Dropping a notification silently would lose an order from the client's feed. Close
            # instead: the client reconnects with the cursor of the last order it processed and
            # gets every missed one from Kafka (resume), none twice.
            self._telemetry.dropped.labels(kind.value).inc()
            self.close(
                Close.TRY_AGAIN_LATER,
                "slow consumer",
                frame(Out.ERROR, {"code": "slow_consumer", "message": (
                    f"more than {self._queue_size} notifications waited for this connection; "
                    "reconnect with resume_after=<cursor of the last new_order you processed>"
                )}),
            )  # fmt: skip
            return
        self._events.append(_Pending(kind.value, text, time.monotonic()))
        self._wake()

    def hold(self, limit: int) -> None:
        """Keep live activity frames aside (at most `limit`, oldest dropped) until `release`."""
        self._held = deque()
        self._hold_limit = limit

    def release(self, replayed: list[tuple[Out, str]], after: Position | None) -> None:
        """Queue `replayed` (in order), then the held frames whose position is past `after` (the ones
        at or before it are in `replayed` already), and deliver live frames past it directly again."""
        held, self._held = self._held or deque(), None
        self._floor = after
        if self.state is not State.OPEN:
            return
        now = time.monotonic()
        self._replayed.extend(_Pending(kind.value, text, now) for kind, text in replayed)
        for position, pending in held:
            if after is None or not _covered(position, after):
                self._replayed.append(pending)
        self._wake()

    def close(self, code: Close, reason: str, error: str | None = None) -> None:
        """Send the queued control frames (and `error`, if given), then close with `code`."""
        if self.state is not State.OPEN:
            return
        if error is not None:
            self._control.append(_Pending(Out.ERROR.value, error, time.monotonic()))
        self.state = State.CLOSING
        self._close_with = (int(code), reason)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self) -> None:
        """Stop the writer without a close frame (a socket that no longer drains)."""
        if self.writer is not None:
            self.writer.cancel()

    def _next(self) -> _Pending | None:
        if self._control:
            return self._control.popleft()
        if self.state is not State.OPEN:
            return None
        if self._snapshot is not None:
            pending, self._snapshot = self._snapshot, None
            return pending
        if self._replayed:
            return self._replayed.popleft()
        if self._events:
            return self._events.popleft()
        return None

    async def _write(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while True:
                while (pending := self._next()) is not None:
                    if pending.version >= 0:
                        if pending.version < self.last_version:
                            continue
                        self.last_version = pending.version
                    await self._send(pending.text)
                    self._telemetry.observe_send(pending.kind, time.monotonic() - pending.queued_at)
                if self.state is State.CLOSING:
                    code, reason = self._close_with
                    self._telemetry.closes.labels(str(code)).inc()
                    await self._close(code, reason)
                    return
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            self.state = State.CLOSED


def _covered(position: Position, floor: Position) -> bool:
    return position[0] == floor[0] and position[1] <= floor[1]


@dataclass(frozen=True, slots=True)
class Snapshot:
    vendor_id: str
    version: int
    as_of: str
    raw: bytes  # the contract §5 JSON as read from Kafka


ZeroSnapshot = Callable[[str], dict[str, Any]]


class Hub:
    """Latest snapshot per vendor and the open connections per vendor on this API instance."""

    def __init__(self, telemetry: Telemetry, zero: ZeroSnapshot) -> None:
        self.telemetry = telemetry
        self._zero = zero
        self.snapshots: dict[str, Snapshot] = {}
        self.connections: dict[str, set[Connection]] = {}
        self.caught_up = False

    # --- connections

    def add(self, conn: Connection) -> None:
        self.connections.setdefault(conn.vendor_id, set()).add(conn)
        self._count(conn.vendor_id)
        if self.caught_up:
            self.send_analytics(conn)

    def remove(self, conn: Connection) -> None:
        vendor = self.connections.get(conn.vendor_id)
        if vendor is not None and conn in vendor:
            vendor.discard(conn)
            if not vendor:
                del self.connections[conn.vendor_id]
            self._count(conn.vendor_id)

    def _count(self, vendor_id: str) -> None:
        conns = self.connections.get(vendor_id)
        if conns:
            self.telemetry.vendor_connections.labels(vendor_id).set(len(conns))
        else:
            self.telemetry.vendor_connections.remove(vendor_id)
        self.telemetry.connections.set(self.total())

    def total(self) -> int:
        return sum(len(c) for c in self.connections.values())

    # --- data in

    def latest(self, vendor_id: str) -> tuple[int, bytes]:
        """The vendor's latest snapshot (version, JSON), zero-filled when it has none (contract §5)."""
        snap = self.snapshots.get(vendor_id)
        if snap is not None:
            return snap.version, snap.raw
        zero = self._zero(vendor_id)
        return int(zero["version"]), orjson.dumps(zero)

    def publish_snapshot(self, data: dict[str, Any], raw: bytes | None = None) -> bool:
        """Keep a snapshot (`raw`: its JSON, when already at hand) if newer than the one held, and push
        it as `metrics_update`; False if it is not newer (an equal version with a later asOf is)."""
        vendor, version, as_of = data["vendorId"], data["version"], str(data.get("asOf", ""))
        held = self.snapshots.get(vendor)
        if held is not None and (version, as_of) <= (held.version, held.as_of):
            return False
        snap = Snapshot(vendor, version, as_of, raw if raw is not None else orjson.dumps(data))
        self.snapshots[vendor] = snap
        conns = self.connections.get(vendor)
        if conns and self.caught_up:
            text = frame_raw(Out.METRICS_UPDATE, snap.raw)
            for conn in conns:
                conn.snapshot(Out.METRICS_UPDATE, version, text)
        return True

    def forget(self, vendor_id: str) -> None:
        """A tombstone on the compacted topic: the vendor's snapshot is gone."""
        self.snapshots.pop(vendor_id, None)

    def publish_event(self, vendor_id: str, kind: Out, data: Any, position: Position | None = None) -> None:
        """An event frame to the vendor's connections; `position` (a vendor-activity record's) lets a
        resuming connection tell it apart from the records it replays."""
        conns = self.connections.get(vendor_id)
        if conns:
            text = frame(kind, data)
            for conn in conns:
                conn.event(kind, text, position)

    def broadcast(self, data: Any, vendor_id: str | None = None) -> int:
        """A `connection_status` frame with `status: "broadcast"` to one vendor's clients or all."""
        groups = [self.connections.get(vendor_id, set())] if vendor_id else list(self.connections.values())
        text = frame(Out.CONNECTION_STATUS, {"status": "broadcast", **data})
        count = 0
        for conns in groups:
            for conn in conns:
                conn.event(Out.CONNECTION_STATUS, text)
                count += 1
        return count

    def mark_caught_up(self) -> None:
        """Snapshots are rebuilt: every connection waiting for its first snapshot gets it now."""
        if not self.caught_up:
            self.caught_up = True
            self.refresh_all()

    # --- full refreshes

    def send_analytics(self, conn: Connection) -> None:
        version, raw = self.latest(conn.vendor_id)
        conn.snapshot(Out.ANALYTICS_UPDATE, version, frame_raw(Out.ANALYTICS_UPDATE, raw))

    def refresh_all(self) -> None:
        """`analytics_update` to every connection, serialized once per vendor."""
        for vendor, conns in list(self.connections.items()):
            version, raw = self.latest(vendor)
            text = frame_raw(Out.ANALYTICS_UPDATE, raw)
            for conn in conns:
                conn.snapshot(Out.ANALYTICS_UPDATE, version, text)

    async def run_refresher(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if self.caught_up:
                self.refresh_all()
