/**
 * The WebSocket the client runs on: the one given in the options, else the platform's (browsers,
 * Node 22+, Deno, Bun), else the `ws` package (Node 20 has no global WebSocket). `ws` is loaded only
 * then, and bundlers for the browser leave it out (`"browser": {"ws": false}` in package.json).
 */

// A handler type checked bivariantly, so the DOM's and `ws`'s richer event types fit.
type Listener<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** The part of the WHATWG WebSocket the client uses; browsers' and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: Listener<{ data: unknown }> | null;
  onclose: Listener<{ code: number; reason: string }> | null;
  onerror: Listener<unknown> | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export const OPEN = 1;

export function platformWebSocket(): WebSocketConstructor | undefined {
  const global = globalThis as { WebSocket?: WebSocketConstructor };
  return typeof global.WebSocket === "function" ? global.WebSocket : undefined;
}

export async function loadWebSocket(): Promise<WebSocketConstructor> {
  let module: { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor } | undefined;
  try {
    module = (await import("ws")) as typeof module;
  } catch (error) {
    throw new Error(`no WebSocket: this platform has none and the "ws" package did not load (${String(error)})`);
  }
  const found = module?.WebSocket ?? module?.default;
  if (typeof found !== "function") throw new Error('no WebSocket: this platform has none and "ws" is not available here');
  return found;
}
