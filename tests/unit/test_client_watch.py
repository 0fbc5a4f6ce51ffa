"""`vendorpulse watch`'s screen (infra.watch.view) for a snapshot, rendered as a terminal would show it."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from infra.watch import money, view

HEALTH = {"isHealthy": True, "latency": 3.25, "reconnectAttempts": 0, "queuedMessages": 0,
          "connectionState": "connected", "uptime": 42.0}  # fmt: skip


def snapshot() -> dict[str, Any]:
    return {
        "vendorId": "v1", "asOf": "2026-11-25T12:00:00.000Z", "periodDays": 30, "currency": "EUR",
        "version": 7,
        "metrics": {
            "revenue": {"current": 1234567, "previous": 1000000, "trend": "up", "percentage": 23.5},
            "orders": {"current": 80, "previous": 90, "trend": "down", "percentage": -11.1},
            "customers": {"total": 40, "new": 15, "returning": 25},
            "products": {"total": 12, "active": 10, "lowStock": 2, "outOfStock": 1},
        },
        "topProducts": [{"productId": "p1", "name": "Eco Lamp", "revenue": 50000, "units": 12},
                        {"productId": "p2", "name": None, "revenue": 900, "units": 3}],
        "salesByCategory": [], "monthlyTrends": [],
    }  # fmt: skip


def render(*args: Any) -> str:
    console = Console(width=120, record=True, color_system=None)
    console.print(view(*args))
    return console.export_text()


def test_kpis_with_trend_arrows_top_products_orders_and_connection() -> None:
    order = {"orderId": "o9", "customerId": "c3", "items": 2, "total": 4599, "currency": "EUR",
             "occurredAt": "2026-11-25T11:59:58.000Z"}  # fmt: skip
    text = render("v1", snapshot(), [order], HEALTH)
    assert "12,345.67 EUR" in text
    assert "▲ +23.5 %" in text
    assert "▼ -11.1 %" in text
    assert "15 new · 25 returning" in text
    assert "2 low · 1 out" in text
    assert "Eco Lamp" in text
    assert "p2" in text  # a product without a catalog name shows its id
    assert "o9" in text
    assert "45.99 EUR" in text
    assert "11:59:58" in text
    assert "connected" in text
    assert "latency 3.2 ms" in text
    assert "version 7" in text


def test_reconnecting_and_slow_states_are_visible() -> None:
    health = HEALTH | {"connectionState": "reconnecting", "reconnectAttempts": 3, "queuedMessages": 2,
                       "latency": 180.0}  # fmt: skip
    text = render("v1", None, [], health)
    assert "reconnecting" in text
    assert "attempts 3" in text
    assert "queued 2" in text
    assert "(above 150 ms)" in text
    assert "waiting for the first snapshot" in text


def test_money_uses_the_currencys_minor_units() -> None:
    assert money(123456, "EUR") == "1,234.56 EUR"
    assert money(1500, "JPY") == "1,500 JPY"
    assert money(5, None) == "5"
