/**
 * A scripted WebSocket server on loopback for the unit tests: it speaks the protocol's envelope and
 * records what each connection received, so a test can play the API's side of a conversation.
 */

import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";

export interface Received {
  type: string;
  data: unknown;
  timestamp: string;
}

export class Conn {
  readonly received: Received[] = [];
  closed: { code: number; reason: string } | null = null;
  private waiters: (() => void)[] = [];

  constructor(
    readonly socket: WebSocket,
    readonly query: URLSearchParams,
    readonly headers: Record<string, string | string[] | undefined>,
  ) {
    socket.on("message", (raw) => {
      this.received.push(JSON.parse(String(raw)) as Received);
      this.wake();
    });
    socket.on("close", (code, reason) => {
      this.closed = { code, reason: String(reason) };
      this.wake();
    });
  }

  send(type: string, data: unknown): void {
    this.socket.send(JSON.stringify({ type, data, timestamp: new Date().toISOString() }));
  }

  /** `connection_status` connected, as the API's first message. */
  hello(cursor: string | null = "0:-1"): void {
    this.send("connection_status", {
      status: "connected", vendorId: this.query.get("vendor_id"), connectionId: "c", instance: "test",
      heartbeatSeconds: 15, refreshSeconds: 30, serverTime: new Date().toISOString(), cursor,
    }); // prettier-ignore
  }

  close(code: number, reason = ""): void {
    this.socket.close(code, reason);
  }

  /** Resolves when `check` holds (checked on every message and close), or fails after `within` ms. */
  async until(check: (c: Conn) => boolean, what: string, within = 5000): Promise<void> {
    const deadline = Date.now() + within;
    while (!check(this)) {
      if (Date.now() > deadline) throw new Error(`no ${what} within ${within} ms; received ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

export class TestServer {
  readonly conns: Conn[] = [];
  private onConn: (c: Conn) => void = (c) => c.hello();

  private constructor(private readonly wss: WebSocketServer) {
    wss.on("connection", (socket, request) => {
      const url = new URL(request.url ?? "/", "http://localhost");
      const conn = new Conn(socket, url.searchParams, request.headers);
      this.conns.push(conn);
      this.onConn(conn);
    });
  }

  static async start(port = 0): Promise<TestServer> {
    const wss = new WebSocketServer({ host: "127.0.0.1", port });
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    return new TestServer(wss);
  }

  get port(): number {
    return (this.wss.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** What the server does with each new connection (default: says `connected`). */
  onConnection(fn: (c: Conn) => void): this {
    this.onConn = fn;
    return this;
  }

  async nth(n: number, within = 5000): Promise<Conn> {
    const deadline = Date.now() + within;
    while (this.conns.length <= n) {
      if (Date.now() > deadline) throw new Error(`no connection #${n + 1} within ${within} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.conns[n]!;
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.socket.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

/** A free loopback port: bound, then released. */
export async function freePort(): Promise<number> {
  const s = await TestServer.start();
  const port = s.port;
  await s.stop();
  return port;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
