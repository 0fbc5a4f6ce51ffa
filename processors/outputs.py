"""What the worker writes besides its table (contract §2): DLQ copies of refused input, `new_order`
notifications and `stock_alert`s on `vendor-activity`. Replay builds the same alerts with the same code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors.core.apply import StockLevel, stock_level
from processors.core.calendar import iso_millis
from processors.core.state import State
from schemas.events import InventoryAdjusted, OrderPlaced, ProductUpserted


@dataclass(slots=True)
class Record:
    """A record to produce. `partition` None means: by key. A value, never changed once built (not a
    frozen dataclass only because those are several times slower to build; see `schemas.events`)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


def dlq_record(
    dlq_topic: str, key: bytes | None, value: bytes | None, code: str, error: str, message: str,
    topic: str, partition: int, offset: int,
) -> Record:  # fmt: skip
    """The original key and bytes, unchanged, with headers that say why and where from (contract §2)."""
    headers = (
        ("vp.error.code", code.encode()),
        ("vp.error.class", error.encode()),
        ("vp.error.message", message.encode()[:4096]),
        ("vp.source.topic", topic.encode()),
        ("vp.source.partition", str(partition).encode()),
        ("vp.source.offset", str(offset).encode()),
    )
    return Record(dlq_topic, key, value, headers)


def stock_alert(
    state: State, event: ProductUpserted | InventoryAdjusted, before: StockLevel
) -> dict[str, Any] | None:
    """The `stock_alert` body (contract §6; the API adds its `cursor`) when an accepted catalog or stock
    event changed its product's stock state from `before`; None when it did not. It depends on the
    vendor's inventory events alone, so a replay, which interleaves the two topics otherwise, gives the
    same alerts."""
    after = stock_level(state, event.product_id)
    if after.state == before.state:
        return None
    return {
        "type": "stock_alert",
        "vendorId": event.vendor_id,
        "productId": event.product_id,
        "name": after.name,
        "stock": after.stock,
        "threshold": after.threshold,
        "state": after.state,
        "previous": before.state,
        "eventId": event.event_id,
        "occurredAt": iso_millis(event.occurred_at),
    }


def order_notice(event: OrderPlaced, version: int) -> dict[str, Any]:
    """The `new_order` body of an accepted placement (the API adds its `cursor`)."""
    return {
        "vendorId": event.vendor_id,
        "eventId": event.event_id,
        "orderId": event.order_id,
        "customerId": event.customer_id,
        "currency": event.currency,
        "total": event.total,
        "items": sum(i.quantity for i in event.items),
        "occurredAt": iso_millis(event.occurred_at),
        "version": version,
    }
