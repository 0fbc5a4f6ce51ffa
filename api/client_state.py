"""What the Python client keeps from the server's messages across reconnects: the latest snapshot, the
resume cursor (its acknowledgement, docs/API.md "Resume") and which notifications it has already seen.
The TypeScript client (`api/client-ts/src/received.ts`) follows the same rules."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("vendorpulse.client")
SEEN_EVENTS = 10_000  # eventIds remembered for de-duplication


@dataclass
class Received:
    snapshot: dict[str, Any] | None = None
    cursor: str | None = None  # the last new_order received: sent back as resume_after on reconnect
    duplicates_dropped: int = 0
    resume_gaps: int = 0
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

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
        elif kind == "new_order":
            return self._fresh(data)
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
