"""The worker's self-healing paths, each counted, logged at WARNING or ERROR, and kept in the data
directory's `counters.json`, so an operator sees that one fired and a test can assert that none did.

- `watch_input`: an input partition with records to fold that delivered none for `STALL_AFTER_S`, while
  no other partition delivered either (or for `STARVED_AFTER_S` whatever the others did), is resumed
  and sought to the next offset to fold (`input_resumes`). The time counts from the later of its last
  delivery and the check that first saw records waiting in it: a partition idle for minutes whose
  first new record the check sees before the fetcher delivers it has not stalled (counted from the
  last delivery, every quiet spell ending in traffic looked like a stall, and the seek back re-read
  what was on its way). Time the event loop spent blocked (a check that comes late: a long flush, a
  burst of checkpoints) does not count either: nothing could be delivered then, by any partition.
  While the worker works through a backlog,
  the fetcher serves some partitions for seconds before others; that is not a stall, and seeking
  such a partition back only read it twice. After a recovery interrupted by a
  second rebalance, Faust was seen to leave assigned input partitions without a record reaching the
  worker while their records waited in Kafka. A partition the stream clock paused ahead of stream time
  (`processors.worker.alignment`) is not stalled.
- `watch_recovery`: a rebalance whose table recovery has not moved for `RECOVERY_STALL_S` replaces the
  worker with a fresh process (same pid, same arguments; `recovery_restarts`). Faust's recovery was
  seen to stop for good ("No event received for active tp ... since recovery start", changelog records
  buffered and never applied; like faust-streaming/faust#74); a new process restores from the changelog,
  as after a SIGKILL.
- The batch loop's seeks back over a gap in the input (`gap_seeks`, processors/positions.py) are not a
  watchdog but a guard; they are counted here too.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from faust.types import AppT

from processors.worker.batch import BatchLoop
from processors.worker.counters import Counters

log = logging.getLogger("vendorpulse.worker")
STALL_CHECK_S = 1.0
STALL_AFTER_S = 3.0
STARVED_AFTER_S = 30.0
RECOVERY_CHECK_S = 5.0
RECOVERY_STALL_S = 45.0


class Watchdogs:
    def __init__(self, app: AppT, loop: BatchLoop, counters: Counters, command_line: list[str]) -> None:
        self.app = app
        self.loop = loop
        self.counters = counters
        self.command_line = command_line
        self.recovery_offsets: dict[Any, int] | None = None
        self.recovery_moved_at = 0.0
        self.dump_tasks: Callable[[], None] = lambda: None
        self.pending_since: dict[Any, float] = {}
        """Input partition -> when this watchdog first saw records waiting in it, since its last delivery
        (moved later by the time the event loop was blocked since)."""
        self.checked_at: float | None = None

    async def watch_input(self) -> None:
        started = time.monotonic()
        if self.checked_at is not None:
            late = started - self.checked_at - STALL_CHECK_S
            if late > 0:  # the event loop was blocked: no partition could deliver meanwhile
                for tp in self.pending_since:
                    self.pending_since[tp] += late
        self.checked_at = started
        loop, app = self.loop, self.app
        positions = loop.positions
        if loop.paused or app.should_stop or not positions.expected:
            return
        if loop.resolver is not None and loop.resolver.waiting:
            return  # waiting for the schema registry, not stalled
        consumer: Any = app.consumer
        assigned = consumer.assignment()
        tps = [tp for tp in positions.expected if tp in assigned]
        if not tps:
            return
        ends = await consumer.highwaters(*tps)
        now = time.monotonic()
        pending = self.pending_since
        for tp in tps:
            expected, end = positions.expected[tp], ends.get(tp)
            if end is None or end <= expected or loop.paused or tp in loop.alignment.paused:
                pending.pop(tp, None)  # nothing to fold, a rebalance, or paused ahead of stream time
                continue
            delivered = max(loop.delivered_at.get(tp, 0.0), loop.resumed_at)
            since = pending.get(tp)
            if since is None or since < delivered:
                since = pending[tp] = now  # records to fold seen now: the stall, if any, starts here
            quiet = now - max(delivered, since)
            busy = now - loop.any_delivered_at < STALL_AFTER_S  # other partitions are being delivered
            if quiet < STALL_AFTER_S or (busy and quiet < STARVED_AFTER_S):
                continue
            log.warning(
                "watchdog: input %s:%s has records %s..%s to fold but delivered none for %.0f s: resuming it "
                "and seeking it there (Faust: paused %s, active %s, buffered %s, read offset %s, flow %s)",
                tp.topic, tp.partition, expected, end - 1, quiet, tp in consumer._paused_partitions,
                tp in consumer._get_active_partitions(), tp in consumer._buffered_partitions,
                consumer._read_offset.get(tp), app.flow_control.is_active(),
            )  # fmt: skip
            self.counters.bump("input_resumes")
            loop.delivered_at[tp] = now  # another period before the next attempt
            consumer.resume_partitions([tp])
            await loop.seek_back({tp: expected})

    async def watch_recovery(self) -> None:
        now = time.monotonic()
        offsets = dict(cast(Any, self.app.tables).recovery.active_offsets) if self.loop.paused else None
        if offsets is None or offsets != self.recovery_offsets or self.app.should_stop:
            self.recovery_offsets, self.recovery_moved_at = offsets, now
            return
        if now - self.recovery_moved_at < RECOVERY_STALL_S:
            return
        log.error(
            "watchdog: table recovery made no progress for %.0f s (offsets %s): restarting the worker",
            now - self.recovery_moved_at, offsets,
        )  # fmt: skip
        self.counters.bump("recovery_restarts")
        self.dump_tasks()
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *self.command_line])
