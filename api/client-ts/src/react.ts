"use client";
/**
 * `useVendorAnalytics`: one vendor's live analytics in a React component, over one VendorPulseClient
 * per mounted component (react ≥ 18 is a peer dependency).
 *
 * The socket opens after the effect's task: React's StrictMode mounts, unmounts and mounts again
 * synchronously, so the client of the discarded mount never opens a socket and there is one connection
 * per component, in development as in production. Unmounting closes it; a new `baseUrl` or `vendorId`
 * starts a new client; a new `token` is sent on the open connection (`refresh_token`), no reconnect.
 */

import { useEffect, useRef, useState } from "react";

import { VendorPulseClient } from "./client.js";
import type { ClientOptions, ConnectionHealth } from "./options.js";
import { VendorPulseError } from "./errors.js";
import type { NewOrder, Snapshot, StockAlert } from "./protocol.js";

export interface VendorAnalyticsOptions extends ClientOptions {
  /** Newest orders kept in `orders` (50). */
  maxOrders?: number;
  /** Newest alerts kept in `alerts` (50). */
  maxAlerts?: number;
  /** How often `health` is re-read besides on state and latency changes, ms (1000; 0: never). */
  healthInterval?: number;
}

export interface VendorAnalytics {
  /** The latest snapshot; null until the first arrives. */
  snapshot: Snapshot | null;
  health: ConnectionHealth;
  /** `new_order` notifications, newest first, each once (resumed across reconnects). */
  orders: NewOrder[];
  /** `stock_alert` messages, newest first (from servers that send them). */
  alerts: StockAlert[];
  /** Why the client stopped for good (refused, or gave up); null while it runs or retries. */
  error: VendorPulseError | null;
  /** The client, for `refresh()`, `send()`, `statistics()`; null before the effect ran. */
  client: VendorPulseClient | null;
}

const STARTING: ConnectionHealth = {
  isHealthy: false,
  latency: null,
  reconnectAttempts: 0,
  queuedMessages: 0,
  connectionState: "connecting",
  uptime: 0,
};

const EMPTY: VendorAnalytics = { snapshot: null, health: STARTING, orders: [], alerts: [], error: null, client: null };

/** Live analytics of `vendorId` from the API at `baseUrl` (e.g. "https://api.example.com"). */
export function useVendorAnalytics(
  baseUrl: string,
  vendorId: string,
  token: string,
  options: VendorAnalyticsOptions = {},
): VendorAnalytics {
  const [state, setState] = useState<VendorAnalytics>(EMPTY);
  const tokenRef = useRef(token);
  const optionsRef = useRef(options);
  const clientRef = useRef<VendorPulseClient | null>(null);
  optionsRef.current = options; // read when a client starts; later changes apply to the next one

  useEffect(() => {
    const { maxOrders = 50, maxAlerts = 50, healthInterval = 1000, ...clientOptions } = optionsRef.current;
    const client = new VendorPulseClient(baseUrl, vendorId, tokenRef.current, clientOptions);
    let live = true;
    const update = (change: (s: VendorAnalytics) => Partial<VendorAnalytics>): void => {
      if (live) setState((s) => ({ ...s, ...change(s) }));
    };
    const health = (): void => update(() => ({ health: client.connectionHealth() }));
    client
      .on("snapshot", (snapshot) => update(() => ({ snapshot })))
      .on("new_order", (order) => update((s) => ({ orders: [order, ...s.orders].slice(0, maxOrders) })))
      .on("stock_alert", (alert) => update((s) => ({ alerts: [alert, ...s.alerts].slice(0, maxAlerts) })))
      .on("state", health)
      .on("latency", health)
      .on("error", (error) => {
        if (error instanceof VendorPulseError) update(() => ({ error, health: client.connectionHealth() }));
      });
    clientRef.current = client;
    setState({ ...EMPTY, client });
    const start = setTimeout(() => client.connect(), 0);
    const tick = healthInterval > 0 ? setInterval(health, healthInterval) : null;
    return () => {
      live = false;
      clearTimeout(start);
      if (tick !== null) clearInterval(tick);
      client.close();
      if (clientRef.current === client) clientRef.current = null;
    };
  }, [baseUrl, vendorId]);

  useEffect(() => {
    tokenRef.current = token;
    clientRef.current?.setToken(token);
  }, [token]);

  return state;
}
