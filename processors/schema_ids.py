"""Confluent schema ids resolved before each batch is decoded, for the commands that read topics.

`replay` and `export` read the same input as the worker, so with `VENDORPULSE_SCHEMA_REGISTRY_URL`
set they accept both framings too (contract §3): `with_schemas` wraps their stream of record batches
and resolves each batch's new schema ids into the codec before the batch is handed on. A command
waits at most `PATIENCE_S` for an unanswering registry, then fails with `ReplayError` (the worker,
which must not stop, waits for as long as it takes; see processors/app.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from processors.exceptions import ReplayError
from schemas.codec import Codec
from schemas.exceptions import RegistryUnavailable

PATIENCE_S = 60.0


async def with_schemas(
    batches: AsyncIterator[tuple[str, list[Any]]], codec: Codec, registry_url: str | None
) -> AsyncIterator[tuple[str, list[Any]]]:
    """`batches` as they come, each once the schema ids of its records' values are resolved."""
    if not registry_url:
        async for batch in batches:
            yield batch
        return
    from schemas.confluent import SchemaResolver

    resolver = SchemaResolver(codec, registry_url)
    try:
        async for topic, records in batches:
            try:
                await resolver.prepare([r.value for r in records], give_up_after=PATIENCE_S)
            except RegistryUnavailable as exc:
                raise ReplayError(f"{exc}; nothing was written") from exc
            yield topic, records
    finally:
        await resolver.aclose()
