"""uvicorn's sans-I/O WebSocket protocol, with its transport handed to the hub for the fan-out.

ASGI gives an application one `send` per connection, and uvicorn's `send` for a text message encodes
the string, frames it, joins the output and writes it, once per connection, behind two coroutine layers
(Starlette's and uvicorn's) and a writer task per connection to keep a slow client from stalling others.
py-spy under `bench.fanout` put three quarters of the API's CPU per frame there. A server's frames are
not masked, so one update's bytes on the wire are the same for every connection: `TransportSink` writes
the bytes `api.frames` built once straight to each socket's transport, when the transport is under its
high-water mark; otherwise the connection keeps the newest snapshot and its bounded queue
(`api.connection`) until uvicorn's `resume_writing` says the client drained.

What this relies on in uvicorn 0.3x-0.5x `websockets_sansio_impl.WebSocketsSansIOProtocol` (re-check after
an upgrade; `tests/integration/test_api_live.py` fails if it breaks):
- `handle_connect` builds `self.scope` and creates the ASGI task without running it, so an entry added to
  `scope["extensions"]` right after it is visible to the application;
- `writable` (an `asyncio.Event`) is cleared by `pause_writing` and set by `resume_writing`;
  `close_sent` and `disconnected` say the socket takes no more data frames;
- websockets' `ServerProtocol` keeps no per-frame state when sending data frames (no extension is
  negotiated: `ws_per_message_deflate=False` in `api.server`), so frames written beside it leave it
  consistent; the close still goes through ASGI (`websocket.close`), hence through it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from api.frames import OutFrame

EXTENSION = "vendorpulse.transport"  # scope["extensions"] key holding the protocol instance


def _nothing() -> None:
    return None


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol, plus its own instance in the scope and a `resume_writing` hook."""

    on_writable: Callable[[], None] = _nothing

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][EXTENSION] = self

    def resume_writing(self) -> None:
        super().resume_writing()
        self.on_writable()


class TransportSink:
    """Writes pre-framed bytes to one connection's transport."""

    def __init__(self, protocol: HubWebSocketProtocol) -> None:
        self._protocol = protocol
        self._writable = protocol.writable
        self._transport = protocol.transport

    @property
    def on_writable(self) -> Callable[[], None]:
        return self._protocol.on_writable

    @on_writable.setter
    def on_writable(self, callback: Callable[[], None]) -> None:
        self._protocol.on_writable = callback

    def writable(self) -> bool:
        protocol = self._protocol
        return self._writable.is_set() and not protocol.close_sent and not protocol.disconnected

    def write(self, frame: OutFrame) -> None:
        self._transport.write(frame.wire)

    def abort(self) -> None:
        self._transport.abort()


def transport_sink(scope: MutableMapping[str, Any]) -> TransportSink | None:
    """The sink of a connection served by `HubWebSocketProtocol`; None under any other server."""
    protocol = scope.get("extensions", {}).get(EXTENSION)
    return TransportSink(protocol) if isinstance(protocol, HubWebSocketProtocol) else None
