// The built package in a Node process of its own, for tests/integration/test_client_ts.py: it loads
// `vendorpulse-client` as a user would (VP_FORMAT=esm: import, cjs: require), connects with the
// settings in its environment and prints one JSON line per event. Commands, one a line on stdin:
// `stats`, `health`, `close`.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const env = process.env;
const format = env.VP_FORMAT ?? "esm";
const pkg = format === "cjs" ? createRequire(import.meta.url)("vendorpulse-client") : await import("vendorpulse-client");
const { VendorPulseClient, VendorPulseError } = pkg;

const out = (event, value = null) => process.stdout.write(`${JSON.stringify({ event, value })}\n`);
const text = (args) => args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ");

const client = new VendorPulseClient(env.VP_URL, env.VP_VENDOR, env.VP_TOKEN, {
  baseDelay: Number(env.VP_BASE_DELAY ?? 200),
  maxDelay: Number(env.VP_MAX_DELAY ?? 800),
  logger: { warn: (...a) => out("warn", text(a)), error: (...a) => out("log_error", text(a)) },
});
client.on("message", (m) => out("message", { type: m.type, data: m.data }));
client.on("state", (s) => out("state", s));
client.on("error", (e) =>
  out("error", e instanceof VendorPulseError ? { fatal: true, name: e.name, message: e.message, closeCode: e.closeCode } : { fatal: false, ...e }),
);

createInterface({ input: process.stdin }).on("line", async (line) => {
  const command = line.trim();
  if (command === "stats") out("stats", client.getConnectionStats());
  else if (command === "health") out("health", { ...(await client.healthCheck()), performHealthCheck: await client.performHealthCheck() });
  else if (command === "close") {
    client.close();
    out("closed", client.state);
    process.exit(0);
  }
});

out("ready", { format, node: process.version, websocket: typeof globalThis.WebSocket === "function" ? "global" : "ws" });
client.connect();
