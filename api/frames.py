"""Server -> client messages encoded once and shared by every connection that gets them.

A WebSocket frame from a server is not masked (RFC 6455 §5.1), so the bytes on the wire for one message
are the same for every connection: `OutFrame.wire` builds them once (websockets' own `Frame.serialize`)
and the fan-out writes that one `bytes` object to each socket. `VendorSnapshot` is one version of a
vendor's snapshot and the frames made from it, built lazily and memoised on it, so a fan-out to any
number of that vendor's connections, and a slow connection that catches up on the newest version later,
encode nothing again. A per-base-version variant of the update (a merge patch from the version a
client holds) belongs on the same object, memoised by base version, shared by every client at that base.
"""

from __future__ import annotations

from websockets.frames import Frame, Opcode

from api.protocol import Out, iso_now


class OutFrame:
    """One message: its JSON payload (UTF-8) and, on first use, the WebSocket text frame around it."""

    __slots__ = ("_wire", "kind", "payload")

    def __init__(self, kind: Out, payload: bytes) -> None:
        self.kind = kind
        self.payload = payload
        self._wire: bytes | None = None

    @classmethod
    def of_text(cls, kind: Out, text: str) -> OutFrame:
        return cls(kind, text.encode())

    @property
    def text(self) -> str:
        return self.payload.decode()

    @property
    def wire(self) -> bytes:
        """The unmasked, uncompressed, final text frame (header + payload) as sent by a server."""
        wire = self._wire
        if wire is None:
            wire = self._wire = Frame(Opcode.TEXT, self.payload).serialize(mask=False, extensions=())
        return wire


def envelope(kind: Out, data_json: bytes, timestamp: str | None = None) -> OutFrame:
    """`{"type", "data", "timestamp"}` around `data_json`, JSON that is already valid (a snapshot as read
    from Kafka), without decoding and re-encoding it."""
    stamp = (timestamp or iso_now()).encode()
    return OutFrame(
        kind, b'{"type":"%s","data":%s,"timestamp":"%s"}' % (kind.value.encode(), data_json, stamp)
    )


class VendorSnapshot:
    """One version of a vendor's snapshot (contract §5 JSON as read from Kafka) and its frames."""

    __slots__ = ("_update", "as_of", "raw", "vendor_id", "version")

    def __init__(self, vendor_id: str, version: int, as_of: str, raw: bytes) -> None:
        self.vendor_id = vendor_id
        self.version = version
        self.as_of = as_of
        self.raw = raw
        self._update: OutFrame | None = None

    def update(self) -> OutFrame:
        """The `metrics_update` frame of this version, stamped when first asked for (the fan-out)."""
        frame = self._update
        if frame is None:
            frame = self._update = envelope(Out.METRICS_UPDATE, self.raw)
        return frame

    def full(self) -> OutFrame:
        """A fresh `analytics_update` frame (on connect, `refresh`, the periodic refresh)."""
        return envelope(Out.ANALYTICS_UPDATE, self.raw)
