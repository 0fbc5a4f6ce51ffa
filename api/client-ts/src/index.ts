/**
 * vendorpulse-client: a typed client of the vendorpulse live analytics WebSocket (docs/API.md) for
 * browsers and Node 20+. The React hook is in `vendorpulse-client/react`.
 */

export { VendorPulseClient } from "./client.js";
export {
  type ClientEvents,
  type ClientOptions,
  type ConnectionHealth,
  type ConnectionState,
  type ConnectionStats,
  type Logger,
  type ResolvedOptions,
  type TokenProvider,
} from "./options.js";
export { ReconnectFailedError, ServerRefusedError, VendorPulseError } from "./errors.js";
export { LatencyWindow, OutboundQueue, Pacer, backoffCeiling, backoffDelay, notAfter, tokenExpiry } from "./policy.js";
export * from "./protocol.js";
export { ALERTS, FEED_TYPES, Received, SEEN_EVENTS } from "./received.js";
export { applyMergePatch, canonicalJson } from "./patch.js";
export type { WebSocketConstructor, WebSocketLike } from "./transport.js";
