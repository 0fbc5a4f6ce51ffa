"""The codec's Confluent framing (contract §3), without I/O: ids are handed to it as the resolver would.

The resolver against a real registry is tested in tests/integration/test_registry.py.
"""

from __future__ import annotations

import copy
import io
import json
from itertools import islice
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from infra.simulate import EventGenerator, SimConfig
from processors.intake import Refusal, read_event
from schemas.codec import HEADER_SIZE, FastavroCodec, SchemaVersion, strip_logical_types
from schemas.confluent import readable_writer, subject_for
from schemas.events import OrderPlaced
from schemas.exceptions import (
    BadMarker,
    SchemaNotPrepared,
    TruncatedBody,
    UnknownSchemaId,
    UnreadableSchema,
)

ORDER = "vendorpulse.events.OrderPlaced"
EVENTS = [e for _, e in islice(EventGenerator(SimConfig(vendors=2, products=5, seed=3, start_ms=0)), 300)]


def frame(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def body_with(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(strip_logical_types(schema)), record)
    return out.getvalue()


def evolved_order() -> dict[str, Any]:
    """OrderPlaced as a newer producer might write it: a new field with a default, fields reordered."""
    schema = copy.deepcopy(FastavroCodec().schemas.latest(ORDER).schema)
    schema["fields"] = [*reversed(schema["fields"]), {"name": "channel", "type": "string", "default": "web"}]
    return schema


@pytest.fixture
def codec() -> FastavroCodec:
    codec = FastavroCodec()
    codec.accept_confluent()
    for schema_id, name in enumerate(codec.schemas.names, start=1):
        codec.add_writer(schema_id, codec.schemas.latest(name))
    return codec


def confluent(codec: FastavroCodec, event: Any) -> bytes:
    """The event framed with the id `codec` fixture gave its published version."""
    single = codec.encode(event)
    schema_id = 1 + codec.schemas.names.index(codec.peek(single).name)
    return frame(schema_id, single[HEADER_SIZE:])


def test_both_framings_decode_to_the_same_events(codec: FastavroCodec) -> None:
    for event in EVENTS:
        single, framed = codec.encode(event), confluent(codec, event)
        assert framed[0] == 0
        assert len(framed) == len(single) - HEADER_SIZE + 5
        assert codec.decode(framed, validate=False) == codec.decode(single, validate=False) == event


def test_without_a_registry_nothing_changes() -> None:
    codec, framed = FastavroCodec(), confluent(FastavroCodec(), EVENTS[0])
    assert not codec.accepts_confluent
    with pytest.raises(BadMarker, match="C3 01"):
        codec.decode(framed)
    assert codec.unresolved_ids([framed], 0.0) == set()
    assert read_event(codec, framed, on_orders_topic=False) == Refusal(
        "bad_marker", "BadMarker", "message does not start with C3 01 (got 0000)"
    )


def test_an_id_nobody_resolved_is_a_bug_of_the_caller_not_bad_input(codec: FastavroCodec) -> None:
    framed = frame(77, b"\x02")
    assert codec.unresolved_ids([framed, None, b"", codec.encode(EVENTS[0])], 0.0) == {77}
    with pytest.raises(SchemaNotPrepared, match="prepare"):
        read_event(codec, framed, on_orders_topic=True)  # not a refusal: it must not reach the DLQ


def test_refused_ids_decode_to_their_reason_until_asked_again(codec: FastavroCodec) -> None:
    codec.refuse_id(9, UnknownSchemaId, "the registry has no schema with id 9", until=100.0)
    framed = frame(9, b"\x02\x04")
    assert read_event(codec, framed, on_orders_topic=True) == Refusal(
        "unknown_schema_id", "UnknownSchemaId", "the registry has no schema with id 9"
    )
    assert codec.unresolved_ids([framed], now=99.0) == set()
    assert codec.unresolved_ids([framed], now=101.0) == {9}  # the registry is asked again


def test_bad_confluent_headers_and_markers(codec: FastavroCodec) -> None:
    with pytest.raises(TruncatedBody, match="Confluent header"):
        codec.decode(b"\x00\x00\x01")
    with pytest.raises(BadMarker, match=r"neither C3 01 .* nor 00"):
        codec.decode(b"\x01\x02\x03\x04\x05\x06")
    good = confluent(codec, EVENTS[0])
    assert read_event(codec, good[:-3], on_orders_topic=False).code == "truncated_body"  # type: ignore[union-attr]
    assert read_event(codec, good + b"\x00", on_orders_topic=False).code == "trailing_bytes"  # type: ignore[union-attr]


def test_an_evolved_writer_with_a_defaulted_field_is_read_by_todays_reader(codec: FastavroCodec) -> None:
    schema = evolved_order()
    writer = readable_writer(codec, 42, "AVRO", json.dumps(schema), [])
    assert isinstance(writer, SchemaVersion)
    assert writer.label == "OrderPlaced (registry id 42)"
    codec.add_writer(42, writer)
    order = next(e for e in EVENTS if isinstance(e, OrderPlaced))
    framed = frame(42, body_with(schema, {**order.to_record(), "channel": "app"}))
    assert codec.decode(framed) == order
    assert codec.stored_form(framed, order) == codec.encode(order)  # what the worker's table keeps
    single = codec.encode(order)
    assert codec.stored_form(single, order) is single


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.update(name="Order", namespace="com.acme"), "com.acme.Order, not a vendorpulse event"),
        (lambda s: s["fields"].pop(4), "cannot read"),  # no customer_id, which the reader needs
        (lambda s: s["fields"].__setitem__(6, {"name": "total", "type": "string"}), "cannot read"),
        (lambda s: s.update(type="enum", symbols=["A"]), "not an Avro record"),
    ],
)
def test_writers_that_cannot_be_read_into_our_records_are_refused_with_a_reason(
    codec: FastavroCodec, change: Any, reason: str
) -> None:
    schema = copy.deepcopy(codec.schemas.latest(ORDER).schema)
    change(schema)
    why = readable_writer(codec, 5, "AVRO", json.dumps(schema), [])
    assert isinstance(why, str)
    assert reason in why


def test_non_avro_and_referencing_schemas_are_refused(codec: FastavroCodec) -> None:
    assert "PROTOBUF schema, not Avro" in str(readable_writer(codec, 3, "PROTOBUF", "syntax = 'proto3';", []))
    text = json.dumps(codec.schemas.latest(ORDER).schema)
    assert "references" in str(readable_writer(codec, 3, "AVRO", text, [{"name": "x"}]))
    assert "not a valid Avro schema" in str(readable_writer(codec, 3, "AVRO", "{nope", []))


def test_unreadable_refusals_decode_to_their_reason(codec: FastavroCodec) -> None:
    codec.refuse_id(6, UnreadableSchema, "OrderPlaced v1 cannot read OrderPlaced (registry id 6): ...", 1e18)
    refusal = read_event(codec, frame(6, b""), on_orders_topic=True)
    assert isinstance(refusal, Refusal)
    assert (refusal.code, refusal.error) == ("unreadable_schema", "UnreadableSchema")


def test_subjects_follow_the_topic_record_name_strategy() -> None:
    assert subject_for("p-orders", "OrderPlaced") == "p-orders-vendorpulse.events.OrderPlaced"
    assert subject_for("inventory", "vendorpulse.events.ProductUpserted") == (
        "inventory-vendorpulse.events.ProductUpserted"
    )


def test_garbage_with_random_ids_does_not_grow_the_id_table_for_ever(codec: FastavroCodec) -> None:
    from schemas.codec import MAX_IDS

    for schema_id in range(100, 100 + 3 * MAX_IDS):
        codec.refuse_id(schema_id, UnknownSchemaId, "no such id", until=float(schema_id))
    assert len(codec._by_id or {}) <= MAX_IDS + len(codec.schemas.names)
    assert codec.unresolved_ids([frame(1, b"")], now=0.0) == set()  # the known ids stay
