"""Where the worker's input stands, per input partition, so that no record is passed over unseen.

Faust drops records it has fetched in several places and counts on a later seek to the committed offset
to read them again: a stream skips records of a stale generation or read while the flow is stopped, the
consumer skips records below its read offset, a fetch is cut short when the generation changes. And
aiokafka does not seek at all when the committed offset is 0, so the position stays wherever the fetches
made during a rebalance left it. A record dropped that way and never read again is an event lost.

The worker therefore does not trust the position it is given. It knows, per input partition, the next
offset it must fold: after a rebalance the stored watermark (or the log's start when nothing is stored),
then one past every record it folds. Each record is checked against it (`check`):

- below it: contained in the stored state already (read again after a seek): `OLD`, skipped;
- equal: `FOLD`;
- above it: a *gap*. The records in between were dropped before they reached the agent, or do not
  exist (transaction markers, records deleted by retention). The first time, `SEEK`: the worker seeks
  back to the expected offset, and drops (`DROP`) what arrives above the gap's first record until the
  re-read comes. Records at or below that first record can only come from the re-read: if the re-read
  starts above the expected offset, nothing exists in between, and the gap is accepted (`ACCEPT`). A seek
  that brings nothing within `reseek_after_s` is issued again.

No Kafka, Faust or FastAPI import: partitions are any hashable key, the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Verdict(Enum):
    FOLD = "fold"
    OLD = "old"
    SEEK = "seek"
    DROP = "drop"
    ACCEPT = "accept"
    """Fold it: the re-read showed that no record exists between the expected offset and this one."""


@dataclass(slots=True)
class _Gap:
    expected: int
    first_above: int
    sought_at: float


class InputPositions(Generic[K]):
    def __init__(self, reseek_after_s: float = 1.0) -> None:
        self.reseek_after_s = reseek_after_s
        self.expected: dict[K, int] = {}
        self._gaps: dict[K, _Gap] = {}

    def reset(self, targets: Mapping[K, int]) -> None:
        """After a rebalance: where each assigned input partition's stored state ends."""
        self.expected = dict(targets)
        self._gaps.clear()

    def run(self, tp: K, first: int, last: int, count: int) -> bool:
        """`check` for a whole run of records at once, in the common case only: `count` records from
        offset `first` to `last` with none missing, starting exactly at the expected offset. True when
        so (all are to fold; the expected offset moves past them); False to check them one by one."""
        if self.expected.get(tp) != first or last - first + 1 != count:
            return False
        self._gaps.pop(tp, None)
        self.expected[tp] = last + 1
        return True

    def check(self, tp: K, offset: int, now: float) -> Verdict:
        expected = self.expected.get(tp)
        if expected is None:  # a partition the last reset did not name: nothing to hold it against
            self.expected[tp] = offset + 1
            return Verdict.FOLD
        if offset < expected:
            return Verdict.OLD
        if offset == expected:
            self._gaps.pop(tp, None)
            self.expected[tp] = offset + 1
            return Verdict.FOLD
        gap = self._gaps.get(tp)
        if gap is None or gap.expected != expected:
            self._gaps[tp] = _Gap(expected, offset, now)
            return Verdict.SEEK
        if offset <= gap.first_above:  # only the re-read delivers these: nothing exists below it
            del self._gaps[tp]
            self.expected[tp] = offset + 1
            return Verdict.ACCEPT
        if now - gap.sought_at >= self.reseek_after_s:
            gap.sought_at = now
            return Verdict.SEEK
        return Verdict.DROP

    def seeking(self) -> dict[K, int]:
        """Partitions waiting for a re-read, and the offset they wait for."""
        return {tp: gap.expected for tp, gap in self._gaps.items()}
