"""The WebSocket protocol of contract §6: message envelope, types, close codes, inbound parsing.

Every message, both ways, is a JSON text frame `{"type": ..., "data": ..., "timestamp": ISO-8601}`.
Frames are serialized once with orjson (MEASURED.md: 14x json) and the same text goes to every
connection that should get it.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from api.exceptions import BadMessageError

WS_PATH = "/api/v1/analytics/ws/vendor/analytics"


class Close(enum.IntEnum):
    """Close codes the server sends; docs/API.md lists them for client authors."""

    NORMAL = 1000
    MESSAGE_TOO_BIG = 1009  # an inbound message over the size limit
    BAD_REQUEST = 4000  # vendor_id missing (admin token) or not a valid id
    UNAUTHORIZED = 4001  # no, invalid or expired token (also when it expires during the connection)
    FORBIDDEN = 4003  # the token may not read this vendor
    TRY_AGAIN_LATER = 1013  # the client fell behind the new_order feed: reconnect with resume_after
    HEARTBEAT_TIMEOUT = 4008  # two application pings went unanswered
    MISDIRECTED = 4021  # this API node does not serve that vendor's shard (api.shard)
    TOO_MANY = 4029  # connections per token over the limit, or inbound rate limit kept exceeded


class Out(enum.StrEnum):
    """Server -> client message types."""

    CONNECTION_STATUS = "connection_status"
    ANALYTICS_UPDATE = "analytics_update"
    METRICS_UPDATE = "metrics_update"
    NEW_ORDER = "new_order"
    STOCK_ALERT = "stock_alert"
    METRICS_DELTA = "metrics_delta"
    PING = "ping"
    PONG = "pong"
    ERROR = "error"


class In(enum.StrEnum):
    """Client -> server message types."""

    PING = "ping"
    PONG = "pong"
    REFRESH = "refresh"
    REFRESH_TOKEN = "refresh_token"


_second: list[Any] = [-1, ""]  # the last whole second formatted, and its "YYYY-MM-DDTHH:MM:SS." text


def iso_now() -> str:
    """Now as ISO-8601 UTC with milliseconds and `Z`, like the snapshot's `asOf`. Every frame carries
    one; the date part is formatted once per second (strftime was a tenth of a ping's cost)."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    return f"{_second[1]}{int((now - second) * 1000):03d}Z"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def frame(kind: Out, data: Any, timestamp: str | None = None) -> str:
    """One envelope as JSON text."""
    return frame_json(kind, data, timestamp).decode()


def frame_json(kind: Out, data: Any, timestamp: str | None = None) -> bytes:
    """One envelope as UTF-8 JSON (what goes on the wire)."""
    return orjson.dumps({"type": kind.value, "data": data, "timestamp": timestamp or iso_now()})


def error(code: str, message: str) -> str:
    return frame(Out.ERROR, {"code": code, "message": message})


@dataclass(frozen=True, slots=True)
class Inbound:
    kind: In
    data: Any


def parse(text: str) -> Inbound:
    """A client message, or BadMessageError saying what is wrong with it."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadMessageError("not JSON") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BadMessageError('expected an object {"type": ..., "data": ..., "timestamp": ...}')
    try:
        kind = In(message["type"])
    except ValueError as exc:
        allowed = ", ".join(m.value for m in In)
        raise BadMessageError(f"unknown type {message['type'][:40]!r}; expected one of {allowed}") from exc
    return Inbound(kind, message.get("data"))
