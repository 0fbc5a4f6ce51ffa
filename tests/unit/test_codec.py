"""The single-object codec: layout, fingerprints, round trips, typed errors, fuzzing.

`CodecContract` holds every behaviour both implementations must share; it runs once per codec.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import avro.schema
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import parse_schema, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import (
    HEADER_SIZE,
    MAGIC,
    SCHEMA_DIR,
    AvroCodec,
    Codec,
    FastavroCodec,
    SchemaSet,
    canonical_form,
    crc64_avro,
    fingerprint,
    fingerprint_of,
)
from schemas.events import (
    EVENT_TYPES,
    Event,
    InventoryAdjusted,
    OrderCancelled,
    OrderItem,
    OrderPlaced,
    ProductUpserted,
)
from schemas.exceptions import (
    BadMarker,
    CodecError,
    InvalidEvent,
    SchemaLoadError,
    TrailingBytes,
    TruncatedBody,
    UndecodableBody,
    UnencodableEvent,
    UnknownFingerprint,
)

INT = st.integers(-(2**31), 2**31 - 1)
LONG = st.integers(-(2**63), 2**63 - 1)
NON_NEGATIVE_LONG = st.integers(0, 2**63 - 1)
IDS = st.text(min_size=1, max_size=12)
TEXT = st.text(max_size=12)

order_items = st.builds(OrderItem, IDS, IDS, st.integers(1, 2**31 - 1), NON_NEGATIVE_LONG)
orders_placed = st.builds(
    OrderPlaced,
    IDS,
    LONG,
    IDS,
    IDS,
    IDS,
    st.from_regex(r"[A-Z]{3}", fullmatch=True),
    NON_NEGATIVE_LONG,
    st.lists(order_items, min_size=1, max_size=4).map(tuple),
)
orders_cancelled = st.builds(OrderCancelled, IDS, LONG, IDS, IDS, st.none() | TEXT)
products_upserted = st.builds(
    ProductUpserted, IDS, LONG, IDS, IDS, TEXT, TEXT, st.booleans(), st.integers(0, 2**31 - 1)
)
inventory_adjustments = st.builds(InventoryAdjusted, IDS, LONG, IDS, IDS, INT, st.none() | TEXT)
events = st.one_of(orders_placed, orders_cancelled, products_upserted, inventory_adjustments)
"""Valid events of every type, with values anywhere in their Avro int/long ranges."""

FAST = settings(
    max_examples=150,
    deadline=None,
    # One base-class test runs for each codec subclass; they share the example database on purpose
    # (an input that broke one implementation is worth replaying against the other).
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)


def make_order_placed(**changes: Any) -> OrderPlaced:
    fields: dict[str, Any] = {
        "event_id": "evt-1",
        "occurred_at": 1_732_000_000_123,
        "vendor_id": "vendor-7",
        "order_id": "order-1",
        "customer_id": "cust-1",
        "currency": "EUR",
        "total": 12_345,
        "items": (
            OrderItem("p-1", "books", 2, 1_500),
            OrderItem("p-2", "games", 1, 9_000),
            OrderItem("p-3", "books", 3, 115),
        ),
    }
    return OrderPlaced(**(fields | changes))


SAMPLES: list[Event] = [
    make_order_placed(),
    OrderCancelled("evt-2", 1_732_000_000_456, "vendor-7", "order-1", "customer changed mind"),
    OrderCancelled("evt-3", 0, "vendor-7", "order-2"),
    ProductUpserted("evt-4", 1_732_000_000_789, "vendor-7", "p-1", "Dune", "books", True),
    ProductUpserted("evt-5", -1, "vendor-7", "p-2", "", "", False, 0),
    InventoryAdjusted("evt-6", 2**63 - 1, "vendor-7", "p-1", -(2**31), "stocktake"),
]

PUBLISHED_FINGERPRINTS = {
    "vendorpulse.events.OrderPlaced": "087dae2f4c214770",
    "vendorpulse.events.OrderCancelled": "b9151375f5535ba0",
    "vendorpulse.events.ProductUpserted": "b75c63588eda85d3",
    "vendorpulse.events.InventoryAdjusted": "db009f1923608ea0",
}
"""Frozen: changing a published schema's fingerprint orphans every message already on the topics."""


def zigzag(n: int) -> bytes:
    """An Avro int/long as its zig-zag varint."""
    n = (n << 1) ^ (n >> 63) if n >= -(2**63) else (n << 1) ^ -1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def avro_string(raw: bytes) -> bytes:
    return zigzag(len(raw)) + raw


def header(name: str) -> bytes:
    return MAGIC + bytes.fromhex(PUBLISHED_FINGERPRINTS[f"vendorpulse.events.{name}"])


def outcome(codec: Codec, message: bytes) -> Event | CodecError:
    try:
        return codec.decode(message)
    except CodecError as exc:
        return exc


# Fingerprints and the published schemas: independent of the implementation.


def test_crc64_avro_of_the_null_schema_matches_the_specification() -> None:
    assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A
    assert fingerprint("null") == bytes.fromhex("8a8f25cce724dd63")


@pytest.mark.parametrize("version", list(SchemaSet.load()), ids=lambda v: v.label)
def test_fingerprints_agree_with_both_libraries(version: Any) -> None:
    expected = fastavro_fingerprint(to_parsing_canonical_form(parse_schema(version.schema)), "CRC-64-AVRO")
    assert version.fingerprint.hex() == expected == PUBLISHED_FINGERPRINTS[version.name]
    # The avro library agrees once logical types are stripped (it keeps {"type":"long"} otherwise).
    assert avro.schema.parse(json.dumps(version.plain)).fingerprint() == version.fingerprint
    assert fingerprint(version.plain) == version.fingerprint


def test_canonical_form_drops_logical_types_and_docs() -> None:
    schema = json.loads((SCHEMA_DIR / "OrderCancelled.v1.avsc").read_text())
    assert canonical_form(schema) == (
        '{"name":"vendorpulse.events.OrderCancelled","type":"record","fields":['
        '{"name":"event_id","type":"string"},{"name":"occurred_at","type":"long"},'
        '{"name":"vendor_id","type":"string"},{"name":"order_id","type":"string"},'
        '{"name":"reason","type":["null","string"]}]}'
    )


def test_published_schemas_are_the_v1_events_of_the_contract() -> None:
    schemas = SchemaSet.load()
    assert set(schemas.names) == set(EVENT_TYPES)
    for sample in SAMPLES:
        v1 = schemas.versions(f"vendorpulse.events.{sample.NAME}")[0]
        assert v1.version == 1
        assert [f["name"] for f in v1.schema["fields"]] == list(sample.to_record())
        occurred_at = next(f for f in v1.schema["fields"] if f["name"] == "occurred_at")
        assert occurred_at["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    placed = schemas.latest("vendorpulse.events.OrderPlaced").schema
    item = next(f for f in placed["fields"] if f["name"] == "items")["type"]["items"]
    assert (item["namespace"], item["name"]) == ("vendorpulse.events", "OrderItem")
    upserted = schemas.latest("vendorpulse.events.ProductUpserted").schema
    assert upserted["fields"][-1] == {"name": "low_stock_threshold", "type": "int", "default": 10}


def test_fingerprint_of_reads_the_header_only() -> None:
    message = header("OrderCancelled") + b"garbage"
    assert fingerprint_of(message) == bytes.fromhex(
        PUBLISHED_FINGERPRINTS["vendorpulse.events.OrderCancelled"]
    )
    with pytest.raises(BadMarker):
        fingerprint_of(b"\x00\x01" + message[2:])
    with pytest.raises(TruncatedBody):
        fingerprint_of(message[: HEADER_SIZE - 1])


def test_error_codes_are_stable_and_distinct() -> None:
    codes = {
        cls: cls.code
        for cls in (
            BadMarker,
            UnknownFingerprint,
            TruncatedBody,
            TrailingBytes,
            UndecodableBody,
            InvalidEvent,
            UnencodableEvent,
            SchemaLoadError,
        )
    }
    assert codes == {
        BadMarker: "bad_marker",
        UnknownFingerprint: "unknown_fingerprint",
        TruncatedBody: "truncated_body",
        TrailingBytes: "trailing_bytes",
        UndecodableBody: "undecodable_body",
        InvalidEvent: "invalid_event",
        UnencodableEvent: "unencodable_event",
        SchemaLoadError: "schema_load",
    }
    assert all(issubclass(cls, CodecError) for cls in codes)


@pytest.mark.parametrize(
    ("file_name", "content", "complaint"),
    [
        ("OrderCancelled.avsc", None, "named <Name>.v<N>.avsc"),
        ("OrderCancelled.v1.avsc", "{not json", "not a valid Avro schema"),
        ("OrderCancelled.v1.avsc", '{"type": "record", "name": "X", "fields": []}', "file name says"),
        ("Mystery.v1.avsc", '{"type": "record", "name": "Mystery", "fields": []}', "no event class"),
    ],
)
def test_a_bad_schema_directory_is_refused_at_start(
    tmp_path: Path, file_name: str, content: str | None, complaint: str
) -> None:
    default = (SCHEMA_DIR / "OrderCancelled.v1.avsc").read_text()
    (tmp_path / file_name).write_text(default if content is None else content)
    with pytest.raises(SchemaLoadError, match=complaint.replace(".", r"\.")):
        FastavroCodec(tmp_path)


def test_the_codec_module_loads_no_kafka_faust_or_fastapi() -> None:
    code = (
        "import sys, schemas.codec, schemas.compat\n"
        "banned = {'faust', 'aiokafka', 'kafka', 'fastapi', 'starlette', 'confluent_kafka'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))"
    )
    cwd = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True)
    assert result.stdout.strip() == "[]"


class CodecContract:
    """What every codec implementation does; subclassed once per implementation."""

    codec_type: ClassVar[type[Codec]]
    other_type: ClassVar[type[Codec]]

    @pytest.fixture(scope="class")
    @classmethod
    def codec(cls) -> Codec:
        return cls.codec_type()

    @pytest.fixture(scope="class")
    @classmethod
    def other(cls) -> Codec:
        return cls.other_type()

    @pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.event_id)
    def test_message_is_marker_fingerprint_body(self, codec: Codec, event: Event) -> None:
        message = codec.encode(event)
        name = f"vendorpulse.events.{event.NAME}"
        assert message[:2] == b"\xc3\x01"
        assert message[2:HEADER_SIZE].hex() == PUBLISHED_FINGERPRINTS[name]
        assert codec.peek(message).label == f"{event.NAME} v1"
        assert codec.decode(message) == event

    def test_order_placed_body_is_the_avro_binary_encoding(self, codec: Codec) -> None:
        event = make_order_placed(items=(OrderItem("p", "c", 2, 50),), total=-1)
        body = b"".join(
            [
                avro_string(b"evt-1"),
                zigzag(1_732_000_000_123),
                avro_string(b"vendor-7"),
                avro_string(b"order-1"),
                avro_string(b"cust-1"),
                avro_string(b"EUR"),
                zigzag(-1),
                zigzag(1) + avro_string(b"p") + avro_string(b"c") + zigzag(2) + zigzag(50) + zigzag(0),
            ]
        )
        assert codec.encode(event) == header("OrderPlaced") + body
        assert codec.decode(header("OrderPlaced") + body, validate=False) == event

    @FAST
    @given(event=events)
    def test_round_trip_of_any_valid_event(self, codec: Codec, other: Codec, event: Event) -> None:
        message = codec.encode(event)
        decoded = codec.decode(message)
        assert decoded == event
        assert type(decoded) is type(event)
        # Same bytes from both libraries, and each reads the other's.
        assert other.encode(event) == message
        assert other.decode(message) == event

    def test_times_stay_integer_millis(self, codec: Codec) -> None:
        decoded = codec.decode(codec.encode(make_order_placed(occurred_at=1_732_000_000_123)))
        assert isinstance(decoded, OrderPlaced)
        assert type(decoded.occurred_at) is int
        assert decoded.occurred_at == 1_732_000_000_123

    @pytest.mark.parametrize(
        "message", [b"", b"\xc3", b"\xc3\x02" + bytes(20), b"{}", b"\x01\xc3" + bytes(20)]
    )
    def test_bad_marker(self, codec: Codec, message: bytes) -> None:
        with pytest.raises(BadMarker, match="C3 01"):
            codec.decode(message)

    def test_unknown_fingerprint_names_the_fix(self, codec: Codec) -> None:
        message = MAGIC + bytes.fromhex("8a8f25cce724dd63") + b"\x00"
        with pytest.raises(UnknownFingerprint) as caught:
            codec.decode(message)
        assert str(caught.value) == (
            "no schema with fingerprint 0x63dd24e7cc258f8a (wire bytes 8a8f25cce724dd63); "
            "is the .avsc in schemas/?"
        )
        assert caught.value.fingerprint == bytes.fromhex("8a8f25cce724dd63")

    @pytest.mark.parametrize("cut", [1, 3, 12, 40])
    def test_truncated_body(self, codec: Codec, cut: int) -> None:
        message = codec.encode(make_order_placed())
        with pytest.raises(TruncatedBody):
            codec.decode(message[:-cut])

    @pytest.mark.parametrize("size", [0, 5, HEADER_SIZE - 1])
    def test_truncated_header(self, codec: Codec, size: int) -> None:
        message = codec.encode(make_order_placed())
        with pytest.raises(TruncatedBody if size >= 2 else BadMarker):
            codec.decode(message[:size])

    def test_header_without_body_is_truncated(self, codec: Codec) -> None:
        with pytest.raises(TruncatedBody):
            codec.decode(header("OrderCancelled"))

    @pytest.mark.parametrize("length", [2**31, 2**60])
    def test_huge_length_claims_fail_fast(self, codec: Codec, length: int) -> None:
        with pytest.raises(TruncatedBody):
            codec.decode(header("OrderCancelled") + zigzag(length) + b"abc")
        order = [avro_string(b"x")] * 1 + [zigzag(1)] + [avro_string(b"x")] * 4 + [zigzag(5)]
        with pytest.raises(TruncatedBody):
            codec.decode(header("OrderPlaced") + b"".join(order) + zigzag(length))

    @pytest.mark.parametrize("extra", [b"\x00", b"\x02\x02", bytes(100)])
    def test_trailing_bytes(self, codec: Codec, extra: bytes) -> None:
        message = codec.encode(SAMPLES[1])
        with pytest.raises(TrailingBytes, match=f"{len(extra)} bytes left"):
            codec.decode(message + extra)

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(
                avro_string(b"\xff\xfe") + zigzag(1) + avro_string(b"v") + avro_string(b"o") + zigzag(0),
                id="bad-utf8",
            ),
            pytest.param(
                avro_string(b"e") + zigzag(1) + avro_string(b"v") + avro_string(b"o") + zigzag(5),
                id="union-index",
            ),
        ],
    )
    def test_undecodable_body_wraps_the_library_error(self, codec: Codec, body: bytes) -> None:
        with pytest.raises(UndecodableBody, match="OrderCancelled v1") as caught:
            codec.decode(header("OrderCancelled") + body)
        assert caught.value.__cause__ is not None
        assert not isinstance(caught.value.__cause__, CodecError)

    @pytest.mark.parametrize("delta", [2**31, -(2**31) - 1, 2**40])
    def test_int_outside_32_bits_is_undecodable(self, codec: Codec, delta: int) -> None:
        body = (
            avro_string(b"e") + zigzag(1) + avro_string(b"v") + avro_string(b"p") + zigzag(delta) + zigzag(0)
        )
        with pytest.raises(UndecodableBody, match="outside 32 bits"):
            codec.decode(header("InventoryAdjusted") + body)

    @pytest.mark.parametrize(
        ("event", "reason"),
        [
            (make_order_placed(currency="eur"), "currency must be an ISO 4217 code"),
            (make_order_placed(items=()), "an order needs at least one item"),
            (make_order_placed(total=-5), "total must be >= 0, got -5"),
            (OrderCancelled("evt-9", 1, "", "order-1"), "vendor_id is empty"),
            (ProductUpserted("evt-9", 1, "v", "p", "n", "c", True, -1), "low_stock_threshold must be >= 0"),
        ],
    )
    def test_invalid_event_carries_the_reason_and_the_event(
        self, codec: Codec, event: Event, reason: str
    ) -> None:
        message = codec.encode(event)  # producers may send invalid events; the consumer refuses them
        with pytest.raises(InvalidEvent) as caught:
            codec.decode(message)
        assert caught.value.reason == event.validate()
        assert caught.value.reason.startswith(reason)
        assert caught.value.event == event
        assert codec.decode(message, validate=False) == event

    @pytest.mark.parametrize(
        "event",
        [
            make_order_placed(items=(OrderItem("p", "c", 2**31, 1),)),
            make_order_placed(total=2**63),
            InventoryAdjusted("e", 1, "v", "p", -(2**31) - 1),
            OrderCancelled("e", 1, "v", 42),  # type: ignore[arg-type]
        ],
    )
    def test_values_outside_the_schema_are_unencodable(self, codec: Codec, event: Event) -> None:
        with pytest.raises(UnencodableEvent):
            codec.encode(event)

    def test_unknown_event_type_is_unencodable(self, codec: Codec) -> None:
        with pytest.raises(UnencodableEvent, match="no schema for OrderItem"):
            codec.encode(OrderItem("p", "c", 1, 1))  # type: ignore[arg-type]

    @FAST
    @given(data=st.binary(max_size=80))
    def test_random_bytes_give_an_event_or_a_codec_error(self, codec: Codec, data: bytes) -> None:
        result = outcome(codec, data)
        assert isinstance(result, BadMarker | TruncatedBody | UnknownFingerprint)

    @FAST
    @given(name=st.sampled_from(sorted(PUBLISHED_FINGERPRINTS)), body=st.binary(max_size=80))
    def test_random_bodies_give_an_event_or_a_codec_error(
        self, codec: Codec, other: Codec, name: str, body: bytes
    ) -> None:
        message = header(name.rpartition(".")[2]) + body
        self.assert_event_or_error(codec, other, message, outcome(codec, message))

    @FAST
    @given(event=events, data=st.data())
    def test_damaged_messages_give_an_event_or_a_codec_error(
        self, codec: Codec, other: Codec, event: Event, data: st.DataObject
    ) -> None:
        message = bytearray(codec.encode(event))
        damage = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
        if damage == "flip":
            for _ in range(data.draw(st.integers(1, 4))):
                at = data.draw(st.integers(0, len(message) - 1))
                message[at] ^= data.draw(st.integers(1, 255))
        elif damage == "truncate":
            del message[data.draw(st.integers(0, len(message) - 1)) :]
        elif damage == "extend":
            message += data.draw(st.binary(min_size=1, max_size=16))
        else:
            at = data.draw(st.integers(HEADER_SIZE, len(message)))
            message[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        result = outcome(codec, bytes(message))
        self.assert_event_or_error(codec, other, bytes(message), result)
        if damage == "truncate":
            assert isinstance(result, BadMarker | TruncatedBody)
        elif damage == "extend":
            assert isinstance(result, TrailingBytes)

    @staticmethod
    def assert_event_or_error(codec: Codec, other: Codec, message: bytes, result: Event | CodecError) -> None:
        """A decode error is one a message can cause (not a schema or encoding error). An event (decode
        validated it) is what the other implementation reads from the same bytes too, and survives
        another round trip."""
        if isinstance(result, CodecError):
            assert type(result).code in {
                "bad_marker",
                "unknown_fingerprint",
                "truncated_body",
                "trailing_bytes",
                "undecodable_body",
                "invalid_event",
            }
        else:
            assert outcome(other, message) == result
            assert codec.decode(codec.encode(result)) == result

    @pytest.mark.parametrize("threshold", [0, 5, 63, 64, -1, 2**31 - 1, -(2**31)])
    def test_a_boolean_byte_other_than_0_or_1_is_undecodable(self, codec: Codec, threshold: int) -> None:
        # fastavro reads any non-zero byte as true, the Java and Python avro readers only 1: such a
        # message would mean different things to different consumers.
        event = ProductUpserted("e", 1, "v", "p", "Lamp", "Home", True, threshold)
        message = bytearray(codec.encode(event))
        at = len(message) - len(zigzag(threshold)) - 1  # `active`, just before the last field
        for byte, active in ((0, False), (1, True)):
            message[at] = byte
            assert codec.decode(bytes(message), validate=False).active is active  # type: ignore[union-attr]
        for byte in (2, 0x80, 0xFF):
            message[at] = byte
            with pytest.raises(UndecodableBody, match="boolean"):
                codec.decode(bytes(message), validate=False)

    @pytest.mark.parametrize(
        ("tenth", "name"),
        [(0x02, "overflow"), (0x7F, "overflow"), (0x80, "eleven bytes"), (0x01, "ok"), (0x00, "ok")],
    )
    def test_a_varint_beyond_64_bits_is_undecodable(
        self, codec: Codec, other: Codec, tenth: int, name: str
    ) -> None:
        # fastavro reads a ten-byte varint modulo 2**64 (`80 x9, 02` is 0), the Java and Python avro
        # readers refuse it: such a message would mean different things to different consumers. A
        # tenth byte of 0 or 1 is a valid (if long-winded) 64-bit value.
        event = InventoryAdjusted("0", 0, "0", "0", 0, None)
        body = (
            b"\x020"
            + bytes([0x80] * 9 + [tenth])
            + (b"\x01" if tenth == 0x80 else b"")
            + b"\x020\x020\x00\x00"
        )
        message = codec.encode(event)[:HEADER_SIZE] + body
        if name == "ok":
            decoded = codec.decode(message, validate=False)
            assert isinstance(decoded, InventoryAdjusted)
            assert decoded == other.decode(message, validate=False)
            assert decoded.occurred_at == (0 if tenth == 0 else 2**62)  # zigzag of 2**63
        else:
            with pytest.raises(UndecodableBody):
                codec.decode(message, validate=False)


class TestFastavroCodec(CodecContract):
    codec_type = FastavroCodec
    other_type = AvroCodec


class TestAvroCodec(CodecContract):
    codec_type = AvroCodec
    other_type = FastavroCodec
