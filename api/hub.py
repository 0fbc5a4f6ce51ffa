"""The latest snapshot per vendor and the open connections per vendor on this API instance.

Every update is encoded once (`api.frames`): a snapshot from Kafka becomes one `VendorSnapshot` whose
`metrics_update` frame, built on first use, is the one `bytes` object written to each of the vendor's
connections (`api.connection`); a notification or broadcast is one `OutFrame` for all its recipients.
Snapshots are held as the JSON bytes read from Kafka and spliced into frames without re-encoding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from api.connection import Connection, Position
from api.frames import OutFrame, VendorSnapshot
from api.protocol import Out, frame
from api.telemetry import Telemetry

ZeroSnapshot = Callable[[str], dict[str, Any]]
REFRESH_SLICES = 300  # the periodic refresh is spread over this many ticks per period


class Hub:
    """Latest snapshot per vendor and the open connections per vendor on this API instance."""

    def __init__(self, telemetry: Telemetry, zero: ZeroSnapshot) -> None:
        self.telemetry = telemetry
        self._zero = zero
        self.snapshots: dict[str, VendorSnapshot] = {}
        self.connections: dict[str, set[Connection]] = {}
        self._total = 0
        self._slices: list[set[Connection]] = [set() for _ in range(REFRESH_SLICES)]  # periodic refresh
        self.caught_up = False

    # --- connections

    def add(self, conn: Connection) -> None:
        conns = self.connections.setdefault(conn.vendor_id, set())
        if conn not in conns:
            conns.add(conn)
            self._slices[conn.id % REFRESH_SLICES].add(conn)
            self._total += 1
            self._count(conn.vendor_id)
        if self.caught_up:
            self.send_analytics(conn)

    def remove(self, conn: Connection) -> None:
        conns = self.connections.get(conn.vendor_id)
        if conns is not None and conn in conns:
            conns.discard(conn)
            self._slices[conn.id % REFRESH_SLICES].discard(conn)
            self._total -= 1
            if not conns:
                del self.connections[conn.vendor_id]
            self._count(conn.vendor_id)

    def _count(self, vendor_id: str) -> None:
        conns = self.connections.get(vendor_id)
        if conns:
            self.telemetry.vendor_connections.labels(vendor_id).set(len(conns))
        else:
            self.telemetry.vendor_connections.remove(vendor_id)
        self.telemetry.connections.set(self._total)

    def total(self) -> int:
        return self._total

    # --- data in

    def snapshot_of(self, vendor_id: str) -> VendorSnapshot:
        """The vendor's latest snapshot, zero-filled when it has none (contract §5)."""
        snap = self.snapshots.get(vendor_id)
        if snap is not None:
            return snap
        zero = self._zero(vendor_id)
        return VendorSnapshot(vendor_id, int(zero["version"]), str(zero.get("asOf", "")), orjson.dumps(zero))

    def latest(self, vendor_id: str) -> tuple[int, bytes]:
        """The vendor's latest snapshot (version, JSON), zero-filled when it has none (contract §5)."""
        snap = self.snapshot_of(vendor_id)
        return snap.version, snap.raw

    def publish_snapshot(self, data: dict[str, Any]) -> bool:
        """`publish` for a snapshot at hand as a dict (tests, tools)."""
        return self.publish(data["vendorId"], data["version"], str(data.get("asOf", "")), orjson.dumps(data))

    def publish(self, vendor: str, version: int, as_of: str, raw: bytes) -> bool:
        """Keep a snapshot (`raw`: its contract §5 JSON) if newer than the one held, and push it as
        `metrics_update` (as `metrics_delta` from the one held, to delta clients that have it); False if it is not newer (an equal version with a later asOf is)."""
        held = self.snapshots.get(vendor)
        if held is not None and (version, as_of) <= (held.version, held.as_of):
            return False
        conns = self.connections.get(vendor)
        if held is not None:
            held.previous = None  # one base per vendor: a delta from further back is a full update
        # The base of this version's delta, kept only while someone may ask for it.
        snap = VendorSnapshot(vendor, version, as_of, raw, held if conns else None)
        self.snapshots[vendor] = snap
        if conns and self.caught_up:
            written = 0
            for conn in conns:
                written += conn.update(snap)
            self.telemetry.sent_at_once(Out.METRICS_UPDATE, written)
        return True

    def forget(self, vendor_id: str) -> None:
        """A tombstone on the compacted topic: the vendor's snapshot is gone."""
        self.snapshots.pop(vendor_id, None)

    def publish_event(self, vendor_id: str, kind: Out, data: Any, position: Position | None = None) -> None:
        """An event frame to the vendor's connections; `position` (a vendor-activity record's) lets a
        resuming connection tell it apart from the records it replays."""
        conns = self.connections.get(vendor_id)
        if conns:
            out = OutFrame.of_text(kind, frame(kind, data))
            written = 0
            for conn in conns:
                written += conn.event(out, position)
            self.telemetry.sent_at_once(kind, written)

    def broadcast(self, data: Any, vendor_id: str | None = None) -> int:
        """A `connection_status` frame with `status: "broadcast"` to one vendor's clients or all."""
        groups = [self.connections.get(vendor_id, set())] if vendor_id else list(self.connections.values())
        out = OutFrame.of_text(
            Out.CONNECTION_STATUS, frame(Out.CONNECTION_STATUS, {"status": "broadcast", **data})
        )
        count = written = 0
        for conns in groups:
            for conn in conns:
                written += conn.event(out)
                count += 1
        self.telemetry.sent_at_once(Out.CONNECTION_STATUS, written)
        return count

    def mark_caught_up(self) -> None:
        """Snapshots are rebuilt: every connection waiting for its first snapshot gets it now."""
        if not self.caught_up:
            self.caught_up = True
            self.refresh_all()

    # --- full refreshes

    def send_analytics(self, conn: Connection) -> None:
        conn.full(self.snapshot_of(conn.vendor_id))

    def refresh_all(self) -> None:
        """`analytics_update` to every connection, serialized once per vendor."""
        for vendor, conns in list(self.connections.items()):
            snap = self.snapshot_of(vendor)
            out = snap.full()
            for conn in list(conns):
                conn.full(snap, out)

    def refresh_slice(self, index: int) -> None:
        """`analytics_update` to the connections of one slice (the connection's id modulo
        REFRESH_SLICES), serialized once per vendor among them."""
        frames: dict[str, tuple[VendorSnapshot, OutFrame]] = {}
        for conn in list(self._slices[index]):
            shared = frames.get(conn.vendor_id)
            if shared is None:
                snap = self.snapshot_of(conn.vendor_id)
                shared = frames[conn.vendor_id] = (snap, snap.full())
            conn.full(*shared)

    async def run_refresher(self, period: float) -> None:
        """Every connection gets its full refresh every `period`, one slice of the connections per
        tick (a three-hundredth of them every 0.1 s at the default 30 s): writing all of them at once
        blocked the event loop, and with it every update, for the time of one write per connection
        (~0.3 s at 10,000 connections on the bench machine); a thirtieth each second still held it
        ~10-20 ms at 5,000-10,000 connections, a tail every update waiting behind it shares."""
        index = 0
        while True:
            await asyncio.sleep(period / REFRESH_SLICES)
            if self.caught_up:
                self.refresh_slice(index)
            index = (index + 1) % REFRESH_SLICES
