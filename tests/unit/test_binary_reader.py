"""The compiled body readers against fastavro: the same records from the same bytes, and never a record
where fastavro refuses (they may refuse more: malformed bodies fastavro reads anyway)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.binary_reader import compile_reader
from schemas.codec import HEADER_SIZE, FastavroCodec, SchemaSet
from schemas.events import OrderCancelled
from schemas.exceptions import UndecodableBody
from tests.unit.test_codec import events

PUBLISHED = {v.name.rpartition(".")[2]: v for v in SchemaSet.load()}
CODEC = FastavroCodec()


def fastavro_read(schema: dict[str, Any], body: bytes) -> tuple[dict[str, Any], int] | Exception:
    source = io.BytesIO(body)
    try:
        return schemaless_reader(source, parse_schema(schema), None), source.tell()  # type: ignore[return-value]
    except Exception as exc:  # what fastavro raises is what the codec refuses
        return exc


def compiled_read(schema: dict[str, Any], body: bytes) -> tuple[dict[str, Any], int] | Exception:
    reader = compile_reader(schema)
    assert reader is not None
    try:
        return reader(body, 0)
    except Exception as exc:
        return exc


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_every_published_schema_has_a_compiled_reader(name: str) -> None:
    assert compile_reader(PUBLISHED[name].plain) is not None


@settings(max_examples=300, deadline=None)
@given(event=events)
def test_valid_bodies_read_as_fastavro_reads_them(event: Any) -> None:
    schema = PUBLISHED[type(event).NAME].plain
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), event.to_record())
    body = out.getvalue()
    assert compiled_read(schema, body) == fastavro_read(schema, body) == (event.to_record(), len(body))


@settings(max_examples=500, deadline=None)
@given(name=st.sampled_from(sorted(PUBLISHED)), body=st.binary(max_size=60), event=events, data=st.data())
def test_what_the_compiled_reader_accepts_fastavro_reads_the_same(
    name: str, body: bytes, event: Any, data: st.DataObject
) -> None:
    schema = PUBLISHED[name].plain
    if data.draw(st.booleans()):  # a damaged valid body, more often near a valid shape than random bytes
        schema = PUBLISHED[type(event).NAME].plain
        out = io.BytesIO()
        schemaless_writer(out, parse_schema(schema), event.to_record())
        damaged = bytearray(out.getvalue())
        at = data.draw(st.integers(0, len(damaged)))
        damaged[at:at] = body[:4]
        body = bytes(damaged)
    ours = compiled_read(schema, body)
    if not isinstance(ours, Exception):
        assert fastavro_read(schema, body) == ours


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x02e\x02\x02v\x02o\x02\x03", "negative length -2"),  # fastavro: truncated
        (b"\x02e\x02\x02v\x02o\x01\x02x", "union index -1"),  # fastavro: branch [-1], "x"
        (b"\x02e\x02\x02v\x02o\x04", "union index 2"),
    ],
)
def test_malformed_bodies_are_undecodable(body: bytes, why: str) -> None:
    message = CODEC.encode(OrderCancelled("e", 1, "v", "o", None))[:HEADER_SIZE] + body
    with pytest.raises(UndecodableBody, match=why):
        CODEC.decode(message, validate=False)


@settings(max_examples=300, deadline=None)
@given(event=events, insert=st.binary(max_size=4), data=st.data())
def test_an_event_reader_gives_the_event_of_the_record_reader(
    event: Any, insert: bytes, data: st.DataObject
) -> None:
    message = bytearray(CODEC.encode(event))
    at = data.draw(st.integers(HEADER_SIZE, len(message)))
    message[at:at] = insert
    route = CODEC._routes[bytes(message[2:HEADER_SIZE])]
    assert route.body_reader is not None
    assert route.event_reader is not None
    records, made = (
        compiled_read_with(route.body_reader, bytes(message)),
        compiled_read_with(route.event_reader, bytes(message)),
    )
    if isinstance(records, Exception):
        assert type(made) is type(records)
        assert str(made) == str(records)
    else:
        assert made == (route.event_type.from_record(records[0]), records[1])


def compiled_read_with(reader: Any, message: bytes) -> tuple[Any, int] | Exception:
    try:
        return reader(message, HEADER_SIZE)  # type: ignore[no-any-return]
    except Exception as exc:
        return exc
