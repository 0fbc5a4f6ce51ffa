"""`vendorpulse watch --vendor V`: a live terminal view of one vendor, through the Python client.

KPIs with trend arrows, top products, the latest orders, the connection state and latency. `view()`
turns what the client holds into one rich renderable (pure, so it is tested without a terminal);
`watch()` runs the client and redraws four times a second until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from api.client import VendorPulseClient
from api.exceptions import ClientError

ARROWS = {"up": ("▲", "green"), "down": ("▼", "red"), "flat": ("▬", "grey50")}
MINOR_DIGITS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "BHD": 3, "KWD": 3, "JOD": 3, "TND": 3}
STATE_STYLES = {"connected": "bold green", "reconnecting": "bold yellow", "connecting": "yellow",
                "failed": "bold red", "closed": "grey50"}  # fmt: skip


def money(minor: int, currency: str | None) -> str:
    """Minor units (contract §3) as the currency's major units: 123456 EUR -> "1,234.56 EUR"."""
    if currency is None:
        return f"{minor:,}"
    digits = MINOR_DIGITS.get(currency, 2)
    return f"{minor / 10**digits:,.{digits}f} {currency}"


def trend(figure: dict[str, Any]) -> Text:
    arrow, style = ARROWS.get(figure.get("trend", "flat"), ARROWS["flat"])
    pct = figure.get("percentage")
    change = "new" if pct is None else f"{pct:+.1f} %"
    return Text(f"{arrow} {change}", style=style)


def view(
    vendor: str, snapshot: dict[str, Any] | None, orders: list[dict[str, Any]], health: dict[str, Any]
) -> RenderableType:
    """The whole screen for what the client holds now."""
    state = health["connectionState"]
    latency = health["latency"]
    status = Text.assemble(
        ("● ", STATE_STYLES.get(state, "")),
        (state, STATE_STYLES.get(state, "")),
        f"  latency {latency:.1f} ms" if latency is not None else "  latency -",
        ("  (above 150 ms)", "yellow") if latency is not None and latency > 150 else "",
        f"  attempts {health['reconnectAttempts']}" if health["reconnectAttempts"] else "",
        f"  queued {health['queuedMessages']}" if health["queuedMessages"] else "",
        f"  up {health['uptime']:.0f} s",
    )
    title = f"vendorpulse · {vendor}"
    if snapshot is None:
        return Panel(Group(status, Text("waiting for the first snapshot…", style="grey50")), title=title)
    m, currency = snapshot["metrics"], snapshot.get("currency")
    kpis = Table(expand=True, show_edge=False)
    for column in ("revenue", "orders", "customers", "active products"):
        kpis.add_column(column, justify="right")
    customers, products = m["customers"], m["products"]
    kpis.add_row(
        Text(money(m["revenue"]["current"], currency), style="bold"),
        Text(f"{m['orders']['current']:,}", style="bold"),
        Text(f"{customers['total']:,}", style="bold"),
        Text(f"{products['active']:,}", style="bold"),
    )
    kpis.add_row(
        trend(m["revenue"]),
        trend(m["orders"]),
        Text(f"{customers['new']:,} new · {customers['returning']:,} returning", style="grey50"),
        Text(f"{products['lowStock']} low · {products['outOfStock']} out", style="grey50"),
    )
    top = Table(title="top products", expand=True, title_justify="left")
    top.add_column("#", justify="right", width=2)
    top.add_column("product")
    top.add_column("units", justify="right")
    top.add_column("revenue", justify="right")
    for i, p in enumerate(snapshot["topProducts"], start=1):
        top.add_row(str(i), p.get("name") or p["productId"], f"{p['units']:,}", money(p["revenue"], currency))
    feed = Table(title="latest orders", expand=True, title_justify="left")
    for column in ("time", "order", "customer", "items", "total"):
        feed.add_column(column, justify="right" if column in ("items", "total") else "left")
    for o in orders:
        when = str(o.get("occurredAt", ""))[11:19]
        feed.add_row(when, o["orderId"], o["customerId"], str(o["items"]), money(o["total"], o["currency"]))
    subtitle = (
        f"as of {snapshot['asOf']} · version {snapshot['version']} · last {snapshot['periodDays']} days"
    )
    return Panel(Group(status, kpis, top, feed), title=title, subtitle=subtitle)


async def watch(client: VendorPulseClient, refresh: float = 0.25, recent: int = 8) -> None:
    """Redraw `view()` while the client runs; ClientError when it gives up."""
    orders: deque[dict[str, Any]] = deque(maxlen=recent)

    def screen() -> RenderableType:
        return view(client.vendor_id, client.snapshot, list(orders), client.connection_health())

    async def consume() -> None:
        async for message in client:
            if message.type == "new_order":
                orders.appendleft(message.data)

    with Live(screen(), refresh_per_second=1 / refresh, screen=False) as live:
        connecting = asyncio.create_task(client.connect())  # shown while it retries, too
        reader = asyncio.create_task(consume())
        try:
            while not reader.done():
                live.update(screen())
                await asyncio.wait({reader}, timeout=refresh)
            live.update(screen())
            reader.result()  # ClientError (attempts exhausted, refused) surfaces here
        finally:
            reader.cancel()
            await client.close()
            with contextlib.suppress(ClientError, asyncio.CancelledError):
                await connecting


def run_watch(url: str, vendor: str, token: str | None, say: Callable[[str], None]) -> int:
    """`vendorpulse watch`: 0 after Ctrl-C, 1 when the client gives up or no token can be had."""
    provider = None
    if token is None:  # mint one with the configured secret (dev: the development secret)
        from api.auth import make_token
        from api.exceptions import ApiConfigError

        def provider() -> str:
            return make_token(vendor, ttl=3600)

        try:
            token = provider()
        except ApiConfigError as exc:
            say(f"error: no --token given and none can be made here: {exc}")
            return 1
    client = VendorPulseClient(url, vendor, token, token_provider=provider)
    started = time.monotonic()
    try:
        asyncio.run(watch(client))
    except KeyboardInterrupt:
        return 0
    except ClientError as exc:
        say(f"error after {time.monotonic() - started:.0f} s: {exc}")
        return 1
    return 0
