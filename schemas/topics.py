"""Topic names of contract §2, and the partition Kafka gives a key.

`orders` and `inventory` are co-partitioned (same partition count, keyed by vendor_id), so a vendor's
events of both topics are in the same partition number; `vendor-metrics` and `vendor-activity` are keyed
by vendor_id too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    orders: str
    inventory: str
    metrics: str
    activity: str
    orders_dlq: str
    inventory_dlq: str

    @classmethod
    def for_prefix(cls, prefix: str = "") -> Topics:
        return cls(
            orders=f"{prefix}orders",
            inventory=f"{prefix}inventory",
            metrics=f"{prefix}vendor-metrics",
            activity=f"{prefix}vendor-activity",
            orders_dlq=f"{prefix}orders.dlq",
            inventory_dlq=f"{prefix}inventory.dlq",
        )

    @property
    def prefix(self) -> str:
        """The prefix these names were made with (`VENDORPULSE_TOPIC_PREFIX`)."""
        return self.orders.removesuffix("orders")

    def all(self) -> list[str]:
        return [self.orders, self.inventory, self.metrics, self.activity, self.orders_dlq, self.inventory_dlq]

    def dlq_for(self, source: str) -> str:
        return self.orders_dlq if source == self.orders else self.inventory_dlq


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's: murmur2) gives `key`."""
    from aiokafka.partitioner import murmur2

    return int(murmur2(key) & 0x7FFFFFFF) % partitions
