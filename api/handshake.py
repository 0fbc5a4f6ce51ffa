"""A deadline and a size cap on every HTTP request head, WebSocket upgrades included.

uvicorn has neither for httptools: `timeout_keep_alive` is armed only after a response, so a socket
that connects and sends nothing, or trickles a request line, holds a descriptor for ever (Kludex/uvicorn
#1192, unmerged); and httptools keeps buffering a head of any size (`h11_max_incomplete_event_size`
applies to h11 only). `guarded_protocol()` adds both to uvicorn's `HttpToolsProtocol`:

- the head and body of each request must arrive within `request_timeout_seconds` of the connection (or
  of the request's first byte on a kept-alive connection); otherwise 408 and close;
- a head larger than `max_request_head_bytes` gets 431 and close.

Once the upgrade is done the WebSocket protocol takes over: its own close timer, pings and our session
limits apply from there (docs/API.md, "Abuse").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("vendorpulse.api.http")
Refused = Callable[[str], None]  # called with the reason: "request_timeout" or "head_too_large"


def guarded_protocol(timeout: float, max_head_bytes: int, refused: Refused) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the limits above; `refused` counts each refusal."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._deadline: asyncio.TimerHandle | None = None
            self._in_head = True
            self._head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            counting = self._in_head
            super().data_received(data)
            if counting and self._in_head and not self.transport.is_closing():
                self._head_bytes += len(data)
                if self._head_bytes > max_head_bytes:
                    self._refuse(431, "head_too_large", f"request head over {max_head_bytes} bytes")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            if self._deadline is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            self._disarm()
            super().handle_websocket_upgrade()

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self._refuse(408, "request_timeout", f"request not received within {timeout:g} s")

        def _refuse(self, status: int, reason: str, message: str) -> None:
            self._disarm()
            refused(reason)
            log.debug("%s: %s", self.client, message)
            if self.cycle is None or self.cycle.response_complete:  # never inside another response
                body = message.encode()
                self.transport.write(
                    STATUS_LINE[status]
                    + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                    + b"content-length: %d\r\n\r\n" % len(body)
                    + body
                )
            self.transport.close()

    return GuardedHttpToolsProtocol
