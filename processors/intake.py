"""What input counts, decided in one place for the worker, replay and export: a record's vendor
(`vendor_of`), its event (`read_event`), and the refusal of what `apply` refuses (`rejection`), in that
order. What is refused goes to the DLQ (the worker) or is counted under the same code (replay, export),
so none of them can disagree on what counts."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from processors.core.apply import Outcome, Status
from schemas.codec import Codec
from schemas.events import ORDER_EVENTS, Event, InventoryAdjusted, ProductUpserted
from schemas.exceptions import CodecError

_CONTROL = re.compile("[\x00-\x1f\x7f]")
PRODUCT_EVENTS = (ProductUpserted, InventoryAdjusted)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an input record is not folded: the DLQ headers' code, error class and message."""

    code: str
    error: str
    message: str


BAD_KEY = Refusal(
    "bad_key", "KeyError", "the message key must be the vendor_id in UTF-8, without control characters"
)
NO_VALUE = Refusal("no_value", "ValueError", "the message has no value")


def vendor_of(key: bytes | None) -> str | None:
    """The vendor a record is keyed by; None when the key cannot be a vendor_id (`BAD_KEY`)."""
    if not key:
        return None
    try:
        vendor_id = key.decode()
    except UnicodeDecodeError:
        return None
    # The table's keys put control characters after the vendor id (processors.worker.table_layout).
    if vendor_id.isprintable() or not _CONTROL.search(vendor_id):  # isprintable: the fast common case
        return vendor_id
    return None


def read_event(codec: Codec, value: bytes | None, on_orders_topic: bool) -> Event | Refusal:
    """The record's event (not validated: `apply` rejects invalid ones), or why it is refused."""
    if value is None:
        return NO_VALUE
    try:
        event = codec.decode(value, validate=False)
    except CodecError as exc:
        return Refusal(exc.code, type(exc).__name__, str(exc))
    if on_orders_topic != isinstance(event, ORDER_EVENTS):
        expected = "orders" if isinstance(event, ORDER_EVENTS) else "inventory"
        return Refusal("wrong_topic", "WrongTopic", f"{type(event).__name__} belongs on the {expected} topic")
    return event


def rejection(outcome: Outcome) -> Refusal:
    """The refusal of an event `apply` refused: schema-valid, but breaking a rule of contract §4, or
    dated before the lateness horizon (§4.1)."""
    if outcome.status is Status.TOO_LATE:
        return Refusal("too_late", "TooLate", outcome.reason or "")
    return Refusal("invalid_event", "InvalidEvent", outcome.reason or "")


@dataclass
class InputCounts:
    """What became of the input records read, by the worker or a replay (`refused` by DLQ code)."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    redelivered: int = 0
    """at or below the vendor's stored offset: read again after a crash or a rebalance (the worker)"""
    filtered: int = 0
    """of vendors outside a replay's filter, skipped undecoded"""
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def dead_lettered(self) -> int:
        return sum(self.refused.values())

    def add(self, other: InputCounts) -> None:
        for name in ("records", "applied", "duplicates", "redelivered", "filtered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.refused += other.refused
