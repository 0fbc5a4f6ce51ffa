"""The vendors' states a replay folds from input records, with the live worker's acceptance rules;
no I/O. Records go through `processors.intake` and `processors.core.apply` in the worker's order, so
what the worker dead-letters a replay counts under the same code."""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from processors.core.apply import Status, apply, observe, stock_level
from processors.core.snapshot import snapshot
from processors.core.state import DEFAULT_LATENESS_DAYS, NO_FLOOR, State, new_state
from processors.intake import BAD_KEY, PRODUCT_EVENTS, InputCounts, Refusal, read_event, rejection, vendor_of
from processors.outputs import stock_alert
from schemas.codec import Codec
from schemas.events import Event

MAX_SAMPLES = 20
"""Refused records located in a summary (all are counted)."""


class InputRecord(Protocol):
    """What the fold needs of a consumed record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Refused:
    """A record the worker would dead-letter, and why."""

    topic: str
    partition: int
    offset: int
    code: str
    message: str


class ReplayStates:
    """Per-vendor states folded from input records with the live worker's acceptance rules; no I/O.

    `lateness_days` is the worker's L (contract §4.1), so the same records with the same timestamps
    give the same verdicts. `floor` is the earliest as-of instant the snapshots will be asked for: the
    states keep no timeline before it (processors.core.state)."""

    def __init__(
        self, codec: Codec, vendors: Collection[str] | None = None,
        lateness_days: int = DEFAULT_LATENESS_DAYS, floor: int = NO_FLOOR,
    ) -> None:  # fmt: skip
        self.codec = codec
        self.lateness_days = lateness_days
        self.floor = floor
        self.alerts: list[dict[str, Any]] | None = None
        """Set to a list to collect the `stock_alert`s the worker writes for these records, in order."""
        self.vendors = frozenset(vendors) if vendors is not None else None
        self.states: dict[str, State] = {}
        self.counts = InputCounts()
        self.samples: list[Refused] = []

    def take(self, on_orders_topic: bool, records: Sequence[InputRecord]) -> None:
        """Fold a partition's records (in offset order) from the `orders` topic or the `inventory` one."""
        codec, vendors, states, counts = self.codec, self.vendors, self.states, self.counts
        applied = duplicates = filtered = 0
        for record in records:
            vendor_id = vendor_of(record.key)
            if vendor_id is None:
                self._refuse(record, BAD_KEY)
                continue
            if vendors is not None and vendor_id not in vendors:
                filtered += 1
                continue
            state = states.get(vendor_id)
            if state is None:  # the worker keeps a state for every vendor key it met, as here
                state = states[vendor_id] = self._new(vendor_id)
            event = read_event(codec, record.value, on_orders_topic)
            if isinstance(event, Refusal):
                if event.code == "wrong_topic":
                    observe(state, on_orders_topic, record.timestamp)
                self._refuse(record, event)
                continue
            before = stock_level(state, event.product_id) if isinstance(event, PRODUCT_EVENTS) else None
            outcome = apply(state, event, record.timestamp)
            if (
                self.alerts is not None
                and before is not None
                and isinstance(event, PRODUCT_EVENTS)
                and outcome.status is Status.APPLIED
                and (alert := stock_alert(state, event, before)) is not None
            ):
                self.alerts.append(alert)
            if outcome.status is Status.APPLIED:
                applied += 1
            elif outcome.status is Status.DUPLICATE:
                duplicates += 1
            else:
                self._refuse(record, rejection(outcome))
        counts.records += len(records)
        counts.applied += applied
        counts.duplicates += duplicates
        counts.filtered += filtered

    def _new(self, vendor_id: str) -> State:
        state = new_state(vendor_id, lateness_days=self.lateness_days)
        state.floor = self.floor
        return state

    def take_events(self, events: Iterable[tuple[Event, int]]) -> None:
        """Fold archived events with their record timestamps (exported with their key checked, so each
        is its vendor's own)."""
        vendors, states, counts = self.vendors, self.states, self.counts
        for event, ts in events:
            counts.records += 1
            vendor_id = event.vendor_id
            if vendors is not None and vendor_id not in vendors:
                counts.filtered += 1
                continue
            state = states.get(vendor_id)
            if state is None:
                state = states[vendor_id] = self._new(vendor_id)
            outcome = apply(state, event, ts)
            if outcome.status is Status.APPLIED:
                counts.applied += 1
            elif outcome.status is Status.DUPLICATE:
                counts.duplicates += 1
            else:
                why = rejection(outcome)
                counts.refused[why.code] += 1
                if len(self.samples) < MAX_SAMPLES:
                    self.samples.append(Refused("", -1, -1, why.code, f"{event.event_id}: {why.message}"))

    def _refuse(self, record: InputRecord, why: Refusal) -> None:
        self.counts.refused[why.code] += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(Refused(record.topic, record.partition, record.offset, why.code, why.message))

    def snapshots(self, as_of_ms: int, period_days: int) -> list[dict[str, Any]]:
        """One snapshot per vendor with an applied event, and per vendor asked for (zero-filled if it
        had none), by vendor_id. A key that only ever carried refused records names no vendor."""
        names = {v for v, s in self.states.items() if s.version} | (self.vendors or set())
        return [snapshot(self.states.get(v) or self._new(v), as_of_ms, period_days) for v in sorted(names)]


@contextmanager
def quiet_gc() -> Iterator[None]:
    """The cyclic GC off while folding. A fold allocates millions of long-lived containers (the states)
    and frees almost none, so each full collection only rescans them: a third of a replay's time with
    the GC on. The few cycles made meanwhile (per fetch) are collected once it is back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
