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
- `pause_writing` and `resume_writing` are where the transport's flow control shows; `close_sent` and
  `disconnected` are plain attributes (this subclass makes them properties that keep `takes_data`
  current) that say the socket takes no more data frames;
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
    """uvicorn's protocol, plus its own instance in the scope, a `resume_writing` hook and `takes_data`:
    one attribute the fan-out reads per write, kept up to date where uvicorn changes what it sums up
    (`writable`, `close_sent`, `disconnected`)."""

    on_writable: Callable[[], None] = staticmethod(_nothing)  # not bound: called without self
    takes_data = True
    _paused = False
    _close_sent = False
    _disconnected = False

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        self._close_sent = value
        self._update_takes_data()

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @disconnected.setter
    def disconnected(self, value: bool) -> None:
        self._disconnected = value
        self._update_takes_data()

    def _update_takes_data(self) -> None:
        self.takes_data = not (self._paused or self._close_sent or self._disconnected)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._paused = True
        self._update_takes_data()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][EXTENSION] = self

    def resume_writing(self) -> None:
        super().resume_writing()
        self._paused = False
        self._update_takes_data()
        self.on_writable()


class TransportSink:
    """Writes pre-framed bytes to one connection's transport."""

    __slots__ = ("_protocol", "_write")

    def __init__(self, protocol: HubWebSocketProtocol) -> None:
        self._protocol = protocol
        self._write = protocol.transport.write  # bound once: the fan-out calls it for every frame

    @property
    def on_writable(self) -> Callable[[], None]:
        return self._protocol.on_writable

    @on_writable.setter
    def on_writable(self, callback: Callable[[], None]) -> None:
        self._protocol.on_writable = callback

    def writable(self) -> bool:
        return self._protocol.takes_data

    def write(self, frame: OutFrame) -> None:
        self._write(frame.wire)

    def abort(self) -> None:
        self._protocol.transport.abort()


def transport_sink(scope: MutableMapping[str, Any]) -> TransportSink | None:
    """The sink of a connection served by `HubWebSocketProtocol`; None under any other server."""
    protocol = scope.get("extensions", {}).get(EXTENSION)
    return TransportSink(protocol) if isinstance(protocol, HubWebSocketProtocol) else None
