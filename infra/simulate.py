"""Realistic marketplace traffic: the event generator (pure, seeded) and its Kafka producer.

The generator is deterministic for a seed: the same seed and settings give the same events (ids,
vendors, products, amounts, order) and, with `start_ms` set, the same timestamps; without it each
event is stamped with the wall clock when it is generated, as a live producer would.

What it models, per vendor: a catalog (ProductUpserted at start, occasional re-upserts that rename,
deactivate or reprice), opening stock and restocks/sales as InventoryAdjusted, orders of 1 to 4 lines from a
customer pool where about a third of orders come from earlier buyers, and cancellations of about 3 % of
orders shortly after they were placed. Each vendor trades in one currency.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from schemas.events import (
    Event,
    InventoryAdjusted,
    OrderCancelled,
    OrderItem,
    OrderPlaced,
    ProductUpserted,
)

CATEGORIES = ("Electronics", "Home", "Books", "Fashion", "Toys", "Beauty", "Sports", "Grocery")
DELIVERY_TIMEOUT_MS = 120_000
CURRENCIES = ("EUR", "USD", "GBP", "SEK")
ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Smart", "Ultra", "Mini", "Pro")
NOUNS = ("Lamp", "Kettle", "Novel", "Sneaker", "Puzzle", "Serum", "Racket", "Coffee", "Headset", "Mug")


@dataclass(frozen=True)
class SimConfig:
    vendors: int = 5
    products: int = 40
    """products per vendor"""
    customers: int = 500
    """customers per vendor"""
    seed: int = 7
    cancel_rate: float = 0.03
    repeat_rate: float = 0.35
    start_ms: int | None = None
    """first event's occurred_at; None stamps events with the wall clock"""
    step_ms: int = 10
    """time between two events when start_ms is set"""


@dataclass
class _Vendor:
    vendor_id: str
    currency: str
    products: list[tuple[str, str, int]]  # product_id, category, unit_price
    buyers: list[str] = field(default_factory=list)
    recent_orders: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    order_seq: int = 0


class EventGenerator:
    """An endless, seeded stream of (topic kind, event); topic kind is "orders" or "inventory"."""

    def __init__(self, config: SimConfig, clock: Callable[[], int] | None = None):
        self.config = config
        self.rng = random.Random(config.seed)
        self._seq = 0
        self._clock = clock or (lambda: int(time.time() * 1000))
        self.vendors = [self._make_vendor(i) for i in range(1, config.vendors + 1)]

    def _make_vendor(self, i: int) -> _Vendor:
        rng = self.rng
        products = []
        for p in range(1, self.config.products + 1):
            price = int(rng.lognormvariate(7.5, 0.8))  # minor units: median ~18.00, long tail
            products.append((f"v{i:03d}-p{p:04d}", rng.choice(CATEGORIES), max(price, 50)))
        return _Vendor(f"vendor-{i:03d}", CURRENCIES[(i - 1) % len(CURRENCIES)], products)

    def _now(self) -> int:
        if self.config.start_ms is None:
            return self._clock()
        return self.config.start_ms + self._seq * self.config.step_ms

    def _event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def __iter__(self) -> Iterator[tuple[str, Event]]:
        for vendor in self.vendors:  # the catalog and opening stock first
            for product_id, category, _ in vendor.products:
                yield self._stamp("inventory", self._upsert(vendor, product_id, category))
                yield self._stamp(
                    "inventory", self._adjust(vendor, product_id, self.rng.randint(20, 200), "opening")
                )
        while True:
            vendor = self.rng.choice(self.vendors)
            roll = self.rng.random()
            if roll < self.config.cancel_rate and vendor.recent_orders:
                order_id = vendor.recent_orders.popleft()
                yield self._stamp("orders", self._cancel(vendor, order_id))
            elif roll < 0.80:
                yield self._stamp("orders", self._order(vendor))
            elif roll < 0.97:
                product_id = self.rng.choice(vendor.products)[0]
                delta = self.rng.choice((-3, -2, -1, -1, 5, 10, 25))
                yield self._stamp(
                    "inventory", self._adjust(vendor, product_id, delta, "restock" if delta > 0 else "sold")
                )
            else:
                product_id, category, _ = self.rng.choice(vendor.products)
                yield self._stamp("inventory", self._upsert(vendor, product_id, category))

    def _stamp(self, kind: str, event: Event) -> tuple[str, Event]:
        self._seq += 1
        return kind, event

    def _upsert(self, vendor: _Vendor, product_id: str, category: str) -> ProductUpserted:
        name = f"{self.rng.choice(ADJECTIVES)} {self.rng.choice(NOUNS)} {product_id[-4:]}"
        active = self.rng.random() > 0.08
        return ProductUpserted(
            self._event_id(),
            self._now(),
            vendor.vendor_id,
            product_id,
            name,
            category,
            active,
            self.rng.choice((5, 10, 15)),
        )

    def _adjust(self, vendor: _Vendor, product_id: str, delta: int, reason: str) -> InventoryAdjusted:
        return InventoryAdjusted(self._event_id(), self._now(), vendor.vendor_id, product_id, delta, reason)

    def _order(self, vendor: _Vendor) -> OrderPlaced:
        rng = self.rng
        if vendor.buyers and rng.random() < self.config.repeat_rate:
            customer = rng.choice(vendor.buyers)
        else:
            customer = f"{vendor.vendor_id}-c{rng.randrange(self.config.customers):05d}"
            vendor.buyers.append(customer)
        lines = rng.sample(vendor.products, k=min(len(vendor.products), rng.choice((1, 1, 2, 2, 3, 4))))
        items = tuple(
            OrderItem(pid, category, rng.choice((1, 1, 1, 2, 3)), price) for pid, category, price in lines
        )
        vendor.order_seq += 1
        order_id = f"{vendor.vendor_id}-o{vendor.order_seq:07d}"
        vendor.recent_orders.append(order_id)
        return OrderPlaced(
            self._event_id(),
            self._now(),
            vendor.vendor_id,
            order_id,
            customer,
            vendor.currency,
            sum(i.revenue for i in items),
            items,
        )

    def _cancel(self, vendor: _Vendor, order_id: str) -> OrderCancelled:
        reason = self.rng.choice(("customer request", "payment failed", "out of stock", None))
        return OrderCancelled(self._event_id(), self._now(), vendor.vendor_id, order_id, reason)


@dataclass
class SimSummary:
    sent: Counter[str] = field(default_factory=Counter)
    """events per type name"""
    per_topic: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    elapsed: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def rate(self) -> float:
        return self.total / self.elapsed if self.elapsed else 0.0


async def produce(
    bootstrap: str,
    orders_topic: str,
    inventory_topic: str,
    config: SimConfig,
    *,
    rate: float = 200.0,
    count: int | None = None,
    duration: float | None = None,
    on_progress: Callable[[SimSummary], None] | None = None,
    keep: list[tuple[str, Event]] | None = None,
    framing: str = "single-object",
    registry_url: str | None = None,
) -> SimSummary:
    """Send generated events at `rate` per second (0: as fast as possible) until `count` events or
    `duration` seconds, whichever comes first; with an idempotent producer and acks=all, keyed by vendor.
    `keep`, when given, receives every (topic, event) sent, in send order.

    `framing` (contract §3): "single-object", "confluent" (through confluent-kafka's `AvroSerializer`
    and the registry at `registry_url`, as a Confluent producer does) or "mixed" (each event either
    way, drawn from the seed)."""
    from aiokafka import AIOKafkaProducer

    from schemas.codec import FastavroCodec

    if count is None and duration is None:
        raise ValueError("give count or duration, or both")
    codec = FastavroCodec()
    topic_of = {"orders": orders_topic, "inventory": inventory_topic}
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
    confluent = await ConfluentSerializers.create(registry_url, codec) if framing != "single-object" else None
    draw = random.Random(config.seed ^ 0x5EED)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        # aiokafka fails a batch still waiting after request_timeout_ms once its partition has no
        # leader, as every partition has while a cluster comes back from a total outage; 120 s is
        # the Java producer's delivery.timeout.ms, so an outage of up to about 1.5 min is bridged.
        request_timeout_ms=DELIVERY_TIMEOUT_MS,
    )
    await producer.start()
    summary = SimSummary()
    started = time.monotonic()
    tick = 0.05
    pending: list[asyncio.Future[object]] = []
    try:
        events = iter(EventGenerator(config))
        while True:
            elapsed = time.monotonic() - started
            if duration is not None and elapsed >= duration:
                break
            # How many events should have gone by now; send the difference (a token bucket of one tick).
            due = (count or 1 << 62) if rate <= 0 else int((elapsed + tick) * rate)
            if count is not None:
                due = min(due, count)
            if summary.total >= due:
                if count is not None and summary.total >= count:
                    break
                await asyncio.sleep(tick)
                continue
            for _ in range(min(due - summary.total, 5000)):
                kind, event = next(events)
                topic = topic_of[kind]
                if confluent is not None and (framing == "confluent" or draw.random() < 0.5):
                    value = await confluent.encode(topic, event)
                else:
                    value = codec.encode(event)
                pending.append(await producer.send(topic, value=value, key=event.vendor_id.encode()))
                summary.sent[type(event).__name__] += 1
                summary.per_topic[topic] += 1
                summary.bytes += len(value)
                if keep is not None:
                    keep.append((topic, event))
            if len(pending) > 20000:
                await _acknowledged(pending)
                pending.clear()
            summary.elapsed = time.monotonic() - started
            if on_progress:
                on_progress(summary)
        await producer.flush()
        await _acknowledged(pending)  # every send acknowledged by all in-sync replicas
    finally:
        await producer.stop()
        if confluent is not None:
            await confluent.aclose()
    summary.elapsed = time.monotonic() - started
    return summary


FRAMINGS = ("single-object", "confluent", "mixed")


class ConfluentSerializers:
    """confluent-kafka's `AsyncAvroSerializer` per event type, with the published reader version as its
    schema and the contract's TopicRecordNameStrategy subjects; it registers a schema the subject lacks
    (the registry checks compatibility), then caches the id, as any Confluent producer does."""

    def __init__(self, client: Any, serializers: dict[type[Event], Any]) -> None:
        self._client, self._serializers = client, serializers

    @classmethod
    async def create(cls, url: str | None, codec: Any) -> ConfluentSerializers:
        from confluent_kafka.schema_registry import (
            AsyncSchemaRegistryClient,
            topic_record_subject_name_strategy,
        )
        from confluent_kafka.schema_registry._async.avro import AsyncAvroSerializer

        from schemas.events import EVENT_TYPES
        from schemas.registration import schema_text

        if not url:
            raise ValueError(
                "the Confluent framing needs a schema registry: set VENDORPULSE_SCHEMA_REGISTRY_URL"
            )
        client = AsyncSchemaRegistryClient({"url": url})
        conf = {"subject.name.strategy": topic_record_subject_name_strategy}
        serializers = {
            event_type: await AsyncAvroSerializer(client, schema_text(codec.schemas.latest(name)), conf=conf)
            for name, event_type in EVENT_TYPES.items()
        }
        return cls(client, serializers)

    async def encode(self, topic: str, event: Event) -> bytes:
        from confluent_kafka.serialization import MessageField, SerializationContext

        value = await self._serializers[type(event)](
            event.to_record(), SerializationContext(topic, MessageField.VALUE)
        )
        assert value is not None
        return bytes(value)

    async def aclose(self) -> None:
        await self._client.aclose()


async def _acknowledged(pending: list[asyncio.Future[object]]) -> None:
    """Wait for every send; raise DeliveryError saying how many Kafka did not acknowledge, and why."""
    from infra.exceptions import DeliveryError

    results = await asyncio.gather(*pending, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise DeliveryError(
            f"Kafka did not acknowledge {len(failed)} of {len(results)} events "
            f"({type(failed[0]).__name__}: {failed[0]}); they may be missing from the topics. "
            "Is every broker back? Sending the same events again is harmless (duplicate event_ids are ignored)."
        ) from failed[0]
