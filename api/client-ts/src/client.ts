/**
 * One vendor's live analytics over one (re)connecting WebSocket (docs/API.md "Clients"); the same
 * semantics and defaults as the Python client (api/client.py):
 * - reconnects with full-jitter backoff: after failure n it waits uniform(0, min(30 s, 1 s × 2^(n−1)));
 *   after `maxAttempts` (10) failures in a row: state "failed" and an `error` event. 4000 and 4003 are
 *   not retried, nor 4001 unless a `tokenProvider` can renew the token;
 * - queues what the application sends (at most `queueLimit`, 100; the oldest dropped and counted),
 *   flushed in order once connected, paced at 8 messages/s (burst 16) under the server's limit;
 * - answers the server's heartbeat and pings on its own every `pingInterval` (5 s): `latency` is the
 *   average round trip of the last 100, with one `latency_warning` when it goes above 150 ms;
 * - renews the token `refreshMargin` (60 s) before `exp` with `tokenProvider` and sends `refresh_token`;
 * - resumes: reconnects with `resume_after=<cursor of the last new_order or stock_alert>` and drops
 *   repeats (a cursor at or before it, or an `eventId` among the last 10,000), so no notification is
 *   missed or doubled; `alerts` keeps the latest 20 stock alerts;
 * - with `updates: "delta"`, applies the server's `metrics_delta` merge patches to `snapshot` (a patch
 *   for a version it does not hold is dropped and a `refresh` sent).
 */

import { ReconnectFailedError, ServerRefusedError, VendorPulseError } from "./errors.js";
import {
  type ClientEvents,
  type ClientOptions,
  type ConnectionHealth,
  type ConnectionState,
  type ConnectionStats,
  DEFAULTS,
  type ResolvedOptions,
} from "./options.js";
import { LatencyWindow, OutboundQueue, Pacer, backoffCeiling, tokenExpiry } from "./policy.js";
import {
  type ClientMessageData,
  type ClientMessageType,
  type Envelope,
  type Snapshot,
  type StockAlert,
  WS_PATH,
} from "./protocol.js";
import { Received } from "./received.js";
import { OPEN, type WebSocketConstructor, type WebSocketLike, loadWebSocket, platformWebSocket } from "./transport.js";

type Handler = (value: never) => void;
type Timer = ReturnType<typeof setTimeout>;
interface Ping {
  sent: number;
  done: ((rtt: number | null) => void) | null;
}

const FATAL: Record<number, string> = { 4000: "bad request", 4003: "forbidden" };

export class VendorPulseClient {
  /** The backoff ceiling after `attempt` failures (ms). */
  static readonly backoffCeiling = backoffCeiling;
  /** A JWT's `exp` (epoch s), unverified. */
  static readonly tokenExpiry = tokenExpiry;

  readonly options: ResolvedOptions;
  /** The WebSocket route, ws: or wss:. */
  readonly url: string;
  readonly vendorId: string;

  private current: ConnectionState = "connecting";
  private credential: string;
  private readonly waits: number[] = [];
  private readonly counts = { reconnects: 0, latencyWarnings: 0, attempts: 0, received: 0, sent: 0 };
  private readonly received: Received;
  private readonly outbox: OutboundQueue<Envelope>;
  private readonly window: LatencyWindow;
  private readonly pacer: Pacer;
  private readonly listeners = new Map<string, Handler[]>();
  private readonly pings = new Map<number, Ping>();
  private readonly timers = new Set<Timer>();
  private ws: WebSocketLike | null = null;
  private impl: WebSocketConstructor | null = null;
  private running = false;
  private closed = false;
  private flushing = false;
  private slow = false;
  private everConnected = false;
  private connectedAt: number | null = null;
  private nextPing = 1;
  private refreshTimer: Timer | null = null;

  constructor(baseUrl: string, vendorId: string, token: string, options: ClientOptions = {}) {
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = { ...DEFAULTS, ...given };
    if (!(this.options.maxAttempts >= 1)) throw new RangeError("maxAttempts must be at least 1");
    const here = typeof location !== "undefined" ? location.href : undefined;
    const url = new URL(baseUrl, here);
    const secure = url.protocol === "https:" || url.protocol === "wss:";
    if (!["http:", "https:", "ws:", "wss:"].includes(url.protocol)) {
      throw new TypeError(`expected the http(s):// or ws(s):// URL of the API, got ${baseUrl}`);
    }
    const path = url.pathname.replace(/\/+$/, "") || WS_PATH;
    this.url = `${secure ? "wss:" : "ws:"}//${url.host}${path}`;
    this.vendorId = vendorId;
    this.credential = token;
    this.received = new Received((message, detail) => this.options.logger.warn(message, detail));
    this.outbox = new OutboundQueue(this.options.queueLimit);
    this.window = new LatencyWindow(100);
    this.pacer = new Pacer(this.options.sendRate, this.options.sendBurst);
  }

  // --- events

  /** Listen to a server message type (its `data`) or a client event; returns the client. */
  on<K extends keyof ClientEvents>(type: K, handler: (value: ClientEvents[K]) => void): this;
  /** A message type this version does not know yet: its `data`. */
  on(type: string, handler: (value: unknown) => void): this;
  on(type: string, handler: (value: never) => void): this {
    const list = this.listeners.get(type) ?? [];
    list.push(handler);
    this.listeners.set(type, list);
    return this;
  }

  off<K extends keyof ClientEvents>(type: K, handler: (value: ClientEvents[K]) => void): this;
  off(type: string, handler: (value: unknown) => void): this;
  off(type: string, handler: (value: never) => void): this {
    const list = this.listeners.get(type);
    const at = list ? list.indexOf(handler) : -1;
    if (list && at >= 0) list.splice(at, 1);
    return this;
  }

  private emit(type: string, value: unknown): void {
    for (const handler of [...(this.listeners.get(type) ?? [])]) {
      try {
        (handler as (v: unknown) => void)(value);
      } catch (error) {
        this.options.logger.error(error);
      }
    }
  }

  // --- lifecycle

  /** Connect, and keep connected until `close()`; a no-op while already running. */
  connect(): this {
    if (this.closed) throw new VendorPulseError("this client was closed; create a new one to connect again");
    if (this.running) return this;
    this.running = true;
    if (this.current === "failed") {
      this.current = "connecting";
      this.counts.attempts = 0;
      this.emit("state", this.current);
    }
    this.open();
    return this;
  }

  /** Close for good: stops reconnecting and every timer. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.running = false;
    this.clearTimers();
    const ws = this.ws;
    this.disconnected();
    if (ws) ws.close(1000, "client closed");
    this.setState("closed");
  }

  // --- sending

  /** Queue a message; sent at once while connected, else in order after (re)connecting. */
  send<K extends ClientMessageType>(type: K, data?: ClientMessageData[K]): void {
    this.outbox.put({ type, data: data ?? null, timestamp: new Date().toISOString() });
    this.flush();
  }

  /** Ask for an `analytics_update` with the latest snapshot. */
  refresh(): void {
    this.send("refresh");
  }

  /** Use a new token from now on: sent as `refresh_token` at once when connected, and on reconnects. */
  setToken(token: string): void {
    if (token === this.credential) return;
    this.credential = token;
    if (this.state === "connected") {
      this.direct("refresh_token", { token });
      this.scheduleTokenRefresh();
    }
  }

  // --- what the client holds

  get state(): ConnectionState {
    return this.current;
  }

  /** The token used for the next (re)connect: the latest from `setToken` or the `tokenProvider`. */
  get token(): string {
    return this.credential;
  }

  /** Every backoff wait so far, ms. */
  get delays(): readonly number[] {
    return this.waits;
  }

  get reconnects(): number {
    return this.counts.reconnects;
  }

  get latencyWarnings(): number {
    return this.counts.latencyWarnings;
  }

  /** Failed attempts since the last connection. */
  get attempts(): number {
    return this.counts.attempts;
  }

  get messagesReceived(): number {
    return this.counts.received;
  }

  get messagesSent(): number {
    return this.counts.sent;
  }

  /** The latest snapshot, current after every reconnect; null before the first. */
  get snapshot(): Snapshot | null {
    return this.received.snapshot;
  }

  /** The latest `stock_alert`s, newest first, each once (at most 20). */
  get alerts(): readonly StockAlert[] {
    return this.received.alerts;
  }

  /** The cursor of the last `new_order` or `stock_alert`: the acknowledgement sent when reconnecting. */
  get cursor(): string | null {
    return this.received.cursor;
  }

  /** The messages waiting to be sent, oldest first. */
  get queue(): readonly Envelope[] {
    return this.outbox.items;
  }

  get dropped(): number {
    return this.outbox.dropped;
  }

  get duplicatesDropped(): number {
    return this.received.duplicatesDropped;
  }

  get resumeGaps(): number {
    return this.received.resumeGaps;
  }

  /** The round trips (ms) the latency averages. */
  get samples(): readonly number[] {
    return this.window.samples;
  }

  get latency(): number | null {
    return this.window.average;
  }

  // --- health

  connectionHealth(): ConnectionHealth {
    const latency = this.latency;
    const now = performance.now();
    const overdue = [...this.pings.values()].some((p) => now - p.sent > this.options.pingInterval);
    const connected = this.state === "connected";
    return {
      isHealthy: connected && !overdue && (latency === null || latency <= this.options.latencyWarningMs),
      latency,
      reconnectAttempts: this.counts.attempts,
      queuedMessages: this.outbox.length,
      connectionState: this.state,
      uptime: this.connectedAt === null ? 0 : (now - this.connectedAt) / 1000,
    };
  }

  /** `connectionHealth()` (the seed dashboard's name). */
  getConnectionHealth(): ConnectionHealth {
    return this.connectionHealth();
  }

  /** Ping now and report the health within `within` ms (at most 1 s); unanswered in time: unhealthy. */
  healthCheck(within = 1000): Promise<ConnectionHealth> {
    const unhealthy = (): ConnectionHealth => ({ ...this.connectionHealth(), isHealthy: false });
    if (this.state !== "connected") return Promise.resolve(unhealthy());
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(unhealthy()), Math.min(within, 1000));
      this.ping((rtt) => {
        clearTimeout(timer);
        resolve(rtt === null ? unhealthy() : this.connectionHealth());
      });
    });
  }

  /** Whether `healthCheck()` found the connection healthy (the seed dashboard's name). */
  async performHealthCheck(within = 1000): Promise<boolean> {
    return (await this.healthCheck(within)).isHealthy;
  }

  statistics(): ConnectionStats {
    return {
      reconnects: this.counts.reconnects,
      droppedMessages: this.outbox.dropped,
      duplicatesDropped: this.received.duplicatesDropped,
      resumeGaps: this.received.resumeGaps,
      latencyWarnings: this.counts.latencyWarnings,
      lastLatency: this.window.last,
      backoffDelays: this.waits.slice(),
      cursor: this.received.cursor,
      deltasApplied: this.received.deltasApplied,
      messagesReceived: this.counts.received,
      messagesSent: this.counts.sent,
    };
  }

  /** `statistics()` (the seed dashboard's name). */
  getConnectionStats(): ConnectionStats {
    return this.statistics();
  }

  // --- the connection loop

  private open(): void {
    if (this.closed || !this.running || this.ws) return;
    const Impl = this.options.WebSocket ?? platformWebSocket() ?? this.impl;
    if (!Impl) {
      loadWebSocket().then(
        (found) => {
          this.impl = found;
          this.open();
        },
        (error: Error) => this.fatal(new VendorPulseError(error.message)),
      );
      return;
    }
    const query = new URLSearchParams({ vendor_id: this.vendorId, token: this.token });
    if (this.received.cursor) query.set("resume_after", this.received.cursor);
    if (this.options.updates === "delta") query.set("updates", "delta");
    let ws: WebSocketLike;
    try {
      ws = new Impl(`${this.url}?${query}`);
    } catch (error) {
      this.failed(`cannot open: ${String(error)}`, 1006);
      return;
    }
    this.ws = ws;
    ws.onerror = () => {}; // a close event follows with the code; `ws` would throw on an unheard error
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      const wasConnected = this.state === "connected";
      this.disconnected();
      if (wasConnected) this.setState("reconnecting");
      this.failed(event.reason || "connection lost", event.code);
    };
  }

  /** Forget the socket and what belonged to it. */
  private disconnected(): void {
    this.ws = null;
    this.connectedAt = null;
    this.clearTimers();
    for (const p of this.pings.values()) p.done?.(null);
    this.pings.clear();
  }

  private failed(reason: string, code: number): void {
    if (this.closed) return;
    if (FATAL[code]) {
      this.fatal(new ServerRefusedError(`server closed with ${code} (${FATAL[code]}: ${reason})`, code));
      return;
    }
    const provider = this.options.tokenProvider;
    if (code === 4001 && !provider) {
      const message = `server closed with 4001 (unauthorized: ${reason}); a new token is needed`;
      this.fatal(new ServerRefusedError(message, code));
      return;
    }
    this.counts.attempts += 1;
    if (this.counts.attempts >= this.options.maxAttempts) {
      const message = `gave up after ${this.counts.attempts} failed connection attempts to ${this.url} (${code} ${reason})`;
      this.fatal(new ReconnectFailedError(message, code));
      return;
    }
    const { baseDelay, maxDelay, random } = this.options;
    const delay = random() * backoffCeiling(this.counts.attempts, baseDelay, maxDelay);
    this.waits.push(delay);
    this.emit("state", this.state);
    const renew = code === 4001 && provider ? Promise.resolve().then(provider) : Promise.resolve(this.token);
    renew.then(
      (token) => {
        if (this.closed) return;
        this.credential = token;
        this.later(() => this.open(), delay);
      },
      (error: unknown) => this.fatal(new ReconnectFailedError(`the token provider failed: ${String(error)}`, code)),
    );
  }

  private fatal(error: VendorPulseError): void {
    if (this.closed) return;
    this.running = false;
    this.setState("failed");
    this.emit("error", error);
  }

  private receive(ws: WebSocketLike, raw: unknown): void {
    if (typeof raw !== "string") return;
    let message: Envelope;
    try {
      message = JSON.parse(raw) as Envelope;
    } catch {
      return;
    }
    if (message === null || typeof message !== "object" || typeof message.type !== "string") return;
    this.counts.received += 1;
    const { type, data } = message;
    const body = data !== null && typeof data === "object" ? (data as Record<string, unknown>) : null;
    if (type === "ping") {
      this.direct("pong", { id: typeof body?.id === "number" ? body.id : null }, ws);
      return;
    }
    if (type === "pong" && Number.isInteger(body?.clientPing)) {
      this.answered(body!.clientPing as number);
      return;
    }
    if (type === "connection_status" && body?.status === "connected") this.onConnected();
    const held = this.received.snapshot;
    if (!this.received.accept(type, data)) {
      if (this.received.needsRefresh) {
        this.received.needsRefresh = false;
        this.refresh();
      }
      return;
    }
    this.emit("message", message);
    this.emit(type, data);
    if (this.received.snapshot !== held && this.received.snapshot) this.emit("snapshot", this.received.snapshot);
  }

  private onConnected(): void {
    if (this.everConnected) this.counts.reconnects += 1;
    this.everConnected = true;
    this.counts.attempts = 0;
    this.connectedAt = performance.now();
    this.setState("connected");
    this.later(() => this.ping(null), 500); // a first latency figure soon, once the page has rendered
    this.every(() => this.heartbeat(), this.options.pingInterval);
    this.scheduleTokenRefresh();
    this.flush();
  }

  // --- per-connection work

  private later(fn: () => void, ms: number): Timer {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  private every(fn: () => void, ms: number): void {
    this.timers.add(setInterval(fn, ms));
  }

  private clearTimers(): void {
    for (const timer of this.timers) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    this.timers.clear();
    this.refreshTimer = null;
    this.flushing = false;
  }

  /** Send the queue in order, paced; messages stay queued until connected. */
  private flush(): void {
    if (this.flushing || this.state !== "connected" || !this.ws) return;
    while (this.outbox.length) {
      const wait = this.pacer.waitTime();
      if (wait > 0) {
        this.flushing = true;
        this.later(() => {
          this.flushing = false;
          this.flush();
        }, wait);
        return;
      }
      this.ws.send(JSON.stringify(this.outbox.shift()));
      this.counts.sent += 1;
    }
  }

  /** A control message, not queued: pongs, own pings, token refreshes. */
  private direct<K extends ClientMessageType>(type: K, data: ClientMessageData[K], ws = this.ws): void {
    if (!ws || ws.readyState !== OPEN) return;
    ws.send(JSON.stringify({ type, data, timestamp: new Date().toISOString() }));
    this.counts.sent += 1;
  }

  private heartbeat(): void {
    const now = performance.now();
    for (const p of this.pings.values()) {
      if (now - p.sent > 2 * this.options.pingInterval) {
        this.ws?.close(4008, "pong timeout");
        return;
      }
    }
    this.ping(null);
  }

  private ping(done: Ping["done"]): void {
    if (!this.ws || this.ws.readyState !== OPEN) {
      done?.(null);
      return;
    }
    const id = this.nextPing++;
    this.pings.set(id, { sent: performance.now(), done });
    this.direct("ping", { clientPing: id });
  }

  private answered(id: number): void {
    const p = this.pings.get(id);
    if (!p) return;
    this.pings.delete(id);
    const rtt = performance.now() - p.sent;
    this.window.add(rtt);
    const latency = this.window.average!;
    const limit = this.options.latencyWarningMs;
    if (latency > limit && !this.slow) {
      this.slow = true;
      this.counts.latencyWarnings += 1;
      this.options.logger.warn(`vendorpulse: latency ${latency.toFixed(0)} ms is above ${limit} ms`);
      this.emit("latency_warning", latency);
    } else if (latency <= limit) this.slow = false;
    p.done?.(rtt);
    this.emit("latency", latency);
  }

  private scheduleTokenRefresh(): void {
    if (this.refreshTimer !== null) {
      clearTimeout(this.refreshTimer);
      this.timers.delete(this.refreshTimer);
      this.refreshTimer = null;
    }
    const provider = this.options.tokenProvider;
    const exp = provider ? tokenExpiry(this.token) : null;
    if (!provider || exp === null) return;
    const lifetime = exp - Date.now() / 1000;
    const wait = Math.max(0, lifetime - Math.min(this.options.refreshMargin, lifetime / 2));
    this.refreshTimer = this.later(async () => {
      this.refreshTimer = null;
      try {
        this.credential = await provider();
      } catch (error) {
        this.options.logger.warn("vendorpulse: the token provider failed; trying again in 5 s", error);
        if (this.state === "connected") this.refreshTimer = this.later(() => this.scheduleTokenRefresh(), 5000);
        return;
      }
      this.direct("refresh_token", { token: this.token });
      if (this.state === "connected") this.scheduleTokenRefresh();
    }, wait * 1000);
  }

  private setState(state: ConnectionState): void {
    if (this.state === state || this.state === "closed" || (this.state === "failed" && state !== "closed")) return;
    this.current = state;
    this.emit("state", state);
  }
}
