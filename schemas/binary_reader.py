"""Avro binary bodies read by Python code generated once per writer schema (the codec's hot path).

fastavro's `schemaless_reader` is generic: for every field it dispatches on the type's name, looks the
field's schema up in dicts, and reads each varint byte through a `BytesIO.read(1)` method call, about
3,500 instructions per field. A reader compiled for one schema reads the bytes directly, one slice per
string, and its common cases (one-byte varints) inline: the same dict in a fraction of the time.

It reads what fastavro reads, and refuses what fastavro refuses: a body that ends too early
(`EOFError`, or `IndexError` past the end), a string that is not UTF-8 (`UnicodeDecodeError`), a
negative length (`ValueError`; fastavro calls it an end too early). It also makes, as it reads, the
checks the codec adds after fastavro (`ValueError`, with the codec's words): an `int` outside 32 bits,
a boolean byte other than 0 or 1, a varint beyond 64 bits (a tenth byte above 1; fastavro reads it
modulo 2**64). A union index out of range, which fastavro reads when it is negative (a branch from the
end of the list), is refused, as the Java and the Python `avro` readers refuse it.

`compile_reader` gives None for a schema with a type it does not handle (enum, fixed, map, bytes,
float, double, a named type used by name): the codec reads those with fastavro.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

BodyReader = Callable[[bytes, int], tuple[Any, int]]
"""(message, where the body starts) -> (the record, where it ended)."""


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint at `pos` and the position after it; one beyond 64 bits is refused."""
    b = buf[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        b = buf[pos]
        pos += 1
        if shift == 63 and b > 1:
            raise ValueError("a varint beyond 64 bits (a tenth byte above 1)")
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _bad_length(n: int, left: int) -> Exception:
    if n < 0:
        return ValueError(f"negative length {n}")
    return EOFError(f"a length of {n} bytes with {left} left")


class _UnsupportedError(Exception):
    pass


class _Source:
    """Python source of one reader, built field by field. A record whose full name is in `build` is
    made by calling that with its fields in schema order (and its arrays are tuples); others are dicts."""

    def __init__(self, build: Mapping[str, Callable[..., Any]]) -> None:
        self.lines: list[str] = []
        self.names = 0
        self.build = build
        self.namespace: dict[str, Any] = {"_long": _long, "_bad_length": _bad_length}

    def var(self) -> str:
        self.names += 1
        return f"v{self.names}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def long(self, indent: int, target: str) -> None:
        # One-byte varints (|value| < 64) are the common case: read inline, no call.
        self.emit(indent, "b = buf[pos]")
        self.emit(indent, "if b < 128:")
        self.emit(indent + 1, f"{target} = (b >> 1) ^ -(b & 1)")
        self.emit(indent + 1, "pos += 1")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"{target}, pos = _long(buf, pos)")

    def value(self, schema: Any, indent: int, target: str, space: str = "", made: bool = False) -> None:
        """Read a value of `schema` into the variable `target`; `space` is the enclosing namespace,
        `made` whether the enclosing record is built by a `build` callable."""
        if isinstance(schema, list):
            self.union(schema, indent, target, space, made)
            return
        kind = schema["type"] if isinstance(schema, dict) else schema
        if isinstance(kind, dict | list):  # {"type": {...}}: the inner schema
            self.value(kind, indent, target, space, made)
        elif kind == "long":
            self.long(indent, target)
        elif kind == "int":
            self.long(indent, target)
            self.emit(indent, f"if not -2147483648 <= {target} <= 2147483647:")
            self.emit(indent + 1, "raise ValueError('an int field is outside 32 bits')")
        elif kind == "string":
            n = self.var()
            self.long(indent, n)
            self.emit(indent, f"end = pos + {n}")
            self.emit(indent, f"if {n} < 0 or end > size:")
            self.emit(indent + 1, f"raise _bad_length({n}, size - pos)")
            self.emit(indent, f"{target} = buf[pos:end].decode()")
            self.emit(indent, "pos = end")
        elif kind == "boolean":
            self.emit(indent, "b = buf[pos]")
            self.emit(indent, "if b > 1:")
            self.emit(indent + 1, "raise ValueError('a boolean is written as a byte other than 0 or 1')")
            self.emit(indent, f"{target} = b == 1")
            self.emit(indent, "pos += 1")
        elif kind == "null":
            self.emit(indent, f"{target} = None")
        elif kind == "record":
            name = schema["name"]
            space = schema.get("namespace", space) if "." not in name else name.rpartition(".")[0]
            full = name if "." in name else f"{space}.{name}" if space else name
            make = self.build.get(full)
            values = []
            for f in schema["fields"]:
                v = self.var()
                self.value(f["type"], indent, v, space, make is not None)
                values.append(v)
            if make is None:
                pairs = ", ".join(
                    f"{f['name']!r}: {v}" for f, v in zip(schema["fields"], values, strict=True)
                )
                self.emit(indent, f"{target} = {{{pairs}}}")
            else:
                callee = f"_make{len(self.namespace)}"
                self.namespace[callee] = make
                self.emit(indent, f"{target} = {callee}({', '.join(values)})")
        elif kind == "array":
            self.array(schema["items"], indent, target, space, made)
        else:
            raise _UnsupportedError(kind)

    def union(self, branches: list[Any], indent: int, target: str, space: str, made: bool) -> None:
        index = self.var()
        self.long(indent, index)
        for i, branch in enumerate(branches):
            self.emit(indent, f"{'if' if i == 0 else 'elif'} {index} == {i}:")
            self.value(branch, indent + 1, target, space, made)
        self.emit(indent, "else:")
        self.emit(indent + 1, f"raise ValueError(f'union index {{{index}}} of {len(branches)} branches')")

    def array(self, items: Any, indent: int, target: str, space: str, made: bool) -> None:
        count, item = self.var(), self.var()
        self.emit(indent, f"{target} = []")
        self.long(indent, count)
        self.emit(indent, f"while {count} != 0:")
        self.emit(indent + 1, f"if {count} < 0:  # a block with its size in bytes: the size is not needed")
        self.emit(indent + 2, f"{count} = -{count}")
        self.long(indent + 2, "_")
        self.emit(indent + 1, f"for _ in range({count}):")
        self.value(items, indent + 2, item, space)
        self.emit(indent + 2, f"{target}.append({item})")
        self.long(indent + 1, count)
        if made:
            self.emit(indent, f"{target} = tuple({target})")


def compile_reader(
    schema: dict[str, Any], build: Mapping[str, Callable[..., Any]] | None = None
) -> BodyReader | None:
    """A reader of bodies written with the record `schema` (without logical types), or None when the
    schema has a type this module does not read. Records are dicts, except those whose full name is in
    `build`: that is called with the record's values in the schema's field order (arrays in them are
    tuples), e.g. an event class whose fields are the schema's."""
    source = _Source(build or {})
    try:
        source.value(schema, 1, "record")
    except _UnsupportedError:
        return None
    text = "\n".join(["def read(buf, pos):", "    size = len(buf)", *source.lines, "    return record, pos"])
    exec(compile(text, f"<avro reader of {schema.get('name', '?')}>", "exec"), source.namespace)
    reader: BodyReader = source.namespace["read"]
    return reader
