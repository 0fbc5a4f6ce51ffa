// @vitest-environment happy-dom
/**
 * useVendorAnalytics in a DOM (happy-dom) against an in-process server scripted as the API: one
 * socket under StrictMode, closed on unmount, orders newest first, a new token without a reconnect.
 * Against the live API: test/live/hook.live.test.tsx.
 */

import { StrictMode } from "react";
import { act, cleanup, render, screen, waitFor } from "@testing-library/react";
import { afterEach, expect, it } from "vitest";

import type { NewOrder, Snapshot } from "../../src/index.js";
import { type VendorAnalyticsOptions, useVendorAnalytics } from "../../src/react.js";
import { TestServer, sleep } from "./server.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;
const servers: TestServer[] = [];

afterEach(async () => {
  cleanup();
  for (const s of servers.splice(0)) await s.stop();
});

async function server(): Promise<TestServer> {
  const s = await TestServer.start();
  servers.push(s);
  return s;
}

function Vendor(props: { url: string; token: string; options?: VendorAnalyticsOptions }) {
  const { snapshot, health, orders, error } = useVendorAnalytics(props.url, "v1", props.token, props.options);
  return (
    <div>
      <p data-testid="state">{health.connectionState}</p>
      <p data-testid="version">{snapshot ? snapshot.version : "none"}</p>
      <ol>{orders.map((o) => <li key={o.eventId}>{o.orderId}</li>)}</ol>
      <p data-testid="error">{error ? `${error.name} ${error.closeCode}` : ""}</p>
    </div>
  );
}

const snap = (version: number) => ({ vendorId: "v1", version }) as Snapshot;
const order = (n: number) => ({ orderId: `o${n}`, eventId: `e${n}`, cursor: `0:${n}` }) as NewOrder;

it("opens one socket under StrictMode and closes it on unmount", async () => {
  const s = (await server()).onConnection((conn) => {
    conn.hello();
    conn.send("analytics_update", snap(7));
  });
  const opened: string[] = [];
  const Counted = class extends WebSocket {
    constructor(url: string) {
      super(url);
      opened.push(url);
    }
  };
  const view = render(
    <StrictMode>
      <Vendor url={s.url} token="t" options={{ WebSocket: Counted }} />
    </StrictMode>,
  );
  await waitFor(() => expect(screen.getByTestId("version").textContent).toBe("7"));
  expect(screen.getByTestId("state").textContent).toBe("connected");
  await sleep(200);
  expect(opened.length).toBe(1); // the discarded mount opened none
  expect(s.conns.length).toBe(1);
  view.unmount();
  const conn = s.conns[0]!;
  await conn.until((c) => c.closed !== null, "the close");
  expect(conn.closed!.code).toBe(1000);
  await sleep(200);
  expect(s.conns.length).toBe(1);
});

it("lists orders newest first, at most maxOrders", async () => {
  const s = (await server()).onConnection((conn) => {
    conn.hello();
    for (const n of [1, 2, 3, 4]) conn.send("new_order", order(n));
    conn.send("new_order", order(3)); // a repeat: dropped by the client
  });
  render(<Vendor url={s.url} token="t" options={{ maxOrders: 3 }} />);
  await waitFor(() => expect(screen.getAllByRole("listitem").map((li) => li.textContent)).toEqual(["o4", "o3", "o2"]));
  await sleep(100);
  expect(screen.getAllByRole("listitem").length).toBe(3);
});

it("sends a new token on the open connection", async () => {
  const s = await server();
  const view = render(<Vendor url={s.url} token="t1" />);
  await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("connected"));
  view.rerender(<Vendor url={s.url} token="t2" />);
  const conn = s.conns[0]!;
  await conn.until((c) => c.received.some((m) => m.type === "refresh_token"), "a refresh_token");
  expect(conn.received.find((m) => m.type === "refresh_token")!.data).toEqual({ token: "t2" });
  expect(s.conns.length).toBe(1);
});

it("reports a refusal as error and stops", async () => {
  const s = (await server()).onConnection((conn) => conn.close(4001, "invalid token"));
  render(<Vendor url={s.url} token="bad" options={{ baseDelay: 10 }} />);
  await waitFor(() => expect(screen.getByTestId("error").textContent).toBe("ServerRefusedError 4001"));
  expect(screen.getByTestId("state").textContent).toBe("failed");
  await act(() => sleep(200));
  expect(s.conns.length).toBe(1);
});

function Alerts(props: { url: string; options?: VendorAnalyticsOptions }) {
  const { snapshot, alerts } = useVendorAnalytics(props.url, "v1", "t", props.options);
  return (
    <div>
      <p data-testid="revenue">{snapshot ? String((snapshot.metrics as unknown as { r: number }).r) : "none"}</p>
      <ol data-testid="alerts">{alerts.map((a) => <li key={a.eventId}>{`${a.productId}:${a.state}`}</li>)}</ol>
    </div>
  );
}

it("lists stock alerts newest first, each once, and follows delta updates", async () => {
  const alert = (n: number, state: string) => ({ vendorId: "v1", productId: `p${n}`, name: null, stock: 0, threshold: 5, state, previous: "ok", eventId: `a${n}`, occurredAt: "2026-11-25T12:00:00.000Z", cursor: `0:${n}` });
  const s = (await server()).onConnection((conn) => {
    conn.hello();
    conn.send("analytics_update", { vendorId: "v1", version: 1, metrics: { r: 10 } });
    conn.send("stock_alert", alert(1, "low"));
    conn.send("stock_alert", alert(2, "out"));
    conn.send("stock_alert", alert(2, "out")); // a repeat: dropped
    conn.send("metrics_delta", { vendorId: "v1", baseVersion: 1, version: 2, patch: { version: 2, metrics: { r: 25 } } });
  });
  render(<Alerts url={s.url} options={{ updates: "delta" }} />);
  await waitFor(() => expect(screen.getByTestId("revenue").textContent).toBe("25"));
  expect([...screen.getByTestId("alerts").children].map((li) => li.textContent)).toEqual(["p2:out", "p1:low"]);
  expect(s.conns[0]!.query.get("updates")).toBe("delta");
});
