"""Admin test broadcasts: written to Kafka so that every API instance delivers them.

Topic `<prefix>api-broadcast`: one partition (one order for all instances), one hour retention,
created by the API when missing. Key: the target vendor_id (empty for all vendors). Value JSON:
`{"id", "message", "vendorId" (null = all), "sentBy" (the admin token's sub), "sentAt", "origin"
(instance id of the API that accepted the POST)}`. Every instance, the sender included, delivers it
from the topic (`api.kafka.Feed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from api.exceptions import BroadcastError
from api.protocol import iso_now
from api.settings import ApiSettings

BROADCAST_RETENTION_MS = 3_600_000


async def ensure_broadcast_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await create_broadcast_topic(admin, name)
    finally:
        await admin.close()


async def create_broadcast_topic(admin: AIOKafkaAdminClient, name: str) -> None:
    if name in set(await admin.list_topics()):
        return
    replicas = min(3, len((await admin.describe_cluster())["brokers"]))
    topic = NewTopic(name, 1, replicas, topic_configs={"retention.ms": str(BROADCAST_RETENTION_MS)})
    with contextlib.suppress(TopicAlreadyExistsError):  # another instance made it first
        await admin.create_topics([topic])


class Broadcaster:
    """Writes admin test broadcasts to the broadcast topic; the producer starts on first use."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def send(self, message: str, vendor_id: str | None, sent_by: str) -> dict[str, Any]:
        record = {
            "id": uuid.uuid4().hex,
            "message": message,
            "vendorId": vendor_id,
            "sentBy": sent_by,
            "sentAt": iso_now(),
            "origin": self.settings.instance_id,
        }
        try:
            producer = await self._started()
            meta = await asyncio.wait_for(
                producer.send_and_wait(
                    self.settings.broadcast_topic, orjson.dumps(record), key=(vendor_id or "").encode()
                ),
                timeout=10.0,
            )
        except (KafkaError, TimeoutError, OSError) as exc:
            await self.stop()
            raise BroadcastError(f"could not write the broadcast to Kafka: {type(exc).__name__}") from exc
        return {
            "broadcastId": record["id"],
            "topic": meta.topic,
            "partition": meta.partition,
            "offset": meta.offset,
        }

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                await ensure_broadcast_topic(self.settings.bootstrap, self.settings.broadcast_topic)
                producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap, acks="all")
                await producer.start()
                self._producer = producer
            return self._producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
