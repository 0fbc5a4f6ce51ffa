/*
 * vendorpulse JavaScript client: the browser twin of the Python client (api/client.py), with the same
 * semantics and defaults (docs/API.md "Clients"):
 * - reconnect with full-jitter exponential backoff: after failure n wait uniform(0, min(30 s, 1 s * 2^(n-1)));
 *   after maxAttempts (10) failures in a row: state "failed" and an "error" event;
 * - bounded outbound queue (queueLimit 100): kept while offline, flushed in order after reconnecting, paced
 *   at 8 messages/s (burst 16) under the server's limit; when full the OLDEST message is dropped and counted;
 * - latency: own ping every pingInterval (5 s); average round trip of the last 100; "latency_warning" event
 *   (and console.warn) once when it goes above latencyWarningMs (150);
 * - connectionHealth() {isHealthy, latency, reconnectAttempts, queuedMessages, connectionState, uptime};
 *   healthCheck() resolves within 1 s;
 * - token refresh: tokenProvider() (may return a Promise) is called refreshMargin s before `exp`;
 * - resume: reconnects with resume_after=<cursor of the last new_order>, drops repeats (cursor, eventId).
 * Usage: const c = new VendorPulseClient(location.origin, "v1", token); c.on("message", m => ...); c.connect();
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.VendorPulseClient = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const WS_PATH = "/api/v1/analytics/ws/vendor/analytics";
  const FATAL = { 4000: "bad request", 4003: "forbidden" };
  const SEEN_EVENTS = 10000;

  function backoffCeiling(attempt, baseDelay, maxDelay) {
    return Math.min(maxDelay, baseDelay * Math.pow(2, Math.max(attempt - 1, 0)));
  }

  function tokenExpiry(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
      return typeof claims.exp === "number" ? claims.exp : null;
    } catch (e) {
      return null;
    }
  }

  function notAfter(cursor, last) {
    const [p, o] = cursor.split(":");
    const [lp, lo] = last.split(":");
    return p === lp && Number(o) <= Number(lo);
  }

  class VendorPulseClient {
    constructor(baseUrl, vendorId, token, options = {}) {
      const o = Object.assign(
        {
          tokenProvider: null, maxAttempts: 10, baseDelay: 1000, maxDelay: 30000, queueLimit: 100,
          pingInterval: 5000, latencyWarningMs: 150, refreshMargin: 60, sendRate: 8, sendBurst: 16,
          random: Math.random,
        },
        options,
      );
      this.options = o;
      const url = new URL(baseUrl, typeof location !== "undefined" ? location.href : undefined);
      url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
      if (url.pathname === "/" || url.pathname === "") url.pathname = WS_PATH;
      this.url = url.origin.replace(/^http/, "ws") + url.pathname;
      this.vendorId = vendorId;
      this.token = token;
      this.state = "connecting";
      this.snapshot = null;
      this.cursor = null;
      this.delays = [];
      this.samples = [];
      this.queue = [];
      this.dropped = 0;
      this.reconnects = 0;
      this.duplicatesDropped = 0;
      this.resumeGaps = 0;
      this.latencyWarnings = 0;
      this.attempts = 0;
      this.listeners = {};
      this.seen = new Map();
      this.pings = new Map();
      this.nextPing = 1;
      this.connectedAt = null;
      this.everConnected = false;
      this.slow = false;
      this.ws = null;
      this.timers = new Set();
      this.closed = false;
      this.tokens = o.sendBurst;
      this.tokensAt = Date.now();
    }

    // --- events: "message" (every server message but ping/pong), each message type, "state",
    //     "latency_warning", "error" (fatal: attempts exhausted or refused)
    on(type, fn) {
      (this.listeners[type] = this.listeners[type] || []).push(fn);
      return this;
    }

    emit(type, value) {
      for (const fn of this.listeners[type] || []) {
        try {
          fn(value);
        } catch (e) {
          console.error(e);
        }
      }
    }

    connect() {
      this.closed = false;
      this.open();
      return this;
    }

    close() {
      this.closed = true;
      this.clearTimers();
      if (this.ws) this.ws.close(1000, "client closed");
      this.setState("closed");
    }

    // --- sending
    send(type, data = null) {
      if (this.queue.length >= this.options.queueLimit) {
        this.queue.shift();
        this.dropped += 1;
      }
      this.queue.push({ type, data, timestamp: new Date().toISOString() });
      this.flush();
    }

    refresh() {
      this.send("refresh");
    }

    // --- health
    get latency() {
      if (!this.samples.length) return null;
      return Math.round((this.samples.reduce((a, b) => a + b, 0) / this.samples.length) * 1000) / 1000;
    }

    connectionHealth() {
      const latency = this.latency;
      const now = performance.now();
      let overdue = false;
      for (const p of this.pings.values()) if (now - p.sent > 2 * this.options.pingInterval) overdue = true;
      const connected = this.state === "connected";
      return {
        isHealthy: connected && !overdue && (latency === null || latency <= this.options.latencyWarningMs),
        latency,
        reconnectAttempts: this.attempts,
        queuedMessages: this.queue.length,
        connectionState: this.state,
        uptime: this.connectedAt === null ? 0 : (performance.now() - this.connectedAt) / 1000,
      };
    }

    healthCheck(within = 1000) {
      const limit = Math.min(within, 1000);
      if (this.state !== "connected") return Promise.resolve({ ...this.connectionHealth(), isHealthy: false });
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve({ ...this.connectionHealth(), isHealthy: false }), limit);
        this.ping(() => {
          clearTimeout(timer);
          resolve(this.connectionHealth());
        });
      });
    }

    statistics() {
      return {
        reconnects: this.reconnects, droppedMessages: this.dropped, duplicatesDropped: this.duplicatesDropped,
        resumeGaps: this.resumeGaps, latencyWarnings: this.latencyWarnings, backoffDelays: this.delays.slice(),
        cursor: this.cursor,
      };
    }

    // --- connection loop
    open() {
      if (this.closed) return;
      const query = new URLSearchParams({ vendor_id: this.vendorId, token: this.token });
      if (this.cursor) query.set("resume_after", this.cursor);
      let ws;
      try {
        ws = new WebSocket(`${this.url}?${query}`);
      } catch (e) {
        this.failed(`cannot open: ${e}`, 1006);
        return;
      }
      this.ws = ws;
      ws.onmessage = (event) => this.receive(ws, event.data);
      ws.onclose = (event) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.connectedAt = null;
        this.clearTimers();
        for (const p of this.pings.values()) p.done && p.done(null);
        this.pings.clear();
        if (this.state === "connected") this.setState("reconnecting");
        this.failed(event.reason || "connection lost", event.code);
      };
    }

    failed(reason, code) {
      if (this.closed) return;
      if (FATAL[code]) return this.fatal(`server closed with ${code} (${FATAL[code]}: ${reason})`);
      if (code === 4001 && !this.options.tokenProvider) {
        return this.fatal(`server closed with 4001 (unauthorized: ${reason}); a new token is needed`);
      }
      this.attempts += 1;
      if (this.attempts >= this.options.maxAttempts) {
        return this.fatal(`gave up after ${this.attempts} failed connection attempts (${code} ${reason})`);
      }
      const ceiling = backoffCeiling(this.attempts, this.options.baseDelay, this.options.maxDelay);
      const delay = this.options.random() * ceiling;
      this.delays.push(delay);
      this.emit("state", this.state);
      const renew = code === 4001 ? Promise.resolve(this.options.tokenProvider()) : Promise.resolve(this.token);
      renew.then((token) => {
        this.token = token;
        this.later(() => this.open(), delay);
      });
    }

    fatal(message) {
      this.setState("failed");
      this.emit("error", new Error(message));
    }

    receive(ws, raw) {
      let message;
      try {
        message = JSON.parse(raw);
      } catch (e) {
        return;
      }
      const { type, data } = message;
      if (type === "ping") {
        ws.send(JSON.stringify({ type: "pong", data: { id: data && data.id }, timestamp: new Date().toISOString() }));
        return;
      }
      if (type === "pong" && data && Number.isInteger(data.clientPing)) {
        this.answered(data.clientPing);
        return;
      }
      if (!this.accept(type, data)) return;
      this.emit("message", message);
      this.emit(type, data);
    }

    accept(type, data) {
      if (type === "connection_status" && data) {
        if (data.status === "connected") this.onConnected(data);
        else if (data.status === "resumed") {
          this.cursor = data.cursor || this.cursor;
          if (!data.complete) {
            this.resumeGaps += 1;
            console.warn("vendorpulse: resume incomplete, some new_order notifications were lost", data);
          }
        }
      } else if ((type === "analytics_update" || type === "metrics_update") && data) {
        const held = this.snapshot ? this.snapshot.version : -1;
        if (type === "analytics_update" || data.version >= held) this.snapshot = data;
      } else if (type === "new_order" && data) {
        if (typeof data.cursor === "string" && this.cursor && notAfter(data.cursor, this.cursor)) {
          this.duplicatesDropped += 1;
          return false;
        }
        if (typeof data.eventId === "string") {
          if (this.seen.has(data.eventId)) {
            this.duplicatesDropped += 1;
            return false;
          }
          this.seen.set(data.eventId, true);
          if (this.seen.size > SEEN_EVENTS) this.seen.delete(this.seen.keys().next().value);
        }
        if (typeof data.cursor === "string") this.cursor = data.cursor;
      }
      return true;
    }

    onConnected(data) {
      if (!this.cursor && typeof data.cursor === "string") this.cursor = data.cursor;
      if (this.everConnected) this.reconnects += 1;
      this.everConnected = true;
      this.attempts = 0;
      this.connectedAt = performance.now();
      this.setState("connected");
      this.later(() => this.ping(null), 500); // a first latency figure soon, once the page has rendered
      this.every(() => this.heartbeat(), this.options.pingInterval);
      this.scheduleTokenRefresh();
      this.flush();
    }

    // --- per-connection timers
    later(fn, ms) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        fn();
      }, ms);
      this.timers.add(t);
    }

    every(fn, ms) {
      const t = setInterval(fn, ms);
      this.timers.add(t);
    }

    clearTimers() {
      for (const t of this.timers) {
        clearTimeout(t);
        clearInterval(t);
      }
      this.timers.clear();
      this.flushing = false;
    }

    flush() {
      if (this.flushing || this.state !== "connected" || !this.ws) return;
      while (this.queue.length) {
        const now = Date.now();
        this.tokens = Math.min(this.options.sendBurst, this.tokens + ((now - this.tokensAt) / 1000) * this.options.sendRate);
        this.tokensAt = now;
        if (this.tokens < 1) {
          this.flushing = true;
          this.later(() => {
            this.flushing = false;
            this.flush();
          }, ((1 - this.tokens) / this.options.sendRate) * 1000);
          return;
        }
        this.tokens -= 1;
        this.ws.send(JSON.stringify(this.queue.shift()));
      }
    }

    heartbeat() {
      const now = performance.now();
      for (const p of this.pings.values()) {
        if (now - p.sent > 2 * this.options.pingInterval) {
          if (this.ws) this.ws.close(4008, "pong timeout");
          return;
        }
      }
      this.ping(null);
    }

    ping(done) {
      if (!this.ws || this.ws.readyState !== 1) return done && done(null);
      const id = this.nextPing++;
      this.pings.set(id, { sent: performance.now(), done });
      this.ws.send(JSON.stringify({ type: "ping", data: { clientPing: id }, timestamp: new Date().toISOString() }));
    }

    answered(id) {
      const p = this.pings.get(id);
      if (!p) return;
      this.pings.delete(id);
      const rtt = performance.now() - p.sent;
      this.samples.push(rtt);
      if (this.samples.length > 100) this.samples.shift();
      const latency = this.latency;
      if (latency > this.options.latencyWarningMs && !this.slow) {
        this.slow = true;
        this.latencyWarnings += 1;
        console.warn(`vendorpulse: latency ${latency.toFixed(0)} ms is above ${this.options.latencyWarningMs} ms`);
        this.emit("latency_warning", latency);
      } else if (latency <= this.options.latencyWarningMs) this.slow = false;
      if (p.done) p.done(rtt);
      this.emit("latency", latency);
    }

    scheduleTokenRefresh() {
      if (!this.options.tokenProvider) return;
      const exp = tokenExpiry(this.token);
      if (exp === null) return;
      const lifetime = exp - Date.now() / 1000;
      const wait = Math.max(0, lifetime - Math.min(this.options.refreshMargin, lifetime / 2));
      this.later(async () => {
        this.token = await this.options.tokenProvider();
        if (this.ws && this.ws.readyState === 1) {
          this.ws.send(JSON.stringify({ type: "refresh_token", data: { token: this.token }, timestamp: new Date().toISOString() }));
        }
        this.scheduleTokenRefresh();
      }, wait * 1000);
    }

    setState(state) {
      if (this.state === state || this.state === "closed" || this.state === "failed") return;
      this.state = state;
      this.emit("state", state);
    }
  }

  VendorPulseClient.backoffCeiling = backoffCeiling;
  VendorPulseClient.tokenExpiry = tokenExpiry;
  return VendorPulseClient;
});
