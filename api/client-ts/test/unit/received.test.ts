import { describe, expect, it } from "vitest";

import { Received, SEEN_EVENTS, type NewOrder, type Snapshot } from "../../src/index.js";

const order = (n: number, cursor: string, eventId = `e${n}`): Partial<NewOrder> => ({ orderId: `o${n}`, eventId, cursor });
const snap = (version: number): Snapshot => ({ vendorId: "v", version }) as Snapshot;

describe("dedupe of new_order", () => {
  it("drops a repeated cursor or eventId and counts it", () => {
    const r = new Received();
    expect(r.accept("new_order", order(1, "2:10"))).toBe(true);
    expect(r.accept("new_order", order(2, "2:11"))).toBe(true);
    expect(r.accept("new_order", order(1, "2:10"))).toBe(false); // replayed twice
    expect(r.accept("new_order", order(9, "2:5"))).toBe(false); // before the cursor
    // at least once: a worker crash writes the notification again, at a later offset, same eventId
    expect(r.accept("new_order", order(2, "2:12", "e2"))).toBe(false);
    expect(r.accept("new_order", order(3, "2:13"))).toBe(true);
    expect(r.duplicatesDropped).toBe(3);
    expect(r.cursor).toBe("2:13");
  });

  it("remembers the last 10,000 eventIds", () => {
    const r = new Received();
    let accepted = 0;
    for (let n = 0; n <= SEEN_EVENTS; n++) accepted += Number(r.accept("new_order", { eventId: `e${n}` }));
    expect(accepted).toBe(SEEN_EVENTS + 1);
    expect(r.accept("new_order", { eventId: "e0" })).toBe(true); // forgotten: the oldest
    expect(r.accept("new_order", { eventId: `e${SEEN_EVENTS}` })).toBe(false);
  });

  it("takes the connected cursor once, and the resumed one", () => {
    const warnings: string[] = [];
    const r = new Received((message) => warnings.push(message));
    r.accept("connection_status", { status: "connected", cursor: "1:4" });
    expect(r.cursor).toBe("1:4");
    r.accept("connection_status", { status: "connected", cursor: "1:9" }); // a reconnect keeps its own
    expect(r.cursor).toBe("1:4");
    r.accept("connection_status", { status: "resumed", complete: true, cursor: "1:7" });
    expect(r.cursor).toBe("1:7");
    expect(r.resumeGaps).toBe(0);
    r.accept("connection_status", { status: "resumed", complete: false, cursor: null, skippedOffsets: 3 });
    expect(r.cursor).toBe("1:7");
    expect(r.resumeGaps).toBe(1);
    expect(warnings).toEqual(["vendorpulse: resume incomplete, some new_order notifications were lost"]);
  });
});

describe("snapshots", () => {
  it("keeps a pushed snapshot only if not older; a full one always", () => {
    const r = new Received();
    r.accept("metrics_update", snap(5));
    r.accept("metrics_update", snap(4));
    expect(r.snapshot?.version).toBe(5);
    r.accept("metrics_update", snap(5));
    r.accept("analytics_update", snap(3)); // the worker's state was rebuilt: the server's answer stands
    expect(r.snapshot?.version).toBe(3);
  });

  it("passes other messages and non-object data through", () => {
    const r = new Received();
    expect(r.accept("pong", null)).toBe(true);
    expect(r.accept("error", { code: "rate_limited", message: "slow down" })).toBe(true);
    expect(r.accept("something_new", { cursor: "0:0" })).toBe(true);
    expect(r.cursor).toBeNull();
  });
});
