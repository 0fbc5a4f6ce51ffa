"""What the Python client keeps from the server's messages across reconnects: the latest snapshot (full
ones replace it, `metrics_delta` merge patches apply to it), the resume cursor (its acknowledgement,
docs/API.md "Resume"), which feed messages (`new_order`, `stock_alert`) it has already seen, and the
latest stock alerts. The TypeScript client (`api/client-ts/src/received.ts`) follows the same rules."""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from api.patch import apply

log = logging.getLogger("vendorpulse.client")
SEEN_EVENTS = 10_000  # eventIds remembered for de-duplication
ALERTS = 20  # latest stock alerts kept
FEED_TYPES = frozenset({"new_order", "stock_alert"})  # one cursor, one resume, deduplicated by eventId


@dataclass
class Received:
    snapshot: dict[str, Any] | None = None
    cursor: str | None = None  # the last new_order received: sent back as resume_after on reconnect
    duplicates_dropped: int = 0
    resume_gaps: int = 0
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ALERTS))  # newest last
    deltas_applied: int = 0
    needs_refresh: bool = False  # a metrics_delta for a version not held: ask for a full snapshot

    def accept(self, kind: str, data: Any) -> bool:
        """Keep what a server message says; False for a notification already delivered."""
        if not isinstance(data, dict):
            return True
        if kind == "connection_status" and data.get("status") == "connected":
            if self.cursor is None and isinstance(data.get("cursor"), str):
                self.cursor = data["cursor"]  # where live delivery starts: nothing before it is missed
        elif kind == "connection_status" and data.get("status") == "resumed":
            self.cursor = data.get("cursor") or self.cursor
            if not data.get("complete", False):
                self.resume_gaps += 1
                log.warning("resume was incomplete (%s): some new_order notifications were lost", data)
        elif kind in ("analytics_update", "metrics_update"):
            held = self.snapshot.get("version", -1) if self.snapshot else -1
            if kind == "analytics_update" or data.get("version", 0) >= held:
                self.snapshot = data
        elif kind == "metrics_delta":
            return self._patch(data)
        elif kind in FEED_TYPES:
            if not self._fresh(data):
                return False
            if kind == "stock_alert":
                self.alerts.append(data)
        return True

    def _patch(self, data: dict[str, Any]) -> bool:
        """Apply a merge patch to the snapshot held if it is at the patch's base version; otherwise
        drop it and ask for a refresh (contract §6)."""
        held = self.snapshot
        patch = data.get("patch")
        if held is None or held.get("version") != data.get("baseVersion") or not isinstance(patch, dict):
            self.needs_refresh = True
            return False
        self.snapshot = apply(held, patch)
        self.deltas_applied += 1
        return True

    def _fresh(self, data: dict[str, Any]) -> bool:
        cursor, event_id = data.get("cursor"), data.get("eventId")
        if isinstance(cursor, str) and self.cursor is not None and not_after(cursor, self.cursor):
            self.duplicates_dropped += 1
            return False
        if isinstance(event_id, str):  # vendor-activity is at least once: a repeat has the same eventId
            if event_id in self.seen:
                self.duplicates_dropped += 1
                return False
            self.seen[event_id] = None
            if len(self.seen) > SEEN_EVENTS:
                self.seen.popitem(last=False)
        if isinstance(cursor, str):
            self.cursor = cursor
        return True


def not_after(cursor: str, last: str) -> bool:
    """Whether `cursor` is at or before `last` on the same partition (a repeat)."""
    partition, _, offset = cursor.partition(":")
    last_partition, _, last_offset = last.partition(":")
    try:
        return partition == last_partition and int(offset) <= int(last_offset)
    except ValueError:
        return False
