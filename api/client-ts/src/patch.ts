/**
 * RFC 7386 JSON merge patches, the client's side of `metrics_delta` (contract §6; the server computes
 * them in api/patch.py): null removes a key, objects merge key by key, anything else (arrays too)
 * replaces the value whole.
 */

import type { MergePatch } from "./protocol.js";

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/** RFC 7386 §2 MergePatch(target, patch): a new value; `target` is not modified. */
export function applyMergePatch<T = unknown>(target: unknown, patch: MergePatch | unknown): T {
  if (!isObject(patch)) return patch as T;
  const result: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result as T;
}

/** JSON with object keys sorted, no whitespace: equal documents give equal strings. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
