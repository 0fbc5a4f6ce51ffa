"""`vendorpulse schemas register`: every published `.avsc` version under the contract's subjects.

Each input topic carries two record types, so subjects follow the TopicRecordNameStrategy
(`<topic>-vendorpulse.events.<Name>`, contract §3). For each subject, versions go in ascending order;
the subject's compatibility level is set to BACKWARD (a new version reads every message the latest one
wrote), and the *registry* decides whether a version may follow the latest one, through its own
endpoint (`POST /compatibility/subjects/<subject>/versions/latest`), so the check is the one every
producer's registration will meet. When it refuses, the local checker (`schemas.compat`, Java's
`SchemaCompatibility` ported) says why. A version already registered under the subject is left as it
is; `dry_run` registers nothing and only checks against what the registry holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import SchemaSet, SchemaVersion
from schemas.compat import incompatibilities
from schemas.confluent import close_client, registry_client, subject_for
from schemas.exceptions import RegistryUnavailable

LEVEL = "BACKWARD"


def schema_text(version: SchemaVersion) -> str:
    """The text registered for a published version (also what the simulator's serializer sends)."""
    return json.dumps(version.schema, separators=(",", ":"))


@dataclass
class Registration:
    subject: str
    version: str
    """e.g. "OrderPlaced v1" """
    outcome: str
    """registered, already registered, compatible, new subject, refused"""
    schema_id: int | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return self.outcome == "refused"


async def register_published(
    url: str,
    topics: Mapping[str, Sequence[str]],
    schemas: SchemaSet | None = None,
    *,
    dry_run: bool = False,
    client: Any = None,
) -> list[Registration]:
    """Register (or with `dry_run`, check) each published version of the record names on each topic.

    `topics` maps a topic to the record names it carries (short or full). Raises `RegistryUnavailable`
    when the registry does not answer; refusals are in the returned list (`Registration.refused`).
    """
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    schemas = schemas or SchemaSet.load()
    own = client is None
    client = client or registry_client(url)
    out: list[Registration] = []
    try:
        for topic, names in topics.items():
            for name in names:
                subject = subject_for(topic, name)
                full = subject.removeprefix(f"{topic}-")
                latest = await _latest(client, subject)
                if not dry_run:
                    await client.set_compatibility(subject, LEVEL)
                for version in schemas.versions(full):
                    schema = Schema(schema_text(version), "AVRO")
                    step = Registration(subject, version.label, "")
                    out.append(step)
                    try:
                        found = await client.lookup_schema(subject, schema)
                        step.outcome, step.schema_id = "already registered", found.schema_id
                        continue
                    except SchemaRegistryError as exc:
                        if exc.http_status_code != 404:
                            raise
                    if latest is not None and not await client.test_compatibility(subject, schema, "latest"):
                        step.outcome = "refused"
                        step.reasons = incompatibilities(version.schema, latest) or [
                            f"the registry finds it not {LEVEL} compatible with the latest version"
                        ]
                        break  # later versions would have to follow this one
                    if dry_run:
                        step.outcome = "compatible" if latest is not None else "new subject"
                        continue
                    try:
                        step.schema_id = await client.register_schema(subject, schema)
                    except SchemaRegistryError as exc:  # 409: incompatible, 422: invalid
                        step.outcome, step.reasons = "refused", [str(exc)]
                        break
                    step.outcome = "registered"
                    latest = version.schema
    except SchemaRegistryError as exc:
        if exc.http_status_code >= 500:
            raise RegistryUnavailable(f"schema registry {url} failed: {exc}") from exc
        raise
    except Exception as exc:
        if type(exc).__module__.startswith(("httpx", "httpcore")):
            raise RegistryUnavailable(
                f"schema registry {url} does not answer ({type(exc).__name__}: {exc}); is it running?"
            ) from exc
        raise
    finally:
        if own:
            await close_client(client)
    return out


async def _latest(client: Any, subject: str) -> dict[str, Any] | None:
    """The latest schema registered under `subject` (as JSON-like data), or None for a new subject."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        registered = await client.get_latest_version(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise
    parsed: dict[str, Any] = json.loads(registered.schema.schema_str)
    return parsed
