"""Avro single-object encoding of the events (contract §3), with writer schemas found by fingerprint.

A message is `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
Canonical Form, then the Avro binary body. Every `<Name>.v<N>.avsc` in the schema directory is a
possible writer; the newest version of a record name is the reader (unless a codec pins an older one
for code that only knows it), and Avro schema resolution turns any writer's body into the reader's shape.

Times stay `int` epoch-millis end to end: the libraries get a copy of each schema with `logicalType`
stripped, which has the same Parsing Canonical Form, hence the same fingerprint (checked at load).
The fingerprint uses the Java reference's canonical form (`"long"` for a logical long), as fastavro
does; the `avro` library's own `Schema.fingerprint()` keeps `{"type":"long"}` there and disagrees.

With a schema registry configured (contract §3), a codec also reads the Confluent wire format: byte
`00`, the 4-byte big-endian schema id, then the body. The codec itself does no I/O: `schemas.confluent`
fetches the writer schemas of new ids and hands them over (`add_writer`, `refuse_id`) *before* a batch
is decoded, so decoding stays synchronous and a known id costs one dict lookup more than a fingerprint.

`FastavroCodec` is the hot path; `AvroCodec` (the `avro` library) is the reference to compare with.
`FastavroCodec` reads the bodies of a writer version into itself (nearly every message) with a reader
compiled for that schema (`schemas.binary_reader`), and resolves other versions with fastavro.
Decoding raises only `CodecError` subclasses for bad input, never a library exception (and
`SchemaNotPrepared` for a registry id nobody resolved: a bug of the caller, not bad input).
"""

from __future__ import annotations

import abc
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

import avro.errors
import avro.io
import avro.schema
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from schemas.binary_reader import BodyReader, compile_reader
from schemas.events import EVENT_TYPES, NAMESPACE, RECORD_TYPES, Event
from schemas.exceptions import (
    BadMarker,
    CodecError,
    InvalidEvent,
    SchemaLoadError,
    SchemaNotPrepared,
    TrailingBytes,
    TruncatedBody,
    UndecodableBody,
    UnencodableEvent,
    UnknownFingerprint,
)

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
CONFLUENT_MAGIC = 0
"""The first byte of the Confluent wire format (then a 4-byte big-endian schema id)."""
CONFLUENT_HEADER_SIZE = 5
MAX_IDS = 10_000
"""Registry ids a codec remembers before it drops refusals that will be asked again anyway."""
SCHEMA_DIR = Path(__file__).resolve().parent
"""The published schemas: every version of every event stays here."""

SchemaJSON = str | list[Any] | dict[str, Any]
"""A schema as JSON-like data, as in an `.avsc` file."""

_FILE_NAME = re.compile(r"(?P<name>[A-Za-z_]\w*)\.v(?P<version>[1-9]\d*)\.avsc")
_INT32 = range(-(2**31), 2**31)
_TEN_BYTE_VARINT = re.compile(rb"[\x80-\xff]{9}")
"""Nine bytes in a row with the continuation bit: where a varint of ten bytes or more may be."""

# CRC-64-AVRO, as in the specification's reference implementation.
_EMPTY = 0xC15D213AA4D7A795
_TABLE: list[int] = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    """The CRC-64-AVRO fingerprint of `data` as an unsigned 64-bit int (Java's `parsingFingerprint64`)."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def canonical_form(schema: SchemaJSON) -> str:
    """The Parsing Canonical Form of a schema given as JSON-like data (a dict, list or type name)."""
    return str(to_parsing_canonical_form(parse_schema(schema)))


def fingerprint(schema: SchemaJSON) -> bytes:
    """The 8 bytes a single-object message carries for `schema`: CRC-64-AVRO of its canonical form, LE."""
    return crc64_avro(canonical_form(schema).encode()).to_bytes(8, "little")


def strip_logical_types(schema: Any) -> Any:
    """A copy of `schema` without `logicalType` annotations, so the libraries keep plain ints."""
    if isinstance(schema, list):
        return [strip_logical_types(branch) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items() if k != "logicalType"}
    if isinstance(out.get("type"), list | dict):
        out["type"] = strip_logical_types(out["type"])
    for key in ("items", "values"):
        if key in out:
            out[key] = strip_logical_types(out[key])
    if "fields" in out:
        out["fields"] = [{**f, "type": strip_logical_types(f["type"])} for f in out["fields"]]
    return out


def fingerprint_of(message: bytes) -> bytes:
    """The writer fingerprint in a message's header, without decoding its body."""
    if message[:2] != MAGIC:
        raise BadMarker(f"message does not start with C3 01 (got {bytes(message[:2]).hex() or 'nothing'})")
    if len(message) < HEADER_SIZE:
        raise TruncatedBody(f"message is {len(message)} bytes; the header alone is {HEADER_SIZE}")
    return bytes(message[2:HEADER_SIZE])


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One published `.avsc`: `schema` as written (with logical types), `plain` without them."""

    name: str
    version: int
    path: Path
    schema: dict[str, Any] = field(repr=False)
    plain: dict[str, Any] = field(repr=False)
    fingerprint: bytes
    origin: str | None = None
    """where a writer that is not a published version came from, e.g. "registry id 7" (version 0)"""

    @property
    def label(self) -> str:
        short = self.name.rpartition(".")[2]
        return f"{short} ({self.origin})" if self.origin else f"{short} v{self.version}"

    @classmethod
    def load(cls, path: Path) -> SchemaVersion:
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise SchemaLoadError(
                f"{path}: schema files are named <Name>.v<N>.avsc, e.g. OrderPlaced.v1.avsc"
            )
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
            parse_schema(schema)
        except Exception as exc:  # any parse failure means the same to the operator
            raise SchemaLoadError(f"{path}: not a valid Avro schema: {exc}") from exc
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise SchemaLoadError(f"{path}: the top level must be a record")
        name = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', '')}.{schema['name']}"
        if name.rpartition(".")[2] != match["name"]:
            raise SchemaLoadError(f"{path}: file name says {match['name']}, the schema says {name}")
        plain = strip_logical_types(schema)
        written = fingerprint(schema)
        if fingerprint(plain) != written:  # cannot happen while canonical form drops logicalType
            raise SchemaLoadError(f"{path}: stripping logical types changed the fingerprint")
        return cls(name.lstrip("."), int(match["version"]), path, schema, plain, written)


class SchemaSet:
    """Every published version, by fingerprint and by record full name (oldest first)."""

    def __init__(self, versions: Iterable[SchemaVersion]) -> None:
        self._by_name: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for v in sorted(versions, key=lambda v: (v.name, v.version)):
            same = self._by_name.setdefault(v.name, [])
            if same and same[-1].version == v.version:
                raise SchemaLoadError(f"{v.label} twice: {same[-1].path} and {v.path}")
            same.append(v)
            # Versions differing only in defaults or docs share a fingerprint; the bytes are the same.
            self._by_fingerprint.setdefault(v.fingerprint, v)

    @classmethod
    def load(cls, directory: Path | str | None = None) -> SchemaSet:
        """Every `*.avsc` directly in `directory` (default: the published schemas, `SCHEMA_DIR`)."""
        root = SCHEMA_DIR if directory is None else Path(directory)
        return cls(SchemaVersion.load(p) for p in sorted(root.glob("*.avsc")))

    def __iter__(self) -> Iterator[SchemaVersion]:
        return (v for versions in self._by_name.values() for v in versions)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        return tuple(self._by_name.get(name, ()))

    def latest(self, name: str) -> SchemaVersion:
        return self._by_name[name][-1]

    def by_fingerprint(self, fp: bytes) -> SchemaVersion:
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise UnknownFingerprint(fp) from None


IntCheck = Callable[[Any], bool]


def _int_check(schema: Any, named: dict[str, IntCheck | None]) -> IntCheck | None:
    """A predicate that every Avro `int` in a value of `schema` fits 32 bits, or None if it has no int.

    Neither library range-checks `int` (fastavro writes 2**40 as a varint, both read it back); a Java
    reader would refuse such a message, so the codec refuses to write or accept one. Plain loops, not
    `all(...)`: this runs on every message (0.9 µs instead of 2.7 µs for an order of 3 items).
    """
    if isinstance(schema, str):
        return _fits_int32 if schema == "int" else named.get(schema)
    if isinstance(schema, list):
        # A union value is checked by the branches of its Python shape (an int, a list, else a dict).
        kinds = [
            (int if b == "int" else list if isinstance(b, dict) and b["type"] == "array" else dict, check)
            for b in schema
            if (check := _int_check(b, named)) is not None
        ]
        return _union_check(kinds) if kinds else None
    kind = schema["type"]
    if kind == "record":
        ints = tuple(f["name"] for f in schema["fields"] if f["type"] == "int")
        nested = tuple(
            (f["name"], c)
            for f in schema["fields"]
            if f["type"] != "int" and (c := _int_check(f["type"], named))
        )
        check = _record_check(ints, nested) if ints or nested else None
        named[schema["name"]] = check  # fastavro's parsed schemas use full names
        return check
    if kind in ("array", "map"):
        inner = _int_check(schema["items" if kind == "array" else "values"], named)
        return None if inner is None else _collection_check(inner, values=kind == "map")
    return _int_check(kind, named)


def _fits_int32(value: Any) -> bool:
    return value in _INT32


def _record_check(ints: tuple[str, ...], nested: tuple[tuple[str, IntCheck], ...]) -> IntCheck:
    def check(record: Any) -> bool:
        for name in ints:
            if record[name] not in _INT32:
                return False
        for name, inner in nested:  # noqa: SIM110 - a loop is 3x faster than all(generator) here
            if not inner(record[name]):
                return False
        return True

    return check


def _collection_check(inner: IntCheck, *, values: bool) -> IntCheck:
    def check(collection: Any) -> bool:
        for item in collection.values() if values else collection:  # noqa: SIM110 - as above
            if not inner(item):
                return False
        return True

    return check


BoolCheck = Callable[[bytes, dict[str, Any]], bool]


def _bool_check(schema: Any) -> BoolCheck | None:
    """A predicate that the boolean of a message of the record `schema` is written as 0 or 1, or None.

    Avro writes a boolean as one byte, 0 or 1. fastavro reads any other byte as true, the Java and the
    Python `avro` readers as false: a damaged message would mean different things to different
    consumers, so the codec refuses it. The byte is found from the end of the message, which the body
    must fill exactly: for a record whose one top-level boolean is followed only by `int` and `long`
    fields (ProductUpserted), their varint lengths follow from the values read. Other shapes (none
    published) are not checked.
    """
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    fields = schema["fields"]
    flags = [i for i, f in enumerate(fields) if f["type"] == "boolean"]
    if len(flags) != 1:
        return None
    after = fields[flags[0] + 1 :]
    kinds = [f["type"]["type"] if isinstance(f["type"], dict) else f["type"] for f in after]
    if any(k not in ("int", "long") for k in kinds):
        return None
    tail = tuple(f["name"] for f in after)

    def check(message: bytes, record: dict[str, Any]) -> bool:
        pos = len(message) - 1
        for name in tail:
            value = record.get(name)
            if type(value) is not int:
                return True  # not in the reader's shape: not checked
            zigzag = (value << 1) ^ (value >> 63)
            pos -= (zigzag.bit_length() + 6) // 7 or 1
        return pos >= 0 and message[pos] < 2

    return check


def _union_check(kinds: Sequence[tuple[type, IntCheck]]) -> IntCheck:
    def check(value: Any) -> bool:
        return all(inner(value) for kind, inner in kinds if isinstance(value, kind))

    return check


def _defaults(version: SchemaVersion) -> dict[str, Any]:
    # JSON defaults equal the Python values for the types used here (null, boolean, int, long, string).
    return {f["name"]: f["default"] for f in version.plain["fields"] if "default" in f}


@dataclass(frozen=True, slots=True)
class _Route:
    """How to read one writer version into the reader version of its name, then into an event."""

    writer: SchemaVersion
    event_type: type[Event]
    writer_state: Any
    reader_state: Any  # None when the writer is the reader version
    ints_ok: IntCheck | None
    defaults: dict[str, Any]  # the writer's field defaults, for events that lack a newer field
    bools_ok: BoolCheck | None = None
    body_reader: BodyReader | None = None
    """Reads the body without the library (`schemas.binary_reader`), when the writer is the reader."""
    event_reader: BodyReader | None = None
    """The same, giving the event itself rather than its record."""


@dataclass(frozen=True, slots=True)
class _RefusedId:
    """A registry id that decodes to a refusal (unknown to the registry, or unreadable) until `until`."""

    error: type[CodecError]
    message: str
    until: float  # time.monotonic() after which the id is asked for again


class Codec(abc.ABC):
    """Encodes events with the reader version of their type; decodes any published version.

    The reader version of a record name is its newest in `schema_dir` (default: the published
    schemas), unless `readers` pins one, e.g. `{OrderCancelled: 1}` for code that only knows v1.
    """

    def __init__(
        self,
        schema_dir: Path | str | None = None,
        *,
        schemas: SchemaSet | None = None,
        readers: Mapping[type[Event], int] | None = None,
    ) -> None:
        self.schemas = schemas if schemas is not None else SchemaSet.load(schema_dir)
        pins = {f"{NAMESPACE}.{t.NAME}": n for t, n in (readers or {}).items()}
        if unknown := pins.keys() - set(self.schemas.names):
            raise SchemaLoadError(f"no schema to pin for {', '.join(sorted(unknown))}")
        self._routes: dict[bytes, _Route] = {}
        self._writers: dict[type[Event], tuple[bytes, _Route]] = {}
        states: dict[bytes, Any] = {}
        for v in self.schemas:
            states.setdefault(v.fingerprint, self._prepare(v))
        for name in self.schemas.names:
            event_type = EVENT_TYPES.get(name)
            if event_type is None:
                raise SchemaLoadError(f"{name}: no event class for it in schemas/events.py")
            versions = self.schemas.versions(name)
            reader = (
                next((v for v in versions if v.version == pins[name]), None) if name in pins else versions[-1]
            )
            if reader is None:
                raise SchemaLoadError(f"{name}: no version {pins[name]} to read with")
            ints_ok = _int_check(parse_schema(reader.plain), {})
            for v in versions:
                reader_state = None if v.fingerprint == reader.fingerprint else states[reader.fingerprint]
                route = _Route(
                    v,
                    event_type,
                    states[v.fingerprint],
                    reader_state,
                    ints_ok,
                    _defaults(v),
                    _bool_check(v.plain),
                    self._body_reader(v) if reader_state is None else None,
                    self._body_reader(v, events=True) if reader_state is None else None,
                )
                self._routes.setdefault(v.fingerprint, route)
            own = replace(self._routes[reader.fingerprint], writer=reader, defaults=_defaults(reader))
            self._writers[event_type] = (MAGIC + reader.fingerprint, own)
        self._by_id: dict[int, _Route | _RefusedId] | None = None  # None: Confluent framing not accepted
        self._strict: dict[bytes, avro.io.DatumReader] = {}
        """Writer fingerprint -> its `avro` reader, for `_check_long_varints`."""

    # -- Confluent framing (contract §3, with a schema registry) -------------------------------------
    def accept_confluent(self) -> None:
        """Accept the Confluent wire format from now on; ids are added by `add_writer`/`refuse_id`."""
        if self._by_id is None:
            self._by_id = {}

    @property
    def accepts_confluent(self) -> bool:
        return self._by_id is not None

    def reader_of(self, name: str) -> SchemaVersion | None:
        """The version a writer of record `name` is read into, or None when no event has that name."""
        route = self._writers.get(EVENT_TYPES[name]) if name in EVENT_TYPES else None
        return route[1].writer if route is not None else None

    def add_writer(self, schema_id: int, writer: SchemaVersion) -> None:
        """Read messages framed with `schema_id` as written with `writer` (whose record the caller
        checked is readable into the reader version of its name, `reader_of(writer.name)`)."""
        if self._by_id is None:
            raise SchemaLoadError("call accept_confluent() first")
        published = self._routes.get(writer.fingerprint)
        if published is not None:  # a published version: the same bytes, the same route
            self._by_id[schema_id] = published
            return
        reader_route = self._writers[EVENT_TYPES[writer.name]][1]
        self._by_id[schema_id] = _Route(
            writer,
            reader_route.event_type,
            self._prepare(writer),
            reader_route.writer_state,
            reader_route.ints_ok,
            _defaults(writer),
            _bool_check(writer.plain),
        )

    def refuse_id(self, schema_id: int, error: type[CodecError], message: str, until: float) -> None:
        """Messages framed with `schema_id` are refused with `error(message)` until `until` (monotonic)."""
        if self._by_id is None:
            raise SchemaLoadError("call accept_confluent() first")
        if len(self._by_id) >= MAX_IDS:  # garbage with random ids must not grow the table for ever
            for stale in [i for i, v in self._by_id.items() if type(v) is _RefusedId and v.until < until]:
                del self._by_id[stale]
        self._by_id[schema_id] = _RefusedId(error, message, until)

    def unresolved_ids(self, values: Iterable[bytes | None], now: float) -> set[int]:
        """The Confluent schema ids in `values` that are neither known nor refused (or whose refusal
        expired at `now`): what must be resolved before these values can be decoded."""
        by_id = self._by_id
        if by_id is None:
            return set()
        missing: set[int] = set()
        for value in values:
            if value and value[0] == CONFLUENT_MAGIC and len(value) >= CONFLUENT_HEADER_SIZE:
                schema_id = int.from_bytes(value[1:5], "big")
                known = by_id.get(schema_id)
                if known is None or (type(known) is _RefusedId and known.until < now):
                    missing.add(schema_id)
        return missing

    def stored_form(self, message: bytes, event: Event) -> bytes:
        """`message` as single-object bytes: itself, or `event` encoded again (Confluent framing), so
        that what is stored can be decoded later without a registry."""
        if message[:2] == MAGIC:
            return message
        return self.encode(event)

    def encode(self, event: Event) -> bytes:
        """A single-object message for `event`, written with the reader version of its type.

        The event is not validated (a producer may send an invalid one on purpose); values that do not
        fit the schema raise `UnencodableEvent`. Fields the event class lacks get their schema default.
        """
        try:
            header, route = self._writers[type(event)]
        except KeyError:
            raise UnencodableEvent(f"no schema for {type(event).__name__}") from None
        record = event.to_record()
        if not route.defaults.keys() <= record.keys():
            record = {**route.defaults, **record}
        try:
            if route.ints_ok is not None and not route.ints_ok(record):
                raise UnencodableEvent(f"{route.writer.label}: an int field is outside 32 bits")
            out = io.BytesIO()
            out.write(header)
            self._write(route.writer_state, record, out)
        except CodecError:
            raise
        except Exception as exc:
            raise UnencodableEvent(f"{route.writer.label}: {type(exc).__name__}: {exc}") from exc
        return out.getvalue()

    def decode(self, message: bytes, *, validate: bool = True) -> Event:
        """The event in `message`, resolved to the reader version of its type.

        Raises a `CodecError` subclass for any bad input, and `InvalidEvent` (carrying the event) when
        `validate` is set and `event.validate()` gives a reason.
        """
        route, header_size = self._route(message)
        if route.event_reader is not None:
            event: Event = self._read_body(route, route.event_reader, message, header_size)
        else:
            route, record = self._read_record(message)
            event = route.event_type.from_record(record)
        if validate and (reason := event.validate()):
            raise InvalidEvent(reason, event)
        return event

    def read(self, message: bytes) -> tuple[SchemaVersion, dict[str, Any]]:
        """The writer version of `message` and its record in the reader version's shape (no event)."""
        route, record = self._read_record(message)
        return route.writer, record

    def _read_body(self, route: _Route, reader: BodyReader, message: bytes, header_size: int) -> Any:
        """What a compiled reader reads from the body; it checks ints, booleans and long varints as it
        reads (`schemas.binary_reader`)."""
        if type(message) is not bytes:
            message = bytes(message)
        try:
            value, end = reader(message, header_size)
        except (EOFError, IndexError) as exc:  # it reads nothing past the end but by these
            raise TruncatedBody(f"{route.writer.label}: body ends too early: {exc}") from exc
        except Exception as exc:
            raise UndecodableBody(f"{route.writer.label}: {type(exc).__name__}: {exc}") from exc
        if end != len(message):
            raise TrailingBytes(f"{route.writer.label}: {len(message) - end} bytes left after the body")
        return value

    def _read_record(self, message: bytes) -> tuple[_Route, dict[str, Any]]:
        route, header_size = self._route(message)
        if route.body_reader is not None:
            return route, self._read_body(route, route.body_reader, message, header_size)
        source = io.BytesIO(message)
        source.seek(header_size)
        try:
            record = self._read(route.writer_state, route.reader_state, source)
        except Exception as exc:
            if self._ran_out(exc, source, message):
                raise TruncatedBody(f"{route.writer.label}: body ends too early: {exc}") from exc
            raise UndecodableBody(f"{route.writer.label}: {type(exc).__name__}: {exc}") from exc
        if source.tell() != len(message):
            extra = len(message) - source.tell()
            raise TrailingBytes(f"{route.writer.label}: {extra} bytes left after the body")
        if route.ints_ok is not None and not route.ints_ok(record):
            raise UndecodableBody(f"{route.writer.label}: an int field is outside 32 bits")
        if route.bools_ok is not None and not route.bools_ok(message, record):
            raise UndecodableBody(f"{route.writer.label}: a boolean is written as a byte other than 0 or 1")
        if _TEN_BYTE_VARINT.search(message, header_size) is not None:
            self._check_long_varints(route.writer, message, header_size)
        return route, record

    def _check_long_varints(self, writer: SchemaVersion, message: bytes, header_size: int) -> None:
        """Refuse a varint beyond 64 bits. Avro's longs take at most ten bytes, the tenth 0 or 1; fastavro
        reads a longer value modulo 2**64 (`80 x9, 02` is 0) where the Java and the Python `avro`
        readers refuse it, so a damaged message would mean different things to different consumers.
        Only a body with nine bytes in a row at or above 0x80 can hold such a varint (non-ASCII text
        can too): those are read again with `avro`, which checks each varint."""
        strict = self._strict.get(writer.fingerprint)
        if strict is None:
            schema = avro.schema.parse(json.dumps(writer.plain))
            strict = self._strict[writer.fingerprint] = avro.io.DatumReader(schema, schema)
        try:
            strict.read(avro.io.BinaryDecoder(io.BytesIO(message[header_size:])))
        except avro.errors.InvalidAvroBinaryEncoding as exc:
            raise UndecodableBody(f"{writer.label}: {exc}") from exc

    def peek(self, message: bytes) -> SchemaVersion:
        """The writer schema of `message`, from its header alone."""
        return self._route(message)[0].writer

    def _route(self, message: bytes) -> tuple[_Route, int]:
        """How to read `message`, and where its body starts."""
        if self._by_id is not None and message[:1] == b"\x00":
            if len(message) < CONFLUENT_HEADER_SIZE:
                raise TruncatedBody(
                    f"message is {len(message)} bytes; a Confluent header alone is {CONFLUENT_HEADER_SIZE}"
                )
            schema_id = int.from_bytes(message[1:5], "big")
            found = self._by_id.get(schema_id)
            if found is None:
                raise SchemaNotPrepared(schema_id)
            if type(found) is _RefusedId:
                raise found.error(found.message)
            assert type(found) is _Route
            return found, CONFLUENT_HEADER_SIZE
        if self._by_id is not None and message[:2] != MAGIC:
            got = bytes(message[:2]).hex() or "nothing"
            raise BadMarker(
                f"message starts with neither C3 01 (single-object) nor 00 (Confluent): got {got}"
            )
        route = self._routes.get(message[2:HEADER_SIZE]) if message[:2] == MAGIC else None
        if route is not None:  # the common case: a known fingerprint, looked up without the checks below
            return route, HEADER_SIZE
        fp = fingerprint_of(message)
        try:
            return self._routes[fp], HEADER_SIZE
        except KeyError:
            raise UnknownFingerprint(fp) from None

    @abc.abstractmethod
    def _prepare(self, version: SchemaVersion) -> Any:
        """The library's parsed form of `version.plain`, built once."""

    def _body_reader(self, version: SchemaVersion, *, events: bool = False) -> BodyReader | None:
        """A reader of `version`'s bodies into itself that bypasses the library, or None (the library
        reads them); with `events`, one that gives the event rather than its record."""
        return None

    @abc.abstractmethod
    def _write(self, writer: Any, record: Mapping[str, Any], out: io.BytesIO) -> None: ...

    @abc.abstractmethod
    def _read(self, writer: Any, reader: Any, source: io.BytesIO) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _ran_out(self, exc: Exception, source: io.BytesIO, message: bytes) -> bool:
        """Whether `exc` means the body ended before the schema was satisfied."""


class FastavroCodec(Codec):
    """The hot path: fastavro's schemaless reader and writer on schemas parsed once."""

    def _prepare(self, version: SchemaVersion) -> Any:
        return parse_schema(version.plain)

    def _body_reader(self, version: SchemaVersion, *, events: bool = False) -> BodyReader | None:
        if not events:
            return compile_reader(version.plain)
        # Built positionally: only where each record's class has the record's fields, in its order.
        build = {name: t for name, t in RECORD_TYPES.items() if _fields_of(version.plain, name) is not None}
        for name, t in build.items():
            if _fields_of(version.plain, name) != [f.name for f in fields(t)]:
                return None
        return compile_reader(version.plain, build) if version.name in build else None

    def _write(self, writer: Any, record: Mapping[str, Any], out: io.BytesIO) -> None:
        schemaless_writer(out, writer, record)

    def _read(self, writer: Any, reader: Any, source: io.BytesIO) -> dict[str, Any]:
        return cast(dict[str, Any], schemaless_reader(source, writer, reader))  # a record reads a dict

    def _ran_out(self, exc: Exception, source: io.BytesIO, message: bytes) -> bool:
        if isinstance(exc, EOFError):
            return True
        # A varint cut short is an IndexError; the last byte still has its continuation bit set.
        return isinstance(exc, IndexError) and source.tell() >= len(message) and message[-1] >= 0x80


def _fields_of(schema: Any, full_name: str, space: str = "") -> list[str] | None:
    """The field names of the record `full_name` defined in `schema`, or None if it defines none."""
    if isinstance(schema, list):
        found = (_fields_of(branch, full_name, space) for branch in schema)
        return next((f for f in found if f is not None), None)
    if not isinstance(schema, dict):
        return None
    kind = schema["type"]
    if kind == "record":
        name = schema["name"]
        space = name.rpartition(".")[0] if "." in name else schema.get("namespace", space)
        if (name if "." in name else f"{space}.{name}") == full_name:
            return [f["name"] for f in schema["fields"]]
        found = (_fields_of(f["type"], full_name, space) for f in schema["fields"])
        return next((f for f in found if f is not None), None)
    if kind in ("array", "map"):
        return _fields_of(schema["items" if kind == "array" else "values"], full_name, space)
    return _fields_of(kind, full_name, space) if isinstance(kind, dict | list) else None


@dataclass(frozen=True, slots=True)
class _AvroState:
    schema: avro.schema.Schema
    writer: avro.io.DatumWriter
    reader: avro.io.DatumReader  # of this version's own bytes


class AvroCodec(Codec):
    """The `avro` library (Apache's reference implementation for Python), for comparison."""

    def _prepare(self, version: SchemaVersion) -> _AvroState:
        schema = avro.schema.parse(json.dumps(version.plain))
        return _AvroState(schema, avro.io.DatumWriter(schema), avro.io.DatumReader(schema, schema))

    def _write(self, writer: _AvroState, record: Mapping[str, Any], out: io.BytesIO) -> None:
        writer.writer.write(record, avro.io.BinaryEncoder(out))

    def _read(self, writer: _AvroState, reader: _AvroState | None, source: io.BytesIO) -> dict[str, Any]:
        datum_reader = writer.reader if reader is None else avro.io.DatumReader(writer.schema, reader.schema)
        return cast(dict[str, Any], datum_reader.read(avro.io.BinaryDecoder(source)))  # a record reads a dict

    def _ran_out(self, exc: Exception, source: io.BytesIO, message: bytes) -> bool:
        # The library reads what is there, then complains about the short read; a length or count
        # beyond what remains is refused before reading ("only N remain", "only N bytes are available").
        if not isinstance(exc, avro.errors.InvalidAvroBinaryEncoding):
            return False
        return source.tell() >= len(message) or "only" in str(exc)
