"""The TypeScript client (`api/client-ts`, the npm package `vendorpulse-client`) end to end, built from
its sources and run in Node 20 (where it uses the `ws` package) against the session's Kafka, a real
worker and a real API: it gets the snapshot, a produced order arrives, an API restart is survived with
a resume and no gap, and a bad token closes with 4001 and is not retried. Then its React hook renders a
component in happy-dom against the same kind of stack (`test/live/hook.live.test.tsx`, vitest).

The client runs in its own process (`test/live/probe.mjs`, one JSON line per event); this side drives
the stack (produce, stop and start the API) and checks what the client saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from api.auth import make_token
from api.settings import api_settings
from schemas.topics import Topics
from tests.integration.conftest import WorkerProcess
from tests.integration.live_stack import VENDOR, live_stack
from tests.integration.test_api_live import running_api, settings_for

pytestmark = pytest.mark.asyncio(loop_scope="session")
Event = dict[str, Any]


class Probe:
    """`node test/live/probe.mjs`: the events the client printed, and commands to it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self.stderr = b""
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, client_dir: Path, url: str, token: str, form: str = "esm") -> Probe:
        env = os.environ | {"VP_URL": url, "VP_VENDOR": VENDOR, "VP_TOKEN": token, "VP_FORMAT": form}
        proc = await asyncio.create_subprocess_exec(
            "node", "test/live/probe.mjs", cwd=client_dir, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(orjson.loads(line))
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()

    def messages(self, kind: str, since: int = 0) -> list[Any]:
        return [
            e["value"]["data"]
            for e in self.events[since:]
            if e["event"] == "message" and e["value"]["type"] == kind
        ]

    def orders(self, since: int = 0) -> list[str]:
        return [data["orderId"] for data in self.messages("new_order", since)]

    def status(self, status: str, since: int = 0) -> Any:
        return next((d for d in self.messages("connection_status", since) if d["status"] == status), None)

    def states(self) -> list[str]:
        return [e["value"] for e in self.events if e["event"] == "state"]

    async def wait_for(self, check: Callable[[], Any], what: str, within: float = 30.0) -> Any:
        deadline = time.monotonic() + within
        while not (found := check()):
            if time.monotonic() > deadline or self._reader.done():
                tail = "\n".join(orjson.dumps(e).decode()[:300] for e in self.events[-15:])
                raise AssertionError(f"the client showed no {what} within {within} s; last events:\n{tail}\n"
                                     f"stderr: {self.stderr.decode(errors='replace')}")  # fmt: skip
            await asyncio.sleep(0.05)
        return found

    def first(self, event: str, since: int = 0, **match: Any) -> Any:
        for e in self.events[since:]:
            value = e["value"]
            if e["event"] == event and all(value.get(k) == v for k, v in match.items()):
                return value
        return None

    async def command(self, command: str, reply: str) -> Any:
        assert self.proc.stdin is not None
        since = len(self.events)
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()
        return await self.wait_for(lambda: self.first(reply, since), reply, within=10)

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ConnectionError, AssertionError):
                await self.command("close", "closed")
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        await self._reader


@contextlib.asynccontextmanager
async def probe(client_dir: Path, url: str, token: str, form: str = "esm") -> AsyncIterator[Probe]:
    p = await Probe.start(client_dir, url, token, form)
    try:
        yield p
    finally:
        await p.close()


async def test_snapshot_orders_and_an_api_restart_without_gap(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], ts_client: Path
) -> None:
    async with live_stack(kafka_bootstrap, topics, make_worker, history=600) as stack:
        shop, expected = stack.shop, await stack.settled()
        async with probe(ts_client, stack.url, stack.token) as client:
            ready = await client.wait_for(lambda: client.first("ready"), "start")
            assert ready["websocket"] == "ws", ready  # Node 20 has no WebSocket: the ws package
            # The snapshot: the API's, as the HTTP route gives it.
            first = await client.wait_for(lambda: client.messages("analytics_update"), "snapshot")
            assert first[0]["version"] == expected["version"]
            assert first[0]["metrics"] == expected["metrics"]
            assert first[0]["topProducts"] == expected["topProducts"]
            # A produced order arrives, and the snapshot that counts it.
            placed = await shop.send(20)
            assert placed
            await client.wait_for(lambda: len(client.orders()) >= len(placed), "orders")
            assert client.orders() == placed
            counted = await stack.settled()
            await client.wait_for(
                lambda: [s for s in client.messages("metrics_update") if s["version"] == counted["version"]],
                "the snapshot counting them",
            )
            health = await client.command("health", "health")
            assert health["isHealthy"] is True, health
            assert health["performHealthCheck"] is True
            assert health["connectionState"] == "connected"
            assert 0 < health["latency"] < 150

            # The API stops; orders are placed meanwhile; it comes back on the same address.
            await stack.stop_api()
            await client.wait_for(lambda: "reconnecting" in client.states(), "reconnecting")
            placed_while_down = await shop.send(30)
            since = len(client.events)
            await stack.start_api()
            resumed = await client.wait_for(lambda: client.status("resumed", since), "resume")
            assert resumed["complete"] is True, resumed
            await client.wait_for(
                lambda: len(client.orders(since)) >= len(placed_while_down), "missed orders"
            )
            assert client.orders(since) == placed_while_down  # each once, in order, none missing
            placed_live = await shop.send(10)
            await client.wait_for(lambda: client.orders()[-1:] == placed_live[-1:], "live orders")
            assert client.orders() == placed + placed_while_down + placed_live
            stats = await client.command("stats", "stats")
            assert stats["reconnects"] == 1
            assert stats["duplicatesDropped"] == 0
            assert stats["resumeGaps"] == 0
            assert stats["cursor"] == client.messages("new_order")[-1]["cursor"]
            latest = await stack.settled()
            await client.wait_for(
                lambda: (
                    [s for s in client.messages("metrics_update", since) if s["version"] == latest["version"]]
                    or [
                        s
                        for s in client.messages("analytics_update", since)
                        if s["version"] == latest["version"]
                    ]
                ),
                "the latest snapshot after the restart",
            )


async def test_a_bad_token_closes_4001_and_is_not_retried(
    kafka_bootstrap: str, topics: Topics, ts_client: Path
) -> None:
    settings = settings_for(kafka_bootstrap, topics)
    forged = make_token(
        VENDOR, settings=api_settings(env="test", jwt_secret="not-the-api-secret-" + "y" * 32)
    )
    async with running_api(settings) as port, probe(
        ts_client, f"http://127.0.0.1:{port}", forged, form="cjs"
    ) as client:  # fmt: skip
        ready = await client.wait_for(lambda: client.first("ready"), "start")
        assert ready["format"] == "cjs"
        error = await client.wait_for(lambda: client.first("error"), "error")
        assert error["fatal"] is True
        assert error["name"] == "ServerRefusedError"
        assert error["closeCode"] == 4001
        assert "unauthorized" in error["message"]
        await asyncio.sleep(1.5)  # several times the 200 ms backoff: a retry would have come by now
        stats = await client.command("stats", "stats")
        assert stats["backoffDelays"] == []
        assert stats["messagesReceived"] == 0  # refused before any data
        assert client.messages("connection_status") == []
        assert client.states() == ["failed"]
        async with httpx2.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
        closes = [
            line for line in text.splitlines() if line.startswith('vendorpulse_ws_closes_total{code="4001"}')
        ]
        assert len(closes) == 1, text
        assert float(closes[0].split()[-1]) == 1.0, closes  # one attempt, no retry


async def test_react_hook_renders_the_live_stack(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], ts_client: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    # the component's page is on a dashboard dev server's origin: the API allows it, as it must for any
    # dashboard it does not serve itself
    origin = {"allowed_origins": ["http://localhost:5173"]}
    async with live_stack(kafka_bootstrap, topics, make_worker, history=600, **origin) as stack:
        expected = await stack.settled()
        (tmp_path / "expect.json").write_bytes(orjson.dumps(expected))
        signal, results = tmp_path / "signal", tmp_path / "results.json"
        signal.mkdir()
        env = os.environ | {
            "VP_URL": stack.url, "VP_VENDOR": VENDOR, "VP_TOKEN": stack.token,
            "VP_ADMIN_TOKEN": make_token(None, admin=True, settings=stack.settings),
            "VP_EXPECT": str(tmp_path / "expect.json"), "VP_SIGNAL": str(signal), "VP_RESULTS": str(results),
        }  # fmt: skip
        vitest = await asyncio.create_subprocess_exec(
            "npx", "--no-install", "vitest", "run", "--config", "vitest.live.config.ts", cwd=ts_client, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output = asyncio.create_task(vitest.communicate())
        placed: list[str] = []
        async with asyncio.timeout(120):
            while not output.done():
                if (signal / "ready").exists() and not placed:
                    placed = await stack.shop.send(15)  # the component is up: orders for it to show
                await asyncio.sleep(0.1)
        log = (await output)[0].decode(errors="replace")
        assert vitest.returncode == 0, log
        assert placed, log
        shown = orjson.loads(results.read_bytes())
        assert shown["opened"] == 1
        assert shown["orders"], shown
        assert shown["orders"][::-1] == placed[: len(shown["orders"])]  # newest first, each once, in order
        assert shown["version"] > expected["version"]
