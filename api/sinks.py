"""The ASGI way to a socket, for servers that do not hand the hub their transport (Starlette's
TestClient, ASGI servers other than the one `api.server` configures): one `send` in flight at a time,
each awaited in a short task. The sink takes data again once that send is done, which is how uvicorn's
own flow control shows through ASGI: a client that stops reading keeps its `send` waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from api.frames import OutFrame

SendText = Callable[[str], Awaitable[None]]


def _nothing() -> None:
    return None


class AsgiSink:
    def __init__(self, send: SendText) -> None:
        self._send = send
        self._task: asyncio.Task[None] | None = None
        self._failed = False
        self.on_writable: Callable[[], None] = _nothing

    def writable(self) -> bool:
        return self._task is None and not self._failed

    def write(self, frame: OutFrame) -> None:
        self._task = asyncio.get_running_loop().create_task(self._write(frame.text))

    async def _write(self, text: str) -> None:
        try:
            await self._send(text)
        except Exception:  # the client is gone: the session's reader sees the disconnect
            self._failed = True
            return
        finally:
            self._task = None
        self.on_writable()

    def abort(self) -> None:
        self._failed = True
        if self._task is not None:
            self._task.cancel()
