"""Stopping background tasks in a way that keeps the caller's own cancellation intact."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel `tasks` and wait for them to end, then read their outcomes so none is reported as lost.

    Not `gather`: when the caller is itself cancelled while waiting, gather re-raises a child's
    CancelledError and the caller's cancel scope (anyio, TaskGroup) no longer recognises it as its own.
    """
    pending = {t for t in tasks if t is not None}
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if task.done() and not task.cancelled():
            with contextlib.suppress(Exception):
                task.exception()
