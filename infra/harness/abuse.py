"""WebSocket abuse at volume against a running API, for tests/integration/test_abuse.py and bench/abuse.py.

`python -m infra.harness.abuse --port P [--plan JSON]` runs one wave of abusers (a separate process, so that
their own CPU does not slow the well-behaved clients being measured) and prints, per kind, what each
abuser saw from the server: whether the server closed it, the close code (or the HTTP status for a
request that never became a WebSocket), the `error` codes it received. The kinds:

- `half_open`: TCP connections that send nothing, or a WebSocket upgrade request cut off before the
  blank line that ends it; never read. The server must close them (408).
- `huge_head`: an upgrade whose headers never end and pass `max_request_head_bytes`: 431 (or a reset,
  when the server closes before the last of our bytes reached it; the API counts the refusal either way).
- `silent_upgrade`: a complete upgrade without a token, then silence (no reads, no close reply): 4001.
- `silent_authenticated`: a complete upgrade with a valid token, then silence: 4008 (missed pongs).
- `huge_frame`: a frame header announcing 1 GiB: 1009 before any payload is read.
- `oversized`: one text message over the application limit (`error` message_too_big, 1009), or over
  the server's frame limit `ws_max_size` (1009 from the protocol).
- `invalid`: malformed messages under the rate limit: one `error` each, the connection stays.
- `bad_utf8`: a text frame that is not UTF-8: 1007.
- `flood`: `flood_messages` pings back to back: `rate_limited` errors, then 4029.

Tokens are signed with the API's secret from the environment (`VENDORPULSE_JWT_SECRET`, or the dev one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from api.protocol import WS_PATH
from api.settings import ApiSettings

OVER_APP_LIMIT = 5_000  # > max_message_bytes (4096)
OVER_FRAME_LIMIT = 100_000  # > ws_max_size (65536)
# (message, error code it must get); sent well under the rate limit's burst
INVALID: list[tuple[str | bytes, str]] = [
    ("not json{", "bad_message"),
    ("[1, 2, 3]", "bad_message"),
    ('{"type": 5}', "bad_message"),
    ('{"type": "subscribe", "data": {}}', "bad_message"),
    (b"\x00\x01binary", "bad_message"),
    ('{"type": "pong", "data": {"id": "x"}}', "bad_message"),
    ('{"type": "refresh_token", "data": {}}', "bad_message"),
    ('{"type": "refresh_token", "data": {"token": "not.a.jwt"}}', "invalid_token"),
    ("", "bad_message"),
    ('{"type": "ping", "data": ' + "[" * 1500 + "]" * 1500 + "}", "bad_message"),  # too deep for orjson
]


@dataclass(frozen=True)
class Plan:
    half_open: int = 2000
    huge_head: int = 20
    silent_upgrade: int = 200
    silent_authenticated: int = 20
    huge_frame: int = 20
    oversized: int = 100
    invalid: int = 100
    bad_utf8: int = 10
    flood: int = 50
    flood_messages: int = 500
    vendor: str = "abuser"
    wait_seconds: float = 60.0  # how long an abuser waits for the server to close it
    connect_concurrency: int = 200
    max_head_bytes: int = 16384  # the API's `max_request_head_bytes`

    def messages(self) -> int:
        """Abusive WebSocket messages this plan sends."""
        return (
            self.huge_frame + self.oversized + self.invalid * (len(INVALID) + 1) + self.bad_utf8
            + self.flood * self.flood_messages
        )  # fmt: skip


@dataclass
class Seen:
    """What one abuser saw: `closed` = the server ended the connection (EOF or close frame)."""

    closed: bool = False
    code: int | None = None  # WebSocket close code received, or the HTTP status of a refused request
    errors: list[str] = field(default_factory=list)
    pong: bool = False  # `invalid`: a ping after the bad messages was still answered


def _url(port: int, vendor: str, token: str | None) -> str:
    query = f"vendor_id={vendor}" + (f"&token={token}" if token else "")
    return f"ws://127.0.0.1:{port}{WS_PATH}?{query}"


@functools.cache
def _settings() -> ApiSettings:
    from api.settings import api_settings

    return api_settings()


def _token(vendor: str, n: int) -> str:
    from api.auth import make_token

    return make_token(vendor, settings=_settings(), subject=f"abuser-{n}", ttl=3600)


async def _read_to_eof(reader: asyncio.StreamReader, within: float) -> tuple[bytes, bool]:
    chunks = []
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks), True
    except TimeoutError:
        return b"".join(chunks), False
    except ConnectionError:  # closed with our bytes unread (a reset, or a broken pipe): still closed
        return b"".join(chunks), True


async def half_open(port: int, n: int, plan: Plan) -> Seen:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if n % 2:  # a cut-off upgrade request: no blank line
        writer.write(f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n".encode())
    data, closed = await _read_to_eof(reader, plan.wait_seconds)
    writer.close()
    status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/1.1 ") else None
    return Seen(closed=closed, code=int(status) if status else None)


async def huge_head(port: int, n: int, plan: Plan) -> Seen:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ".encode())
    # One header value a little over the limit, never finished, in one write: the server reads it all
    # before it answers, so its close is clean (with unread bytes it would be a reset, losing the 431).
    writer.write(b"a" * (plan.max_head_bytes + 1024))
    data, closed = await _read_to_eof(reader, plan.wait_seconds)
    writer.close()
    status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/1.1 ") else None
    return Seen(closed=closed, code=int(status) if status else None)


async def _raw_upgrade(port: int, token: str | None, vendor: str, after: bytes, plan: Plan) -> Seen:
    """A real handshake, then `after` (raw bytes), then no reads until the end: the server's bytes
    are parsed afterwards with websockets' sans-I/O client."""
    protocol = ClientProtocol(parse_uri(_url(port, vendor, token)), max_size=None)
    protocol.send_request(protocol.connect())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(protocol.data_to_send()))
    head = b""
    if after:  # only once the upgrade is answered: uvicorn drops bytes that come with the request
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), plan.wait_seconds)
        writer.write(after)
    data, closed = await _read_to_eof(reader, plan.wait_seconds)
    data = head + data
    writer.close()
    protocol.receive_data(data)
    if closed:
        protocol.receive_eof()
    seen = Seen(closed=closed)
    for event in protocol.events_received():
        if isinstance(event, Response) and event.status_code != 101:
            seen.code = event.status_code
        elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
            message = orjson.loads(event.data)
            if message["type"] == "error":
                seen.errors.append(message["data"]["code"])
    if protocol.close_rcvd is not None:
        seen.code = protocol.close_rcvd.code
    return seen


async def silent_upgrade(port: int, n: int, plan: Plan) -> Seen:
    return await _raw_upgrade(port, None, plan.vendor, b"", plan)


async def silent_authenticated(port: int, n: int, plan: Plan) -> Seen:
    return await _raw_upgrade(port, _token(plan.vendor, n), plan.vendor, b"", plan)


async def huge_frame(port: int, n: int, plan: Plan) -> Seen:
    header = bytes([0x81, 0x80 | 127]) + (1 << 30).to_bytes(8, "big") + os.urandom(4)  # masked, 1 GiB
    return await _raw_upgrade(port, _token(plan.vendor, n), plan.vendor, header + b"x" * 1000, plan)


async def _session(
    port: int, n: int, plan: Plan, act: Callable[[Any, Seen], Coroutine[Any, Any, None]]
) -> Seen:
    """A websockets client connection: `act`, then everything the server sends until it closes."""
    from websockets.asyncio.client import connect

    seen = Seen()
    try:
        async with asyncio.timeout(plan.wait_seconds):
            async with connect(
                _url(port, plan.vendor, _token(plan.vendor, n)), max_size=None, ping_interval=None,
                open_timeout=None, proxy=None,
            ) as ws:  # fmt: skip
                await act(ws, seen)
                async for raw in ws:
                    message = orjson.loads(raw)
                    if message["type"] == "error":
                        seen.errors.append(message["data"]["code"])
                    elif message["type"] == "pong" and message["data"] == {"probe": n}:
                        seen.pong = True
                        return seen  # `invalid`: still served; we leave
    except ConnectionClosed as exc:
        seen.closed, seen.code = exc.rcvd is not None, exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        pass
    return seen


async def oversized(port: int, n: int, plan: Plan) -> Seen:
    size = OVER_APP_LIMIT if n % 2 == 0 else OVER_FRAME_LIMIT

    async def act(ws: Any, _seen: Seen) -> None:
        await ws.send('{"type": "ping", "data": "' + "x" * size + '"}')

    return await _session(port, n, plan, act)


async def invalid(port: int, n: int, plan: Plan) -> Seen:
    async def act(ws: Any, _seen: Seen) -> None:
        for message, _code in INVALID:
            await ws.send(message)
        await ws.send(orjson.dumps({"type": "ping", "data": {"probe": n}, "timestamp": "x"}).decode())

    return await _session(port, n, plan, act)


async def bad_utf8(port: int, n: int, plan: Plan) -> Seen:
    async def act(ws: Any, _seen: Seen) -> None:
        await ws.send(b'{"type": "ping", "data": "\xff\xfe"}', text=True)

    return await _session(port, n, plan, act)


async def flood(port: int, n: int, plan: Plan) -> Seen:
    ping = orjson.dumps({"type": "ping", "data": {}, "timestamp": "2026-01-01T00:00:00.000Z"}).decode()

    async def act(ws: Any, _seen: Seen) -> None:
        for _ in range(plan.flood_messages):
            await ws.send(ping)

    return await _session(port, n, plan, act)


KINDS: dict[str, Callable[[int, int, Plan], Coroutine[Any, Any, Seen]]] = {
    "half_open": half_open, "huge_head": huge_head, "silent_upgrade": silent_upgrade,
    "silent_authenticated": silent_authenticated, "huge_frame": huge_frame, "oversized": oversized,
    "invalid": invalid, "bad_utf8": bad_utf8, "flood": flood,
}  # fmt: skip


async def attack(port: int, plan: Plan) -> dict[str, list[Seen]]:
    """Every abuser of `plan` at once (started `connect_concurrency` at a time, not one SYN storm);
    returns, per kind, what each saw. Each authenticated abuser has its own token (the per-token
    connection limit would refuse most of them otherwise)."""
    tasks: dict[str, list[asyncio.Task[Seen]]] = {kind: [] for kind in KINDS}
    jobs = [kind for kind in KINDS for _ in range(getattr(plan, kind))]
    for i, kind in enumerate(jobs):
        tasks[kind].append(asyncio.create_task(KINDS[kind](port, i, plan)))
        if i % plan.connect_concurrency == plan.connect_concurrency - 1:
            await asyncio.sleep(0.05)
    return {kind: list(await asyncio.gather(*ts)) for kind, ts in tasks.items()}


@dataclass
class Good:
    """A well-behaved client of one vendor: answers pings, records every `new_order` (its latency from
    the record's `sentAt`, by phase) and every snapshot version; never reconnects."""

    vendor: str
    orders: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    versions: list[int] = field(default_factory=list)
    closed: int | None = None  # the close code, if the server ended the connection
    ready: asyncio.Event = field(default_factory=asyncio.Event)


async def good_client(url: str, seen: Good, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    try:
        async with connect(url, proxy=None, open_timeout=30) as ws:
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                received = time.time()
                message = orjson.loads(raw)
                kind, data = message["type"], message["data"]
                if kind == "new_order":
                    seen.orders.append(data["eventId"])
                    seen.latencies.setdefault(data["phase"], []).append(received - data["sentAt"])
                elif kind in ("analytics_update", "metrics_update"):
                    seen.versions.append(int(data["version"]))
                    seen.ready.set()
                elif kind == "ping":
                    pong = {"type": "pong", "data": {"id": data["id"]}, "timestamp": message["timestamp"]}
                    await ws.send(orjson.dumps(pong).decode())
    except ConnectionClosed as exc:
        seen.closed = exc.rcvd.code if exc.rcvd is not None else 1006


@dataclass
class ProducedActivity:
    """What `produce_activity` sent: the eventIds per vendor in order, the latest snapshot version per vendor."""

    orders: dict[str, list[str]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    phase: str = "quiet"


async def produce_activity(
    bootstrap: str, activity: str, metrics: str, vendors: list[str], rate: float, stop: asyncio.Event,
    produced: ProducedActivity,
) -> None:  # fmt: skip
    """`new_order` records at `rate`/s round-robin over `vendors`, stamped with their send time and
    `produced.phase`, and every fifth one a new snapshot version of that vendor, until `stop`."""
    from aiokafka import AIOKafkaProducer

    from processors.core import new_state, snapshot

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks=1)
    await producer.start()
    try:
        start, n = time.monotonic(), 0
        while not stop.is_set():
            vendor = vendors[n % len(vendors)]
            event_id = f"{vendor}-e{n}"
            order = {
                "vendorId": vendor, "eventId": event_id, "orderId": f"o{n}", "customerId": "c",
                "currency": "EUR", "total": 100, "items": 1, "occurredAt": "2026-01-01T00:00:00.000Z",
                "version": n, "sentAt": time.time(), "phase": produced.phase,
            }  # fmt: skip
            await producer.send_and_wait(activity, orjson.dumps(order), key=vendor.encode())
            produced.orders.setdefault(vendor, []).append(event_id)
            if n % 5 == 0:
                version = produced.versions.get(vendor, 0) + 1
                snap = snapshot(new_state(vendor), int(time.time() * 1000)) | {"version": version}
                await producer.send_and_wait(metrics, orjson.dumps(snap), key=vendor.encode())
                produced.versions[vendor] = version
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    finally:
        await producer.stop()


async def run_attack(port: int, plan: Plan, env: dict[str, str]) -> dict[str, list[Seen]]:
    """`attack` in a child process (`python -m infra.harness.abuse`), so its CPU is not the measured clients'."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infra.harness.abuse", "--port", str(port), "--plan", json.dumps(asdict(plan)),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"infra.harness.abuse failed ({child.returncode}):\n{err.decode()[-4000:]}")
    return {kind: [Seen(**s) for s in seen] for kind, seen in json.loads(out).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan", default="{}", help="JSON overrides of Plan's fields")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    plan = Plan(**json.loads(args.plan))
    seen = asyncio.run(attack(args.port, plan))
    print(json.dumps({kind: [asdict(s) for s in ss] for kind, ss in seen.items()}))


if __name__ == "__main__":
    main()
