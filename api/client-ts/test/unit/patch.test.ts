/**
 * The client's merge patches (RFC 7386) and delta updates: the RFC's own examples, and for random
 * sequences of snapshot-like documents, the snapshot a client holds after their patches equals the full
 * one byte for byte after canonical JSON. The patches come from an independent naive diff written here
 * (the server's is api/patch.py, tested the same way in tests/unit/test_api_delta.py).
 */

import { describe, expect, it } from "vitest";

import { Received, applyMergePatch, canonicalJson, type Snapshot } from "../../src/index.js";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** mulberry32: a seeded generator, so a failure names its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function value(r: () => number, depth: number): Json {
  const roll = r();
  if (depth <= 0 || roll < 0.5) {
    const kinds: Json[] = [Math.floor(r() * 2000) - 1000, Math.round(r() * 1000) / 10, `s${Math.floor(r() * 5)}`, r() < 0.5];
    return kinds[Math.floor(r() * kinds.length)]!;
  }
  if (roll < 0.7) return Array.from({ length: Math.floor(r() * 4) }, () => value(r, depth - 1));
  return object(r, depth - 1);
}

function object(r: () => number, depth: number): { [key: string]: Json } {
  const out: { [key: string]: Json } = {};
  for (const key of ["a", "b", "c", "d", "e"]) if (r() < 0.6) out[key] = value(r, depth);
  return out;
}

/** The next document: some keys changed, removed, added, nested objects edited the same way. */
function mutate(r: () => number, doc: { [key: string]: Json }, depth: number): { [key: string]: Json } {
  const out: { [key: string]: Json } = {};
  for (const [key, v] of Object.entries(doc)) {
    const roll = r();
    if (roll < 0.1) continue;
    if (roll < 0.3) out[key] = value(r, depth);
    else if (v !== null && typeof v === "object" && !Array.isArray(v) && roll < 0.6) out[key] = mutate(r, v, depth - 1);
    else out[key] = v;
  }
  if (r() < 0.2) out[`n${Math.floor(r() * 3)}`] = value(r, depth);
  return out;
}

/** A naive RFC 7386 diff (no nulls in these documents, so one always exists). */
function diff(old: { [key: string]: Json }, next: { [key: string]: Json }): { [key: string]: Json } {
  const patch: { [key: string]: Json } = {};
  for (const key of Object.keys(old)) if (!(key in next)) patch[key] = null;
  for (const [key, v] of Object.entries(next)) {
    const before = old[key];
    if (canonicalJson(before) === canonicalJson(v) && key in old) continue;
    const bothObjects = [before, v].every((x) => x !== null && typeof x === "object" && !Array.isArray(x));
    patch[key] = bothObjects ? diff(before as { [key: string]: Json }, v as { [key: string]: Json }) : v;
  }
  return patch;
}

describe("applyMergePatch", () => {
  it("follows RFC 7386 Appendix A", () => {
    const cases: [Json, Json, Json][] = [
      [{ a: "b" }, { a: "c" }, { a: "c" }],
      [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
      [{ a: "b" }, { a: null }, {}],
      [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
      [{ a: ["b"] }, { a: "c" }, { a: "c" }],
      [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
      [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
      [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
      [["a", "b"], ["c", "d"], ["c", "d"]],
      [{ a: "b" }, ["c"], ["c"]],
      [{ a: "foo" }, null, null],
      [{ a: "foo" }, "bar", "bar"],
      [{ e: null }, { a: 1 }, { e: null, a: 1 }],
      [[1, 2], { a: "b", c: null }, { a: "b" }],
      [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
    ];
    for (const [target, patch, result] of cases) expect(applyMergePatch(target, patch)).toEqual(result);
  });

  it("does not modify the target", () => {
    const target = { a: { b: 1 } };
    applyMergePatch(target, { a: { b: 2 } });
    expect(target).toEqual({ a: { b: 1 } });
  });

  it("turns the old document into the new one for 500 random pairs", () => {
    for (let seed = 1; seed <= 500; seed++) {
      const r = rng(seed);
      const old = object(r, 3);
      const next = mutate(r, old, 3);
      expect(canonicalJson(applyMergePatch(old, diff(old, next))), `seed ${seed}`).toBe(canonicalJson(next));
    }
  });
});

describe("delta updates in Received", () => {
  it("after any sequence of patches and full snapshots, holds the full snapshot byte for byte", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = rng(seed);
      const received = new Received();
      let doc = { ...object(r, 3), version: 1 } as { [key: string]: Json };
      received.accept("analytics_update", doc);
      for (let version = 2; version < 30; version++) {
        const next = { ...mutate(r, doc, 3), version };
        if (r() < 0.15) received.accept("metrics_update", next); // the server sent the full one
        else expect(received.accept("metrics_delta", { vendorId: "v", baseVersion: doc.version, version, patch: diff(doc, next) })).toBe(true);
        doc = next;
      }
      expect(canonicalJson(received.snapshot), `seed ${seed}`).toBe(canonicalJson(doc));
      expect(received.needsRefresh).toBe(false);
    }
  });

  it("drops a patch for another base version and asks for a refresh", () => {
    const received = new Received();
    received.accept("analytics_update", { vendorId: "v", version: 3, a: 1 } as unknown as Snapshot);
    expect(received.accept("metrics_delta", { vendorId: "v", baseVersion: 2, version: 4, patch: { version: 4 } })).toBe(false);
    expect(received.needsRefresh).toBe(true);
    expect(received.snapshot).toEqual({ vendorId: "v", version: 3, a: 1 });
    expect(received.accept("metrics_delta", { vendorId: "v", baseVersion: 3, version: 4, patch: { version: 4, a: null } })).toBe(true);
    expect(received.snapshot).toEqual({ vendorId: "v", version: 4 });
    expect(received.deltasApplied).toBe(1);
  });
});

describe("stock alerts in Received", () => {
  const alert = (eventId: string, cursor: string) => ({ vendorId: "v", productId: "p1", name: "Lamp", stock: 0, threshold: 5, state: "out", previous: "low", eventId, occurredAt: "2026-11-25T12:00:00.000Z", cursor });

  it("keeps each alert once, newest first, at most 20, on the order feed's cursor", () => {
    const received = new Received();
    expect(received.accept("stock_alert", alert("a1", "2:10"))).toBe(true);
    expect(received.accept("new_order", { eventId: "o1", orderId: "o1", cursor: "2:11" })).toBe(true);
    expect(received.accept("stock_alert", alert("a1", "2:14"))).toBe(false); // rewritten after a crash
    expect(received.accept("stock_alert", alert("a9", "2:9"))).toBe(false); // at or before the cursor
    expect(received.cursor).toBe("2:11");
    for (let n = 0; n < 25; n++) received.accept("stock_alert", alert(`b${n}`, `2:${20 + n}`));
    expect(received.alerts).toHaveLength(20);
    expect(received.alerts[0]!.eventId).toBe("b24");
    expect(received.duplicatesDropped).toBe(2);
  });
});
