/**
 * VendorPulseClient over a real socket (an in-process `ws` server scripted as the API): reconnect
 * and backoff, close codes, the outbound queue, resume and dedupe, heartbeat, health, token refresh.
 * The same client against the real API, worker and Kafka: tests/integration/test_client_ts.py.
 */

import { afterEach, describe, expect, it } from "vitest";

import {
  type ConnectionState,
  type NewOrder,
  ReconnectFailedError,
  ServerRefusedError,
  type Snapshot,
  VendorPulseClient,
  type VendorPulseError,
} from "../../src/index.js";
import { type Conn, TestServer, freePort, sleep } from "./server.js";

const FAST = { baseDelay: 20, maxDelay: 80, logger: { warn: () => {}, error: console.error } };
const servers: TestServer[] = [];
const clients: VendorPulseClient[] = [];

async function server(port = 0): Promise<TestServer> {
  const s = await TestServer.start(port);
  servers.push(s);
  return s;
}

function client(url: string, options = {}, token = "t"): VendorPulseClient {
  const c = new VendorPulseClient(url, "v1", token, { ...FAST, ...options });
  clients.push(c);
  return c;
}

function until<T>(c: VendorPulseClient, event: "error"): Promise<VendorPulseError>;
function until(c: VendorPulseClient, event: "state", value: ConnectionState): Promise<ConnectionState>;
function until(c: VendorPulseClient, event: string, value?: unknown): Promise<unknown> {
  return new Promise((resolve) => {
    if (event === "state" && c.state === value) return resolve(value);
    c.on(event, (v: unknown) => {
      if (value === undefined || v === value) resolve(v);
    });
  });
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.stop();
});

describe("reconnect and backoff", () => {
  it("waits random × ceiling between attempts, then gives up with a clear error", async () => {
    const dead = await freePort();
    const c = client(`http://127.0.0.1:${dead}`, { baseDelay: 20, maxDelay: 50, maxAttempts: 4, queueLimit: 3, random: () => 0.5 });
    for (const seq of [1, 2, 3, 4, 5]) c.send("ping", { seq });
    const failed = until(c, "error");
    c.connect();
    const error = await failed;
    expect(error).toBeInstanceOf(ReconnectFailedError);
    expect(error.message).toMatch(/gave up after 4 failed connection attempts/);
    expect(c.delays).toEqual([10, 20, 25]); // 0.5 × ceilings 20, 40, 50 (capped)
    expect(c.queue.map((m) => (m.data as { seq: number }).seq)).toEqual([3, 4, 5]);
    expect(c.statistics().droppedMessages).toBe(2);
    expect(c.connectionHealth()).toMatchObject({ connectionState: "failed", queuedMessages: 3, isHealthy: false });
  });

  it("reconnects after the server goes away and counts the attempts", async () => {
    const s = await server();
    const port = s.port;
    const c = client(s.url, { random: () => 1 });
    c.connect();
    await until(c, "state", "connected");
    await s.stop();
    servers.pop();
    await until(c, "state", "reconnecting");
    while (c.attempts < 2) await sleep(5);
    expect(c.connectionHealth()).toMatchObject({ connectionState: "reconnecting", isHealthy: false });
    const back = await server(port);
    await until(c, "state", "connected");
    expect(c.reconnects).toBe(1);
    expect(c.attempts).toBe(0);
    expect(c.delays.length).toBeGreaterThanOrEqual(2);
    expect(c.delays).toEqual([20, 40, 80, 80, 80, 80, 80, 80, 80].slice(0, c.delays.length)); // random() = 1
    expect(back.conns.length).toBe(1);
  });

  it("opens one socket however often connect() is called", async () => {
    const s = await server();
    const c = client(s.url);
    c.connect().connect();
    c.connect();
    await until(c, "state", "connected");
    await sleep(100);
    expect(s.conns.length).toBe(1);
  });
});

describe("close codes", () => {
  it.each([
    [4001, /4001 \(unauthorized: invalid token\); a new token is needed/],
    [4003, /4003 \(forbidden: /],
    [4000, /4000 \(bad request: /],
  ])("does not retry %i", async (code, message) => {
    const s = (await server()).onConnection((conn) => conn.close(code, code === 4001 ? "invalid token" : "no"));
    const c = client(s.url);
    const failed = until(c, "error");
    c.connect();
    const error = await failed;
    expect(error).toBeInstanceOf(ServerRefusedError);
    expect(error.closeCode).toBe(code);
    expect(error.message).toMatch(message);
    await sleep(300); // more than the backoff would wait (≤ 80 ms)
    expect(s.conns.length).toBe(1);
    expect(c.state).toBe("failed");
    expect(c.delays).toEqual([]);
  });

  it("retries 4001 with a token from the tokenProvider", async () => {
    const s = (await server()).onConnection((conn) => {
      if (conn.query.get("token") === "old") conn.close(4001, "token expired");
      else conn.hello();
    });
    const c = client(s.url, { tokenProvider: async () => "new" }, "old");
    c.connect();
    await until(c, "state", "connected");
    expect(s.conns.map((x) => x.query.get("token"))).toEqual(["old", "new"]);
    expect(c.token).toBe("new");
  });

  it("retries the others (a restart, a slow reader)", async () => {
    let n = 0;
    const s = (await server()).onConnection((conn) => {
      conn.hello();
      if (n++ < 2) setTimeout(() => conn.close(n === 1 ? 1012 : 1013, "again"), 20);
    });
    const c = client(s.url);
    c.connect();
    await s.nth(2);
    await until(c, "state", "connected");
    expect(c.reconnects).toBe(2);
  });
});

describe("outbound queue", () => {
  it("keeps messages while offline and sends them in order once connected", async () => {
    const port = await freePort();
    const c = client(`http://127.0.0.1:${port}`, { queueLimit: 5, maxAttempts: 100 });
    c.connect();
    for (let seq = 0; seq < 8; seq++) c.send("ping", { seq });
    c.refresh();
    expect(c.connectionHealth().queuedMessages).toBe(5);
    expect(c.statistics().droppedMessages).toBe(4);
    const s = await server(port);
    const conn = await s.nth(0);
    await conn.until((x) => x.received.filter((m) => m.type !== "ping" || "seq" in (m.data as object)).length >= 5, "the queue");
    const sent = conn.received.filter((m) => m.type === "refresh" || "seq" in (m.data as object));
    expect(sent.map((m) => (m.type === "refresh" ? "refresh" : (m.data as { seq: number }).seq))).toEqual([4, 5, 6, 7, "refresh"]);
    expect(c.connectionHealth().queuedMessages).toBe(0);
  });

  it("paces a long queue under the server's limit, in order", async () => {
    const s = await server();
    const c = client(s.url, { sendRate: 100, sendBurst: 4 });
    for (let seq = 0; seq < 30; seq++) c.send("ping", { seq });
    c.connect();
    const conn = await s.nth(0);
    const seqs = () => conn.received.flatMap((m) => ("seq" in (m.data as object) ? [(m.data as { seq: number }).seq] : []));
    await conn.until(() => seqs().length === 30, "30 messages");
    expect(seqs()).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });
});

describe("resume and dedupe", () => {
  const order = (n: number, cursor: string, eventId = `e${n}`): Partial<NewOrder> => ({ orderId: `o${n}`, eventId, cursor });

  it("reconnects with resume_after and delivers each order once", async () => {
    const s = (await server()).onConnection((conn) => {
      if (!conn.query.has("resume_after")) {
        conn.hello("0:5");
        conn.send("new_order", order(6, "0:6"));
        conn.send("new_order", order(7, "0:7"));
        setTimeout(() => conn.close(1012, "restart"), 50);
      } else {
        conn.hello(null);
        conn.send("new_order", order(7, "0:7")); // already delivered
        conn.send("new_order", order(8, "0:8"));
        conn.send("new_order", order(8, "0:9", "e8")); // written twice by a crashed worker
        conn.send("connection_status", { status: "resumed", after: "0:7", replayed: 3, skippedOffsets: 0, complete: true, cursor: "0:9" });
        conn.send("new_order", order(10, "0:10"));
      }
    });
    const c = client(s.url);
    const seen: string[] = [];
    c.on("new_order", (o) => seen.push(o.orderId));
    const last = new Promise<void>((resolve) => c.on("new_order", (o) => o.orderId === "o10" && resolve()));
    c.connect();
    const second = await s.nth(1);
    expect(second.query.get("resume_after")).toBe("0:7");
    await last;
    expect(seen).toEqual(["o6", "o7", "o8", "o10"]);
    expect(c.statistics()).toMatchObject({ duplicatesDropped: 2, resumeGaps: 0, cursor: "0:10", reconnects: 1 });
    expect(s.conns[0]!.query.has("resume_after")).toBe(false); // the first connection starts live
  });

  it("emits the snapshot it holds, newest version only", async () => {
    const snap = (version: number) => ({ vendorId: "v1", version }) as Snapshot;
    const s = (await server()).onConnection((conn) => {
      conn.hello();
      conn.send("analytics_update", snap(3));
      conn.send("metrics_update", snap(2)); // older than the one held: kept out
      conn.send("metrics_update", snap(4));
    });
    const c = client(s.url);
    const versions: number[] = [];
    const updates: number[] = [];
    c.on("snapshot", (x) => versions.push(x.version));
    c.on("metrics_update", (x) => updates.push(x.version));
    c.connect();
    await new Promise<void>((resolve) => c.on("snapshot", (x) => x.version === 4 && resolve()));
    expect(versions).toEqual([3, 4]);
    expect(updates).toEqual([2, 4]); // each message still reaches its listeners
    expect(c.snapshot?.version).toBe(4);
  });
});

describe("heartbeat, latency, health", () => {
  it("answers the server's ping and measures its own", async () => {
    const s = (await server()).onConnection((conn) => {
      conn.hello();
      conn.socket.on("message", (raw) => {
        const m = JSON.parse(String(raw)) as { type: string; data: unknown };
        if (m.type === "ping") conn.send("pong", m.data);
      });
      conn.send("ping", { id: 41, rttMs: null });
    });
    const c = client(s.url, { pingInterval: 100 });
    c.connect();
    const conn = await s.nth(0);
    await conn.until((x) => x.received.some((m) => m.type === "pong"), "a pong");
    expect(conn.received.find((m) => m.type === "pong")!.data).toEqual({ id: 41 });
    const health = await c.healthCheck();
    expect(health).toMatchObject({ isHealthy: true, connectionState: "connected", reconnectAttempts: 0, queuedMessages: 0 });
    expect(health.latency).toBeGreaterThan(0);
    expect(health.uptime).toBeGreaterThan(0);
    expect(await c.performHealthCheck()).toBe(true);
    expect(c.getConnectionHealth().isHealthy).toBe(true);
    await conn.until(() => c.samples.length >= 4, "pings every 100 ms");
    expect(c.getConnectionStats().lastLatency).toBeGreaterThan(0);
  });

  it("is unhealthy when pongs stop, and reconnects (4008)", async () => {
    const s = (await server()).onConnection((conn) => conn.hello()); // never answers a ping
    const c = client(s.url, { pingInterval: 100 });
    c.connect();
    await until(c, "state", "connected");
    expect(await c.performHealthCheck(200)).toBe(false);
    const first = await s.nth(0);
    await first.until((x) => x.closed !== null, "a close");
    expect(first.closed!.code).toBe(4008);
    await s.nth(1);
  });

  it("warns once when latency goes above the limit", async () => {
    const s = (await server()).onConnection((conn) => {
      conn.hello();
      conn.socket.on("message", (raw) => {
        const m = JSON.parse(String(raw)) as { type: string; data: unknown };
        if (m.type === "ping") setTimeout(() => conn.send("pong", m.data), 30);
      });
    });
    const warnings: string[] = [];
    const c = client(s.url, { latencyWarningMs: 10, logger: { warn: (m: string) => warnings.push(m), error: console.error } });
    const warned: number[] = [];
    c.on("latency_warning", (ms) => warned.push(ms));
    c.connect();
    await until(c, "state", "connected");
    await c.healthCheck();
    await c.healthCheck();
    expect(warned.length).toBe(1);
    expect(warned[0]).toBeGreaterThan(10);
    expect(warnings.filter((w) => w.includes("is above 10 ms")).length).toBe(1);
    expect(c.statistics().latencyWarnings).toBe(1);
    expect(c.connectionHealth().isHealthy).toBe(false);
  });
});

describe("tokens", () => {
  const jwt = (exp: number) => `h.${Buffer.from(JSON.stringify({ sub: "u", exp })).toString("base64url")}.s`;

  it("renews the token before it expires and sends it on the open connection", async () => {
    const s = await server();
    const fresh = jwt(Math.floor(Date.now() / 1000) + 3600);
    const c = client(s.url, { tokenProvider: () => fresh, refreshMargin: 1 }, jwt(Math.floor(Date.now() / 1000) + 2));
    c.connect();
    const conn = await s.nth(0);
    await conn.until((x) => x.received.some((m) => m.type === "refresh_token"), "a refresh_token", 4000);
    expect(conn.received.find((m) => m.type === "refresh_token")!.data).toEqual({ token: fresh });
    expect(c.token).toBe(fresh);
    expect(s.conns.length).toBe(1);
  });

  it("setToken sends the new token without reconnecting", async () => {
    const s = await server();
    const c = client(s.url);
    c.connect();
    await until(c, "state", "connected");
    c.setToken("t2");
    const conn = await s.nth(0);
    await conn.until((x) => x.received.some((m) => m.type === "refresh_token"), "a refresh_token");
    expect(conn.received.find((m) => m.type === "refresh_token")!.data).toEqual({ token: "t2" });
    expect(s.conns.length).toBe(1);
  });
});

describe("surface", () => {
  it("emits message types it does not know yet, and every message", async () => {
    const s = (await server()).onConnection((conn) => {
      conn.hello();
      conn.send("something_new", { x: 1 });
    });
    const c = client(s.url);
    const seen: unknown[] = [];
    const types: string[] = [];
    c.on("something_new", (data) => seen.push(data));
    c.on("message", (m) => types.push(m.type));
    c.connect();
    await new Promise<void>((resolve) => c.on("something_new", () => resolve()));
    expect(seen).toEqual([{ x: 1 }]);
    expect(types).toEqual(["connection_status", "something_new"]);
  });

  it("closes for good", async () => {
    const s = await server();
    const c = client(s.url);
    const states: string[] = [];
    c.on("state", (x) => states.push(x));
    c.connect();
    await until(c, "state", "connected");
    c.close();
    const conn = await s.nth(0);
    await conn.until((x) => x.closed !== null, "the close");
    expect(conn.closed!.code).toBe(1000);
    await sleep(200);
    expect(s.conns.length).toBe(1);
    expect(states).toEqual(["connected", "closed"]);
    expect(() => c.connect()).toThrow(/closed; create a new one/);
  });

  it("takes a ws(s) URL of the route or the API's base URL", () => {
    expect(new VendorPulseClient("https://api.example.com", "v", "t").url).toBe("wss://api.example.com/api/v1/analytics/ws/vendor/analytics");
    expect(new VendorPulseClient("http://h:8000/", "v", "t").url).toBe("ws://h:8000/api/v1/analytics/ws/vendor/analytics");
    expect(new VendorPulseClient("ws://h/custom/path", "v", "t").url).toBe("ws://h/custom/path");
    expect(() => new VendorPulseClient("ftp://h", "v", "t")).toThrow(/http\(s\):\/\/ or ws\(s\):\/\//);
    expect(VendorPulseClient.backoffCeiling(3)).toBe(4000);
  });
});

describe("delta updates and stock alerts", () => {
  const snap = (version: number, revenue: number) => ({ vendorId: "v", version, metrics: { revenue: { current: revenue } }, monthlyTrends: [] });

  it("asks for deltas, applies them, and refreshes when a patch is for another version", async () => {
    const s = (await server()).onConnection((conn) => {
      conn.hello();
      conn.send("analytics_update", snap(1, 10));
      conn.send("metrics_delta", { vendorId: "v", baseVersion: 1, version: 2, patch: { version: 2, metrics: { revenue: { current: 20 } } } });
      conn.send("metrics_delta", { vendorId: "v", baseVersion: 5, version: 6, patch: { version: 6 } }); // not held
    });
    const c = client(s.url, { updates: "delta" });
    const snapshots: number[] = [];
    c.on("snapshot", (x) => snapshots.push(x.version));
    c.connect();
    const conn = await s.nth(0);
    expect(conn.query.get("updates")).toBe("delta");
    await conn.until((k) => k.received.some((m) => m.type === "refresh"), "a refresh");
    expect(snapshots).toEqual([1, 2]);
    expect(c.snapshot).toEqual({ ...snap(2, 20) });
    expect(c.statistics().deltasApplied).toBe(1);
  });

  it("emits each stock alert once and keeps the latest", async () => {
    const alert = (eventId: string, cursor: string, state = "out") => ({ vendorId: "v", productId: "p1", name: "Lamp", stock: 0, threshold: 5, state, previous: "low", eventId, occurredAt: "2026-11-25T12:00:00.000Z", cursor });
    const s = (await server()).onConnection((conn) => {
      conn.hello("0:1");
      conn.send("stock_alert", alert("a2", "0:2"));
      conn.send("stock_alert", alert("a2", "0:3")); // the same alert written again after a worker crash
      conn.send("stock_alert", alert("a4", "0:4", "ok"));
    });
    const c = client(s.url);
    const seen: string[] = [];
    const done = new Promise<void>((resolve) => c.on("stock_alert", (a) => (seen.push(a.eventId), a.eventId === "a4" && resolve())));
    c.connect();
    expect((await s.nth(0)).query.has("updates")).toBe(false);
    await done;
    expect(seen).toEqual(["a2", "a4"]);
    expect(c.alerts.map((a) => a.state)).toEqual(["ok", "out"]);
    expect(c.cursor).toBe("0:4");
  });
});
