"""Stream time over many input partitions, and keeping them aligned in it (`VENDORPULSE_CLOCK=stream`).

Input partitions progress unevenly in event time while a worker catches up: a consumer fetches about as
many bytes from each, so a partition with sparse records (the `inventory` topic, a partition of small
vendors) runs days or months ahead of a dense one (a whale's `orders` partition). The greatest
timestamp read would then be far ahead of most of what is still to fold, and the worker would prune
and window as of a time most input has not reached. So, as Flink's watermarks do:

- a partition is *lagging* while records remain to fold in it (its next offset to fold is below its
  high watermark); the others are caught up or idle;
- stream time is the least, over lagging partitions, of the greatest timestamp read from each (the
  time up to which all input has been read), or, with none lagging, the greatest timestamp read; it
  never goes back;
- a lagging partition whose reads are more than `ahead_ms` past stream time is paused until stream time
  comes within `ahead_ms` of it (watermark alignment), so what is folded stays within about one fetch
  of stream time, as it does for a live worker. A caught-up partition is never paused.

Live, with every partition caught up, stream time is the greatest timestamp read. Pure: the worker's
batch loop feeds it and applies the pauses (`processors.worker.batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)

DEFAULT_AHEAD_MS = 6 * 3_600_000


class Alignment(Generic[P]):
    def __init__(self, ahead_ms: int = DEFAULT_AHEAD_MS) -> None:
        self.ahead_ms = ahead_ms
        self.read_ms: dict[P, int] = {}
        """Partition -> the greatest record timestamp read from it."""
        self.paused: set[P] = set()

    def read(self, partition: P, ts: int) -> None:
        """Records of `partition` up to timestamp `ts` were read (ts < 0: none had a timestamp)."""
        if ts >= 0 and ts > self.read_ms.get(partition, -1):
            self.read_ms[partition] = ts

    def time(self, lagging: Callable[[P], bool]) -> int | None:
        """Stream time as the partitions stand (None: no timestamp read yet)."""
        behind = [ts for p, ts in self.read_ms.items() if lagging(p)]
        if behind:
            return min(behind)
        return max(self.read_ms.values()) if self.read_ms else None

    def plan(self, now_ms: int | None, lagging: Callable[[P], bool]) -> tuple[set[P], set[P]]:
        """(partitions to pause, partitions to resume) for stream time `now_ms`: every lagging partition
        read more than `ahead_ms` past it is paused (pausing is idempotent), and those paused before
        that no longer are, resumed."""
        if now_ms is None:
            return set(), set(self.paused)
        ahead = {p for p, ts in self.read_ms.items() if ts > now_ms + self.ahead_ms and lagging(p)}
        resume = self.paused - ahead
        self.paused = ahead
        return ahead, resume  # every partition ahead, again: a rebalance's recovery resumes them all

    def forget(self, partitions: Callable[[P], bool] | None = None) -> set[P]:
        """Drop what is known of the partitions (all, or those `partitions` names): after a rebalance
        they are read again from their stored watermarks. Returns the paused ones among them."""
        dropped = {p for p in self.read_ms if partitions is None or partitions(p)}
        for p in dropped:
            del self.read_ms[p]
        released = {p for p in self.paused if partitions is None or partitions(p)}
        self.paused -= released
        return released
