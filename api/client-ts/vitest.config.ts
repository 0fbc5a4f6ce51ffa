import { defineConfig } from "vitest/config";

// `npm test`: the unit tests, no vendorpulse server needed (test/unit; an in-process `ws` server
// plays the API's side of the protocol where a socket is needed). The tests against the live API
// are in vitest.live.config.ts, run by the integration tests (make test).
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.{ts,tsx}"],
    environment: "node",
    testTimeout: 20_000,
  },
});
