import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// The tests against a live API (test/live), run by tests/integration/test_client_ts.py, which starts
// Kafka, a worker and the API and passes their address in VP_* variables. They import the built
// package (dist/), as an application would. The page's origin is a dashboard's dev server: the API
// must allow it (VENDORPULSE_ALLOWED_ORIGINS), as it must for any dashboard served from elsewhere.
const dist = (path: string) => fileURLToPath(new URL(`./dist/esm/${path}`, import.meta.url));

export const DASHBOARD_ORIGIN = "http://localhost:5173";

export default defineConfig({
  resolve: {
    alias: [
      { find: /^vendorpulse-client$/, replacement: dist("index.js") },
      { find: /^vendorpulse-client\/react$/, replacement: dist("react.js") },
    ],
  },
  test: {
    include: ["test/live/**/*.live.test.{ts,tsx}"],
    environment: "happy-dom",
    environmentOptions: { happyDOM: { url: `${DASHBOARD_ORIGIN}/` } },
    testTimeout: 90_000,
  },
});
