/**
 * The package's protocol constants against the server's own (api/protocol.py) and the close-code
 * table of docs/API.md, so a message type or close code added there and not here fails here.
 */

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

import { CLIENT_MESSAGE_TYPES, CloseCode, SERVER_MESSAGE_TYPES, WS_PATH } from "../../src/index.js";

const repo = (path: string) => readFileSync(fileURLToPath(new URL(`../../../../${path}`, import.meta.url)), "utf8");
const server = repo("api/protocol.py");

function enumValues(name: string): string[] {
  const body = server.split(`class ${name}(`)[1]!.split(/\n\n\n|\nclass /)[0]!;
  return [...body.matchAll(/^ {4}[A-Z_]+ = ("?)([\w]+)\1/gm)].map((m) => m[2]!);
}

describe("the protocol matches the server's", () => {
  it("knows every server message type", () => {
    const out = enumValues("Out");
    expect(out.length).toBeGreaterThanOrEqual(7);
    expect(SERVER_MESSAGE_TYPES).toEqual(expect.arrayContaining(out));
  });

  it("sends only what the server accepts", () => {
    expect([...CLIENT_MESSAGE_TYPES].sort()).toEqual(enumValues("In").sort());
  });

  it("names every close code of the server and of docs/API.md", () => {
    const codes = Object.values(CloseCode) as number[];
    const close = enumValues("Close").map(Number);
    expect(close.length).toBeGreaterThanOrEqual(8);
    expect(codes).toEqual(expect.arrayContaining(close));
    const table = repo("docs/API.md").split("### Close codes")[1]!.split("\n### ")[0]!;
    const documented = [...table.matchAll(/^\| (\d{4}) \|/gm)].map((m) => Number(m[1]));
    expect(documented.length).toBeGreaterThanOrEqual(9);
    expect(codes).toEqual(expect.arrayContaining(documented));
  });

  it("uses the server's route", () => {
    expect(server).toContain(`WS_PATH = "${WS_PATH}"`);
  });
});
