/** Compile-time checks of the public types (npm test type-checks this file), and the narrowing a user writes. */

import { expectTypeOf, it } from "vitest";
import { WebSocket as NodeWebSocket } from "ws";

import {
  type ClientEvents,
  type NewOrder,
  type ServerMessage,
  type Snapshot,
  VendorPulseClient,
  type VendorPulseError,
  type WebSocketConstructor,
} from "../../src/index.js";

it("accepts the DOM's and ws's WebSocket", () => {
  expectTypeOf<typeof WebSocket>().toMatchTypeOf<WebSocketConstructor>(); // the DOM lib's (no global in Node 20)
  expectTypeOf<typeof NodeWebSocket>().toMatchTypeOf<WebSocketConstructor>();
});

it("types each event's argument", () => {
  const c = new VendorPulseClient("http://localhost", "v", "t");
  c.on("new_order", (o) => expectTypeOf(o).toEqualTypeOf<NewOrder>());
  c.on("metrics_update", (s) => expectTypeOf(s).toEqualTypeOf<Snapshot>());
  c.on("error", (e) => expectTypeOf(e).toEqualTypeOf<ClientEvents["error"]>());
  c.on("future_type", (x) => expectTypeOf(x).toBeUnknown());
  c.on("message", (m: ServerMessage) => {
    if (m.type === "new_order") expectTypeOf(m.data).toEqualTypeOf<NewOrder>();
    if (m.type === "analytics_update") expectTypeOf(m.data.metrics.revenue.current).toBeNumber();
  });
  expectTypeOf(c.performHealthCheck()).resolves.toBeBoolean();
  expectTypeOf(c.getConnectionHealth().connectionState).toEqualTypeOf<"connecting" | "connected" | "reconnecting" | "failed" | "closed">();
  expectTypeOf<ClientEvents["error"]>().toMatchTypeOf<{ message: string }>();
  expectTypeOf<VendorPulseError["closeCode"]>().toEqualTypeOf<number | null>();
  // @ts-expect-error: refresh_token needs {token}
  c.send("refresh_token", { nope: 1 });
});
