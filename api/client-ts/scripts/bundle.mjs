// After tsc: marks dist/cjs as CommonJS, bundles the script-tag build with esbuild and prints the
// sizes a user ships (minified, and gzipped as a server would send it).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

writeFileSync("dist/cjs/package.json", JSON.stringify({ type: "commonjs" }, null, 2) + "\n");
mkdirSync("dist/browser", { recursive: true });

const common = { entryPoints: ["src/browser.ts"], bundle: true, format: "iife", target: "es2020", logLevel: "warning" };
const banner = { js: "/* vendorpulse-client: the script-tag build; source api/client-ts/src (npm run build) */" };
await build({ ...common, outfile: "dist/browser/vendorpulse-client.js", banner });
await build({ ...common, outfile: "dist/browser/vendorpulse-client.min.js", minify: true, banner });

const sizes = {};
for (const name of ["vendorpulse-client.js", "vendorpulse-client.min.js"]) {
  const bytes = readFileSync(`dist/browser/${name}`);
  sizes[name] = { bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}
writeFileSync("dist/browser/sizes.json", JSON.stringify(sizes, null, 2) + "\n");
for (const [name, s] of Object.entries(sizes)) console.log(`dist/browser/${name}: ${s.bytes} B, ${s.gzip} B gzipped`);
