/**
 * The client's policies, apart from any socket so they can be tested alone: the reconnect backoff,
 * the outbound queue, the latency window, the send pacing and reading a token's expiry. The Python
 * client (api/client_policy.py) has the same ones with the same defaults.
 */

/**
 * The longest wait after `attempt` consecutive failures (attempt ≥ 1), ms: `baseDelay` doubling up to
 * `maxDelay`, so 1, 2, 4, 8, 16, 30, 30 s by default.
 */
export function backoffCeiling(attempt: number, baseDelay = 1000, maxDelay = 30_000): number {
  return Math.min(maxDelay, baseDelay * 2 ** Math.min(Math.max(attempt - 1, 0), 62));
}

/**
 * Full-jitter backoff: the wait after failure `attempt` is uniform in [0, ceiling). A crowd of clients
 * that lost the same server comes back spread over the whole window, not in synchronized waves.
 */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
  baseDelay = 1000,
  maxDelay = 30_000,
): number {
  return random() * backoffCeiling(attempt, baseDelay, maxDelay);
}

/**
 * What the application sent, kept while offline (and while sends are paced), flushed in order.
 * Bounded by `limit`: when full the **oldest** message is dropped and counted in `dropped`, since what
 * an application sent last (the latest `refresh`, say) matters more than what it sent first.
 */
export class OutboundQueue<T> {
  readonly items: T[] = [];
  dropped = 0;

  constructor(readonly limit = 100) {
    if (!(limit >= 1)) throw new RangeError(`queueLimit must be at least 1, got ${limit}`);
  }

  put(message: T): void {
    if (this.items.length >= this.limit) {
      this.items.shift();
      this.dropped += 1;
    }
    this.items.push(message);
  }

  peek(): T | undefined {
    return this.items[0];
  }

  shift(): T | undefined {
    return this.items.shift();
  }

  get length(): number {
    return this.items.length;
  }
}

/** Round trips (ms) of the last `size` pings; `average` is the latency reported. */
export class LatencyWindow {
  readonly samples: number[] = [];

  constructor(readonly size = 100) {}

  add(rttMs: number): void {
    this.samples.push(rttMs);
    while (this.samples.length > this.size) this.samples.shift();
  }

  /** The average of the window, rounded to µs; null before the first answer. */
  get average(): number | null {
    if (!this.samples.length) return null;
    return Math.round((this.samples.reduce((a, b) => a + b, 0) / this.samples.length) * 1000) / 1000;
  }

  get last(): number | null {
    return this.samples.length ? this.samples[this.samples.length - 1]! : null;
  }
}

/**
 * A token bucket kept under the server's inbound limit (10 messages/s, burst 20): flushing a full queue
 * after a reconnect is then not answered with `rate_limited` and close 4029.
 */
export class Pacer {
  private tokens: number;
  private at: number;

  constructor(
    readonly rate = 8,
    readonly burst = 16,
    now: number = Date.now(),
  ) {
    this.tokens = burst;
    this.at = now;
  }

  /** 0 and a token taken, or the ms until one is available. */
  waitTime(now: number = Date.now()): number {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return ((1 - this.tokens) / this.rate) * 1000;
  }
}

/** The `exp` claim (epoch seconds) of a JWT, read without verifying it (the server verifies); else null. */
export function tokenExpiry(token: string): number | null {
  try {
    const part = token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/");
    const claims: unknown = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    const exp = claims !== null && typeof claims === "object" ? (claims as { exp?: unknown }).exp : undefined;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}

/** Whether `cursor` ("<partition>:<offset>") is at or before `last` on the same partition: a repeat. */
export function notAfter(cursor: string, last: string): boolean {
  const [partition, offset] = cursor.split(":");
  const [lastPartition, lastOffset] = last.split(":");
  const o = Number(offset);
  const lo = Number(lastOffset);
  return partition === lastPartition && Number.isInteger(o) && Number.isInteger(lo) && o <= lo;
}
