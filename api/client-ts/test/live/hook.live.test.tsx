/**
 * useVendorAnalytics from the built package, rendering a component in happy-dom under StrictMode,
 * against the live API, worker and Kafka that tests/integration/test_client_ts.py started:
 * - the rendered KPIs are the API's snapshot (VP_EXPECT, read over HTTP by the Python side);
 * - one socket (StrictMode's discarded mount opened none; the server counts one connection);
 * - orders produced once the component is up (VP_SIGNAL/ready asks the Python side for them) appear,
 *   newest first, with the snapshot that counts them;
 * - unmounting closes the connection (the server counts none).
 * What the component showed goes to VP_RESULTS for the Python side to check against what it produced.
 */

import { StrictMode } from "react";
import { readFileSync, writeFileSync } from "node:fs";
import { cleanup, render, screen, waitFor } from "@testing-library/react";
import { expect, it } from "vitest";
import type { Snapshot, WebSocketConstructor } from "vendorpulse-client";
import { useVendorAnalytics } from "vendorpulse-client/react";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: this test runs from tests/integration/test_client_ts.py`);
  return value;
};
const url = env("VP_URL");
const vendor = env("VP_VENDOR");
const expected = JSON.parse(readFileSync(env("VP_EXPECT"), "utf8")) as Snapshot;

const opened: string[] = [];
const Platform = globalThis.WebSocket as unknown as WebSocketConstructor;
class Counted extends (Platform as unknown as typeof WebSocket) {
  constructor(address: string) {
    super(address);
    opened.push(address);
  }
}
const options = { WebSocket: Counted as unknown as WebSocketConstructor, baseDelay: 200, maxDelay: 800 };

function Dashboard() {
  const { snapshot, health, orders, error } = useVendorAnalytics(url, vendor, env("VP_TOKEN"), options);
  if (error) return <p role="alert">{error.message}</p>;
  if (!snapshot) return <p>{health.connectionState}…</p>;
  const m = snapshot.metrics;
  return (
    <main>
      <h1 data-version={snapshot.version}>{snapshot.vendorId}</h1>
      <p data-testid="state">{health.connectionState}</p>
      <p data-testid="revenue" data-value={m.revenue.current}>{m.revenue.current}</p>
      <p data-testid="orders" data-value={m.orders.current}>{m.orders.current}</p>
      <p data-testid="customers" data-value={m.customers.total}>{m.customers.total}</p>
      <table><tbody>{snapshot.topProducts.map((p) => <tr key={p.productId} data-product={p.productId}><td>{p.name}</td></tr>)}</tbody></table>
      <ol aria-label="orders">{orders.map((o) => <li key={o.eventId} data-order={o.orderId}>{o.orderId}</li>)}</ol>
    </main>
  );
}

async function connections(): Promise<number> {
  const response = await fetch(`${url}/api/v1/analytics/websocket/status`, { headers: { Authorization: `Bearer ${env("VP_ADMIN_TOKEN")}` } });
  expect(response.status).toBe(200);
  const status = (await response.json()) as { connections: { perVendor: Record<string, number> } };
  return status.connections.perVendor[vendor] ?? 0;
}

const value = (id: string) => Number(screen.getByTestId(id).dataset.value);
const version = () => Number(document.querySelector("h1")?.dataset.version ?? -1);
const rendered = () => [...document.querySelectorAll("li[data-order]")].map((li) => (li as HTMLElement).dataset.order!);

it("renders the live snapshot and orders with one socket, and closes it on unmount", async () => {
  const view = render(
    <StrictMode>
      <Dashboard />
    </StrictMode>,
  );
  await waitFor(() => expect(version()).toBe(expected.version), { timeout: 20_000 });
  const m = expected.metrics;
  expect(screen.getByRole("heading").textContent).toBe(vendor);
  expect([value("revenue"), value("orders"), value("customers")]).toEqual([m.revenue.current, m.orders.current, m.customers.total]);
  const products = [...document.querySelectorAll("tr[data-product]")].map((tr) => (tr as HTMLElement).dataset.product);
  expect(products).toEqual(expected.topProducts.map((p) => p.productId));
  await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("connected"));
  expect(opened.length).toBe(1);
  expect(await connections()).toBe(1);

  writeFileSync(`${env("VP_SIGNAL")}/ready`, "");
  await waitFor(() => expect(rendered().length).toBeGreaterThan(0), { timeout: 60_000 });
  await waitFor(() => expect(value("orders")).toBeGreaterThan(m.orders.current), { timeout: 60_000 });
  expect(version()).toBeGreaterThan(expected.version);
  writeFileSync(env("VP_RESULTS"), JSON.stringify({ orders: rendered(), opened: opened.length, ordersCurrent: value("orders"), version: version() }));

  view.unmount();
  cleanup();
  await waitFor(async () => expect(await connections()).toBe(0), { timeout: 10_000 });
  expect(opened.length).toBe(1);
});
