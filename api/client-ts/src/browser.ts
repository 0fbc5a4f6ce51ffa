/**
 * The script-tag build (`dist/browser/vendorpulse-client.min.js`, served by the API as
 * /static/vendorpulse-client.js for its dashboard): `VendorPulseClient` as a global, as the
 * hand-written browser client had it.
 */

import { VendorPulseClient } from "./client.js";

declare global {
  // eslint-disable-next-line no-var
  var VendorPulseClient: typeof import("./client.js").VendorPulseClient;
}

globalThis.VendorPulseClient = VendorPulseClient;
