"""Stand-ins and factories shared by the tests: a socket as the hub's connections see it, a vendor's
snapshot as the worker writes it, and the settings of a test's topics on a broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.frames import OutFrame
from processors.core.snapshot import snapshot as zero_snapshot
from processors.core.state import new_state
from schemas.settings import KafkaSettings
from schemas.topics import Topics


def snapshot(
    vendor: str, version: int = 0, *, revenue: int = 0, padding: int = 0, as_of_ms: int | None = None
) -> dict[str, Any]:
    """The zero-filled snapshot of the pure core (contract §5) at `version`, with `orders.current` =
    `version` (so a test sees which version's body arrived) and `revenue.current` = `revenue`;
    `padding` adds a field of that many bytes, for messages of a given size."""
    data = zero_snapshot(new_state(vendor), int(time.time() * 1000) if as_of_ms is None else as_of_ms)
    data["version"] = version
    data["metrics"]["orders"]["current"] = version
    data["metrics"]["revenue"]["current"] = revenue
    data["metrics"]["revenue"]["trend"] = "up" if revenue > 0 else "flat"
    if padding:
        data["padding"] = "x" * padding
    return data


def kafka_settings(bootstrap: str, topics: Topics, **overrides: Any) -> KafkaSettings:
    """The settings a process of this test reads: `bootstrap`, the prefix of `topics`, `overrides`."""
    return KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=topics.prefix, **overrides)


def _nothing() -> None:
    return None


class RecordingSink:
    """Records what a connection writes, as the client would read it (the frame's wire bytes are
    parsed back); `block()` is a client that stopped reading, `drain()` one that reads again."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.open = True
        self.aborted = False
        self.on_writable: Callable[[], None] = _nothing

    def writable(self) -> bool:
        return self.open and not self.aborted

    def write(self, frame: OutFrame) -> None:
        assert self.writable(), "a connection wrote to a socket that did not take data"
        self.frames.append(orjson.loads(_unframe(frame.wire)))

    def abort(self) -> None:
        self.aborted = True

    def block(self) -> None:
        self.open = False

    def drain(self) -> None:
        self.open = True
        self.on_writable()

    def versions(self, kind: str = "metrics_update") -> list[int]:
        return [f["data"]["version"] for f in self.frames if f["type"] == kind]

    def kinds(self) -> list[str]:
        return [f["type"] for f in self.frames]


def _unframe(wire: bytes) -> bytes:
    """The payload of one unmasked, final text frame, parsed as a client parses it (websockets)."""
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:
        raise AssertionError("the frame was cut short")
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert not reader.buffer, "bytes after the frame"
    return bytes(frame.data)
