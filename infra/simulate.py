"""Realistic marketplace traffic: the event generator (pure, seeded) and its Kafka producer.

The generator is deterministic for a seed: the same seed and settings give the same events (ids,
vendors, products, amounts, order) and, with `start_ms` set, the same timestamps; without it each
event is stamped with the wall clock when it is generated, as a live producer would.

What it models, per vendor: a catalog (ProductUpserted at start, occasional re-upserts that rename,
deactivate or reprice), opening stock and restocks/sales as InventoryAdjusted, orders of 1 to 4 lines from a
customer pool where about a third of orders come from earlier buyers, and cancellations of about 3 % of
orders shortly after they were placed. Each vendor trades in one currency. Optionally one vendor is a
whale with a fixed share of the traffic (`whale_share`), and a share of events is sent twice, as a
producer that retries does (`resend_rate`: the same event, same event_id, again a little later).

`infra.backfill.AgingGenerator` continues this generator into the past: months of history whose
records carry Kafka timestamps just after their occurred_at, then the same live traffic.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from schemas.events import (
    Event,
    InventoryAdjusted,
    OrderCancelled,
    OrderItem,
    OrderPlaced,
    ProductUpserted,
)

if TYPE_CHECKING:  # the generator alone loads no Kafka client; produce() imports it
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer.message_accumulator import BatchBuilder

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
    whale_share: float = 0.0
    """share of the traffic (after the catalog) that goes to vendor-001; 0: every vendor alike"""
    resend_rate: float = 0.0
    """share of events that are a recent event sent again (a producer's retry)"""


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
        self._recent: deque[tuple[str, Event]] = deque(maxlen=500)

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

    @property
    def timestamp_ms(self) -> int | None:
        """The Kafka timestamp for the record just generated; None: the producer's send time."""
        return None

    def records(self) -> Iterator[tuple[str, Event, int | None]]:
        """(topic kind, event, Kafka timestamp or None), endlessly."""
        for kind, event in self:
            yield kind, event, self.timestamp_ms

    def __iter__(self) -> Iterator[tuple[str, Event]]:
        for vendor in self.vendors:  # the catalog and opening stock first
            for product_id, category, _ in vendor.products:
                yield self._stamp("inventory", self._upsert(vendor, product_id, category))
                yield self._stamp(
                    "inventory", self._adjust(vendor, product_id, self.rng.randint(20, 200), "opening")
                )
        resend_rate = self.config.resend_rate
        while True:
            if resend_rate and self._recent and self.rng.random() < resend_rate:
                yield self._stamp(*self.rng.choice(self._recent))
                continue
            vendor = self._pick_vendor()
            roll = self.rng.random()
            record: tuple[str, Event]
            if roll < self.config.cancel_rate and vendor.recent_orders:
                record = "orders", self._cancel(vendor, self._cancel_target(vendor))
            elif roll < 0.80:
                record = "orders", self._order(vendor)
            elif roll < 0.97:
                product_id = self.rng.choice(vendor.products)[0]
                delta = self.rng.choice((-3, -2, -1, -1, 5, 10, 25))
                reason = "restock" if delta > 0 else "sold"
                record = "inventory", self._adjust(vendor, product_id, delta, reason)
            else:
                product_id, category, _ = self.rng.choice(vendor.products)
                record = "inventory", self._upsert(vendor, product_id, category)
            if resend_rate:
                self._recent.append(record)
            yield self._stamp(*record)

    def _pick_vendor(self) -> _Vendor:
        share = self.config.whale_share
        if not share or len(self.vendors) == 1:
            return self.rng.choice(self.vendors)
        return self.vendors[0] if self.rng.random() < share else self.rng.choice(self.vendors[1:])

    def _cancel_target(self, vendor: _Vendor) -> str:
        """The order a cancellation takes out: the oldest of the vendor's last 50 orders."""
        return vendor.recent_orders.popleft()

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
    history: int = 0
    """of them, history records (with their own Kafka timestamps, sent first)"""
    history_elapsed: float = 0.0
    """seconds until the last history record was acknowledged"""

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
    generator: EventGenerator | None = None,
    framing: str = "single-object",
    registry_url: str | None = None,
    stop: asyncio.Event | None = None,
) -> SimSummary:
    """Send generated events at `rate` per second (0: as fast as possible) until `count` events,
    `duration` seconds or `stop` is set, whichever comes first; with an idempotent producer and
    acks=all, keyed by vendor.
    `keep`, when given, receives every (topic, event) sent, in send order.

    `generator` (default: an `EventGenerator` of `config`) may start with history records, those with
    a Kafka timestamp of their own (`infra.backfill.AgingGenerator`): they are sent first, as fast as
    possible and with that timestamp, and are not counted in `count` or `duration`, which then measure
    the live traffic that follows (`count=0`: none).

    `framing` (contract §3): "single-object", "confluent" (through confluent-kafka's `AvroSerializer`
    and the registry at `registry_url`, as a Confluent producer does) or "mixed" (each event either
    way, drawn from the seed)."""
    from aiokafka import AIOKafkaProducer

    from schemas.codec import FastavroCodec
    from schemas.topics import partition_for

    if count is None and duration is None and stop is None:
        raise ValueError("give count, duration or stop")
    codec = FastavroCodec()
    topic_of = {"orders": orders_topic, "inventory": inventory_topic}
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
    confluent = await ConfluentSerializers.create(registry_url, codec) if framing != "single-object" else None
    draw = random.Random(config.seed ^ 0x5EED)

    async def encode(topic: str, event: Event) -> bytes:
        if confluent is not None and (framing == "confluent" or draw.random() < 0.5):
            return await confluent.encode(topic, event)
        return codec.encode(event)

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
    records = (generator or EventGenerator(config)).records()
    first_live: tuple[str, Event, int | None] | None = None

    def tally(topic: str, event: Event, value: bytes) -> None:
        summary.sent[type(event).__name__] += 1
        summary.per_topic[topic] += 1
        summary.bytes += len(value)
        if keep is not None:
            keep.append((topic, event))

    async def send(kind: str, event: Event, ts: int | None) -> None:
        topic = topic_of[kind]
        value = await encode(topic, event)
        pending.append(await producer.send(topic, value=value, key=event.vendor_id.encode(), timestamp_ms=ts))
        tally(topic, event, value)
        if len(pending) > 20000:
            await _acknowledged(pending)
            pending.clear()

    try:
        batches = BatchSender(producer, partition_for)
        for kind, event, ts in records:  # the history, if any: as fast as possible, its own timestamps
            if ts is None:
                first_live = kind, event, ts
                break
            topic = topic_of[kind]
            value = await encode(topic, event)
            await batches.add(topic, event.vendor_id.encode(), value, ts)
            tally(topic, event, value)
            summary.history += 1
            if on_progress and summary.history % 5000 == 0:
                summary.elapsed = time.monotonic() - started
                on_progress(summary)
        if summary.history:
            await batches.flush()
            summary.history_elapsed = time.monotonic() - started
        live_started = time.monotonic()
        while True:
            elapsed = time.monotonic() - live_started
            live = summary.total - summary.history
            if (duration is not None and elapsed >= duration) or (stop is not None and stop.is_set()):
                break
            # How many events should have gone by now; send the difference (a token bucket of one tick).
            due = (count or 1 << 62) if rate <= 0 else int((elapsed + tick) * rate)
            if count is not None:
                due = min(due, count)
            if live >= due:
                if count is not None and live >= count:
                    break
                await asyncio.sleep(tick)
                continue
            for _ in range(min(due - live, 5000)):
                if first_live is not None:
                    record, first_live = first_live, None
                else:
                    record = next(records)
                await send(*record)
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
        from schemas.confluent import close_client

        await close_client(self._client)


class BatchSender:
    """Records grouped into one producer batch per partition, each sent when full (aiokafka's
    `send_batch`): several times faster than a future per record, for history sent as fast as
    possible. Partitions are the default partitioner's (murmur2 of the key), so a vendor's records
    land where its live ones do. `flush()` sends what is left and waits until Kafka has it all."""

    def __init__(self, producer: AIOKafkaProducer, partition_for: Callable[[bytes, int], int]) -> None:
        self.producer = producer
        self.partition_for = partition_for
        self.open: dict[tuple[str, int], BatchBuilder] = {}
        self.partitions: dict[str, int] = {}
        self.pending: list[asyncio.Future[object]] = []

    async def add(self, topic: str, key: bytes, value: bytes, ts: int | None) -> None:
        """Add a record; `ts` None: the time it is added."""
        count = self.partitions.get(topic)
        if count is None:
            count = self.partitions[topic] = len(await self.producer.partitions_for(topic))
        tp = topic, self.partition_for(key, count)
        batch = self.open.get(tp)
        if batch is None:
            batch = self.open[tp] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=ts) is None:  # full: send it, start another
            await self._send(tp)
            batch = self.open[tp] = self.producer.create_batch()
            batch.append(key=key, value=value, timestamp=ts)
        if len(self.pending) > 200:
            await _acknowledged(self.pending)
            self.pending.clear()

    async def _send(self, tp: tuple[str, int]) -> None:
        batch = self.open.pop(tp)
        batch.close()
        self.pending.append(await self.producer.send_batch(batch, tp[0], partition=tp[1]))

    async def flush(self) -> None:
        for tp in list(self.open):
            await self._send(tp)
        await _acknowledged(self.pending)
        self.pending.clear()


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
