"""One client socket as the hub sees it: what it is owed, in which order, and when to give up on it.

Nothing here awaits. Producers (the Kafka feed, the session, the refresh tick) offer frames; a frame is
written to the socket at once when the socket takes data and nothing waits ahead of it, which is the
case for every client that keeps up, so the fan-out to N connections is N writes of one shared
`bytes` object and no task, future or queue entry per frame. Otherwise the frame waits, and the socket's
`on_writable` drains the queue in this order:
- control frames (connection_status, ping, pong, error, then the close) first, in order;
- one snapshot slot holding only the newest snapshot (a slow client gets the latest state, not a
  backlog): replacing it is O(1), and a snapshot older than the one last written is never written, so
  versions never go back. A delta client (`updates=delta`) that holds exactly the snapshot the new one
  replaced gets its shared `metrics_delta` frame (`api.frames`); after a skipped version, the full one;
- resumed notifications (`api.resume`), then at most `queue_size` live ones (new_order, broadcasts);
  one more closes the connection with 1013 (`slow_consumer`) so that the client resumes from its
  cursor instead of losing orders. While a connection resumes, its live notifications are held aside
  and then queued behind the replayed ones, so the client gets each record once and in offset order.

A socket "takes data" while its transport's buffer is under the high-water mark (`api.uvicorn_ws`), so a
client that stops reading holds one snapshot and its own bounded queue, and delays no one.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from api.frames import OutFrame, VendorSnapshot
from api.protocol import Close, Out, error
from api.telemetry import Telemetry

_ids = itertools.count(1)
Position = tuple[int, int]  # (partition, offset) of a vendor-activity record


class Sink(Protocol):
    """Where a connection's frames go: `api.uvicorn_ws.TransportSink` (the socket itself) or
    `api.sinks.AsgiSink` (ASGI `send`, for servers that do not expose the socket)."""

    on_writable: Callable[[], None]  # called when the sink takes data again

    def writable(self) -> bool: ...

    def write(self, frame: OutFrame) -> None: ...

    def abort(self) -> None: ...


class State(enum.Enum):
    """OPEN -> CLOSING (close requested: queued control frames, then the close frame) -> CLOSED."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(slots=True)
class _Pending:
    frame: OutFrame
    queued_at: float


@dataclass(slots=True)
class _Slot:
    """The newest snapshot owed: a full refresh's `frame`, or (None) an update rendered when written."""

    kind: Out
    snapshot: VendorSnapshot
    frame: OutFrame | None
    queued_at: float


class Connection:
    # Slots: a server holds thousands of these and the fan-out touches every one per update; without a
    # __dict__ each is smaller and its fields sit in fewer cache lines.
    __slots__ = (
        "_close_grace", "_control", "_deadline", "_events", "_floor", "_held", "_hold_limit",
        "_queue_size", "_replayed", "_shown", "_slot", "_telemetry", "close_with", "closing", "delta",
        "id", "last_version", "sink", "state", "vendor_id",
    )  # fmt: skip

    def __init__(
        self,
        vendor_id: str,
        sink: Sink,
        telemetry: Telemetry,
        queue_size: int = 64,
        close_grace: float = 2.0,
        delta: bool = False,
    ) -> None:
        self.id = next(_ids)
        self.vendor_id = vendor_id
        self.state = State.OPEN
        self.last_version = -1
        self.delta = delta  # `updates=delta`: metrics_delta from the snapshot last written, when it can
        self._shown: VendorSnapshot | None = None  # the snapshot last written (the client holds it)
        self.sink = sink
        self._telemetry = telemetry
        self._control: deque[_Pending] = deque()
        self._slot: _Slot | None = None
        self._events: deque[_Pending] = deque()
        self._replayed: deque[_Pending] = deque()  # resumed notifications: written before `_events`
        self._held: deque[tuple[Position, _Pending]] | None = None  # live ones while resuming
        self._hold_limit = 0
        self._floor: Position | None = None  # activity at or below it was replayed: never send again
        self._queue_size = queue_size
        self.close_with = (int(Close.NORMAL), "")
        self._close_grace = close_grace
        self._deadline: asyncio.TimerHandle | None = None
        loop = asyncio.get_running_loop()
        self.closing: asyncio.Future[None] = loop.create_future()  # done: send the close (or aborted)
        sink.on_writable = self._pump

    # --- offers

    def control(self, kind: Out, text: str) -> None:
        self.control_json(kind, text.encode())

    def control_json(self, kind: Out, payload: bytes) -> None:
        if self.state is State.OPEN:
            self._control.append(_Pending(OutFrame(kind, payload), time.monotonic()))
            self._pump()

    def update(self, snapshot: VendorSnapshot) -> bool:
        """Offer a newer version as `metrics_update`; True when it was written at once."""
        slot = self._slot
        if slot is None:
            if self.state is State.OPEN and snapshot.version > self.last_version:
                sink = self.sink
                if not self._control and sink.writable():  # the fan-out's path: write it now
                    shown, self._shown, self.last_version = self._shown, snapshot, snapshot.version
                    if self.delta and shown is not None and shown is snapshot.previous:
                        sink.write(snapshot.delta())
                    else:
                        sink.write(snapshot.update())
                    return True
                self._queue_snapshot(_Slot(Out.METRICS_UPDATE, snapshot, None, time.monotonic()))
                return False
        elif self.state is State.OPEN and snapshot.version > slot.snapshot.version:
            self._queue_snapshot(_Slot(Out.METRICS_UPDATE, snapshot, None, time.monotonic()))
            return False
        self._telemetry.dropped(Out.METRICS_UPDATE)
        return False

    def full(self, snapshot: VendorSnapshot, frame: OutFrame | None = None) -> None:
        """Offer `analytics_update` (connect, `refresh`, the periodic one): it may repeat the version
        last written, never go below it. `frame`: one shared by the vendor's connections."""
        slot = self._slot
        newest = slot.snapshot.version if slot is not None else self.last_version
        if self.state is not State.OPEN or snapshot.version < newest:
            self._telemetry.dropped(Out.ANALYTICS_UPDATE)
            return
        frame = frame or snapshot.full()
        self._queue_snapshot(_Slot(Out.ANALYTICS_UPDATE, snapshot, frame, time.monotonic()))

    def _queue_snapshot(self, slot: _Slot) -> None:
        if self._slot is not None:
            self._telemetry.dropped(self._slot.kind)
        self._slot = slot
        self._pump()

    def _render(self, snapshot: VendorSnapshot) -> OutFrame:
        """The frame that brings this client to `snapshot` (shared, memoised on the snapshot): for a
        delta client that holds the snapshot `snapshot` replaced, its `metrics_delta`; otherwise the
        full `metrics_update`. Records `snapshot` as the one this client now holds."""
        frame = snapshot.render_for(self._shown, self.delta)
        self.last_version = snapshot.version
        self._shown = snapshot
        return frame

    def event(self, frame: OutFrame, position: Position | None = None) -> bool:
        """Offer a notification; True when it was written at once."""
        if self.state is not State.OPEN:
            return False
        if position is not None and self._floor is not None and _covered(position, self._floor):
            return False
        if self._held is not None and position is not None:
            if len(self._held) >= self._hold_limit:
                self._telemetry.dropped(self._held.popleft()[1].frame.kind)
            self._held.append((position, _Pending(frame, time.monotonic())))
            return False
        idle = not self._control and self._slot is None and not self._replayed and not self._events
        if idle and self.sink.writable():
            self.sink.write(frame)
            return True
        if len(self._events) >= self._queue_size:
            # Dropping a notification silently would lose an order from the client's feed. Close
            # instead: the client reconnects with the cursor of the last order it processed and
            # gets every missed one from Kafka (resume), none twice.
            self._telemetry.dropped(frame.kind)
            self.close(
                Close.TRY_AGAIN_LATER,
                "slow consumer",
                error("slow_consumer", (
                    f"more than {self._queue_size} notifications waited for this connection; "
                    "reconnect with resume_after=<cursor of the last new_order you processed>"
                )),
            )  # fmt: skip
            return False
        self._events.append(_Pending(frame, time.monotonic()))
        self._pump()
        return False

    # --- resume

    def hold(self, limit: int) -> None:
        """Keep live activity frames aside (at most `limit`, oldest dropped) until `release`."""
        self._held = deque()
        self._hold_limit = limit

    def release(self, replayed: list[OutFrame], after: Position | None) -> None:
        """Queue `replayed` (in order), then the held frames whose position is past `after` (the ones
        at or before it are in `replayed` already), and deliver live frames past it directly again."""
        held, self._held = self._held or deque(), None
        self._floor = after
        if self.state is not State.OPEN:
            return
        now = time.monotonic()
        self._replayed.extend(_Pending(frame, now) for frame in replayed)
        for position, pending in held:
            if after is None or not _covered(position, after):
                self._replayed.append(pending)
        self._pump()

    # --- closing

    def close(self, code: Close, reason: str, error: str | None = None) -> None:
        """Write the queued control frames (and `error`, if given), then let the session close with
        `code` (`closing` resolves); a socket that does not take them within the grace is aborted."""
        if self.state is not State.OPEN:
            return
        if error is not None:
            self._control.append(_Pending(OutFrame.of_text(Out.ERROR, error), time.monotonic()))
        self.state = State.CLOSING
        self.close_with = (int(code), reason)
        self._slot = None
        self._deadline = asyncio.get_running_loop().call_later(self._close_grace, self._give_up)
        self._pump()

    def _give_up(self) -> None:
        if self.state is State.CLOSING and not self.closing.done():
            self.abort()

    def detach(self) -> None:
        """The session is over: no more writes, and no reference from the socket back to this."""
        self.state = State.CLOSED
        self.sink.on_writable = _nothing
        if self._deadline is not None:
            self._deadline.cancel()

    def abort(self) -> None:
        """Drop the socket without a close frame (it no longer drains)."""
        self.state = State.CLOSED
        if not self.closing.done():
            self.closing.set_result(None)
        self.sink.abort()

    # --- draining

    def _pump(self) -> None:
        sink = self.sink
        while sink.writable():
            if self._control:
                pending = self._control.popleft()
            elif self.state is not State.OPEN:
                if self.state is State.CLOSING and not self.closing.done():
                    if self._deadline is not None:
                        self._deadline.cancel()
                    self._telemetry.closes.labels(str(self.close_with[0])).inc()
                    self.closing.set_result(None)
                return
            elif self._slot is not None:
                slot, self._slot = self._slot, None
                if slot.snapshot.version < self.last_version:
                    continue
                if slot.frame is not None:
                    frame = slot.frame
                    self.last_version, self._shown = slot.snapshot.version, slot.snapshot
                else:
                    frame = self._render(slot.snapshot)
                sink.write(frame)
                self._telemetry.observe_send(slot.kind, time.monotonic() - slot.queued_at)
                continue
            elif self._replayed:
                pending = self._replayed.popleft()
            elif self._events:
                pending = self._events.popleft()
            else:
                return
            sink.write(pending.frame)
            self._telemetry.observe_send(pending.frame.kind, time.monotonic() - pending.queued_at)


def _nothing() -> None:
    return None


def _covered(position: Position, floor: Position) -> bool:
    return position[0] == floor[0] and position[1] <= floor[1]
