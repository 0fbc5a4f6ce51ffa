/**
 * The live analytics WebSocket protocol (contract §5–§6, docs/API.md, docs/asyncapi.yaml) as types:
 * the envelope, the data of every message type both ways, and the close codes.
 *
 * Server message types are one map (`ServerMessageData`) from type to data, so a type the server adds
 * is one more entry: `on(type, handler)`, `ServerMessage` and the React hook pick it up from there.
 */

/** The route every client connects to; `baseUrl` may name it or leave it out. */
export const WS_PATH = "/api/v1/analytics/ws/vendor/analytics";

/** Every message, both ways: a JSON text frame. `timestamp` is ISO-8601 UTC with milliseconds. */
export interface Envelope<T extends string = string, D = unknown> {
  type: T;
  data: D;
  timestamp: string;
}

// --- the snapshot (contract §5): money in the currency's minor units, never floats

export type Trend = "up" | "down" | "flat";

/** A figure of the current window against the previous one. */
export interface Comparison {
  current: number;
  previous: number;
  trend: Trend;
  /** (current − previous) / previous × 100, one decimal; null when previous is 0. */
  percentage: number | null;
}

export interface ProductCounts {
  total: number;
  active: number;
  lowStock: number;
  outOfStock: number;
}

export interface CustomerCounts {
  total: number;
  new: number;
  returning: number;
}

export interface TopProduct {
  productId: string;
  /** The catalog name, or null when no ProductUpserted was seen for it. */
  name: string | null;
  revenue: number;
  units: number;
}

export interface CategorySales {
  category: string;
  revenue: number;
  orders: number;
  percentage: number;
}

export interface MonthlyTrend {
  /** "YYYY-MM" (UTC). */
  month: string;
  revenue: number;
  orders: number;
}

/** One vendor's metrics as of an instant: `analytics_update` and `metrics_update` data. */
export interface Snapshot {
  vendorId: string;
  /** The instant it was computed for, ISO-8601 UTC with milliseconds. */
  asOf: string;
  periodDays: number;
  /** ISO 4217; null for a vendor without orders yet. */
  currency: string | null;
  /** Increases with every change for this vendor. */
  version: number;
  metrics: {
    revenue: Comparison;
    orders: Comparison;
    products: ProductCounts;
    customers: CustomerCounts;
  };
  topProducts: TopProduct[];
  salesByCategory: CategorySales[];
  monthlyTrends: MonthlyTrend[];
}

// --- server → client

/** A `vendor-activity` record, one per order; `cursor` is "<partition>:<offset>" of that record. */
export interface NewOrder {
  vendorId: string;
  eventId: string;
  orderId: string;
  customerId: string;
  currency: string;
  total: number;
  /** Units ordered (the sum of the lines' quantities). */
  items: number;
  occurredAt: string;
  /** The vendor's snapshot version that counts this order. */
  version: number;
  cursor: string;
}

export type StockState = "ok" | "low" | "out";

/** A product's stock state changed (contract §6); shares the `new_order` feed's cursor and resume. */
export interface StockAlert {
  vendorId: string;
  productId: string;
  name: string | null;
  stock: number;
  threshold: number;
  state: StockState;
  previous: StockState;
  eventId: string;
  occurredAt: string;
  cursor: string;
}

/** An RFC 7386 JSON merge patch: null removes a key, objects merge, anything else (arrays too) replaces. */
export type MergePatch = { [key: string]: unknown };

/**
 * With `updates=delta` (contract §6): the patch that turns the snapshot at `baseVersion` into `version`.
 * The server sends a full `metrics_update` instead when the client holds another version, or when no
 * merge patch can express the change (a value that became null).
 */
export interface MetricsDelta {
  vendorId: string;
  baseVersion: number;
  version: number;
  patch: MergePatch;
}

export interface ConnectedStatus {
  status: "connected";
  vendorId: string;
  connectionId: string;
  instance: string;
  heartbeatSeconds: number;
  refreshSeconds: number;
  /** "delta" when the connection asked for `metrics_delta` (`updates=delta`). */
  updates: "full" | "delta";
  serverTime: string;
  /** Where this connection's live notifications start; null when resuming. */
  cursor: string | null;
}

export interface ResumedStatus {
  status: "resumed";
  after: string;
  replayed: number;
  skippedOffsets: number;
  /** False when some notifications could not be replayed (`skippedOffsets`, `reason`). */
  complete: boolean;
  cursor: string | null;
  reason?: string;
}

export interface TokenRefreshedStatus {
  status: "token_refreshed";
  /** Epoch seconds. */
  expiresAt: number;
}

export interface BroadcastStatus {
  status: "broadcast";
  message: string;
  broadcastId: string;
  vendorId: string | null;
  sentAt: string;
  origin: string;
}

export type ConnectionStatus = ConnectedStatus | ResumedStatus | TokenRefreshedStatus | BroadcastStatus;

export interface ServerPing {
  id: number;
  /** Round trip of the previous answered ping, ms. */
  rttMs: number | null;
}

/** An `error` frame; the connection stays open unless a close follows (docs/API.md "Errors"). */
export interface ServerError {
  code: "bad_message" | "rate_limited" | "message_too_big" | "invalid_token" | "token_expired" | "forbidden" | "slow_consumer" | (string & {});
  message: string;
}

/** Server message type → its `data`. */
export interface ServerMessageData {
  connection_status: ConnectionStatus;
  /** Full snapshot: on connect, on `refresh`, and every 30 s. */
  analytics_update: Snapshot;
  /** Full snapshot, pushed on change (coalesced). */
  metrics_update: Snapshot;
  new_order: NewOrder;
  ping: ServerPing;
  /** The data of a client `ping`, echoed. */
  pong: unknown;
  error: ServerError;
  /** A product's stock state changed (contract §6); on the `new_order` feed's cursor. */
  stock_alert: StockAlert;
  /** Sent instead of `metrics_update` to clients that opt in with `updates: "delta"` (contract §6). */
  metrics_delta: MetricsDelta;
}

export type ServerMessageType = keyof ServerMessageData;

/** Any server message, discriminated by `type`. */
export type ServerMessage = { [K in ServerMessageType]: Envelope<K, ServerMessageData[K]> }[ServerMessageType];

/** Every server message type this client knows. */
export const SERVER_MESSAGE_TYPES: readonly ServerMessageType[] = [
  "connection_status",
  "analytics_update",
  "metrics_update",
  "new_order",
  "ping",
  "pong",
  "error",
  "stock_alert",
  "metrics_delta",
];

// --- client → server

/** Client message type → its `data`. */
export interface ClientMessageData {
  /** Answered with a `pong` echoing the data. */
  ping: unknown;
  /** Answers a server ping (and all older ones). */
  pong: { id: number | null };
  /** Asks for an `analytics_update` with the latest snapshot. */
  refresh: null;
  /** Extends the connection with a new token for the same vendor. */
  refresh_token: { token: string };
}

export type ClientMessageType = keyof ClientMessageData;

/** Every client message type the server accepts. */
export const CLIENT_MESSAGE_TYPES: readonly ClientMessageType[] = ["ping", "pong", "refresh", "refresh_token"];

export type ClientMessage = { [K in ClientMessageType]: Envelope<K, ClientMessageData[K]> }[ClientMessageType];

// --- close codes (docs/API.md "Close codes")

export const CloseCode = {
  Normal: 1000,
  /** A message over the limit. */
  MessageTooBig: 1009,
  /** The server is restarting: reconnect. */
  ServiceRestart: 1012,
  /** A slow reader fell behind the `new_order` feed: reconnect with `resume_after`. */
  TryAgainLater: 1013,
  /** `vendor_id` missing or too long, or `resume_after` not a cursor. Not retried. */
  BadRequest: 4000,
  /** No, invalid or expired token. Retried only with a `tokenProvider`. */
  Unauthorized: 4001,
  /** The token may not read this vendor. Not retried. */
  Forbidden: 4003,
  /** Application pings went unanswered. */
  HeartbeatTimeout: 4008,
  /**
   * This API instance serves another shard of the vendors (a routing error of the deployment, see
   * docs/SCALING.md). Retried with backoff: the load balancer may route the next attempt right.
   */
  WrongShard: 4021,
  /** Too many connections for this token, or the inbound rate limit kept exceeded. */
  TooMany: 4029,
} as const;

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];
