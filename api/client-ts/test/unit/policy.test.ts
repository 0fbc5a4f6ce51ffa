import { describe, expect, it } from "vitest";

import { LatencyWindow, OutboundQueue, Pacer, backoffCeiling, backoffDelay, notAfter, tokenExpiry } from "../../src/index.js";

function jwt(claims: object): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.signature`;
}

describe("backoff", () => {
  it("doubles from 1 s to a 30 s ceiling", () => {
    const ceilings = [1, 2, 3, 4, 5, 6, 7, 10, 100].map((n) => backoffCeiling(n));
    expect(ceilings).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  });

  it("waits uniformly below the ceiling (full jitter)", () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, () => 0.5))).toEqual([500, 1000, 2000, 4000, 8000, 15000]);
    expect(backoffDelay(3, () => 0)).toBe(0);
    expect(backoffDelay(3, () => 0.999_999)).toBeLessThan(4000);
  });

  it("spreads a crowd over the whole window", () => {
    let seed = 7;
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const waits = Array.from({ length: 1000 }, () => backoffDelay(4, random));
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...waits)).toBeLessThan(8000);
    const quarters = [0, 1, 2, 3].map((q) => waits.filter((w) => Math.floor(w / 2000) === q).length);
    for (const n of quarters) expect(n).toBeGreaterThan(200); // about 250 each
  });

  it("honours other bases and ceilings, and never overflows", () => {
    expect([1, 2, 3, 4].map((n) => backoffCeiling(n, 20, 50))).toEqual([20, 40, 50, 50]);
    expect(backoffCeiling(0)).toBe(1000);
    expect(backoffCeiling(10_000)).toBe(30_000);
  });
});

describe("outbound queue", () => {
  it("keeps order and drops the oldest when full, counting them", () => {
    const q = new OutboundQueue<number>(3);
    for (const n of [1, 2, 3, 4, 5]) q.put(n);
    expect(q.items).toEqual([3, 4, 5]);
    expect(q.dropped).toBe(2);
    expect(q.length).toBe(3);
    expect(q.shift()).toBe(3);
    expect(q.peek()).toBe(4);
    q.put(6);
    expect(q.items).toEqual([4, 5, 6]);
    expect(q.dropped).toBe(2);
  });

  it("holds 100 by default", () => {
    const q = new OutboundQueue<number>();
    for (let n = 0; n < 150; n++) q.put(n);
    expect(q.length).toBe(100);
    expect(q.peek()).toBe(50);
    expect(q.dropped).toBe(50);
  });

  it("refuses a limit below 1", () => {
    expect(() => new OutboundQueue(0)).toThrow(/at least 1/);
  });
});

describe("latency window", () => {
  it("averages the last 100 round trips", () => {
    const w = new LatencyWindow();
    expect(w.average).toBeNull();
    for (let n = 1; n <= 150; n++) w.add(n);
    expect(w.samples.length).toBe(100);
    expect(w.average).toBe(100.5); // 51..150
    expect(w.last).toBe(150);
  });
});

describe("pacer", () => {
  it("sends a burst of 16, then 8 a second", () => {
    const p = new Pacer(8, 16, 0);
    const waits = Array.from({ length: 17 }, () => p.waitTime(0));
    expect(waits.slice(0, 16)).toEqual(Array(16).fill(0));
    expect(waits[16]).toBe(125);
    expect(p.waitTime(125)).toBe(0);
    expect(p.waitTime(125)).toBe(125);
  });
});

describe("token expiry and cursors", () => {
  it("reads exp without verifying", () => {
    expect(tokenExpiry(jwt({ sub: "u", exp: 1_900_000_000 }))).toBe(1_900_000_000);
    expect(tokenExpiry(jwt({ sub: "u" }))).toBeNull();
    expect(tokenExpiry("not a token")).toBeNull();
  });

  it("compares cursors on one partition only", () => {
    expect(notAfter("3:10", "3:10")).toBe(true);
    expect(notAfter("3:9", "3:10")).toBe(true);
    expect(notAfter("3:11", "3:10")).toBe(false);
    expect(notAfter("2:1", "3:10")).toBe(false);
    expect(notAfter("3:x", "3:10")).toBe(false);
    expect(notAfter("3:0", "3:-1")).toBe(false);
  });
});
