"""Errors of the codec: one root, one line each, a stable `code` for the DLQ header.

Decoding raises exactly these for bad input (anything the Avro library raises is wrapped with
`raise ... from exc`), so a consumer needs one `except CodecError` to route a record to the DLQ.

Talking to a schema registry has a second root, `RegistryError`: an unanswering registry is an outage,
not bad input, so none of its errors is a `CodecError` (nothing reaches the DLQ for it).
"""

# ruff: noqa: N818 - the class names are the error kinds other components match on, not "...Error"
from __future__ import annotations

from typing import ClassVar

from schemas.events import Event


class CodecError(Exception):
    """A message could not be encoded or decoded; `code` names the kind (stable, used as a DLQ header)."""

    code: ClassVar[str] = "codec_error"


class SchemaLoadError(CodecError):
    """The schema directory is unusable (bad file name, unparsable `.avsc`, duplicate version)."""

    code = "schema_load"


class UnencodableEvent(CodecError):
    """An event's values do not fit its schema (wrong type, int/long out of range)."""

    code = "unencodable_event"


class BadMarker(CodecError):
    """The message does not start with the single-object marker `C3 01`."""

    code = "bad_marker"


class UnknownFingerprint(CodecError):
    """No known schema has the writer fingerprint in the header."""

    code = "unknown_fingerprint"

    def __init__(self, fingerprint: bytes) -> None:
        self.fingerprint = fingerprint
        value = int.from_bytes(fingerprint, "little")
        super().__init__(
            f"no schema with fingerprint 0x{value:016x} (wire bytes {fingerprint.hex()}); "
            "is the .avsc in schemas/?"
        )


class UnknownSchemaId(CodecError):
    """The schema registry says it has no schema with the Confluent-framed message's id."""

    code = "unknown_schema_id"


class UnreadableSchema(CodecError):
    """The registry's schema for the message's id cannot be read into a vendorpulse event record."""

    code = "unreadable_schema"


class TruncatedBody(CodecError):
    """The message ended before its header or its body was complete."""

    code = "truncated_body"


class TrailingBytes(CodecError):
    """The body decoded but bytes were left over after it."""

    code = "trailing_bytes"


class UndecodableBody(CodecError):
    """The body is not valid Avro for the writer schema (bad UTF-8, union index, int out of range...)."""

    code = "undecodable_body"


class InvalidEvent(CodecError):
    """The body decoded but the event breaks a rule of contract §3; `reason` is `event.validate()`."""

    code = "invalid_event"

    def __init__(self, reason: str, event: Event) -> None:
        super().__init__(f"{type(event).__name__} {event.event_id!r}: {reason}")
        self.reason = reason
        self.event = event


class RegistryError(Exception):
    """Root of the errors of talking to a schema registry (not bad input: nothing goes to the DLQ)."""


class RegistryUnavailable(RegistryError):
    """The schema registry did not answer (or answered with a server error) for longer than allowed."""


class SchemaNotPrepared(RegistryError):
    """A Confluent-framed message was decoded before its schema id was resolved: a bug of the caller."""

    def __init__(self, schema_id: int) -> None:
        self.schema_id = schema_id
        super().__init__(
            f"schema id {schema_id} was not resolved; call `await resolver.prepare(values)` before decoding"
        )


class RegistrationRefused(RegistryError):
    """The registry refused a schema version (incompatible with its subject, or invalid)."""
