"""Confluent framing against a real schema registry and a real Kafka (contract §3).

The registry is the pinned local one (tests/conftest.py `schema_registry`, `make_registry`); these tests
speak only the Confluent REST API to it, and produce through confluent-kafka's own `AvroSerializer`.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import AsyncSchemaRegistryClient, Schema
from confluent_kafka.schema_registry import topic_record_subject_name_strategy as by_topic_and_record
from confluent_kafka.schema_registry._async.avro import AsyncAvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.settings import ApiSettings
from infra.cli import app as cli
from infra.registry import LocalRegistry
from infra.simulate import EventGenerator, SimConfig, produce
from processors.replay import run_replay
from processors.topics_admin import ensure_topics
from schemas.codec import FastavroCodec, SchemaSet
from schemas.confluent import SchemaResolver
from schemas.events import Event, OrderPlaced
from schemas.exceptions import RegistryUnavailable, UnknownSchemaId
from schemas.registration import register_published
from schemas.topics import Topics
from tests.conftest import make_topics
from tests.fakes import kafka_settings
from tests.integration.conftest import WorkerProcess, latest_snapshots, read_topic
from tests.integration.test_worker import DAY, assert_converges, send
from tests.polling import eventually

ORDER = "vendorpulse.events.OrderPlaced"
TOPIC_RECORDS = {
    "orders": ["OrderPlaced", "OrderCancelled"],
    "inventory": ["ProductUpserted", "InventoryAdjusted"],
}


def subjects_of(topics: Topics) -> dict[str, list[str]]:
    return {topics.orders: TOPIC_RECORDS["orders"], topics.inventory: TOPIC_RECORDS["inventory"]}


def millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def evolved_order_schema() -> dict[str, Any]:
    """OrderPlaced v2 as a newer producer writes it: a new field with a default (BACKWARD compatible)."""
    schema = copy.deepcopy(SchemaSet.load().latest(ORDER).schema)
    schema["fields"].append({"name": "channel", "type": "string", "default": "web"})
    return schema


def prepared_codec(bootstrap: str, topics: Topics, url: str) -> FastavroCodec:
    """A codec that knows every schema id on the input topics, as the worker's does once it read them."""
    codec = FastavroCodec()
    values: list[bytes | None] = []
    deadline = time.monotonic() + 60
    while not values and time.monotonic() < deadline:  # a first fetch may come back empty
        values = [
            v for t in (topics.orders, topics.inventory) for _, v, _ in asyncio.run(read_topic(bootstrap, t))
        ]

    async def resolve() -> None:
        resolver = SchemaResolver(codec, url)
        await resolver.prepare(values)
        await resolver.aclose()

    asyncio.run(resolve())
    return codec


def framings(bootstrap: str, topic: str, expected: int) -> dict[str, int]:
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(values) < expected and time.monotonic() < deadline:  # a first fetch may come back empty
        values = [v or b"" for _, v, _ in asyncio.run(read_topic(bootstrap, topic))]
    return {
        "confluent": sum(v[:1] == b"\x00" for v in values),
        "single-object": sum(v[:2] == b"\xc3\x01" for v in values),
    }


def dead_letters(bootstrap: str, topics: Topics) -> list[tuple[bytes | None, dict[str, bytes]]]:
    return [
        (value, dict(headers))
        for topic in (topics.orders_dlq, topics.inventory_dlq)
        for _, value, headers in asyncio.run(read_topic(bootstrap, topic, idle_ms=800))
    ]


def test_mixed_framings_fold_like_single_object_and_replay_equals_live(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], schema_registry: str
) -> None:
    now = int(time.time() * 1000)
    config = SimConfig(
        vendors=4, products=10, customers=60, seed=11, start_ms=now - 40 * DAY, step_ms=40 * DAY // 2500
    )
    sent: list[tuple[str, Event]] = []
    asyncio.run(
        produce(kafka_bootstrap, topics.orders, topics.inventory, config, rate=0, count=2500, keep=sent,
                framing="mixed", registry_url=schema_registry)
    )  # fmt: skip
    for topic in (topics.orders, topics.inventory):  # both framings on each topic, from the same producer
        counts = framings(kafka_bootstrap, topic, sum(t == topic for t, _ in sent))
        assert counts["confluent"] > 300, counts
        assert counts["single-object"] > 300, counts
    worker = make_worker(schema_registry_url=schema_registry).start()
    assert_converges(
        kafka_bootstrap, topics, sent, worker, codec=prepared_codec(kafka_bootstrap, topics, schema_registry)
    )
    assert dead_letters(kafka_bootstrap, topics) == []
    live = latest_snapshots(kafka_bootstrap, topics.metrics)

    # The same events in single-object framing only, on topics of their own: the same snapshots.
    single = make_topics()
    asyncio.run(ensure_topics(kafka_bootstrap, single, partitions=6))
    codec = FastavroCodec()
    twin = {topics.orders: single.orders, topics.inventory: single.inventory}
    asyncio.run(
        send(kafka_bootstrap, [(twin[topic], e.vendor_id.encode(), codec.encode(e)) for topic, e in sent])
    )
    for vendor, snap in sorted(live.items()):
        as_of = millis(str(snap["asOf"]))
        plain = run_replay(kafka_settings(kafka_bootstrap, single), vendors=[vendor], as_of_ms=as_of)
        assert plain.snapshots == [snap], vendor
        # replay of the mixed topics, resolving ids through the registry, equals live as well
        mixed = run_replay(kafka_settings(kafka_bootstrap, topics, schema_registry_url=schema_registry), vendors=[vendor], as_of_ms=as_of)  # fmt: skip
        assert mixed.snapshots == [snap], vendor
        assert not mixed.counts.refused
    without = run_replay(kafka_settings(kafka_bootstrap, topics))  # no registry: refused, counted
    assert set(without.counts.refused) == {"bad_marker"}


def test_evolved_writers_are_read_unknown_and_unreadable_ids_go_to_the_dlq(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], schema_registry: str
) -> None:
    steps = asyncio.run(register_published(schema_registry, subjects_of(topics)))
    assert [s.outcome for s in steps] == ["registered"] * 4
    now = int(time.time() * 1000)
    config = SimConfig(
        vendors=3, products=8, customers=40, seed=23, start_ms=now - 20 * DAY, step_ms=20 * DAY // 800
    )
    log = [(topics.orders if kind == "orders" else topics.inventory, e) for kind, e in islice(EventGenerator(config), 800)]  # fmt: skip
    codec = FastavroCodec()
    client = AsyncSchemaRegistryClient({"url": schema_registry})
    subject = f"{topics.orders}-{ORDER}"

    async def frames() -> tuple[list[bytes], list[bytes]]:
        # v2 becomes the subject's latest version; the registry checks it is BACKWARD compatible
        v2_id = await client.register_schema(subject, Schema(json.dumps(evolved_order_schema()), "AVRO"))
        v2 = await AsyncAvroSerializer(client, json.dumps(evolved_order_schema()), conf={"subject.name.strategy": by_topic_and_record, "auto.register.schemas": False})  # fmt: skip
        context = SerializationContext(topics.orders, MessageField.VALUE)
        evolved = [await v2({**e.to_record(), "channel": "app"}, context) for _, e in log if isinstance(e, OrderPlaced)][::2]  # fmt: skip
        assert all(f[1:5] == v2_id.to_bytes(4, "big") for f in evolved)
        # a foreign record, and our record name with an unreadable type, each under a subject of their own
        foreign = {"type": "record", "name": "Order", "namespace": "com.acme", "fields": [{"name": "id", "type": "string"}]}  # fmt: skip
        broken = copy.deepcopy(SchemaSet.load().latest(ORDER).schema)
        broken["fields"] = [
            f if f["name"] != "total" else {"name": "total", "type": "string"} for f in broken["fields"]
        ]
        foreign_id = await client.register_schema(
            f"{topics.orders}-acme-value", Schema(json.dumps(foreign), "AVRO")
        )
        broken_id = await client.register_schema(f"{topics.orders}-elsewhere-{ORDER}", Schema(json.dumps(broken), "AVRO"))  # fmt: skip
        body = codec.encode(log[-1][1])[10:]
        bad = [b"\x00" + i.to_bytes(4, "big") + body for i in (foreign_id, broken_id, 2_000_000_000)]
        await client.aclose()
        return [e or b"" for e in evolved], bad

    evolved, bad = asyncio.run(frames())
    messages = [(t, e.vendor_id.encode(), codec.encode(e)) for t, e in log if not isinstance(e, OrderPlaced)]
    orders = [e for _, e in log if isinstance(e, OrderPlaced)]
    messages += [(topics.orders, e.vendor_id.encode(), v) for e, v in zip(orders[::2], evolved, strict=True)]
    messages += [(topics.orders, e.vendor_id.encode(), codec.encode(e)) for e in orders[1::2]]
    messages += [(topics.orders, b"vendor-001", v) for v in bad]
    asyncio.run(send(kafka_bootstrap, messages))
    worker = make_worker(schema_registry_url=schema_registry).start()
    assert_converges(kafka_bootstrap, topics, log, worker, codec=prepared_codec(kafka_bootstrap, topics, schema_registry))  # fmt: skip
    dead = dead_letters(kafka_bootstrap, topics)
    assert sorted(value for value, _ in dead) == sorted(bad)  # the original bytes, unchanged
    reasons = {value: (h["vp.error.code"].decode(), h["vp.error.message"].decode()) for value, h in dead}
    assert reasons[bad[0]][0] == "unreadable_schema"
    assert "com.acme.Order, not a vendorpulse event" in reasons[bad[0]][1]
    assert reasons[bad[1]][0] == "unreadable_schema"
    assert "OrderPlaced v1 cannot read" in reasons[bad[1]][1]
    assert "field total" in reasons[bad[1]][1]
    assert reasons[bad[2]][0] == "unknown_schema_id"
    assert "no schema with id 2000000000" in reasons[bad[2]][1]
    assert worker.alive()


@dataclasses.dataclass
class OutageFigures:
    sent_before: int = 0
    sent_during: int = 0
    new_writer_during: int = 0
    sent_after: int = 0
    outage_s: float = 0.0
    caught_up_after_s: float = 0.0

    def __str__(self) -> str:
        return (
            f"registry stopped {self.outage_s:.1f} s; events sent before/during/after: {self.sent_before}/"
            f"{self.sent_during} (of them {self.new_writer_during} with the new writer)/{self.sent_after}; "
            f"exact {self.caught_up_after_s:.1f} s after the registry answered again"
        )


def test_a_registry_stopped_for_20s_under_load_loses_nothing_and_sends_nothing_to_the_dlq(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess],
    make_registry: Callable[[], LocalRegistry],
) -> None:  # fmt: skip
    registry = make_registry()
    url = registry.url
    asyncio.run(register_published(url, subjects_of(topics)))
    subject = f"{topics.orders}-{ORDER}"
    v2_schema = evolved_order_schema()
    figures = OutageFigures()
    sent: list[tuple[str, Event]] = []
    worker = make_worker(schema_registry_url=url).start()
    warm_up = SimConfig(vendors=4, products=10, customers=60, seed=31)  # the catalogs, in both framings
    asyncio.run(produce(kafka_bootstrap, topics.orders, topics.inventory, warm_up, rate=0, count=120, keep=sent,
                        framing="mixed", registry_url=url))  # fmt: skip
    # The worker has folded (and so resolved the published ids) before the load and the outage begin.
    eventually(
        lambda: bool(latest_snapshots(kafka_bootstrap, topics.metrics)),
        "first snapshot",
        90,
        detail=worker.output,
    )
    load = SimConfig(vendors=4, products=10, customers=60, seed=33)
    producing = threading.Thread(
        target=lambda: asyncio.run(produce(kafka_bootstrap, topics.orders, topics.inventory, load, rate=120,
                                           duration=45, keep=sent, framing="mixed", registry_url=url))
    )  # fmt: skip
    producing.start()
    time.sleep(8)
    # A producer with a new writer version, registered (and cached by its serializer) before the outage:
    # its id is new to the worker, which must wait for the registry to read it.
    newer: list[Event] = [dataclasses.replace(e, order_id=f"v2-{e.order_id}") for _, e in islice(EventGenerator(SimConfig(vendors=4, products=10, customers=60, seed=32)), 4000) if isinstance(e, OrderPlaced)][:300]  # fmt: skip

    async def send_newer(outage_s: float, during: list[Event]) -> float:
        client = AsyncSchemaRegistryClient({"url": url})
        await client.register_schema(subject, Schema(json.dumps(v2_schema), "AVRO"))
        v2 = await AsyncAvroSerializer(client, json.dumps(v2_schema), conf={"subject.name.strategy": by_topic_and_record, "auto.register.schemas": False})  # fmt: skip
        context = SerializationContext(topics.orders, MessageField.VALUE)
        await v2(newer[0].to_record() | {"channel": "app"}, context)  # looked up and cached now
        registry.signal(signal.SIGSTOP)  # the registry stops answering
        stopped = time.monotonic()
        stop_at, figures.sent_before = stopped + outage_s, len(sent)
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for e in newer:
                if time.monotonic() > stop_at:
                    break
                value = await v2(e.to_record() | {"channel": "app"}, context)
                await producer.send_and_wait(topics.orders, value, key=e.vendor_id.encode())
                during.append(e)
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()
            await client.aclose()
        return stopped

    during_v2: list[Event] = []
    stopped = asyncio.run(send_newer(20.0, during_v2))
    time.sleep(max(0.0, stopped + 20.0 - time.monotonic()))
    assert "does not answer" in worker.output(), worker.output()
    registry.signal(signal.SIGCONT)  # answers again
    resumed, at_resume = time.monotonic(), len(sent)
    figures.outage_s = resumed - stopped
    producing.join()
    figures.sent_during = at_resume - figures.sent_before + len(during_v2)
    figures.new_writer_during, figures.sent_after = len(during_v2), len(sent) - at_resume
    log = sent + [(topics.orders, e) for e in during_v2]
    assert_converges(kafka_bootstrap, topics, log, worker, within=120, codec=prepared_codec(kafka_bootstrap, topics, url))  # fmt: skip
    figures.caught_up_after_s = time.monotonic() - resumed
    print(f"\noutage figures: {figures}")
    assert dead_letters(kafka_bootstrap, topics) == []  # no valid event went to the DLQ for the outage
    assert "answers again" in worker.output()
    assert during_v2, "no event with the new writer was sent during the outage"
    assert worker.alive()


def test_resolver_waits_while_the_registry_does_not_answer_then_resolves(
    make_registry: Callable[[], LocalRegistry],
) -> None:
    registry = make_registry()
    steps = asyncio.run(register_published(registry.url, {"orders": ["OrderPlaced"]}))
    codec = FastavroCodec()
    event = next(e for _, e in EventGenerator(SimConfig(seed=2)) if isinstance(e, OrderPlaced))
    framed = b"\x00" + int(steps[0].schema_id or 0).to_bytes(4, "big") + codec.encode(event)[10:]
    unknown = b"\x00" + (7777).to_bytes(4, "big") + codec.encode(event)[10:]

    async def scenario() -> str:
        resolver = SchemaResolver(codec, registry.url, timeout_s=1.0, max_backoff_s=0.5)
        registry.signal(signal.SIGSTOP)  # accepts connections, answers nothing: time-outs
        waiting = asyncio.create_task(resolver.prepare([framed, unknown]))
        await asyncio.sleep(3.0)
        assert not waiting.done()
        status = resolver.status
        assert not status.reachable
        assert status.waiting_for == (steps[0].schema_id, 7777)
        said = status.describe()
        registry.signal(signal.SIGCONT)
        assert await asyncio.wait_for(waiting, 30)  # it had to wait
        assert resolver.status.reachable
        await resolver.aclose()
        return said

    said = asyncio.run(scenario())
    assert "does not answer" in said
    assert "Timeout" in said
    assert "nothing goes to the DLQ" in said
    assert codec.decode(framed) == event
    with pytest.raises(UnknownSchemaId, match="no schema with id 7777"):
        codec.decode(unknown)


def test_commands_give_up_on_a_registry_that_is_not_there(make_registry: Callable[[], LocalRegistry]) -> None:
    registry = make_registry()
    registry.stop()  # connection refused from now on
    codec = FastavroCodec()

    async def scenario() -> SchemaResolver:
        resolver = SchemaResolver(codec, registry.url, max_backoff_s=0.5)
        with pytest.raises(RegistryUnavailable, match=r"did not answer for 2 s .*ConnectError"):
            await resolver.prepare([b"\x00\x00\x00\x00\x05body"], give_up_after=2.0)
        await resolver.aclose()
        return resolver

    resolver = asyncio.run(scenario())
    assert not resolver.status.reachable
    assert resolver.status.attempts >= 2
    assert codec.unresolved_ids([b"\x00\x00\x00\x00\x05body"], 0.0) == {5}  # nothing was refused


def test_readyz_says_when_the_schema_registry_does_not_answer(
    make_registry: Callable[[], LocalRegistry],
) -> None:
    registry = make_registry()
    settings = ApiSettings(env="dev", schema_registry_url=registry.url)
    app = create_app(settings, kafka=False)
    app.state.registry_probe.every_s = 0.0
    with TestClient(app) as client:
        up = client.get("/readyz")
        assert (up.status_code, up.json()["schemaRegistryReachable"]) == (200, True)
        registry.stop()
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["schemaRegistryReachable"] is False
        assert "does not answer" in down.json()["schemaRegistry"]


def test_schemas_register_checks_backward_compatibility_through_the_registry(
    make_registry: Callable[[], LocalRegistry], tmp_path: Path
) -> None:
    url = make_registry().url
    topics = {"orders": ["OrderPlaced"]}
    published = SchemaSet.load()
    first = asyncio.run(register_published(url, topics, published))
    assert [(s.subject, s.version, s.outcome) for s in first] == [
        (f"orders-{ORDER}", "OrderPlaced v1", "registered")
    ]
    again = asyncio.run(register_published(url, topics, published))
    assert [(s.outcome, s.schema_id) for s in again] == [("already registered", first[0].schema_id)]

    def versions(extra: dict[str, Any]) -> SchemaSet:
        folder = tmp_path / f"set-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for version in published:
            (folder / version.path.name).write_text(version.path.read_text())
        (folder / "OrderPlaced.v2.avsc").write_text(json.dumps(extra))
        return SchemaSet.load(folder)

    breaking = copy.deepcopy(published.latest(ORDER).schema)
    breaking["fields"].append({"name": "channel", "type": "string"})  # no default: v2 cannot read v1
    checked = asyncio.run(register_published(url, topics, versions(breaking), dry_run=True))
    assert [s.outcome for s in checked] == ["already registered", "refused"]
    assert any("channel" in reason for reason in checked[1].reasons), checked[1].reasons
    evolved = asyncio.run(register_published(url, topics, versions(evolved_order_schema())))
    assert [s.outcome for s in evolved] == ["already registered", "registered"]
    retyped = copy.deepcopy(evolved_order_schema())
    retyped["fields"] = [
        f if f["name"] != "total" else {"name": "total", "type": "string"} for f in retyped["fields"]
    ]
    refused = asyncio.run(register_published(url, topics, versions(retyped)))  # as the next version after v2
    assert [s.outcome for s in refused] == ["already registered", "refused"]
    assert any("string not compatible with writer type: long" in r for r in refused[1].reasons), refused[
        1
    ].reasons
    # what CI runs: the published history, checked in a throwaway local registry
    result = CliRunner().invoke(cli, ["schemas", "register", "--local"])
    assert result.exit_code == 0, result.output
    assert result.output.count(": registered (id ") == 4


def test_simulate_produces_through_the_avro_serializer(
    kafka_bootstrap: str, schema_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = make_topics()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("VENDORPULSE_TOPIC_PREFIX", topics.prefix)
    monkeypatch.setenv("VENDORPULSE_SCHEMA_REGISTRY_URL", schema_registry)
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--count",
            "200",
            "--rate",
            "0",
            "--vendors",
            "2",
            "--products",
            "5",
            "--framing",
            "confluent",
        ],
    )
    assert result.exit_code == 0, result.output
    values = [v or b"" for t in (topics.orders, topics.inventory) for _, v, _ in asyncio.run(read_topic(kafka_bootstrap, t))]  # fmt: skip
    assert len(values) == 200
    assert all(v[:1] == b"\x00" for v in values)
    codec = prepared_codec(kafka_bootstrap, topics, schema_registry)
    assert len({codec.decode(v).event_id for v in values}) == 200
    subjects = asyncio.run(_subjects(schema_registry))
    assert {f"{topics.orders}-{ORDER}", f"{topics.inventory}-vendorpulse.events.ProductUpserted"} <= set(
        subjects
    )
    unset = CliRunner().invoke(cli, ["simulate", "--count", "1", "--framing", "confluent"], env={"VENDORPULSE_SCHEMA_REGISTRY_URL": ""})  # fmt: skip
    assert unset.exit_code == 1
    assert "needs a schema registry" in unset.output


async def _subjects(url: str) -> list[str]:
    client = AsyncSchemaRegistryClient({"url": url})
    try:
        return list(await client.get_subjects())
    finally:
        await client.aclose()
