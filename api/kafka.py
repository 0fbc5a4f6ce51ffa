"""The Kafka feed of one API instance: snapshots, vendor activity (`new_order`, `stock_alert`) and
broadcasts into the hub.

The feed uses no consumer group (every instance of a shard must see every record of it): it assigns the
partitions of its shard (`api.shard`; all of them by default) of
- `vendor-metrics` from the beginning, to rebuild the latest snapshot per vendor from the compacted
  topic (ready once it reached the end offsets taken at start), then follows it;
- `vendor-activity` and the broadcast topic from their end (only what happens from now on); a client
  that reconnects gets what it missed from `api.resume`, which reads `vendor-activity` up to `positions`.
On any error it stops the consumer and starts again after a backoff, resuming from the positions it
had, so nothing already delivered is delivered twice and nothing is skipped.

The broadcast topic and its record layout are described in `api.broadcast`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from api.broadcast import create_broadcast_topic
from api.hub import Hub
from api.protocol import Out
from api.settings import ApiSettings
from api.tasks import cancel_and_wait
from api.telemetry import Telemetry
from schemas.topics import Topics, partition_for

log = logging.getLogger("vendorpulse.api.kafka")
MAX_BACKOFF = 5.0


class SnapshotHead(msgspec.Struct):
    """What the hub needs of a snapshot record; the JSON itself is passed on as read. Decoding only
    these fields (msgspec skips the others while checking the whole text is valid JSON) costs a
    fourteenth of parsing the ~2 KB snapshot into dicts, which was two thirds of the API's CPU per
    ingested snapshot (bench.ingest, py-spy)."""

    vendorId: str  # noqa: N815 - contract §5 field names
    version: int
    asOf: str = ""  # noqa: N815


_read_head = msgspec.json.Decoder(SnapshotHead).decode


async def discover(bootstrap: str, broadcast: str, names: list[str]) -> dict[str, list[int]]:
    """Create the broadcast topic if missing; the partitions of those of `names` that exist (complete)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await create_broadcast_topic(admin, broadcast)
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {
        d["topic"]: sorted(p["partition"] for p in d["partitions"])
        for d in described
        if d["error_code"] == 0 and d["partitions"] and all(p["leader"] >= 0 for p in d["partitions"])
    }


class Feed:
    """Consumes the snapshot, activity and broadcast topics into the hub; reconnects by itself."""

    def __init__(self, settings: ApiSettings, hub: Hub, telemetry: Telemetry) -> None:
        self.settings = settings
        self.hub = hub
        self.telemetry = telemetry
        topics = Topics.for_prefix(settings.topic_prefix)
        self.metrics_topic, self.activity_topic = topics.metrics, topics.activity
        self.broadcast_topic = settings.broadcast_topic
        self.positions: dict[TopicPartition, int] = {}  # next offset to read; all before it delivered
        self.activity_partitions = 0
        self.metrics_partitions: int | None = None
        self.shard = settings.shard
        self.assigned = False
        self.kafka_ok_at: float | None = None
        self.lag: dict[str, int] = {}
        self.waiting_for: list[str] = []

    @property
    def kafka_reachable(self) -> bool:
        """Kafka answered within the last max(10 s, 3 lag intervals)."""
        return self.kafka_ok_at is not None and time.monotonic() - self.kafka_ok_at < max(
            10.0, 3 * self.settings.lag_interval_seconds
        )

    @property
    def ready(self) -> bool:
        """Kafka answered recently, partitions are assigned and the snapshots are rebuilt."""
        return self.assigned and self.hub.caught_up and self.kafka_reachable

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any Kafka or network failure: start over, keep positions
                log.warning(
                    "kafka feed stopped (%s: %s); reconnecting in %.1f s", type(exc).__name__, exc, backoff
                )
            if self.assigned:
                backoff = 0.2
            self.assigned = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _session(self) -> None:
        bootstrap = self.settings.bootstrap
        parts = await self._partitions(bootstrap)
        self.activity_partitions = len(parts[self.activity_topic])
        self.metrics_partitions = len(parts[self.metrics_topic])
        metrics_parts, activity_parts = self._shard_partitions(parts)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"vendorpulse-api-{self.settings.instance_id}",
            request_timeout_ms=15000,
        )
        lag_task: asyncio.Task[None] | None = None
        try:
            await consumer.start()
            snapshot_tps = [TopicPartition(self.metrics_topic, p) for p in metrics_parts]
            live_tps = [TopicPartition(self.activity_topic, p) for p in activity_parts] + [
                TopicPartition(self.broadcast_topic, p) for p in parts[self.broadcast_topic]
            ]
            await self._assign(consumer, snapshot_tps, live_tps)
            targets = await consumer.end_offsets(snapshot_tps)
            self.assigned, self.kafka_ok_at = True, time.monotonic()
            lag_task = asyncio.create_task(self._watch_lag(consumer, snapshot_tps + live_tps))
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                self._apply(batches)
                if not self.hub.caught_up and await self._reached(consumer, targets):
                    log.info("snapshots rebuilt: %d vendors", len(self.hub.snapshots))
                    self.hub.mark_caught_up()
        finally:
            await cancel_and_wait(lag_task)
            await consumer.stop()

    def _shard_partitions(self, parts: dict[str, list[int]]) -> tuple[list[int], list[int]]:
        """This shard's partitions of vendor-metrics and vendor-activity. A vendor's records are on the
        same partition number of both when they have as many partitions (the worker creates them so);
        otherwise every vendor-activity partition is read."""
        metrics, activity = parts[self.metrics_topic], parts[self.activity_topic]
        if self.shard.everything:
            return metrics, activity
        if len(activity) != len(metrics):
            log.warning(
                "%s has %d partitions and %s %d: shard %s reads all of %s",
                self.metrics_topic, len(metrics), self.activity_topic, len(activity), self.shard,
                self.activity_topic,
            )  # fmt: skip
            return self.shard.partitions(metrics), activity
        return self.shard.partitions(metrics), self.shard.partitions(activity)

    def owns(self, vendor_id: str) -> bool:
        """Whether this node serves the vendor (its shard; every vendor unless `VENDORPULSE_API_SHARD`)."""
        return self.shard.owns(vendor_id, self.metrics_partitions)

    def owner(self, vendor_id: str) -> str:
        """The shard serving the vendor, as `i/N`."""
        return f"{self.shard.of(vendor_id, self.metrics_partitions or 1)}/{self.shard.count}"

    async def _partitions(self, bootstrap: str) -> dict[str, list[int]]:
        """The partitions to read; waits (not ready) while the worker has not created the topics yet."""
        names = [self.metrics_topic, self.activity_topic, self.broadcast_topic]
        while True:
            parts = await discover(bootstrap, self.broadcast_topic, names)
            self.waiting_for = [n for n in names if n not in parts]
            if not self.waiting_for:
                return parts
            log.info("waiting for topics %s (does `vendorpulse worker` run?)", self.waiting_for)
            await asyncio.sleep(0.5)

    async def _assign(
        self, consumer: AIOKafkaConsumer, snapshot_tps: list[TopicPartition], live_tps: list[TopicPartition]
    ) -> None:
        consumer.assign(snapshot_tps + live_tps)
        fresh_snapshot = [tp for tp in snapshot_tps if tp not in self.positions]
        fresh_live = [tp for tp in live_tps if tp not in self.positions]
        for tp in snapshot_tps + live_tps:
            if tp in self.positions:
                consumer.seek(tp, self.positions[tp])
        if fresh_snapshot:
            await consumer.seek_to_beginning(*fresh_snapshot)
        if fresh_live:
            await consumer.seek_to_end(*fresh_live)
        for tp in fresh_live:  # resolve "the end" now, so records produced from here on are delivered
            self.positions[tp] = await consumer.position(tp)

    async def _reached(self, consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]) -> bool:
        for tp, end in targets.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def _apply(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        for tp, records in batches.items():
            if not records:
                continue
            self.positions[tp] = records[-1].offset + 1
            self.telemetry.records.labels(tp.topic).inc(len(records))
            if tp.topic == self.metrics_topic:
                newest = {r.key: r for r in records}  # coalesce: only the last snapshot per vendor counts
                for record in newest.values():
                    self._snapshot(record)
            elif tp.topic == self.activity_topic:
                for record in records:
                    self._activity(record)
            else:
                for record in records:
                    self._broadcast(record)

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> dict[str, Any] | None:
        try:
            value = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            self.telemetry.bad_records.labels(record.topic).inc()
            log.warning("skipping unreadable record %s[%d]@%d", record.topic, record.partition, record.offset)
            return None
        return value

    def _snapshot(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:
            if record.key is not None:
                self.hub.forget(record.key.decode(errors="replace"))
            return
        try:
            head = _read_head(record.value)
        except msgspec.DecodeError as exc:
            self.telemetry.bad_records.labels(record.topic).inc()
            log.warning(
                "skipping unreadable snapshot %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
            return
        self.hub.publish(head.vendorId, head.version, head.asOf, record.value)

    def _activity(self, record: ConsumerRecord[bytes, bytes]) -> None:
        message = self.activity_message(record)
        if message is not None:
            kind, data = message
            self.hub.publish_event(data["vendorId"], kind, data, (record.partition, record.offset))

    def activity_message(self, record: ConsumerRecord[bytes, bytes]) -> tuple[Out, dict[str, Any]] | None:
        """The message a vendor-activity record becomes, with its `cursor`: a record with
        `"type": "stock_alert"` (contract §6) is a `stock_alert` (the type goes to the envelope), any
        other a `new_order`. Both are one feed: one cursor, one resume."""
        value = self._decode(record)
        if value is None or not isinstance(value.get("vendorId"), str):
            return None
        kind = Out.STOCK_ALERT if value.pop("type", None) == Out.STOCK_ALERT.value else Out.NEW_ORDER
        value["cursor"] = f"{record.partition}:{record.offset}"
        return kind, value

    def activity_partition(self, vendor_id: str) -> int | None:
        """The vendor's vendor-activity partition (records are keyed by vendor_id, default
        partitioner), or None until the feed knows the topic."""
        if not self.activity_partitions:
            return None
        return partition_for(vendor_id.encode(), self.activity_partitions)

    def activity_position(self, partition: int) -> int | None:
        """The next offset the feed will deliver from that vendor-activity partition: every record
        before it has been delivered (or predates the feed), every one from it on will be."""
        return self.positions.get(TopicPartition(self.activity_topic, partition))

    def _broadcast(self, record: ConsumerRecord[bytes, bytes]) -> None:
        value = self._decode(record)
        if value is None:
            return
        vendor = value.get("vendorId")
        data = {
            "message": value.get("message"),
            "broadcastId": value.get("id"),
            "vendorId": vendor,
            "sentAt": value.get("sentAt"),
            "origin": value.get("origin"),
        }
        self.hub.broadcast(data, vendor if isinstance(vendor, str) and vendor else None)

    async def _watch_lag(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        interval = self.settings.lag_interval_seconds
        while True:
            try:
                ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout=max(5.0, 2 * interval))
            except (TimeoutError, KafkaError) as exc:
                log.warning("kafka not answering offset requests: %s", type(exc).__name__)
            else:
                self.kafka_ok_at = time.monotonic()
                lag: dict[str, int] = {}
                for tp, end in ends.items():
                    lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - await consumer.position(tp))
                self.lag = lag
                for topic, value in lag.items():
                    self.telemetry.lag.labels(topic).set(value)
            await asyncio.sleep(interval)
