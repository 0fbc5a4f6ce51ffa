"""Schema evolution: a v2 next to the v1s, read both ways, and the compatibility rules that allow it."""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastavro import parse_schema, schemaless_writer

from schemas.codec import (
    HEADER_SIZE,
    MAGIC,
    SCHEMA_DIR,
    AvroCodec,
    Codec,
    FastavroCodec,
    SchemaSet,
    fingerprint,
)
from schemas.compat import can_read, check_directory, check_versions, incompatibilities
from schemas.events import OrderCancelled
from schemas.exceptions import SchemaLoadError, UndecodableBody, UnknownFingerprint

CANCELLED = "vendorpulse.events.OrderCancelled"
EVENT = OrderCancelled("evt-1", 1_732_000_000_000, "vendor-7", "order-1", "out of stock")


def published(name: str = "OrderCancelled") -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.v1.avsc").read_text())
    return schema


def with_field(schema: dict[str, Any], new_field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    changed["fields"].append(new_field)
    return changed


def with_type(schema: dict[str, Any], field_name: str, new_type: Any) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    next(f for f in changed["fields"] if f["name"] == field_name)["type"] = new_type
    return changed


V1 = published()
V2 = with_field(V1, {"name": "cancelled_by", "type": "string", "default": "customer"})
"""A compatible v2: one new field, with a default (a non-null one, so filling it in shows)."""


def make_schema_dir(root: Path, **extra: dict[str, Any]) -> Path:
    """A copy of the published schemas plus `extra` files, e.g. `OrderCancelled_v2=...`."""
    root.mkdir(parents=True, exist_ok=True)
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, root / path.name)
    for stem, schema in extra.items():
        (root / f"{stem.replace('_v', '.v')}.avsc").write_text(json.dumps(schema))
    return root


@pytest.fixture
def v2_dir(tmp_path: Path) -> Path:
    return make_schema_dir(tmp_path / "schemas", OrderCancelled_v2=V2)


def v2_message(cancelled_by: str) -> bytes:
    """A v2 message written by fastavro directly, as another producer would."""
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(V2), {**EVENT.to_record(), "cancelled_by": cancelled_by})
    return MAGIC + fingerprint(V2) + out.getvalue()


class EvolutionContract:
    codec_type: ClassVar[type[Codec]]

    def test_v1_bytes_read_as_v2_get_the_default(self, v2_dir: Path) -> None:
        v1_bytes = self.codec_type().encode(EVENT)
        codec = self.codec_type(v2_dir)
        writer, record = codec.read(v1_bytes)
        assert writer.label == "OrderCancelled v1"
        assert record == {**EVENT.to_record(), "cancelled_by": "customer"}
        assert codec.decode(v1_bytes) == EVENT

    def test_encode_writes_the_newest_version_and_fills_new_fields_with_defaults(self, v2_dir: Path) -> None:
        codec = self.codec_type(v2_dir)
        message = codec.encode(EVENT)
        assert message[2:HEADER_SIZE] == fingerprint(V2)
        assert message == v2_message("customer")
        assert codec.read(message)[1]["cancelled_by"] == "customer"

    def test_v2_bytes_read_by_v1_code_drop_the_new_field(self, v2_dir: Path) -> None:
        v1_reader = self.codec_type(v2_dir, readers={OrderCancelled: 1})
        message = v2_message("support-agent")
        writer, record = v1_reader.read(message)
        assert writer.label == "OrderCancelled v2"
        assert record == EVENT.to_record()
        assert v1_reader.decode(message) == EVENT
        # Code pinned to v1 also writes v1.
        assert v1_reader.encode(EVENT)[2:HEADER_SIZE] == fingerprint(V1)

    def test_v2_bytes_without_the_v2_file_name_the_fix(self) -> None:
        with pytest.raises(UnknownFingerprint, match=r"is the \.avsc in schemas/\?"):
            self.codec_type().decode(v2_message("support-agent"))

    def test_an_incompatible_version_makes_old_bytes_undecodable_not_a_crash(self, tmp_path: Path) -> None:
        broken = make_schema_dir(tmp_path, OrderCancelled_v2=with_type(V1, "occurred_at", "string"))
        v1_bytes = self.codec_type().encode(EVENT)
        with pytest.raises(UndecodableBody, match="OrderCancelled v1"):
            self.codec_type(broken).decode(v1_bytes)

    def test_pinning_a_missing_version_is_refused(self, v2_dir: Path) -> None:
        with pytest.raises(SchemaLoadError, match="no version 3"):
            self.codec_type(v2_dir, readers={OrderCancelled: 3})


class TestFastavroEvolution(EvolutionContract):
    codec_type = FastavroCodec


class TestAvroEvolution(EvolutionContract):
    codec_type = AvroCodec


def test_fastavro_and_avro_resolve_v1_bytes_alike(v2_dir: Path) -> None:
    v1_bytes = FastavroCodec().encode(EVENT)
    assert FastavroCodec(v2_dir).read(v1_bytes) == AvroCodec(v2_dir).read(v1_bytes)


def test_a_new_field_with_a_default_is_fully_compatible() -> None:
    assert incompatibilities(V2, V1) == []  # v2 reads v1 (backward)
    assert incompatibilities(V1, V2) == []  # v1 reads v2 (forward)
    assert can_read(V2, V1)


@pytest.mark.parametrize(
    ("reader", "writer", "kind"),
    [
        pytest.param(
            with_field(V1, {"name": "cancelled_by", "type": "string"}),
            V1,
            "reader_field_missing_default_value: cancelled_by",
            id="new-field-without-default",
        ),
        pytest.param(with_type(V1, "occurred_at", "string"), V1, "type_mismatch", id="long-to-string"),
        pytest.param(with_type(V1, "occurred_at", "int"), V1, "type_mismatch", id="long-to-int"),
        pytest.param(
            V1,
            {**V1, "fields": [f for f in V1["fields"] if f["name"] != "order_id"]},
            "reader_field_missing_default_value: order_id",
            id="field-removed-without-default",
        ),
        pytest.param({**V1, "name": "OrderVoided"}, V1, "name_mismatch", id="renamed-record"),
    ],
)
def test_incompatible_changes_are_rejected(reader: Any, writer: Any, kind: str) -> None:
    problems = incompatibilities(reader, writer)
    assert len(problems) == 1
    assert problems[0].startswith(kind)
    assert not can_read(reader, writer)


def test_type_promotion_is_backward_but_not_forward_compatible(tmp_path: Path) -> None:
    int_v1 = with_type(published("InventoryAdjusted"), "delta", "int")
    long_v2 = with_type(int_v1, "delta", "long")
    assert can_read(long_v2, int_v1)
    assert not can_read(int_v1, long_v2)
    versions = _versions(tmp_path, "InventoryAdjusted", int_v1, long_v2)
    assert check_versions(versions, "backward") == []
    assert check_versions(versions, "forward") == [
        "InventoryAdjusted v1 cannot read InventoryAdjusted v2: "
        "type_mismatch: reader type: int not compatible with writer type: long (at /fields/4/type, field delta)"
    ]
    assert check_versions(versions, "full") == check_versions(versions, "forward")


def test_checks_are_transitive_across_all_versions(tmp_path: Path) -> None:
    v3 = with_field(V2, {"name": "refund", "type": "long", "default": 0})
    v3["fields"] = [f for f in v3["fields"] if f["name"] != "cancelled_by"]
    versions = _versions(tmp_path, "OrderCancelled", V1, V2, v3)
    assert check_versions(versions) == []
    v3_without_default = with_field(V1, {"name": "refund", "type": "long"})
    versions = _versions(tmp_path / "bad", "OrderCancelled", V1, V2, v3_without_default)
    problems = check_versions(versions, "backward")
    assert [p.split(":")[0] for p in problems] == [
        "OrderCancelled v3 cannot read OrderCancelled v1",
        "OrderCancelled v3 cannot read OrderCancelled v2",
    ]


def test_a_directory_with_a_compatible_v2_passes(v2_dir: Path) -> None:
    assert check_directory(v2_dir) == []


def test_a_directory_with_an_incompatible_v2_fails(tmp_path: Path) -> None:
    bad = make_schema_dir(tmp_path, OrderCancelled_v2=with_field(V1, {"name": "x", "type": "long"}))
    assert check_directory(bad) == [
        "OrderCancelled v2 cannot read OrderCancelled v1: "
        "reader_field_missing_default_value: x (at /fields/5, field x)"
    ]


def test_published_schemas_are_mutually_compatible() -> None:
    """Every version of a name reads every other one's bytes (full, transitive)."""
    assert check_directory() == []


def test_published_versions_are_numbered_without_gaps() -> None:
    """Published versions are never deleted: v1..vN of every name are all there."""
    schemas = SchemaSet.load()
    for name in schemas.names:
        numbers = [v.version for v in schemas.versions(name)]
        assert numbers == list(range(1, len(numbers) + 1)), name


def _versions(root: Path, name: str, *schemas: dict[str, Any]) -> list[Any]:
    root.mkdir(parents=True, exist_ok=True)
    for n, schema in enumerate(schemas, start=1):
        (root / f"{name}.v{n}.avsc").write_text(json.dumps(schema))
    return list(SchemaSet.load(root))
