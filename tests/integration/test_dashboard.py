"""The browser dashboard (`/dashboard`) in Debian's Chromium driven by Playwright, against a real API,
a real worker and the session's Kafka: it shows the snapshot's numbers, says "disconnected" when the
API stops, reconnects when it returns and moves on with new orders. Screenshots go to test-artifacts/.

Needs /usr/bin/chromium (`apt-get install -y chromium`); without it these tests are skipped, except
under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from api import patch
from api.app import create_app
from api.auth import make_token
from api.server import ServerThread
from api.settings import api_settings
from infra.ports import free_port
from schemas.topics import Topics
from tests.integration.conftest import WorkerProcess
from tests.integration.live_stack import live_stack
from tests.integration.test_api_live import SECRET
from tests.integration.test_stock_alerts import Catalog
from tests.integration.test_stock_alerts import send as send_inventory

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FAST = "baseDelay=200&maxDelay=800"  # the page's client backoff, shortened for the test
CANONICAL_IN_PAGE = """(expected) => {
  const canonical = (v) => Array.isArray(v) ? `[${v.map(canonical).join(",")}]`
    : v !== null && typeof v === "object"
      ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`
      : JSON.stringify(v);
  return { held: canonical(window.vendorpulse.snapshot), expected: canonical(expected) };
}"""

if not CHROMIUM.exists():
    reason = f"browser tests need Debian's Chromium at {CHROMIUM}: apt-get install -y chromium"
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{reason} (CI=true: not skipped)")
    pytest.skip(reason, allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("ts_client")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(
        viewport={"width": 1400, "height": 1000}, locale="en-US", reduced_motion="reduce"
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


async def kpi(page: Page, name: str) -> int:
    return int(await page.locator(f'[data-testid="kpi-{name}"] .value').get_attribute("data-value") or "-1")


async def chart_data(page: Page, canvas: str) -> Any:
    return await page.evaluate(
        "(id) => { const c = Chart.getChart(id); return {labels: c.data.labels,"
        " data: c.data.datasets.map(d => d.data)}; }",
        canvas,
    )


async def test_dashboard_shows_the_snapshot_and_survives_an_api_restart(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], page: Page
) -> None:
    async with live_stack(kafka_bootstrap, topics, make_worker, history=2500) as stack:
        shop, token, port = stack.shop, stack.token, stack.port
        expected = await stack.settled()
        await page.goto(f"http://127.0.0.1:{port}/dashboard?token={token}&{FAST}")
        badge = page.get_by_test_id("badge")
        await expect(badge).to_contain_text("connected", timeout=10_000)
        assert "token=" not in page.url  # the token left the address bar
        m = expected["metrics"]
        await expect(page.locator('[data-testid="kpi-orders"] .value')).to_have_attribute(
            "data-value", str(m["orders"]["current"]), timeout=10_000
        )
        assert await kpi(page, "revenue") == m["revenue"]["current"]
        assert await kpi(page, "customers") == m["customers"]["total"]
        assert await kpi(page, "products") == m["products"]["active"]
        revenue_text = await page.locator('[data-testid="kpi-revenue"] .value').inner_text()
        assert revenue_text == f"€{m['revenue']['current'] / 100:,.2f}"  # vendor-001 trades in EUR
        trend = page.locator('[data-testid="kpi-revenue"] .trend')
        assert await trend.get_attribute("data-trend") == m["revenue"]["trend"]
        assert {"up": "▲", "down": "▼", "flat": "▬"}[m["revenue"]["trend"]] in await trend.inner_text()
        rows = page.locator('[data-testid="top-products"] tbody tr')
        assert [await rows.nth(i).get_attribute("data-product-id") for i in range(await rows.count())] == [
            p["productId"] for p in expected["topProducts"]
        ]
        monthly = await chart_data(page, "monthly-chart")
        assert len(monthly["labels"]) == 12
        assert monthly["data"][1] == [x["orders"] for x in expected["monthlyTrends"]]
        assert monthly["data"][0] == [x["revenue"] / 100 for x in expected["monthlyTrends"]]
        categories = await chart_data(page, "category-chart")
        assert categories["labels"] == [c["category"] for c in expected["salesByCategory"]]
        await expect(badge).to_contain_text(" ms", timeout=5_000)  # the first round trip measured
        await expect(page.get_by_test_id("health")).to_contain_text("avg of last", timeout=5_000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        # The API goes away: the badge says so while the page retries.
        await stack.stop_api()
        stopped = time.monotonic()
        await expect(badge).to_contain_text("disconnected", timeout=5_000)
        assert await badge.get_attribute("data-state") == "reconnecting"
        await page.screenshot(path=str(ARTIFACTS / "dashboard-disconnected.png"), full_page=True)
        placed_while_down = await shop.send(30)  # orders while the API is down, stamped now
        await stack.start_api()
        await expect(badge).to_contain_text("connected · ", timeout=10_000)
        reconnected_after = time.monotonic() - stopped
        later = await stack.settled(newer_than=expected["version"])  # the 30 orders folded
        assert later["metrics"]["orders"]["current"] > m["orders"]["current"]
        await expect(page.locator('[data-testid="kpi-orders"] .value')).to_have_attribute(
            "data-value", str(later["metrics"]["orders"]["current"]), timeout=10_000
        )
        # the orders placed while the API was down arrive in the feed (resumed from Kafka), then live ones
        feed = page.locator('[data-testid="order-feed"] li[data-order-id]')
        newest = placed_while_down[-1]
        await expect(feed.first).to_have_attribute("data-order-id", newest, timeout=10_000)
        shown = [await feed.nth(i).get_attribute("data-order-id") for i in range(await feed.count())]
        assert shown == placed_while_down[::-1][: len(shown)]  # newest first, none missing or repeated
        assert len(shown) == min(len(placed_while_down), 25)
        placed_live = await shop.send(15)
        await expect(page.locator('[data-testid="kpi-orders"] .value')).not_to_have_attribute(
            "data-value", str(later["metrics"]["orders"]["current"]), timeout=10_000
        )
        await expect(feed.first).to_have_attribute("data-order-id", placed_live[-1], timeout=10_000)
        stats = await page.evaluate("window.vendorpulse.statistics()")
        assert stats["reconnects"] == 1
        assert stats["duplicatesDropped"] == 0
        await page.screenshot(path=str(ARTIFACTS / "dashboard-reconnected.png"), full_page=True)
        print(f"dashboard reconnected {reconnected_after:.1f} s after the API stopped")


async def test_dashboard_shows_a_toast_for_each_stock_alert_and_keeps_the_latest_on_delta_updates(
    kafka_bootstrap: str, topics: Topics, make_worker: Callable[..., WorkerProcess], page: Page
) -> None:
    async with live_stack(kafka_bootstrap, topics, make_worker, history=400) as stack:
        await stack.settled()
        await page.goto(f"http://127.0.0.1:{stack.port}/dashboard?token={stack.token}&{FAST}")
        await expect(page.get_by_test_id("badge")).to_contain_text("connected", timeout=10_000)
        catalog = Catalog()
        walk = [
            catalog.adjust("toast-lamp", 3),  # before its first upsert: no alert
            catalog.upsert("toast-lamp", threshold=5, name="Toast Lamp"),  # 3 <= 5: low
            catalog.adjust("toast-lamp", -3),  # 0: out
            catalog.adjust("toast-lamp", 20),  # ok
        ]
        await send_inventory(kafka_bootstrap, topics, walk[:3])
        toasts = page.locator('[data-testid="toast"][data-product-id="toast-lamp"]')
        await expect(toasts).to_have_count(2, timeout=15_000)
        await expect(toasts.first).to_have_attribute("data-state", "out")  # the newest on top
        await expect(toasts.first).to_contain_text("Toast Lamp: out of stock")
        await expect(toasts.nth(1)).to_contain_text("Toast Lamp: low stock")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-stock-alert.png"), full_page=True)
        await send_inventory(kafka_bootstrap, topics, walk[3:])
        await expect(toasts.first).to_contain_text("Toast Lamp: back in stock", timeout=15_000)
        items = page.locator('[data-testid="alert-list"] li[data-event-id]')
        await expect(items).to_have_count(3)
        shown = [await items.nth(i).get_attribute("data-event-id") for i in range(3)]
        assert shown == [walk[3].event_id, walk[2].event_id, walk[1].event_id]  # newest first, each once
        assert [await items.nth(i).get_attribute("data-state") for i in range(3)] == ["ok", "out", "low"]
        await expect(page.get_by_test_id("alert-count")).to_have_text("3 received")
        # the page asked for delta updates, and its numbers are the API's after merge patches
        await stack.shop.send(40)
        expected = await stack.settled()
        await expect(page.get_by_test_id("as-of")).to_have_attribute(
            "data-version", str(expected["version"]), timeout=10_000
        )
        # byte for byte after canonical JSON, both sides written by JavaScript (Python writes 25.0 as
        # "25.0", JavaScript as "25": the same number)
        canonical = await page.evaluate(CANONICAL_IN_PAGE, expected)
        assert canonical["held"] == canonical["expected"]
        assert orjson.loads(canonical["held"]) == orjson.loads(patch.canonical(expected))
        assert await kpi(page, "orders") == expected["metrics"]["orders"]["current"]
        stats = await page.evaluate("window.vendorpulse.statistics()")
        assert stats["deltasApplied"] > 0
        await expect(toasts).to_have_count(0, timeout=15_000)  # toasts go; the list stays
        await expect(items).to_have_count(3)


async def test_js_client_backoff_queue_and_health(page: Page) -> None:
    """The page's JavaScript client has the Python client's semantics (api/client.py)."""
    settings = api_settings(env="test", jwt_secret=SECRET)
    port = free_port()
    server = ServerThread(create_app(settings, kafka=False), settings, port=port)
    await asyncio.to_thread(server.start)
    try:
        token = make_token("vj", settings=settings)
        await page.goto(f"http://127.0.0.1:{port}/dashboard?token={token}")
        await expect(page.get_by_test_id("badge")).to_contain_text("connected", timeout=10_000)
        ceilings = await page.evaluate(
            "[1,2,3,4,5,6,7,10].map(n => VendorPulseClient.backoffCeiling(n, 1000, 30000))"
        )
        assert ceilings == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        health = await page.evaluate("window.vendorpulse.healthCheck()")
        assert set(health) == {"isHealthy", "latency", "reconnectAttempts", "queuedMessages",
                               "connectionState", "uptime"}  # fmt: skip
        assert health["isHealthy"] is True
        assert 0 < health["latency"] < 150
        # Nothing listens on `dead`: waits of random() * ceiling, then a clear error after maxAttempts.
        dead = free_port()
        outcome = await page.evaluate(
            """(url) => new Promise((resolve) => {
                 const c = new VendorPulseClient(url, "vj", "t",
                   {baseDelay: 20, maxDelay: 50, maxAttempts: 4, queueLimit: 3, random: () => 0.5});
                 for (const n of [1, 2, 3, 4, 5]) c.send("ping", {seq: n});
                 c.on("error", (e) => resolve({message: e.message, delays: c.delays,
                   queued: c.queue.map(m => m.data.seq), health: c.connectionHealth(),
                   dropped: c.statistics().droppedMessages}));
                 c.connect();
               })""",
            f"http://127.0.0.1:{dead}",
        )
        assert outcome["delays"] == [10, 20, 25]  # 0.5 x ceilings 20, 40, 50 (capped)
        assert "gave up after 4 failed connection attempts" in outcome["message"]
        assert outcome["queued"] == [3, 4, 5]  # bounded: the oldest two dropped, order kept
        assert outcome["dropped"] == 2
        assert outcome["health"]["connectionState"] == "failed"
        assert outcome["health"]["queuedMessages"] == 3
    finally:
        await asyncio.to_thread(server.stop)
