"""Which vendors one API node serves when N nodes split them (docs/SCALING.md).

`VENDORPULSE_API_SHARD=i/N` (default `0/1`: every vendor): node i consumes only the partitions p of
`vendor-metrics` and `vendor-activity` with p mod N = i, so its ingest is 1/N of the topic's, and it
serves only the vendors whose partition lies there: shard(vendor) = partition_for(vendor_id, P) mod N,
P being the partition count of `vendor-metrics` (Kafka's default partitioner, murmur2, the one the
worker's records are keyed by). The load balancer routes each request by that function; a node asked
for another shard's vendor answers HTTP 421 or closes the WebSocket with 4021, naming the shard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from api.exceptions import ApiConfigError
from schemas.topics import partition_for

_SHARD = re.compile(r"^\s*(\d{1,4})\s*/\s*(\d{1,4})\s*$")


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = _SHARD.match(text)
        if match is None or not int(match[1]) < int(match[2]):
            raise ApiConfigError(
                f"VENDORPULSE_API_SHARD must be 'i/N' with 0 <= i < N (e.g. 0/4), not {text!r}"
            )
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def everything(self) -> bool:
        return self.count == 1

    def partitions(self, available: list[int]) -> list[int]:
        """The partitions of a topic this node consumes."""
        return [p for p in available if p % self.count == self.index]

    def of(self, vendor_id: str, partitions: int) -> int:
        """The shard serving `vendor_id` when `vendor-metrics` has `partitions` partitions."""
        return partition_for(vendor_id.encode(), partitions) % self.count

    def owns(self, vendor_id: str, partitions: int | None) -> bool:
        """Whether this node serves the vendor (True while the partition count is not known yet)."""
        return self.everything or partitions is None or self.of(vendor_id, partitions) == self.index
