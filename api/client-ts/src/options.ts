/** The client's options, health figures, statistics and events: the types of its public surface. */

import type { VendorPulseError } from "./errors.js";
import type { ServerError, ServerMessage, ServerMessageData, Snapshot } from "./protocol.js";
import type { WebSocketConstructor } from "./transport.js";

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "failed" | "closed";

export interface ConnectionHealth {
  /** Connected, no ping unanswered for longer than `pingInterval`, latency ≤ `latencyWarningMs`. */
  isHealthy: boolean;
  /** Average round trip of the last 100 pings, ms; null before the first. */
  latency: number | null;
  /** Failed attempts since the last connection. */
  reconnectAttempts: number;
  queuedMessages: number;
  connectionState: ConnectionState;
  /** Seconds connected; 0 while not connected. */
  uptime: number;
}

export interface ConnectionStats {
  reconnects: number;
  droppedMessages: number;
  duplicatesDropped: number;
  resumeGaps: number;
  latencyWarnings: number;
  lastLatency: number | null;
  /** Every backoff wait so far, ms, in order. */
  backoffDelays: number[];
  /** The acknowledgement sent as `resume_after` on the next reconnect. */
  cursor: string | null;
  /** `metrics_delta` patches applied to the snapshot. */
  deltasApplied: number;
  messagesReceived: number;
  messagesSent: number;
}

export type TokenProvider = () => string | Promise<string>;
export type Logger = Pick<Console, "warn" | "error">;

export interface ClientOptions {
  /** Called for a new token before `exp`, and after a 4001 close (which is then retried). */
  tokenProvider?: TokenProvider | null;
  maxAttempts?: number;
  /** ms */
  baseDelay?: number;
  /** ms */
  maxDelay?: number;
  queueLimit?: number;
  /** ms */
  pingInterval?: number;
  latencyWarningMs?: number;
  /** Seconds before `exp` the token is renewed (at most half its lifetime). */
  refreshMargin?: number;
  /** Queued messages per second, and burst. */
  sendRate?: number;
  sendBurst?: number;
  /** Uniform in [0, 1): the backoff jitter. */
  random?: () => number;
  /**
   * "delta": ask for `metrics_delta` merge patches instead of full `metrics_update` frames (contract
   * §6); the client applies them, so `snapshot` is the same either way. Default "full".
   */
  updates?: "full" | "delta";
  /** The WebSocket implementation; default: the platform's, else the `ws` package. */
  WebSocket?: WebSocketConstructor | null;
  logger?: Logger;
}

export type ResolvedOptions = Required<ClientOptions>;

/** The client's events: every server message type (its `data`), and the client's own. */
export interface ClientEvents extends Omit<ServerMessageData, "ping" | "error"> {
  /** Every server message but the pings and pongs the client consumes. */
  message: ServerMessage;
  /** The snapshot held changed (from `analytics_update`, a newer `metrics_update`, or a `metrics_delta`). */
  snapshot: Snapshot;
  state: ConnectionState;
  /** The average round trip after each answered ping, ms. */
  latency: number;
  latency_warning: number;
  /** A server `error` frame, or a `VendorPulseError`: the client stopped for good. */
  error: ServerError | VendorPulseError;
}

export const DEFAULTS: ResolvedOptions = {
  tokenProvider: null, maxAttempts: 10, baseDelay: 1000, maxDelay: 30_000, queueLimit: 100,
  pingInterval: 5000, latencyWarningMs: 150, refreshMargin: 60, sendRate: 8, sendBurst: 16,
  random: Math.random, updates: "full", WebSocket: null, logger: console,
}; // prettier-ignore
