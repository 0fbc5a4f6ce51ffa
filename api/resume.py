"""Resuming the vendor's feed (`new_order` and `stock_alert`) from the cursor a client acknowledges
(docs/API.md, "Resume").

Every feed message carries `cursor`, "<partition>:<offset>" of its `vendor-activity` record. A client
that reconnects with `?resume_after=<cursor>` (the last notification it processed: its
acknowledgement) gets, after `connection_status` and the snapshot, the vendor's records after that
cursor, then `connection_status {"status": "resumed", ...}`, then live notifications: each record once,
in offset order, also across a restart of the API (the server keeps nothing per client).

How the hand-over has neither gap nor duplicate: the connection is registered with the hub in *hold*
mode, so every live activity frame for it from that instant on is kept aside with its position. The
replay then reads the feed's position P for the partition (every record before P was delivered before
or is in Kafka; every record from P on is delivered live, so it is in the held frames), reads
[cursor + 1, P) from Kafka with its own consumer, and `Connection.release` queues the replayed frames,
then the held ones from P on, in one step of the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from api.connection import Connection
from api.exceptions import BadMessageError
from api.frames import OutFrame
from api.kafka import Feed
from api.protocol import Out, frame
from api.settings import ApiSettings

log = logging.getLogger("vendorpulse.api.resume")
_CURSOR = re.compile(r"^(\d{1,6}):(-1|\d{1,19})$")


@dataclass(frozen=True, slots=True)
class Cursor:
    """One vendor-activity record: the client has everything up to and including it."""

    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> Cursor:
        match = _CURSOR.match(text)
        if match is None:
            raise BadMessageError(
                f"resume_after must be a cursor '<partition>:<offset>' from a new_order or stock_alert, not {text[:40]!r}"
            )
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


class Replayer:
    """Reads offset ranges of vendor-activity partitions for resuming connections: one consumer per
    API instance (no group), started on first use, one range at a time."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def read(
        self, tp: TopicPartition, start: int, end: int, key: bytes
    ) -> tuple[list[ConsumerRecord[bytes, bytes]], int]:
        """The records with `key` in [start, end) of `tp` and the first offset that could be read
        (above `start` when retention already deleted the beginning of the range)."""
        async with self._lock:
            try:
                return await asyncio.wait_for(
                    self._read(tp, start, end, key), self.settings.resume_timeout_seconds
                )
            except BaseException:
                await self.stop()  # a consumer in an unknown state is not reused
                raise

    async def _read(
        self, tp: TopicPartition, start: int, end: int, key: bytes
    ) -> tuple[list[ConsumerRecord[bytes, bytes]], int]:
        consumer = await self._started()
        consumer.assign([tp])
        first = max(start, (await consumer.beginning_offsets([tp]))[tp])
        consumer.seek(tp, first)
        out: list[ConsumerRecord[bytes, bytes]] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=2000)
            for record in batch.get(tp, []):
                if record.offset >= end:
                    return out, first
                if record.key == key:
                    out.append(record)
        return out, first

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id=f"vendorpulse-api-resume-{self.settings.instance_id}",
                request_timeout_ms=15000,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


async def resume(
    conn: Connection, feed: Feed | None, replayer: Replayer | None, after: Cursor, settings: ApiSettings
) -> None:
    """Replay the vendor's notifications after `after` into `conn` (held since it was registered),
    then release it to live delivery. Ends with a `connection_status` `resumed` frame."""
    status: dict[str, Any] = {"status": "resumed", "after": str(after), "replayed": 0, "skippedOffsets": 0}
    replayed: list[OutFrame] = []
    through: tuple[int, int] | None = None
    try:
        if feed is None or replayer is None:
            raise LookupError("this API instance runs without Kafka")
        position = await _position(feed, after.partition, settings.resume_timeout_seconds)
        if after.partition >= feed.activity_partitions:
            raise LookupError(f"partition {after.partition} does not exist")
        start = after.offset + 1
        if position - start > settings.resume_max_records:
            status["skippedOffsets"] = position - settings.resume_max_records - start
            start = position - settings.resume_max_records
        records: list[ConsumerRecord[bytes, bytes]] = []
        if start < position:
            tp = TopicPartition(feed.activity_topic, after.partition)
            records, first = await replayer.read(tp, start, position, conn.vendor_id.encode())
            status["skippedOffsets"] += first - start
        for record in records:
            message = feed.activity_message(record)
            if message is not None:
                kind, data = message
                replayed.append(OutFrame.of_text(kind, frame(kind, data)))
        # A feed behind the client's cursor (another instance, lagging) must not deliver what the
        # client has already: `through` is also the floor below which live frames are dropped.
        through = (after.partition, max(position - 1, after.offset))
        status["replayed"] = len(replayed)
        status["cursor"] = str(Cursor(*through))
        status["complete"] = status["skippedOffsets"] == 0
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # Kafka unreachable, timeout, unknown partition: say so, go live
        log.warning("resume after %s for vendor %s failed: %s", after, conn.vendor_id, exc)
        status |= {"complete": False, "cursor": str(after), "reason": f"{type(exc).__name__}: {exc}"[:200]}
    replayed.append(OutFrame.of_text(Out.CONNECTION_STATUS, frame(Out.CONNECTION_STATUS, status)))
    conn.release(replayed, through)


async def _position(feed: Feed, partition: int, within: float) -> int:
    deadline = time.monotonic() + within
    while (position := feed.activity_position(partition)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the Kafka feed has not assigned vendor-activity yet")
        await asyncio.sleep(0.05)
    return position
