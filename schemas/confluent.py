"""Confluent framing with a schema registry (contract §3): subjects, and the resolver of schema ids.

A Confluent-framed value is `00`, a 4-byte big-endian schema id, then the Avro body. The writer schema
behind an id is fetched from the registry (Confluent REST API) with confluent-kafka's
`AsyncSchemaRegistryClient`, checked, and handed to the codec, which then decodes such values
synchronously. The caller's part is one line before it decodes a batch:

    await resolver.prepare(values)      # every new id resolved, or refused; waits through outages
    event = codec.decode(value)         # as before, for both framings

What an id resolves to:
- a writer schema whose record is a vendorpulse event that the reader version of its name can read
  (Avro schema resolution): decoded like a published version;
- an id the registry does not know (HTTP 404), or a schema that cannot be read into a vendorpulse
  record (not Avro, another record name, incompatible types): a refusal with that reason, so such
  messages go to the DLQ (`UnknownSchemaId`, `UnreadableSchema`). A refusal is remembered for
  `retry_refused_s`, then the registry is asked again (an id may be restored to it);
- no answer (connection refused, time-out, HTTP 5xx, or any other error): an **outage**, not bad
  input. `prepare` keeps retrying with backoff and returns only once the registry answered for every
  id; `status` says what it waits for, and a log line says so when the outage begins, every
  `REPORT_EVERY_S` while it lasts, and when it ends. `give_up_after` (for commands, not the worker)
  raises `RegistryUnavailable` instead of waiting for ever.

Subjects follow the TopicRecordNameStrategy: `<topic>-vendorpulse.events.<Name>` (`subject_for`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastavro import parse_schema
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_random,
)

from schemas.codec import Codec, SchemaVersion, fingerprint, strip_logical_types
from schemas.compat import incompatibilities
from schemas.events import NAMESPACE
from schemas.exceptions import RegistryUnavailable, UnknownSchemaId, UnreadableSchema

log = logging.getLogger("vendorpulse.schemas")
REPORT_EVERY_S = 30.0
"""While an outage lasts, its log line is repeated this often."""


def subject_for(topic: str, record_name: str) -> str:
    """The TopicRecordNameStrategy subject of a record (full name, or short name in our namespace)."""
    full = record_name if "." in record_name else f"{NAMESPACE}.{record_name}"
    return f"{topic}-{full}"


def registry_client(url: str, timeout_s: float = 5.0) -> Any:
    """confluent-kafka's async client; retries are ours (`SchemaResolver`), so it makes one attempt."""
    from confluent_kafka.schema_registry import AsyncSchemaRegistryClient

    return AsyncSchemaRegistryClient({"url": url, "timeout": timeout_s, "max.retries": 0})


async def close_client(client: Any) -> None:
    """Close a `registry_client`'s HTTP session. Through `__aexit__`, which every supported
    confluent-kafka has: `aclose` came in 2.13, and the bench extras (quixstreams) hold it below that."""
    await client.__aexit__(None, None, None)


def readable_writer(codec: Codec, schema_id: int, schema_type: str | None, text: str | None,
                    references: object) -> SchemaVersion | str:  # fmt: skip
    """The writer version for a registry schema, or why it cannot be read into a vendorpulse record."""
    if (schema_type or "AVRO") != "AVRO":
        return f"schema id {schema_id} is a {schema_type} schema, not Avro"
    if references:
        return f"schema id {schema_id} references other schemas, which vendorpulse does not resolve"
    try:
        schema = json.loads(text or "")
        plain = strip_logical_types(schema)
        parse_schema(plain)
    except Exception as exc:  # any failure to parse means the same: unreadable
        return f"schema id {schema_id} is not a valid Avro schema: {type(exc).__name__}: {exc}"
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return f"schema id {schema_id} is not an Avro record"
    name = str(schema.get("name", ""))
    if "." not in name and schema.get("namespace"):
        name = f"{schema['namespace']}.{name}"
    reader = codec.reader_of(name)
    if reader is None:
        return f"schema id {schema_id} is the record {name}, not a vendorpulse event ({NAMESPACE}.<Name>)"
    writer = SchemaVersion(
        name, 0, reader.path, schema, plain, fingerprint(schema), origin=f"registry id {schema_id}"
    )
    if problems := incompatibilities(reader.schema, schema):
        return f"{reader.label} cannot read {writer.label}: {'; '.join(problems)}"
    return writer


@dataclass
class RegistryStatus:
    """What the resolver knows of the registry: reachable, or since when and why not."""

    url: str
    reachable: bool = True
    down_since: float | None = None
    """wall-clock time (epoch seconds) of the first failed attempt of the current outage"""
    error: str = ""
    attempts: int = 0
    waiting_for: tuple[int, ...] = ()
    """the schema ids that events wait for"""
    outages: int = 0
    waited_s: float = 0.0
    """time spent waiting in all outages so far"""
    resolved: int = 0
    refused: dict[int, str] = field(default_factory=dict)
    """the latest 100 ids refused (unknown or unreadable), with why"""

    def describe(self) -> str:
        if self.reachable:
            return f"schema registry {self.url} answers ({self.resolved} ids resolved)"
        since = time.time() - (self.down_since or time.time())
        ids = ", ".join(map(str, self.waiting_for))
        return (
            f"schema registry {self.url} does not answer for {since:.0f} s ({self.error}); "
            f"events with schema ids {ids} wait (attempt {self.attempts}): nothing goes to the DLQ for this"
        )


class _NoAnswerError(Exception):
    """One attempt at resolving ids found the registry not answering."""


class SchemaResolver:
    """Resolves the Confluent schema ids of values into `codec` (which it sets to accept them)."""

    def __init__(
        self, codec: Codec, url: str, *, timeout_s: float = 5.0, retry_refused_s: float = 30.0,
        max_backoff_s: float = 5.0, client: Any = None,
    ) -> None:  # fmt: skip
        codec.accept_confluent()
        self.codec = codec
        self.url = url
        self.retry_refused_s = retry_refused_s
        self.max_backoff_s = max_backoff_s
        self.status = RegistryStatus(url)
        self._client = client if client is not None else registry_client(url, timeout_s)
        self._lock = asyncio.Lock()
        self._outage_began = 0.0
        self._reported = 0.0
        self._pending: list[int] = []
        self._began = 0.0

    @property
    def waiting(self) -> bool:
        """A `prepare` is asking the registry (or waiting for it to answer) right now."""
        return self._lock.locked()

    async def prepare(self, values: Sequence[bytes | None], *, give_up_after: float | None = None) -> bool:
        """Resolve every schema id in `values` the codec does not know yet, so that they decode.

        Returns at once when there is none (the common case: one pass over the values' first bytes).
        While the registry does not answer it retries, with backoff up to `max_backoff_s`, for ever or
        until `give_up_after` seconds passed (then `RegistryUnavailable`). Cancellable. Returns whether
        it had to wait through an outage.
        """
        missing = self.codec.unresolved_ids(values, time.monotonic())
        if not missing:
            return False
        async with self._lock:  # one caller resolves; another waiting for the same ids finds them known
            missing = self.codec.unresolved_ids(values, time.monotonic())
            outages = self.status.outages
            if missing:
                await self._resolve(sorted(missing), give_up_after)
            return self.status.outages != outages

    async def _resolve(self, ids: list[int], give_up_after: float | None) -> None:
        self._pending = ids  # narrowed by each attempt to the ids still without an answer
        self._began = time.monotonic()
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_NoAnswerError),
            wait=wait_exponential(multiplier=0.2, max=self.max_backoff_s) + wait_random(0, 0.2),
            stop=stop_after_delay(give_up_after) if give_up_after is not None else stop_never,
            before_sleep=self._waiting,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._attempt(ids)
        except _NoAnswerError as exc:
            raise RegistryUnavailable(
                f"schema registry {self.url} did not answer for {give_up_after:.0f} s ({exc}); "
                "is it running, and is VENDORPULSE_SCHEMA_REGISTRY_URL right?"
            ) from exc
        if not self.status.reachable:
            waited = time.monotonic() - self._outage_began
            self.status.waited_s += waited
            log.warning("schema registry %s answers again after %.1f s; events of schema ids %s go on",
                        self.url, waited, ", ".join(map(str, ids)))  # fmt: skip
        self.status.reachable, self.status.error, self.status.waiting_for = True, "", ()
        self.status.attempts = 0

    async def _attempt(self, ids: list[int]) -> None:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        results = await asyncio.gather(*(self._client.get_schema(i) for i in ids), return_exceptions=True)
        failures: list[str] = []
        now = time.monotonic()
        for schema_id, result in zip(ids, results, strict=True):
            if isinstance(result, SchemaRegistryError) and result.http_status_code == 404:
                message = f"the schema registry {self.url} has no schema with id {schema_id} ({result})"
                self.codec.refuse_id(schema_id, UnknownSchemaId, message, now + self.retry_refused_s)
                self._note_refused(schema_id, message)
            elif isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                failures.append(f"id {schema_id}: {type(result).__name__}: {result}")
            else:
                writer = readable_writer(
                    self.codec, schema_id, result.schema_type, result.schema_str, result.references
                )
                if isinstance(writer, str):
                    self.codec.refuse_id(schema_id, UnreadableSchema, writer, now + self.retry_refused_s)
                    self._note_refused(schema_id, writer)
                else:
                    self.codec.add_writer(schema_id, writer)
                    self.status.refused.pop(schema_id, None)
                    self.status.resolved += 1
        if failures:
            ids[:] = [i for i in ids if self.codec.unresolved_ids([_frame(i)], now)]  # what still waits
            raise _NoAnswerError("; ".join(failures))

    def _note_refused(self, schema_id: int, why: str) -> None:
        refused = self.status.refused
        refused[schema_id] = why
        if len(refused) > 100:  # the status shows the latest ones
            del refused[next(iter(refused))]

    def _waiting(self, state: RetryCallState) -> None:
        """Before each retry's sleep: the status, and a log line now and then."""
        error = state.outcome.exception() if state.outcome is not None else None
        status = self.status
        now = time.monotonic()
        if status.reachable:
            status.reachable, status.down_since, status.outages = False, time.time(), status.outages + 1
            self._outage_began, self._reported = self._began, 0.0
        status.error = str(error)[:500]
        status.attempts = state.attempt_number
        status.waiting_for = tuple(self._pending)
        if now - self._reported >= REPORT_EVERY_S:
            self._reported = now
            log.warning("%s", status.describe())

    async def aclose(self) -> None:
        await close_client(self._client)


class RegistryProbe:
    """Whether the registry answers a cheap request (`GET /config`), asked at most every `every_s`
    (for `/readyz`, which load balancers poll often)."""

    def __init__(self, url: str, every_s: float = 2.0, timeout_s: float = 1.0) -> None:
        self.url = url
        self.every_s = every_s
        self.error = ""
        self._client = registry_client(url, timeout_s)
        self._answer: tuple[float, bool] = (-1e9, False)

    async def reachable(self) -> bool:
        asked_at, answer = self._answer
        if time.monotonic() - asked_at < self.every_s:
            return answer
        try:
            await self._client.get_compatibility()
            self.error, answer = "", True
        except Exception as exc:  # any failure means "not now"
            self.error, answer = f"{type(exc).__name__}: {exc}"[:300], False
        self._answer = (time.monotonic(), answer)
        return answer

    async def aclose(self) -> None:
        await close_client(self._client)


def _frame(schema_id: int) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big")
