// The same module on Node's own test runner: `deno task build` writes dist/siesta.js (plain
// JavaScript), then `node --test node/` runs this against the real siesta-server.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BadRequestError, Client, NotFoundError, text } from "../dist/siesta.js";

const baseURL = process.env.SIESTA_SERVER_URL;
const model = process.env.SIESTA_SERVER_MODEL;
assert.ok(baseURL && model, "SIESTA_SERVER_URL and SIESTA_SERVER_MODEL come from tests/clients");
const siesta = new Client({ baseURL });
const hello = [{ role: "user", content: "hello" }];

test("chat streams text on Node's fetch and Web Streams", async () => {
  const pieces = [];
  for await (
    const piece of await siesta.chat({ model, messages: hello, max_tokens: 8, ignore_eos: true })
  ) {
    pieces.push(piece);
  }
  assert.ok(pieces.length > 1, JSON.stringify(pieces));
});

test("a JSON-schema answer parses", async () => {
  const schema = { type: "object", properties: { n: { type: "integer" } }, required: ["n"] };
  const answer = await text(
    await siesta.complete({
      model,
      prompt: "A number:",
      max_tokens: 200,
      response_format: { type: "json_schema", json_schema: { name: "n", schema } },
    }),
  );
  assert.equal(typeof JSON.parse(answer).n, "number", answer);
});

test("errors are typed", async () => {
  await assert.rejects(siesta.chat({ model: "nope", messages: hello }), NotFoundError);
  await assert.rejects(siesta.chat({ model, messages: hello, temperature: -1 }), BadRequestError);
});
