"""Schema evolution rules: which versions of an event may follow which.

Checks use the `avro` library's own reader/writer compatibility checker (the port of Java's
`SchemaCompatibility`), on the schemas with logical types stripped, exactly as the codec reads them.
The published directory is checked `full` and transitive: every version reads every other one's
bytes, so old and new workers can share a topic during a rolling deploy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.codec import SchemaJSON, SchemaSet, SchemaVersion, strip_logical_types

Mode = Literal["backward", "forward", "full"]


def incompatibilities(reader: SchemaJSON, writer: SchemaJSON) -> list[str]:
    """Why bytes written with `writer` cannot be read as `reader` (empty: they can).

    Both schemas are JSON-like data (dicts, lists or type names), as in an `.avsc` file.
    """
    parsed_reader, parsed_writer = (
        avro.schema.parse(json.dumps(strip_logical_types(s))) for s in (reader, writer)
    )
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro leaves __init__ unannotated
    result = checker.get_compatibility(parsed_reader, parsed_writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted({i.value for i in result.incompatibilities}))
    where = ", ".join(sorted(_located(loc, reader) for loc in result.locations - {"/"}) or ["/"])
    return [f"{kinds}: {message} (at {where})" for message in sorted(result.messages)]


def _located(location: str, reader: SchemaJSON) -> str:
    """A location in the reader schema ("/fields/6/type") with the field names it passes ("total")."""
    node: Any = reader
    names: list[str] = []
    steps = location.strip("/").split("/")
    i = 0
    while i < len(steps):
        if steps[i] == "fields" and i + 1 < len(steps) and isinstance(node, dict) and steps[i + 1].isdigit():
            field = node["fields"][int(steps[i + 1])]
            names.append(str(field["name"]))
            node, i = field["type"], i + 2
        elif steps[i] == "items" and isinstance(node, dict):
            node, i = node.get("items"), i + 1
        elif steps[i] == "type":
            i += 1
        else:
            break
    return f"{location}, field {'.'.join(names)}" if names else location


def can_read(reader: SchemaJSON, writer: SchemaJSON) -> bool:
    """Whether every message written with `writer` can be resolved into `reader`."""
    return not incompatibilities(reader, writer)


def check_versions(versions: Sequence[SchemaVersion], mode: Mode = "full") -> list[str]:
    """Problems between the versions of one record name (any order); empty when they may coexist.

    `backward`: each version reads every older one; `forward`: every older one reads it; `full`: both.
    """
    ordered = sorted(versions, key=lambda v: v.version)
    problems = []
    for i, old in enumerate(ordered):
        for new in ordered[i + 1 :]:
            pairs = []
            if mode in ("backward", "full"):
                pairs.append((new, old))
            if mode in ("forward", "full"):
                pairs.append((old, new))
            for reader, writer in pairs:
                problems += [
                    f"{reader.label} cannot read {writer.label}: {why}"
                    for why in incompatibilities(reader.schema, writer.schema)
                ]
    return problems


def check_directory(directory: Path | str | None = None, mode: Mode = "full") -> list[str]:
    """Problems between the published versions in `directory` (default: the package's schemas)."""
    schemas = SchemaSet.load(directory)
    return [p for name in schemas.names for p in check_versions(schemas.versions(name), mode)]
