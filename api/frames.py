"""Server -> client messages encoded once and shared by every connection that gets them.

A WebSocket frame from a server is not masked (RFC 6455 §5.1), so the bytes on the wire for one message
are the same for every connection: `OutFrame.wire` builds them once (`text_frame`: the 2-10 byte header
of a final, unmasked, uncompressed text frame, what websockets' `Frame.serialize` writes for it at a
sixth of the cost) and the fan-out writes that one `bytes` object to each socket. `VendorSnapshot` is one version of a
vendor's snapshot and the frames made from it, built lazily and memoised on it, so a fan-out to any
number of that vendor's connections, and a slow connection that catches up on the newest version later,
encode nothing again.

Delta updates (contract §6, `updates=delta`) are memoised the same way: a snapshot published while its
vendor has connections keeps the one before it (`previous`), and `delta()` is the `metrics_delta` frame
from that base, computed on first use (one merge patch per vendor update, `api.patch.diff_json`, on the
JSON text as read from Kafka, without parsing it into objects) and then shared
by every delta client that holds exactly the previous snapshot. A client at any other version gets the
full `metrics_update` instead, as do all of them when no merge patch can express the change.
"""

from __future__ import annotations

import struct

import orjson

from api import patch
from api.protocol import Out, iso_now


class OutFrame:
    """One message: its JSON payload (UTF-8) and the WebSocket text frame around it."""

    __slots__ = ("kind", "payload", "wire")

    def __init__(self, kind: Out, payload: bytes) -> None:
        self.kind = kind
        self.payload = payload
        self.wire = text_frame(payload)
        """The unmasked, uncompressed, final text frame (header + payload) as sent by a server: built
        with the message, as nearly every message is written (a plain attribute: one lookup per write)."""

    @classmethod
    def of_text(cls, kind: Out, text: str) -> OutFrame:
        return cls(kind, text.encode())

    @property
    def text(self) -> str:
        return self.payload.decode()


_FIN_TEXT = 0x81  # FIN bit, no RSV bits (no extension), opcode 1 (text)
_LENGTH16 = struct.Struct("!BBH")
_LENGTH64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """`payload` (UTF-8) as one final, unmasked text frame without extensions (RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 65536:
        return _LENGTH16.pack(_FIN_TEXT, 126, size) + payload
    return _LENGTH64.pack(_FIN_TEXT, 127, size) + payload


def envelope(kind: Out, data_json: bytes, timestamp: str | None = None) -> OutFrame:
    """`{"type", "data", "timestamp"}` around `data_json`, JSON that is already valid (a snapshot as read
    from Kafka), without decoding and re-encoding it."""
    stamp = (timestamp or iso_now()).encode()
    return OutFrame(
        kind, b'{"type":"%s","data":%s,"timestamp":"%s"}' % (kind.value.encode(), data_json, stamp)
    )


class VendorSnapshot:
    """One version of a vendor's snapshot (contract §5 JSON as read from Kafka) and its frames."""

    __slots__ = ("_delta", "_members", "_update", "as_of", "previous", "raw", "vendor_id", "version")

    def __init__(
        self, vendor_id: str, version: int, as_of: str, raw: bytes, previous: VendorSnapshot | None = None
    ) -> None:
        self.vendor_id = vendor_id
        self.version = version
        self.as_of = as_of
        self.raw = raw
        self.previous = previous
        """The snapshot this one replaced, while a delta from it may still be asked for."""
        self._update: OutFrame | None = None
        self._delta: OutFrame | None = None
        self._members: patch.Members | None = None

    def members(self) -> patch.Members:
        """The snapshot's top-level members as JSON text, split once: the new side of one patch and
        the old side of the next."""
        split = self._members
        if split is None:
            split = self._members = patch.members(self.raw)
        return split

    def render_for(self, held: VendorSnapshot | None, delta: bool) -> OutFrame:
        """The frame that brings a client holding `held` to this version: for a delta client that
        holds exactly `previous`, the shared `metrics_delta`; otherwise the shared `metrics_update`."""
        if delta and held is not None and held is self.previous:
            return self.delta()
        return self.update()

    def delta(self) -> OutFrame:
        """The `metrics_delta` frame from `previous`, built once; the full update when there is no
        previous snapshot or no merge patch expresses the change (a value that became null)."""
        frame = self._delta
        if frame is None:
            base = self.previous
            changes = patch.diff_json(base.members(), self.members()) if base is not None else None
            if base is None or changes is None:
                frame = self.update()
            else:
                head = orjson.dumps(
                    {"vendorId": self.vendor_id, "baseVersion": base.version, "version": self.version}
                )
                frame = envelope(Out.METRICS_DELTA, head[:-1] + b',"patch":' + changes + b"}")
            self._delta = frame
        return frame

    def update(self) -> OutFrame:
        """The `metrics_update` frame of this version, stamped when first asked for (the fan-out)."""
        frame = self._update
        if frame is None:
            frame = self._update = envelope(Out.METRICS_UPDATE, self.raw)
        return frame

    def full(self) -> OutFrame:
        """A fresh `analytics_update` frame (on connect, `refresh`, the periodic refresh)."""
        return envelope(Out.ANALYTICS_UPDATE, self.raw)
