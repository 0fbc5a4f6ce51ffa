"""The policies of the Python client (`api.client`), kept apart so they can be tested without a server:
the reconnect backoff, the outbound queue, the latency window and the send pacing. The JavaScript
client (`api/client-ts/src/policy.ts`) implements the same ones with the same defaults.
"""

from __future__ import annotations

import base64
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential backoff: the wait before failed attempt n's retry (n = 1, 2, ...) is
    uniform in [0, min(max_delay, base_delay * 2**(n-1))], so the ceilings run 1, 2, 4, 8, 16, 30, 30 s
    by default. Full jitter spreads a crowd of clients that lost the same server over the whole window
    instead of having them return in synchronized waves."""

    base_delay: float = 1.0
    max_delay: float = 30.0

    def ceiling(self, attempt: int) -> float:
        """The longest wait after `attempt` consecutive failures (attempt >= 1)."""
        return float(min(self.max_delay, self.base_delay * 2.0 ** min(max(attempt - 1, 0), 62)))

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(attempt))


@dataclass
class OutboundQueue:
    """Messages the application sent, kept while offline (and while sends are paced), flushed in order.

    Bounded by `limit`. When full, the **oldest** queued message is dropped and counted in `dropped`:
    what an application sent last (the latest `refresh`, say) matters more than what it sent first.
    """

    limit: int = 100
    dropped: int = 0
    items: deque[dict[str, Any]] = field(default_factory=deque)

    def put(self, message: dict[str, Any]) -> None:
        if len(self.items) >= self.limit:
            self.items.popleft()
            self.dropped += 1
        self.items.append(message)

    def peek(self) -> dict[str, Any] | None:
        return self.items[0] if self.items else None

    def pop(self) -> dict[str, Any]:
        return self.items.popleft()

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class LatencyWindow:
    """Round-trip times (ms) of the last `size` ping/pong exchanges; `average` is the latency reported."""

    size: int = 100
    samples: deque[float] = field(default_factory=deque)

    def add(self, rtt_ms: float) -> None:
        self.samples.append(rtt_ms)
        while len(self.samples) > self.size:
            self.samples.popleft()

    @property
    def average(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 3) if self.samples else None

    @property
    def last(self) -> float | None:
        return self.samples[-1] if self.samples else None


@dataclass
class Pacer:
    """A token bucket kept under the server's inbound limit (10 messages/s, burst 20, docs/API.md) so
    that flushing a full queue after a reconnect is not answered with `rate_limited` and close 4029."""

    rate: float = 8.0
    burst: int = 16
    tokens: float = -1.0
    at: float = field(default_factory=time.monotonic)

    def wait_time(self) -> float:
        """0 and a token taken, or the seconds until one is available."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = float(self.burst)
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def token_expiry(token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, read without verifying it (the server verifies)."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None
