/**
 * What the client keeps from the server's messages across reconnects: the latest snapshot (full ones
 * replace it, `metrics_delta` merge patches apply to it), the resume cursor (its acknowledgement,
 * docs/API.md "Resume"), which feed messages (`new_order`, `stock_alert`) it has already seen, and the
 * latest stock alerts. The Python client (api/client_state.py) follows the same rules.
 */

import { applyMergePatch } from "./patch.js";
import { notAfter } from "./policy.js";
import type { ConnectionStatus, MetricsDelta, NewOrder, Snapshot, StockAlert } from "./protocol.js";

/** eventIds remembered for de-duplication. */
export const SEEN_EVENTS = 10_000;

/** Latest stock alerts kept in `alerts`. */
export const ALERTS = 20;

/**
 * The message types of the acknowledged feed: each carries `cursor` and `eventId`, advances the cursor
 * sent back as `resume_after`, and a repeat is dropped.
 */
export const FEED_TYPES: ReadonlySet<string> = new Set(["new_order", "stock_alert"]);

export class Received {
  /** The latest snapshot: the one sent on (re)connect, then every newer one. */
  snapshot: Snapshot | null = null;
  /** The cursor of the last feed message: sent back as `resume_after` when reconnecting. */
  cursor: string | null = null;
  duplicatesDropped = 0;
  resumeGaps = 0;
  /** The latest `stock_alert`s, newest first, each once (at most `ALERTS`). */
  alerts: StockAlert[] = [];
  deltasApplied = 0;
  /** A `metrics_delta` came for a version not held: the client asks for a full snapshot (`refresh`). */
  needsRefresh = false;
  private readonly seen = new Set<string>();

  constructor(private readonly warn: (message: string, detail?: unknown) => void = () => {}) {}

  /** Keep what a server message says; false for a notification already delivered (drop it). */
  accept(type: string, data: unknown): boolean {
    if (data === null || typeof data !== "object") return true;
    if (type === "connection_status") this.status(data as ConnectionStatus);
    else if (type === "analytics_update" || type === "metrics_update") this.offer(type, data as Snapshot);
    else if (type === "metrics_delta") return this.patch(data as MetricsDelta);
    else if (FEED_TYPES.has(type)) {
      if (!this.fresh(data as Pick<NewOrder, "cursor" | "eventId">)) return false;
      if (type === "stock_alert") this.alerts = [data as StockAlert, ...this.alerts].slice(0, ALERTS);
    }
    return true;
  }

  /** Apply a merge patch to the snapshot held if it is at the patch's base version; else drop it and
   * ask for a refresh (contract §6). */
  private patch(data: MetricsDelta): boolean {
    const held = this.snapshot;
    const patch = data.patch as unknown;
    if (!held || held.version !== data.baseVersion || patch === null || typeof patch !== "object" || Array.isArray(patch)) {
      this.needsRefresh = true;
      return false;
    }
    this.snapshot = applyMergePatch<Snapshot>(held, patch);
    this.deltasApplied += 1;
    return true;
  }

  private status(data: ConnectionStatus): void {
    if (data.status === "connected") {
      // where live delivery starts: nothing after it is missed, even before the first order
      if (this.cursor === null && typeof data.cursor === "string") this.cursor = data.cursor;
    } else if (data.status === "resumed") {
      this.cursor = data.cursor || this.cursor;
      if (!data.complete) {
        this.resumeGaps += 1;
        this.warn("vendorpulse: resume incomplete, some new_order notifications were lost", data);
      }
    }
  }

  /** A full snapshot replaces the one held; a pushed one only if it is not older. */
  private offer(type: string, data: Snapshot): void {
    const held = this.snapshot ? this.snapshot.version : -1;
    if (type === "analytics_update" || data.version >= held) this.snapshot = data;
  }

  private fresh(data: { cursor?: unknown; eventId?: unknown }): boolean {
    const { cursor, eventId } = data;
    if (typeof cursor === "string" && this.cursor !== null && notAfter(cursor, this.cursor)) {
      this.duplicatesDropped += 1;
      return false;
    }
    if (typeof eventId === "string") {
      // the activity topic is at least once: a repeat written after a worker crash has the same eventId
      if (this.seen.has(eventId)) {
        this.duplicatesDropped += 1;
        return false;
      }
      this.seen.add(eventId);
      if (this.seen.size > SEEN_EVENTS) this.seen.delete(this.seen.values().next().value!);
    }
    if (typeof cursor === "string") this.cursor = cursor;
    return true;
  }
}
