"""Waiting in tests for something that happens in another thread or process, without timing
assertions: `eventually` fails the test when the condition does not hold in time; `settle` only waits,
and leaves the judging to the assertions that follow (when they say more than a timeout would)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def eventually(
    check: Callable[[], bool], what: str, within: float = 10.0, interval: float = 0.5,
    detail: Callable[[], str] = lambda: "",
) -> None:  # fmt: skip
    """Polls `check` until it holds; AssertionError naming `what` (and `detail()`) after `within` s."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {what} within {within:.0f} s\n{detail()}".rstrip())
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], bool], what: str, within: float = 10.0, interval: float = 0.01,
    detail: Callable[[], str] = lambda: "",
) -> None:  # fmt: skip
    """`eventually` for a test on an event loop: the loop keeps running between the polls."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {what} within {within:.0f} s\n{detail()}".rstrip())
        await asyncio.sleep(interval)


async def settle(check: Callable[[], bool], within: float, interval: float = 0.2) -> bool:
    """Polls `check` until it holds or `within` s passed; whether it held. It never fails the test."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True
